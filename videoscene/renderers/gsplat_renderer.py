"""Gaussian splatting on CUDA through ``gsplat.rasterization`` (gsplat 1.5.3)."""
from __future__ import annotations

import torch
from torch import Tensor

from videoscene.registry import RENDERERS
from videoscene.structures import Gaussians

from .base import GaussianRenderer, RenderOutput, pixel_intrinsics

__all__ = ['GsplatRenderer']


@RENDERERS.register_module(name='gsplat')
class GsplatRenderer(GaussianRenderer):
    """gsplat's fused CUDA rasteriser: classic mode, ``eps2d=0.3``, SH colours, expected depth (``RGB+ED``).

    Needs CUDA tensors and gsplat's compiled extension; raises ``RuntimeError`` otherwise. gsplat
    takes one near/far plane per call, so each batch element is rendered once per distinct
    ``(near, far)`` pair among its views.
    """

    needs_cuda = True

    def _render_views(self, gaussians: Gaussians, extrinsics: Tensor, intrinsics: Tensor, image_shape: tuple[int, int],
                      near: Tensor, far: Tensor) -> RenderOutput:
        if not (torch.cuda.is_available() and gaussians.means.is_cuda and extrinsics.is_cuda):
            raise RuntimeError('the gsplat renderer needs CUDA: put the Gaussians and cameras on a CUDA device, '
                               'or use the "torch" renderer on the CPU')
        try:
            from gsplat import rasterization
        except ImportError as error:
            raise RuntimeError(f'the gsplat renderer could not import gsplat.rasterization: {error}') from error
        batch, views = extrinsics.shape[:2]
        height, width = image_shape
        colors, depths = [], []
        for b in range(batch):
            color = extrinsics.new_zeros(views, height, width, 3)
            depth = extrinsics.new_zeros(views, height, width)
            planes, group_of = torch.unique(torch.stack([near[b], far[b]], dim=-1), dim=0, return_inverse=True)
            for group, (near_plane, far_plane) in enumerate(planes.tolist()):
                selected = (group_of == group).nonzero(as_tuple=True)[0]
                rendered, _, _ = rasterization(**self.rasterization_arguments(
                    gaussians, extrinsics[b, selected], intrinsics[b, selected], image_shape, b, near_plane, far_plane))
                color = color.index_copy(0, selected, rendered[..., :3])
                depth = depth.index_copy(0, selected, rendered[..., 3])
            colors.append(color.permute(0, 3, 1, 2))
            depths.append(depth)
        return RenderOutput(color=torch.stack(colors), depth=torch.stack(depths))

    def rasterization_arguments(self, gaussians: Gaussians, extrinsics: Tensor, intrinsics: Tensor,
                                image_shape: tuple[int, int], batch_index: int, near_plane: float,
                                far_plane: float) -> dict:
        """Keyword arguments of ``gsplat.rasterization`` for batch element ``batch_index`` seen from
        ``C`` cameras (``extrinsics [C, 4, 4]`` c2w, ``intrinsics [C, 3, 3]`` normalised)."""
        height, width = image_shape
        return dict(
            means=gaussians.means[batch_index], quats=None, scales=None,
            covars=gaussians.covariances[batch_index], opacities=gaussians.opacities[batch_index],
            colors=gaussians.harmonics[batch_index].transpose(-1, -2).contiguous(),  # [G, K, 3]
            sh_degree=gaussians.sh_degree, viewmats=torch.linalg.inv(extrinsics),
            Ks=pixel_intrinsics(intrinsics, image_shape), width=width, height=height,
            near_plane=near_plane, far_plane=far_plane, eps2d=0.3, rasterize_mode='classic',
            render_mode='RGB+ED', backgrounds=extrinsics.new_tensor(self.background).expand(len(extrinsics), 3))
