"""Plane-sweep cost volume: correlate each view's features with the other views' features warped
onto a set of fronto-parallel depth planes.

The depth planes are uniform in disparity (inverse depth) between ``1 / far`` and ``1 / near``.
Warping treats a plane's depth as camera z (pixel ``(u, v, 1)`` back-projected through the
intrinsics and scaled), with integer pixel coordinates at feature resolution, as the official
MVSplat does.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ['disparity_candidates', 'warp_to_depth_planes', 'correlation_volume']


def disparity_candidates(near: torch.Tensor, far: torch.Tensor, count: int) -> torch.Tensor:
    """``[..., count]`` disparities from ``1 / far`` to ``1 / near`` (inclusive), uniform."""
    low, high = 1.0 / far, 1.0 / near
    steps = torch.linspace(0.0, 1.0, count, device=near.device, dtype=near.dtype)
    return low[..., None] + steps * (high - low)[..., None]


def warp_to_depth_planes(source: torch.Tensor, intrinsics: torch.Tensor,
                         reference_to_source: torch.Tensor, depths: torch.Tensor,
                         min_z: float = 1e-3) -> torch.Tensor:
    """Sample source-view features at the projections of the reference pixels on each depth plane.

    Args:
        source: ``[N, C, H, W]`` source-view features.
        intrinsics: ``[N, 3, 3]`` pixel-unit intrinsics at feature resolution (shared by both views).
        reference_to_source: ``[N, 4, 4]`` rigid transform from reference to source camera frame.
        depths: ``[N, D]`` plane depths (camera z).
        min_z: projected z is clamped to at least this before the perspective division.

    Returns:
        ``[N, C, D, H, W]``; zeros where the projection falls outside the source view.
    """
    n, c, h, w = source.shape
    d = depths.shape[1]
    with torch.no_grad():
        ys, xs = torch.meshgrid(torch.arange(h, device=source.device, dtype=source.dtype),
                                torch.arange(w, device=source.device, dtype=source.dtype),
                                indexing='ij')
        pixels = torch.stack((xs, ys, torch.ones_like(xs))).reshape(1, 3, h * w)
        rays = torch.inverse(intrinsics) @ pixels  # [N, 3, HW], z = 1
        rotated = reference_to_source[:, :3, :3] @ rays
        points = rotated[:, :, None, :] * depths[:, None, :, None] \
            + reference_to_source[:, :3, 3, None, None]  # [N, 3, D, HW]
        projected = (intrinsics @ points.reshape(n, 3, d * h * w)).reshape(n, 3, d, h * w)
        xy = projected[:, :2] / projected[:, 2:].clamp(min=min_z)
        grid = torch.stack((2 * xy[:, 0] / (w - 1) - 1, 2 * xy[:, 1] / (h - 1) - 1), dim=-1)
    warped = F.grid_sample(source, grid.reshape(n, d * h, w, 2), mode='bilinear',
                           padding_mode='zeros', align_corners=True)
    return warped.reshape(n, c, d, h, w)


def correlation_volume(features: torch.Tensor, intrinsics: torch.Tensor, extrinsics: torch.Tensor,
                       disparities: torch.Tensor, planes_per_chunk: int = 32) -> torch.Tensor:
    """Mean (over the other views) scaled dot-product correlation per depth plane.

    Args:
        features: ``[B, V, C, h, w]`` per-view features at 1/4 resolution.
        intrinsics: ``[B, V, 3, 3]`` normalised intrinsics.
        extrinsics: ``[B, V, 4, 4]`` camera-to-world.
        disparities: ``[B, V, D]`` plane disparities per view.
        planes_per_chunk: depth planes warped at once; bounds the ``[B*V, C, planes, h, w]``
            warped features held in memory (the result does not depend on it).

    Returns:
        ``[B * V, D, h, w]``.
    """
    v, c, h, w = features.shape[1:]
    scale = torch.tensor((w, h, 1.0), device=features.device, dtype=features.dtype)
    pixel_intrinsics = (intrinsics.detach() * scale[:, None]).flatten(0, 1)
    extrinsics = extrinsics.detach()
    depths = (1.0 / disparities.detach()).flatten(0, 1)
    reference = features.flatten(0, 1)

    volumes = []
    for shift in range(1, v):
        order = [(i + shift) % v for i in range(v)]
        # Reference camera -> source camera: world_to_source @ reference_to_world.
        relative = extrinsics[:, order].inverse() @ extrinsics
        source, relative = features[:, order].flatten(0, 1), relative.flatten(0, 1)
        volumes.append(torch.cat([
            (reference[:, :, None] * warp_to_depth_planes(source, pixel_intrinsics, relative,
                                                          planes)).sum(1) / c ** 0.5
            for planes in depths.split(planes_per_chunk, dim=1)], dim=1))
    return torch.stack(volumes).mean(0)
