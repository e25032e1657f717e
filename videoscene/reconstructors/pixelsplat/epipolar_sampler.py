"""Sampling the other views' features along each pixel's epipolar line (pixelSplat)."""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..gaussian_adapter import world_rays
from .epipolar_geometry import pixel_centres, project_ray_segments

__all__ = ['EpipolarSamples', 'other_views', 'sample_epipolar_lines']


@dataclass
class EpipolarSamples:
    """Features sampled along epipolar lines; ``R = H * W`` rays per view (row-major pixels),
    ``V - 1`` other views in increasing index order, ``S`` samples per line.

    Attributes:
        features: ``[B, V, V-1, R, S, C]``; zero where the line misses the other image.
        valid: ``[B, V, V-1, R]`` whether the ray's near-far segment is visible in the other view.
        xy: ``[B, V, V-1, R, S, 2]`` normalised sample positions in the other view.
        origins: ``[B, V, R, 3]`` world-space ray origins.
        directions: ``[B, V, R, 3]`` world-space unit ray directions.
    """

    features: torch.Tensor
    valid: torch.Tensor
    xy: torch.Tensor
    origins: torch.Tensor
    directions: torch.Tensor


def other_views(values: torch.Tensor) -> torch.Tensor:
    """``[B, V, ...]`` -> ``[B, V, V-1, ...]``: for each view, the values of all other views."""
    v = values.shape[1]
    index = torch.tensor([[j for j in range(v) if j != i] for i in range(v)],
                         device=values.device)
    return values[:, index]


def sample_epipolar_lines(features: torch.Tensor, extrinsics: torch.Tensor,
                          intrinsics: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                          num_samples: int) -> EpipolarSamples:
    """For every pixel ray of every view, sample the other views' features along its epipolar line.

    The ray segment from ``near`` to ``far`` is projected into each other view (clipped to the
    image) and sampled bilinearly at ``num_samples`` evenly spaced points (bin centres).

    Args:
        features: ``[B, V, C, H, W]`` feature maps.
        extrinsics: ``[B, V, 4, 4]`` camera-to-world; ``intrinsics``: ``[B, V, 3, 3]`` normalised.
        near, far: ``[B, V]`` depth bounds of each view's rays.
        num_samples: samples per epipolar line.
    """
    b, v, c, h, w = features.shape
    xy = pixel_centres(h, w, device=features.device, dtype=features.dtype).flatten(0, 1)
    origins, directions = world_rays(xy, extrinsics[:, :, None], intrinsics[:, :, None])

    segments = project_ray_segments(
        origins[:, :, None], directions[:, :, None], other_views(extrinsics)[:, :, :, None],
        other_views(intrinsics)[:, :, :, None], near[:, :, None, None], far[:, :, None, None])
    visible = segments.overlaps[..., None].to(features.dtype)
    start = segments.start.nan_to_num(posinf=0.0, neginf=0.0) * visible
    end = segments.end.nan_to_num(posinf=0.0, neginf=0.0) * visible
    fractions = (torch.arange(num_samples, device=features.device, dtype=features.dtype)
                 + 0.5) / num_samples
    samples = start[..., None, :] + fractions[:, None] * (end - start)[..., None, :]

    images = other_views(features).flatten(0, 2)  # [B * V * (V-1), C, H, W]
    grid = 2 * samples.flatten(0, 2).flatten(1, 2)[:, :, None] - 1  # [B * V * (V-1), R * S, 1, 2]
    sampled = F.grid_sample(images, grid, mode='bilinear', padding_mode='zeros',
                            align_corners=False)
    sampled = sampled[..., 0].transpose(1, 2).reshape(*samples.shape[:-1], c)
    return EpipolarSamples(features=sampled * visible[..., None], valid=segments.overlaps,
                           xy=samples, origins=origins, directions=directions)
