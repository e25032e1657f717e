"""Pinhole cameras in the project's conventions.

* Extrinsics are OpenCV **camera-to-world** matrices ``[..., 4, 4]`` (+x right, +y down, +z forward).
* Intrinsics are **normalised** ``[..., 3, 3]``: row 0 divided by the image width, row 1 by its
  height, so image coordinates ``uv`` run over ``[0, 1]`` from the left/top edge to the
  right/bottom edge, and the centre of pixel ``(row i, column j)`` is ``((j + 0.5) / W, (i + 0.5) / H)``.
* Depth is **z-depth**: the coordinate of a point along the camera's +z axis (not the distance
  along the ray).
* RE10K-style chunks store world-to-camera matrices as 12 row-major numbers ``[..., 12]``.

Every function broadcasts over leading dimensions (unsqueeze a camera ``[F, 3, 3]`` to
``[F, 1, 1, 3, 3]`` to use it with per-pixel tensors ``[F, H, W, ...]``).
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = [
    'w2c_rows_to_c2w', 'c2w_to_w2c_rows', 'normalize_intrinsics', 'denormalize_intrinsics',
    'intrinsics_from_fov', 'pixel_centers', 'camera_rays', 'unproject', 'project',
]


def _check_last_dims(tensor: Tensor, name: str, shape: tuple[int, ...]) -> None:
    if tensor.dim() < len(shape) or tuple(tensor.shape[tensor.dim() - len(shape):]) != shape:
        expected = ', '.join(['...'] + [str(s) for s in shape])
        raise ValueError(f'{name} must have shape [{expected}], got {list(tensor.shape)}')


def _apply(matrices: Tensor, vectors: Tensor) -> Tensor:
    """``matrices [..., 3, 3]`` times ``vectors [..., 3]`` (broadcast; elementwise, which is much
    faster than a batched matmul of millions of 3x3 matrices)."""
    return (matrices * vectors.unsqueeze(-2)).sum(-1)


def w2c_rows_to_c2w(rows: Tensor) -> Tensor:
    """Row-major 3x4 world-to-camera matrices ``[..., 12]`` -> camera-to-world ``[..., 4, 4]``.

    The inverse is taken in float64 so the result is the inverse of the stored matrix to the
    precision of ``rows.dtype`` (no orthonormality is assumed).
    """
    _check_last_dims(rows, 'rows', (12,))
    w2c = torch.zeros(*rows.shape[:-1], 4, 4, dtype=torch.float64, device=rows.device)
    w2c[..., :3, :] = rows.to(torch.float64).reshape(*rows.shape[:-1], 3, 4)
    w2c[..., 3, 3] = 1.0
    return torch.linalg.inv(w2c).to(rows.dtype)


def c2w_to_w2c_rows(c2w: Tensor) -> Tensor:
    """Camera-to-world ``[..., 4, 4]`` -> row-major 3x4 world-to-camera matrices ``[..., 12]``."""
    _check_last_dims(c2w, 'c2w', (4, 4))
    w2c = torch.linalg.inv(c2w.to(torch.float64))
    return w2c[..., :3, :].reshape(*c2w.shape[:-2], 12).to(c2w.dtype)


def normalize_intrinsics(intrinsics: Tensor, height: int, width: int) -> Tensor:
    """Pixel intrinsics ``[..., 3, 3]`` -> normalised intrinsics (row 0 / width, row 1 / height)."""
    _check_last_dims(intrinsics, 'intrinsics', (3, 3))
    scale = intrinsics.new_tensor([1.0 / width, 1.0 / height, 1.0])
    return intrinsics * scale[:, None]


def denormalize_intrinsics(intrinsics: Tensor, height: int, width: int) -> Tensor:
    """Normalised intrinsics ``[..., 3, 3]`` -> pixel intrinsics (row 0 * width, row 1 * height)."""
    _check_last_dims(intrinsics, 'intrinsics', (3, 3))
    scale = intrinsics.new_tensor([float(width), float(height), 1.0])
    return intrinsics * scale[:, None]


def intrinsics_from_fov(fov_x_deg: float, height: int, width: int) -> Tensor:
    """Normalised intrinsics ``[3, 3]`` of a centred pinhole with square pixels.

    ``fov_x_deg`` is the horizontal field of view in degrees; the vertical one follows from the
    aspect ratio (``fy * height == fx * width`` in pixels).
    """
    if not 0.0 < fov_x_deg < 180.0:
        raise ValueError(f'fov_x_deg must be in (0, 180) degrees, got {fov_x_deg}')
    fx = 0.5 / math.tan(math.radians(fov_x_deg) / 2.0)
    return torch.tensor([[fx, 0.0, 0.5], [0.0, fx * width / height, 0.5], [0.0, 0.0, 1.0]])


def pixel_centers(height: int, width: int, device: torch.device | str | None = None,
                  dtype: torch.dtype = torch.float32) -> Tensor:
    """Normalised coordinates ``uv [H, W, 2]`` (u = x / W, v = y / H) of the pixel centres."""
    v = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    u = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    return torch.stack(torch.meshgrid(u, v, indexing='xy'), dim=-1)


def camera_rays(uv: Tensor, intrinsics: Tensor, extrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """World-space rays through normalised image points.

    Args:
        uv: ``[..., 2]`` normalised image coordinates.
        intrinsics: ``[..., 3, 3]`` normalised intrinsics.
        extrinsics: ``[..., 4, 4]`` camera-to-world matrices.

    Returns:
        ``origins [..., 3]`` and ``directions [..., 3]``. Directions are NOT unit vectors: they
        are scaled to a camera-frame z of 1, so ``origin + depth * direction`` is the point at
        z-depth ``depth``.
    """
    _check_last_dims(uv, 'uv', (2,))
    _check_last_dims(intrinsics, 'intrinsics', (3, 3))
    _check_last_dims(extrinsics, 'extrinsics', (4, 4))
    homogeneous = torch.cat([uv, torch.ones_like(uv[..., :1])], dim=-1)
    directions = _apply(extrinsics[..., :3, :3], _apply(torch.linalg.inv(intrinsics), homogeneous))
    origins = extrinsics[..., :3, 3].expand_as(directions)
    return origins, directions


def unproject(uv: Tensor, depth: Tensor, intrinsics: Tensor, extrinsics: Tensor) -> Tensor:
    """World points ``[..., 3]`` at z-depth ``depth [...]`` behind normalised image points ``uv [..., 2]``."""
    origins, directions = camera_rays(uv, intrinsics, extrinsics)
    return origins + depth.unsqueeze(-1) * directions


def project(points: Tensor, intrinsics: Tensor, extrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """Project world points ``[..., 3]`` into cameras.

    Args:
        points: ``[..., 3]`` world points.
        intrinsics: ``[..., 3, 3]`` normalised intrinsics.
        extrinsics: ``[..., 4, 4]`` camera-to-world matrices.

    Returns:
        ``uv [..., 2]`` normalised image coordinates and ``z [...]`` z-depths. Points with
        ``z <= 0`` are behind the camera and their ``uv`` is meaningless. The extrinsics must be
        rigid (their rotation is inverted by transposition).
    """
    _check_last_dims(points, 'points', (3,))
    _check_last_dims(intrinsics, 'intrinsics', (3, 3))
    _check_last_dims(extrinsics, 'extrinsics', (4, 4))
    local = _apply(extrinsics[..., :3, :3].transpose(-1, -2), points - extrinsics[..., :3, 3])
    z = local[..., 2]
    image = _apply(intrinsics, local / z.unsqueeze(-1))
    return image[..., :2], z
