"""Per-image reconstruction metrics for rendered views against ground truth."""
from __future__ import annotations

from collections.abc import Sequence

import torch
from mmengine.evaluator import BaseMetric

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
