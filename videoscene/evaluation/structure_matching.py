"""Structure matching: how many feature matches between frames of a video obey one epipolar geometry.

The paper's "structure matching comparison" (VideoScene Fig. 5, following Li et al. 2024, "Sora
generates videos with stunning geometrical consistency"): frame pairs are taken from a generated
video, matched, and the matches a fundamental matrix explains are counted. A 3D-consistent video
(a rigid scene seen by a moving camera) keeps many matches; non-rigid distortions that differ from
frame to frame break the epipolar constraint and lose them. Shuffling the frames of a rigid scene
does not: any two views of a rigid scene satisfy a fundamental matrix.

Per pair (hand-written on OpenCV: no maintained package computes this score):

1. frames ``[3, H, W]`` in [0, 1] -> 8-bit (``round(255 x)``) -> grey (``cv2.COLOR_RGB2GRAY``);
2. SIFT keypoints and descriptors (``cv2.SIFT_create(max_features, contrastThreshold=
   contrast_threshold)``; OpenCV's default contrast threshold 0.04 as in the reference, lower
   it for low-contrast content; OpenCV's other defaults);
3. exhaustive L2 2-nearest-neighbour matching (``cv2.BFMatcher``; the reference's FLANN is an
   approximate, randomised search) and Lowe's ratio test ``d1 < ratio * d2`` (0.85 as in the
   reference);
4. ``cv2.findFundamentalMat`` on the surviving matches (pixel coordinates) with ``method``:
   ``'ransac'`` (``cv2.FM_RANSAC``, the default: what the reference evaluation uses, so counts are
   comparable with published ones) or ``'magsac'`` (``cv2.USAC_MAGSAC``, more accurate, slower);
   threshold ``ransac_threshold`` pixels, confidence 0.99. OpenCV's RNG is seeded
   (``cv2.setRNGSeed(seed)``) before every pair, so a pair's count does not depend on what ran
   before it. Fewer than 8 ratio-test matches, or no model found, count as 0 inliers.

Pairs (``schedule``): ``'consecutive'`` ``(i, i + 1)``; ``'every_k'`` ``(i, i + k)`` for every
``i`` (a sliding window, as the reference's ``interval``); ``'first_to_all'`` ``(0, i)``, i >= 1.

Scores (``default_prefix='structure'``): ``inliers``, the mean over videos of the mean inlier
count over the video's pairs (every video weighs the same; higher is better); ``matches``, the same
mean of the ratio-test matches; ``inlier_ratio``, all inliers over all ratio-test matches (0 with
no match). Counts depend on the image size: compare videos of one size.

Shapes: a video is ``[F, 3, H, W]`` float in [0, 1] with ``F >= 2``; the metric reads the data
sample key ``key`` (``'pred'``: the generated video of ``NovelViewPSNR``'s samples).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from torch import Tensor

from videoscene.errors import InputError
from videoscene.registry import METRICS

__all__ = ['PairMatches', 'StructureMatching', 'frame_pairs', 'match_video']

SCHEDULES = ('consecutive', 'every_k', 'first_to_all')
METHODS = {'ransac': cv2.FM_RANSAC, 'magsac': cv2.USAC_MAGSAC}
MIN_MATCHES = 8  # the eight-point minimum findFundamentalMat's RANSAC needs


@dataclass(frozen=True)
class PairMatches:
    """One frame pair: its frame indices, ratio-test matches and fundamental-matrix inliers."""

    first: int
    second: int
    matches: int
    inliers: int


def frame_pairs(num_frames: int, schedule: str = 'consecutive', k: int = 1) -> list[tuple[int, int]]:
    """The frame index pairs of a ``num_frames`` video under ``schedule`` (see the module doc)."""
    if schedule not in SCHEDULES:
        raise InputError('schedule', f'must be one of {SCHEDULES}, got {schedule!r}')
    if schedule == 'every_k' and (not isinstance(k, int) or k < 1):
        raise InputError('k', f'must be a positive integer, got {k!r}')
    if num_frames < 2:
        raise InputError('video', f'needs at least 2 frames to form pairs, got {num_frames}')
    if schedule == 'first_to_all':
        return [(0, i) for i in range(1, num_frames)]
    step = 1 if schedule == 'consecutive' else k
    if step >= num_frames:
        raise InputError('k', f'{k} leaves no pair in a {num_frames}-frame video (needs k < frames)')
    return [(i, i + step) for i in range(num_frames - step)]


def _check_video(video: Tensor, source: str) -> None:
    if not isinstance(video, Tensor) or video.dim() != 4 or video.shape[1] != 3:
        shape = tuple(video.shape) if isinstance(video, Tensor) else type(video).__name__
        raise InputError(source, f'expected a video [F, 3, H, W] (float in [0, 1]), got {shape}')
    if not video.is_floating_point():
        raise InputError(source, f'expected a float video in [0, 1], got dtype {video.dtype}')
    if not torch.isfinite(video).all():
        raise InputError(source, 'holds NaN or infinite values')
    if video.shape[0] < 2:
        raise InputError(source, f'needs at least 2 frames to form pairs, got {video.shape[0]}')


def _grey_frames(video: Tensor) -> list[np.ndarray]:
    pixels = (video.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    pixels = pixels.permute(0, 2, 3, 1).cpu().numpy()
    return [cv2.cvtColor(np.ascontiguousarray(frame), cv2.COLOR_RGB2GRAY) for frame in pixels]


def match_video(video: Tensor, schedule: str = 'consecutive', k: int = 1, ratio: float = 0.85,
                method: str = 'ransac', ransac_threshold: float = 1.0, max_features: int = 40000,
                contrast_threshold: float = 0.04, seed: int = 0,
                source: str = 'video') -> list[PairMatches]:
    """Match the frame pairs of ``video [F, 3, H, W]`` (steps 1-4 of the module docstring).

    ``source`` names the video in errors."""
    _check_video(video, source)
    if method not in METHODS:
        raise InputError('method', f'must be one of {tuple(METHODS)}, got {method!r}')
    if not 0 < ratio <= 1:
        raise InputError('ratio', f'must be in (0, 1], got {ratio}')
    pairs = frame_pairs(video.shape[0], schedule, k)
    sift = cv2.SIFT_create(max_features, contrastThreshold=contrast_threshold)
    features = []   # every schedule uses every frame
    for grey in _grey_frames(video):
        keypoints, descriptors = sift.detectAndCompute(grey, None)
        features.append((np.float32([kp.pt for kp in keypoints]).reshape(-1, 2), descriptors))
    matcher = cv2.BFMatcher(cv2.NORM_L2)
    results = []
    for first, second in pairs:
        (points_a, desc_a), (points_b, desc_b) = features[first], features[second]
        good = []
        if desc_a is not None and desc_b is not None:
            good = [pair[0] for pair in matcher.knnMatch(desc_a, desc_b, k=2)
                    if len(pair) == 2 and pair[0].distance < ratio * pair[1].distance]
        inliers = 0
        if len(good) >= MIN_MATCHES:
            a = points_a[[m.queryIdx for m in good]]
            b = points_b[[m.trainIdx for m in good]]
            cv2.setRNGSeed(seed)
            matrix, mask = cv2.findFundamentalMat(a, b, METHODS[method], ransac_threshold, 0.99)
            if matrix is not None and mask is not None:
                inliers = int(mask.sum())
        results.append(PairMatches(first, second, len(good), inliers))
    return results


@METRICS.register_module()
class StructureMatching(BaseMetric):
    """Fundamental-matrix inlier matches between frame pairs of each video (higher is better).

    Args:
        schedule, k: the frame pairs (:func:`frame_pairs`).
        ratio: Lowe's ratio-test threshold.
        method: ``'ransac'`` (``cv2.FM_RANSAC``) or ``'magsac'`` (``cv2.USAC_MAGSAC``).
        ransac_threshold: epipolar inlier threshold in pixels.
        max_features: SIFT's ``nfeatures`` (0: all).
        contrast_threshold: SIFT's ``contrastThreshold``.
        seed: OpenCV's RNG seed, set before each pair.
        key: the data sample key holding the video ``[F, 3, H, W]``.
        collect_device, prefix: as for :class:`mmengine.evaluator.BaseMetric`.

    Results per video: ``(matches, inliers)`` arrays over its pairs. See the module docstring for
    the scores.
    """

    default_prefix = 'structure'

    def __init__(self, schedule: str = 'consecutive', k: int = 1, ratio: float = 0.85,
                 method: str = 'ransac', ransac_threshold: float = 1.0,
                 max_features: int = 40000, contrast_threshold: float = 0.04, seed: int = 0,
                 key: str = 'pred',
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if schedule not in SCHEDULES:
            raise InputError('schedule', f'must be one of {SCHEDULES}, got {schedule!r}')
        if method not in METHODS:
            raise InputError('method', f'must be one of {tuple(METHODS)}, got {method!r}')
        self.options = dict(schedule=schedule, k=k, ratio=ratio, method=method,
                            ransac_threshold=ransac_threshold, max_features=max_features,
                            contrast_threshold=contrast_threshold, seed=seed)
        self.key = key

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if self.key not in sample:
                raise InputError('data sample', f'has no {self.key!r} video for StructureMatching '
                                 f'(keys: {sorted(sample)})')
            pairs = match_video(sample[self.key], source=f'data sample {self.key!r}',
                                **self.options)
            self.results.append((np.array([p.matches for p in pairs]),
                                 np.array([p.inliers for p in pairs])))

    def compute_metrics(self, results: list) -> dict:
        matches = np.concatenate([m for m, _ in results])
        inliers = np.concatenate([i for _, i in results])
        return dict(inliers=float(np.mean([i.mean() for _, i in results])),
                    matches=float(np.mean([m.mean() for m, _ in results])),
                    inlier_ratio=float(inliers.sum() / matches.sum()) if matches.sum() else 0.0)
