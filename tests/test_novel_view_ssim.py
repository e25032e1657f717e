"""NovelViewSSIM: the mean over views of scikit-image's SSIM with MVSplat's settings."""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from videoscene.registry import METRICS


def test_mean_of_mvsplat_ssim_over_every_view():
    generator = torch.Generator().manual_seed(0)
    gt = [torch.rand(f, 3, 24, 32, generator=generator) for f in (2, 3)]
    pred = [(g + 0.2 * torch.randn(g.shape, generator=generator)) for g in gt]  # leaves [0, 1]
    metric = METRICS.build(dict(type='NovelViewSSIM'))
    metric.process({}, [dict(pred=p, gt=g) for p, g in zip(pred, gt)])
    # MVSplat's compute_ssim: 11 x 11 Gaussian window, data range 1, channels first
    expected = [structural_similarity(p.clamp(0, 1).double().numpy(), g.double().numpy(),
                                      win_size=11, gaussian_weights=True, channel_axis=0,
                                      data_range=1.0)
                for video_p, video_g in zip(pred, gt) for p, g in zip(video_p, video_g)]
    assert len(expected) == 5
    assert metric.compute_metrics(metric.results) == {'ssim': pytest.approx(np.mean(expected), abs=1e-6)}
    assert metric.prefix == 'novel_view'
