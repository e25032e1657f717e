"""A reconstructor without learned weights: one Gaussian per context pixel at a known depth."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from videoscene.geometry.cameras import pixel_centers, unproject
from videoscene.registry import RECONSTRUCTORS
from videoscene.structures import Gaussians
from .base import check_views

SH_C0 = 0.28209479177387814  # the degree-0 real spherical harmonic


@RECONSTRUCTORS.register_module(name='DepthUnprojection')
class DepthUnprojection(nn.Module):
    """Back-projects every context pixel to its depth as an isotropic, view-independent Gaussian.

    With ground-truth depth (the synthetic scenes carry it) this is an oracle reconstruction: it
    separates what the renderer and camera path do from what a learned reconstructor gets wrong,
    and it is the demo's reconstruction before any model is trained.

    Args:
        footprint: Gaussian standard deviation in pixels at its depth (0.7 covers a pixel).
        opacity: opacity of every Gaussian.

    ``forward(context)`` needs ``image [B, V, 3, H, W]``, ``depth [B, V, H, W]`` (camera z-depth),
    ``intrinsics [B, V, 3, 3]`` (normalised), ``extrinsics [B, V, 4, 4]`` (OpenCV camera-to-world)
    and returns ``G = V * H * W`` Gaussians (view-major, row-major) of SH degree 0.
    """

    def __init__(self, footprint: float = 0.7, opacity: float = 0.99) -> None:
        super().__init__()
        if footprint <= 0 or not 0 < opacity <= 1:
            raise ValueError(f'need footprint > 0 and 0 < opacity <= 1, got {footprint}, {opacity}')
        self.footprint, self.opacity = footprint, opacity

    def forward(self, context: Mapping[str, torch.Tensor]) -> Gaussians:
        if 'depth' not in context:
            raise KeyError("DepthUnprojection needs context['depth'] [B, V, H, W] (camera z-depth); "
                           'datasets provide it for scenes that store depth, e.g. SyntheticScenes')
        image, depth = context['image'], context['depth']
        check_views(context, 'DepthUnprojection', image.dtype, ('image', 'depth', 'extrinsics', 'intrinsics'),
                    distinct=False)
        b, v, _, h, w = image.shape
        uv = pixel_centers(h, w, device=image.device, dtype=image.dtype)  # [H, W, 2]
        means = unproject(uv, depth, context['intrinsics'][:, :, None, None],
                          context['extrinsics'][:, :, None, None])  # [B, V, H, W, 3]
        # Pixel pitch at depth z is z / f_pixels: normalised fx times W is the focal length in pixels.
        focal = context['intrinsics'][:, :, 0, 0, None, None] * w
        sigma = self.footprint * depth / focal
        eye = torch.eye(3, dtype=image.dtype, device=image.device)
        covariances = sigma[..., None, None] ** 2 * eye
        harmonics = ((image - 0.5) / SH_C0).permute(0, 1, 3, 4, 2)[..., None]  # [B, V, H, W, 3, 1]
        return Gaussians(means=means.reshape(b, -1, 3),
                         covariances=covariances.reshape(b, -1, 3, 3),
                         harmonics=harmonics.reshape(b, -1, 3, 1),
                         opacities=torch.full((b, v * h * w), self.opacity, dtype=image.dtype,
                                              device=image.device))
