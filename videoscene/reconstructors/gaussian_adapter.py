"""Per-pixel network outputs -> world-space 3D Gaussians (shared by MVSplat and pixelSplat).

Conventions (those of the official MVSplat/pixelSplat checkpoints):

* intrinsics are normalised (row 0 divided by W, row 1 by H); extrinsics are OpenCV
  camera-to-world matrices;
* pixel coordinates are normalised to ``[0, 1]``, pixel ``(row i, column j)`` has its centre at
  ``((j + 0.5) / W, (i + 0.5) / H)``; the network moves it by a sigmoid sub-pixel offset;
* "depth" is the distance along the *unit* ray through the pixel (not the camera z);
* quaternions are ``xyzw`` (gsplat uses ``wxyz``);
* raw Gaussian channels are ``3 scale + 4 rotation + 3 * (d + 1) ** 2`` harmonics, the harmonics
  RGB-major and degree-major, predicted in camera space and rotated to world space with
  Wigner-D matrices (see :mod:`videoscene.reconstructors.sh_rotation`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .sh_rotation import rotate_sh

__all__ = ['GaussianParameters', 'GaussianAdapter', 'quaternion_to_matrix', 'build_covariance',
           'subpixel_coordinates', 'world_rays']


@dataclass
class GaussianParameters:
    """World-space Gaussians with arbitrary leading dimensions ``[*batch]``.

    Attributes:
        means: ``[*batch, 3]``.
        covariances: ``[*batch, 3, 3]``.
        harmonics: ``[*batch, 3, (d + 1) ** 2]``.
        opacities: ``[*batch]``.
    """

    means: torch.Tensor
    covariances: torch.Tensor
    harmonics: torch.Tensor
    opacities: torch.Tensor


def quaternion_to_matrix(quaternions: torch.Tensor, eps: float = 1e-8) -> torch.Tensor:
    """``[..., 4]`` quaternions in ``xyzw`` order (any norm) -> ``[..., 3, 3]`` rotation matrices."""
    x, y, z, w = quaternions.unbind(-1)
    two_s = 2.0 / ((quaternions * quaternions).sum(-1) + eps)
    rows = (
        1 - two_s * (y * y + z * z), two_s * (x * y - z * w), two_s * (x * z + y * w),
        two_s * (x * y + z * w), 1 - two_s * (x * x + z * z), two_s * (y * z - x * w),
        two_s * (x * z - y * w), two_s * (y * z + x * w), 1 - two_s * (x * x + y * y),
    )
    return torch.stack(rows, dim=-1).unflatten(-1, (3, 3))


def build_covariance(scales: torch.Tensor, quaternions: torch.Tensor) -> torch.Tensor:
    """Covariance ``R S S^T R^T`` from ``[..., 3]`` scales and ``[..., 4]`` xyzw quaternions."""
    rotation = quaternion_to_matrix(quaternions)
    scaled = rotation * scales.unsqueeze(-2)  # R @ diag(s)
    return scaled @ scaled.transpose(-1, -2)


def subpixel_coordinates(raw_offsets: torch.Tensor, image_shape: tuple[int, int]) -> torch.Tensor:
    """Pixel centres moved by ``(sigmoid(raw) - 0.5)`` pixels.

    Args:
        raw_offsets: ``[..., H * W, 2]`` raw ``(x, y)`` offsets, pixels in row-major order.
        image_shape: ``(H, W)``.

    Returns:
        ``[..., H * W, 2]`` normalised ``(x, y)`` image coordinates.
    """
    h, w = image_shape
    if raw_offsets.shape[-2:] != (h * w, 2):
        raise ValueError(f'raw_offsets must have shape [..., H*W={h * w}, 2], '
                         f'got {tuple(raw_offsets.shape)}')
    device, dtype = raw_offsets.device, raw_offsets.dtype
    ys = (torch.arange(h, device=device, dtype=dtype) + 0.5) / h
    xs = (torch.arange(w, device=device, dtype=dtype) + 0.5) / w
    centres = torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1).reshape(h * w, 2)
    pixel_size = torch.tensor((1.0 / w, 1.0 / h), device=device, dtype=dtype)
    return centres + (raw_offsets.sigmoid() - 0.5) * pixel_size


def world_rays(coordinates: torch.Tensor, extrinsics: torch.Tensor,
               intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Origins and unit directions ``[..., 3]`` of the rays through normalised ``[..., 2]`` coordinates."""
    homogeneous = torch.cat((coordinates, torch.ones_like(coordinates[..., :1])), dim=-1)
    directions = torch.einsum('...ij,...j->...i', intrinsics.inverse(), homogeneous)
    directions = directions / directions.norm(dim=-1, keepdim=True)
    directions = torch.einsum('...ij,...j->...i', extrinsics[..., :3, :3], directions)
    origins = extrinsics[..., :3, 3].broadcast_to(directions.shape)
    return origins, directions


class GaussianAdapter(nn.Module):
    """Turns per-pixel depths, opacities and raw Gaussian channels into world-space Gaussians.

    Args:
        sh_degree: degree ``d`` of the colour harmonics.
        scale_min: smallest scale factor (before multiplying by depth and pixel footprint).
        scale_max: largest scale factor.
    """

    def __init__(self, sh_degree: int = 4, scale_min: float = 0.5, scale_max: float = 15.0) -> None:
        super().__init__()
        self.sh_degree = sh_degree
        self.scale_min = scale_min
        self.scale_max = scale_max
        # Damp the view-dependent harmonics: degree l is scaled by 0.1 * 0.25 ** l (DC untouched).
        mask = torch.ones((sh_degree + 1) ** 2)
        for degree in range(1, sh_degree + 1):
            mask[degree ** 2:(degree + 1) ** 2] = 0.1 * 0.25 ** degree
        self.register_buffer('sh_mask', mask, persistent=False)

    @property
    def num_sh(self) -> int:
        return (self.sh_degree + 1) ** 2

    @property
    def raw_channels(self) -> int:
        """Channels consumed per Gaussian: 3 scale + 4 rotation + 3 * (d + 1) ** 2 harmonics."""
        return 7 + 3 * self.num_sh

    def forward(self, extrinsics: torch.Tensor, intrinsics: torch.Tensor,
                coordinates: torch.Tensor, depths: torch.Tensor, opacities: torch.Tensor,
                raw: torch.Tensor, image_shape: tuple[int, int],
                eps: float = 1e-8) -> GaussianParameters:
        """All inputs broadcast against ``[*batch]``.

        Args:
            extrinsics: ``[*batch, 4, 4]`` camera-to-world (OpenCV).
            intrinsics: ``[*batch, 3, 3]`` normalised.
            coordinates: ``[*batch, 2]`` normalised ``(x, y)`` image coordinates of the rays.
            depths: ``[*batch]`` distances along the unit rays.
            opacities: ``[*batch]`` in ``[0, 1]``.
            raw: ``[*batch, raw_channels]`` raw scale, rotation and harmonic channels.
            image_shape: ``(H, W)``, sets the pixel footprint used to size the Gaussians.
        """
        if raw.shape[-1] != self.raw_channels:
            raise ValueError(f'raw must have {self.raw_channels} channels for SH degree '
                             f'{self.sh_degree}, got {raw.shape[-1]}')
        raw_scales, quaternions, raw_sh = raw.split((3, 4, 3 * self.num_sh), dim=-1)

        # Scales: a bounded factor times depth times the pixel footprint at unit depth.
        h, w = image_shape
        pixel_size = torch.tensor((1.0 / w, 1.0 / h), device=raw.device, dtype=raw.dtype)
        footprint = 0.1 * torch.einsum('...ij,j->...i', intrinsics[..., :2, :2].inverse(),
                                       pixel_size).sum(-1)
        scales = self.scale_min + (self.scale_max - self.scale_min) * raw_scales.sigmoid()
        scales = scales * depths[..., None] * footprint[..., None]

        quaternions = quaternions / (quaternions.norm(dim=-1, keepdim=True) + eps)
        camera_to_world = extrinsics[..., :3, :3]
        covariances = camera_to_world @ build_covariance(scales, quaternions) \
            @ camera_to_world.transpose(-1, -2)

        origins, directions = world_rays(coordinates, extrinsics, intrinsics)
        means = origins + directions * depths[..., None]

        harmonics = raw_sh.unflatten(-1, (3, self.num_sh)) * self.sh_mask
        harmonics = harmonics.broadcast_to((*opacities.shape, 3, self.num_sh))
        harmonics = rotate_sh(harmonics, camera_to_world.unsqueeze(-3))
        return GaussianParameters(means=means, covariances=covariances, harmonics=harmonics,
                                  opacities=opacities)
