"""The contract of Gaussian renderers: Gaussians x cameras -> colour and depth images."""
from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from videoscene.geometry.camera_validation import check_camera_tensors
from videoscene.structures import Gaussians

__all__ = ['RenderOutput', 'GaussianRenderer', 'pixel_intrinsics']


@dataclass
class RenderOutput:
    """Rendered views.

    Attributes:
        color: ``[B, N, 3, H, W]`` colours, the background showing through the remaining transmittance.
        depth: ``[B, N, H, W]`` expected camera z-depth ``sum_i w_i z_i / sum_i w_i`` (the blending
            weights ``w_i`` normalised by the accumulated alpha; gsplat's ``"ED"`` mode); 0 where no
            Gaussian is drawn.
    """

    color: Tensor
    depth: Tensor


def pixel_intrinsics(intrinsics: Tensor, image_shape: tuple[int, int]) -> Tensor:
    """Intrinsics in pixels ``[..., 3, 3]`` from normalised ones (row 0 times W, row 1 times H)."""
    height, width = image_shape
    scale = intrinsics.new_tensor([width, height, 1.0])
    return intrinsics * scale[:, None]


class GaussianRenderer(ABC):
    """Renders :class:`Gaussians` from pinhole cameras, a chunk of views at a time.

    Cameras follow the project conventions: ``extrinsics [B, N, 4, 4]`` camera-to-world (OpenCV:
    +x right, +y down, +z forward), ``intrinsics [B, N, 3, 3]`` normalised by the image size,
    ``near``/``far [B, N]`` bounds on the camera z of a Gaussian's centre (outside, it is not drawn).
    :meth:`render` checks the cameras with ``geometry.camera_validation`` (``CameraError`` naming
    ``cameras['key']``, the batch item and the view).

    Args:
        background: RGB colour shown where the Gaussians leave transmittance.
        views_per_chunk: how many views are rendered together; memory grows with it.
    """

    needs_cuda = False      # True: renders CUDA tensors only (callers check before any work)

    def __init__(self, background: tuple[float, float, float] = (0.0, 0.0, 0.0), views_per_chunk: int = 4) -> None:
        if len(background) != 3:
            raise ValueError(f'background must be an RGB triple, got {background!r}')
        if views_per_chunk < 1:
            raise ValueError(f'views_per_chunk must be at least 1, got {views_per_chunk}')
        self.background = tuple(float(c) for c in background)
        self.views_per_chunk = views_per_chunk

    def render(self, gaussians: Gaussians, extrinsics: Tensor, intrinsics: Tensor, image_shape: tuple[int, int],
               near: Tensor, far: Tensor) -> RenderOutput:
        """Render every view; see the class docstring for the conventions and shapes."""
        gaussians.check_shapes()
        gaussians.check_finite()
        batch, views = extrinsics.shape[:2]
        expected = {'extrinsics': (extrinsics, (batch, views, 4, 4)), 'intrinsics': (intrinsics, (batch, views, 3, 3)),
                    'near': (near, (batch, views)), 'far': (far, (batch, views))}
        for name, (value, shape) in expected.items():
            if tuple(value.shape) != shape:
                raise ValueError(f'{name} must be {list(shape)} (B, N from extrinsics), got {list(value.shape)}')
        if gaussians.means.shape[0] != batch:
            raise ValueError(f'Gaussians have batch size {gaussians.means.shape[0]} but the cameras {batch}')
        check_camera_tensors({'extrinsics': extrinsics, 'intrinsics': intrinsics, 'near': near, 'far': far}, 'cameras')
        height, width = image_shape
        if height < 1 or width < 1:
            raise ValueError(f'image_shape must be a positive (H, W), got {image_shape!r}')
        starts = range(0, views, self.views_per_chunk)
        chunks = [self._render_views(gaussians, extrinsics[:, s:s + self.views_per_chunk],
                                     intrinsics[:, s:s + self.views_per_chunk], (height, width),
                                     near[:, s:s + self.views_per_chunk], far[:, s:s + self.views_per_chunk])
                  for s in tqdm(starts, desc=f'render {views} views', disable=len(starts) < 4, leave=False)]
        return RenderOutput(color=torch.cat([c.color for c in chunks], dim=1),
                            depth=torch.cat([c.depth for c in chunks], dim=1))

    @abstractmethod
    def _render_views(self, gaussians: Gaussians, extrinsics: Tensor, intrinsics: Tensor, image_shape: tuple[int, int],
                      near: Tensor, far: Tensor) -> RenderOutput:
        """Render one chunk of views (shapes as in :meth:`render`, with the chunk's N)."""
