"""Frechet Video Distance (Unterthiner et al. 2019) as StyleGAN-V's PyTorch FVD computes it.

Reference: StyleGAN-V ``src/metrics/frechet_video_distance.py`` + ``metric_utils.py`` (itself
checked against the TensorFlow original of google-research ``frechet_video_distance``). Each video
``[F, 3, H, W]`` in [0, 1] is cut to its first ``num_frames`` frames, quantised to 8 bits as
StyleGAN-V does for generated videos (``floor(x * 255 + 0.5)``), and embedded by the Kinetics-400
I3D (:mod:`videoscene.evaluation.i3d`): frames to [-1, 1], bilinearly resized to 224x224, logits
before the softmax averaged over time -> 400 features. Both sets are fitted by a Gaussian (mean and
covariance with ``1/N``, as StyleGAN-V's ``FeatureStats``) and compared with
``|mu1 - mu2|^2 + Tr(S1 + S2 - 2 (S1 S2)^(1/2))``.

Resizing is the one step not pinned down to the bit: the state-dict path uses PyTorch's bilinear
interpolation (``align_corners=False``); a TorchScript file resizes itself (``resize=True``, a
bilinear resize to 224x224; its corner convention was not inspected here); the TensorFlow original
used TF1 ``resize_bilinear``. Videos already 224x224 are unaffected; others may differ slightly.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Sequence

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmengine.logging import print_log
from torch import Tensor

from videoscene.errors import InputError
from videoscene.registry import METRICS

from .i3d import load_i3d

__all__ = ['FVD', 'frechet_distance', 'gaussian_stats']

MIN_FVD_FRAMES = 10
# StyleGAN-V reports FVD with 2048 generated videos ('fvd2048_16f'); fewer give a biased score.
REFERENCE_NUM_SAMPLES = 2048
_RANGE_TOLERANCE = 1e-3


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    """Square root of a symmetric positive semi-definite matrix (rounding negatives clipped)."""
    values, vectors = np.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2), in float64.

    ``Tr((S1 S2)^(1/2))`` is the sum of the square roots of the eigenvalues of the symmetric PSD
    matrix ``S1^(1/2) S2 S1^(1/2)`` (similar to ``S1 S2``), so singular or near-singular
    covariances (fewer samples than features) stay finite and real, with no ``sqrtm`` retries.
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    d = mu1.shape[0] if mu1.ndim == 1 else -1
    if mu2.shape != (d,) or sigma1.shape != (d, d) or sigma2.shape != (d, d):
        raise ValueError(f'frechet_distance expects mu [D] and sigma [D, D] for both sets, got '
                         f'{mu1.shape}, {sigma1.shape}, {mu2.shape}, {sigma2.shape}')
    if not all(np.isfinite(a).all() for a in (mu1, sigma1, mu2, sigma2)):
        raise ValueError('frechet_distance: the means and covariances must be finite')
    root1 = _psd_sqrt(sigma1)
    product = root1 @ sigma2 @ root1
    trace_sqrt = np.sqrt(np.clip(np.linalg.eigvalsh((product + product.T) / 2), 0, None)).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2 * trace_sqrt)


def gaussian_stats(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean ``[D]`` and covariance ``[D, D]`` (normalised by N) of features ``[N, D]``, float64."""
    features = np.asarray(features, np.float64)
    mean = features.mean(0)
    centred = features - mean
    return mean, centred.T @ centred / features.shape[0]


@METRICS.register_module()
class FVD(BaseMetric):
    """Frechet Video Distance between generated ``pred`` and real ``gt`` videos (lower is better).

    Reads the model's data samples: ``pred`` and ``gt`` ``[F, 3, H, W]`` in [0, 1] (a tolerance of
    1e-3 for rounding, then clamped), ``F >= num_frames``; the first ``num_frames`` frames are used.
    Features are extracted in batches of ``batch_size`` videos under ``no_grad`` on ``device``.

    Args:
        i3d_checkpoint: local I3D weights: StyleGAN-V's TorchScript ``i3d_torchscript.pt`` or
            pytorch-i3d's ``rgb_imagenet.pt`` state dict (format read from the file, see
            :func:`videoscene.evaluation.i3d.load_i3d`). Required: without it the metric is
            unavailable and says so at construction; it never downloads.
        num_frames: frames per clip (>= 10; StyleGAN-V's FVD uses 16).
        batch_size: videos per I3D forward.
        device: where I3D runs; ``None`` takes CUDA when present, else the CPU.
        i3d_channel_divisor: tests only: a narrower I3D of the same layout (state dicts only); the
            score is then not FVD and the variant string says so.
        collect_device, prefix: as for :class:`mmengine.evaluator.BaseMetric`.

    ``compute_metrics`` returns ``fvd``, ``fvd_num_samples`` (videos per set), ``fvd_variant``
    (network file and preprocessing) and ``fvd_note`` (FVD is biased at small N: only scores with
    the same N and variant compare). Below 2048 videos it also logs a warning.

    Written by hand, as no maintained package ships this feature path with the reference settings
    (torchmetrics and pytorch-fid have FID's Inception only; the FVD repositories are unpackaged
    scripts): the I3D definition in pytorch-i3d's layout, the TorchScript call convention of
    StyleGAN-V, the preprocessing, and the Frechet distance (an eigendecomposition instead of
    ``scipy.linalg.sqrtm``, so that rank-deficient covariances at small N stay finite).
    """

    default_prefix = 'video'

    def __init__(self, i3d_checkpoint: str | os.PathLike | None = None, num_frames: int = 16,
                 batch_size: int = 8, device: str | None = None, i3d_channel_divisor: int = 1,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        if num_frames < MIN_FVD_FRAMES:
            raise InputError('FVD num_frames', f'must be >= {MIN_FVD_FRAMES}, got {num_frames}')
        if batch_size < 1:
            raise InputError('FVD batch_size', f'must be >= 1, got {batch_size}')
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        self.extractor = load_i3d(i3d_checkpoint, self.device, i3d_channel_divisor)
        if self.extractor.kind == 'torchscript' and i3d_channel_divisor != 1:
            raise InputError('FVD i3d_channel_divisor', 'applies to state-dict files only, not '
                             f'to the TorchScript {i3d_checkpoint}')
        self.num_frames, self.batch_size = num_frames, batch_size
        self.variant = (f'{self.extractor.describe()}; first {num_frames} frames, 8-bit '
                        'quantised; Gaussian fit with 1/N covariance')
        if i3d_channel_divisor != 1:
            self.variant += f'; I3D widths / {i3d_channel_divisor}: NOT FVD (test network)'
        print_log(f'FVD: {self.extractor.kind} I3D from {i3d_checkpoint}', logger='current')

    def _clip(self, video: Tensor, name: str) -> Tensor:
        """Validate ``[F, 3, H, W]`` in [0, 1] -> ``[3, num_frames, H, W]`` 8-bit levels 0..255."""
        if not isinstance(video, Tensor) or video.dim() != 4 or video.shape[1] != 3:
            shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
            raise InputError(name, f'FVD expects a video [F, 3, H, W] in [0, 1], got {shape}')
        if video.shape[0] < self.num_frames:
            raise InputError(name, f'has {video.shape[0]} frames; FVD is configured for '
                             f'num_frames={self.num_frames} (at least {MIN_FVD_FRAMES})')
        video = video[:self.num_frames].float()
        low, high = video.min().item(), video.max().item()
        if not (low >= -_RANGE_TOLERANCE and high <= 1 + _RANGE_TOLERANCE):
            raise InputError(name, f'FVD expects values in [0, 1], got [{low:.4g}, {high:.4g}]')
        return torch.floor(video.clamp(0, 1) * 255 + 0.5).transpose(0, 1)

    def _batches(self, clips: list[Tensor]) -> Iterator[Tensor]:
        """Consecutive clips of one shape, at most ``batch_size`` per batch."""
        start = 0
        while start < len(clips):
            end = start + 1
            while (end < len(clips) and end - start < self.batch_size
                   and clips[end].shape == clips[start].shape):
                end += 1
            yield torch.stack(clips[start:end])
            start = end

    @torch.no_grad()
    def _features(self, clips: list[Tensor]) -> np.ndarray:
        self.extractor.to(self.device)
        return np.concatenate([self.extractor(batch.to(self.device)).double().cpu().numpy()
                               for batch in self._batches(clips)])

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        clips = {kind: [self._clip(sample[kind], f'data sample {i} {kind!r}')
                        for i, sample in enumerate(data_samples)] for kind in ('pred', 'gt')}
        features = {kind: self._features(clips[kind]) for kind in clips}
        self.results.extend(dict(pred=p, gt=g) for p, g in zip(features['pred'], features['gt']))

    def compute_metrics(self, results: list) -> dict:
        n = len(results)
        if n < 2:
            raise InputError('FVD', f'needs at least 2 videos per set for a covariance, got {n}')
        stats = {kind: gaussian_stats(np.stack([r[kind] for r in results]))
                 for kind in ('pred', 'gt')}
        note = (f'FVD is biased at small N: {n} videos per set; compare only scores with the same '
                f'N and variant (StyleGAN-V reports N={REFERENCE_NUM_SAMPLES})')
        if n < REFERENCE_NUM_SAMPLES:
            print_log(note, logger='current', level=logging.WARNING)
        return dict(fvd=frechet_distance(*stats['gt'], *stats['pred']), fvd_num_samples=n,
                    fvd_variant=self.variant, fvd_note=note)
