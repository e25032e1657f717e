"""Per-image reconstruction metrics for rendered views against ground truth."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from skimage.metrics import structural_similarity

from videoscene.registry import METRICS


def psnr(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of images in [0, 1], one value per image: ``[..., 3, H, W] -> [...]``.

    Identical images give ``inf``.
    """
    if prediction.shape != target.shape:
        raise ValueError(f'prediction {tuple(prediction.shape)} and target '
                         f'{tuple(target.shape)} must have the same shape')
    mse = (prediction.clamp(0, 1) - target).pow(2).flatten(-3).mean(-1)
    return -10 * torch.log10(mse)


def ssim(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM of images in [0, 1], one value per image: ``[..., 3, H, W] -> [...]``.

    scikit-image's ``structural_similarity`` with MVSplat's (and pixelSplat's) settings: an 11 x 11
    Gaussian window (sigma 1.5), ``data_range=1``, channels averaged.  Images smaller than 11
    pixels on a side are refused by scikit-image.
    """
    if prediction.shape != target.shape:
        raise ValueError(f'prediction {tuple(prediction.shape)} and target '
                         f'{tuple(target.shape)} must have the same shape')
    a = prediction.detach().clamp(0, 1).double().cpu().reshape(-1, *prediction.shape[-3:]).numpy()
    b = target.detach().double().cpu().reshape(-1, *target.shape[-3:]).numpy()
    values = [structural_similarity(x, y, win_size=11, gaussian_weights=True, channel_axis=0,
                                    data_range=1.0) for x, y in zip(a, b)]
    return torch.from_numpy(np.asarray(values, dtype=np.float64)).float().reshape(
        prediction.shape[:-3])


def gradient_magnitude(images: torch.Tensor) -> torch.Tensor:
    """Mean absolute finite difference along both image axes, one value per image:
    ``[..., 3, H, W] -> [...]``."""
    dx = (images[..., :, 1:] - images[..., :, :-1]).abs().flatten(-3).mean(-1)
    dy = (images[..., 1:, :] - images[..., :-1, :]).abs().flatten(-3).mean(-1)
    return (dx + dy) / 2


def sharpness(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Gradient magnitude of a video relative to the true one's (1: as sharp as the truth; below:
    blurrier; far above: noisy): ``[..., F, 3, H, W] -> [...]``, frames pooled.  PSNR favours
    blur, so this is reported beside it."""
    return gradient_magnitude(prediction).mean(-1) / gradient_magnitude(target).mean(-1)


@METRICS.register_module()
class NovelViewPSNR(BaseMetric):
    """Mean PSNR over every rendered target view.

    Each data sample the model's ``predict`` returns carries ``pred`` and ``gt``: ``[F, 3, H, W]``
    in [0, 1].  Views identical to the ground truth (infinite PSNR) are reported in
    ``psnr_exact_views`` and left out of the mean.
    """

    default_prefix = 'novel_view'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(psnr(sample['pred'].float().cpu(), sample['gt'].float().cpu()))

    def compute_metrics(self, results: list) -> dict:
        values = torch.cat(results)
        finite = values[torch.isfinite(values)]
        return dict(psnr=finite.mean().item() if finite.numel() else float('inf'),
                    psnr_exact_views=int((~torch.isfinite(values)).sum()))


@METRICS.register_module()
class NovelViewSSIM(BaseMetric):
    """Mean SSIM (:func:`ssim`: scikit-image with MVSplat's settings) over every rendered target
    view; reads the data samples of ``NovelViewPSNR`` (``pred``, ``gt`` ``[F, 3, H, W]``)."""

    default_prefix = 'novel_view'

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            self.results.append(ssim(sample['pred'].float().cpu(), sample['gt'].float().cpu()))

    def compute_metrics(self, results: list) -> dict:
        return dict(ssim=torch.cat(results).mean().item())
