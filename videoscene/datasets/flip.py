"""Horizontal flip of views with cameras that stay consistent with the flipped images.

Flipping an image left-right sends normalised image coordinates ``(u, v)`` to ``(1 - u, v)``.
The flipped views show the **mirror image of the scene in the world plane x = 0**: a world point
``(X, Y, Z)`` becomes ``(-X, Y, Z)`` and every camera is mirrored with it,

* extrinsics (camera-to-world): ``M @ E @ M`` with ``M = diag(-1, 1, 1, 1)``: the camera centre
  is mirrored and the rotation keeps det +1 (a proper rotation: the camera x axis is mirrored
  together with the world x axis, so in camera coordinates a point's x is negated);
* intrinsics (normalised): ``cx -> 1 - cx`` and the skew changes sign (``A @ K @ diag(-1, 1, 1)``
  with ``A = [[-1, 0, 1], [0, 1, 0], [0, 0, 1]]``); focal lengths are unchanged;
* depths (z-depth) are flipped with the images; their values do not change.

So pixel ``(u, v)`` of an original view and pixel ``(1 - u, v)`` of the flipped view see the same
surface point, mirrored, and every point still projects through the flipped camera onto the
flipped pixel. All views of a sample must be flipped together (the mirrored world is shared).
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['flip_extrinsics', 'flip_intrinsics', 'flip_views']


def flip_extrinsics(extrinsics: Tensor) -> Tensor:
    """Mirror camera-to-world matrices ``[..., 4, 4]`` in the world x axis: ``M @ E @ M``."""
    mirror = torch.tensor([-1.0, 1.0, 1.0, 1.0], dtype=extrinsics.dtype, device=extrinsics.device)
    return extrinsics * mirror[:, None] * mirror


def flip_intrinsics(intrinsics: Tensor) -> Tensor:
    """Normalised intrinsics ``[..., 3, 3]`` of the left-right flipped image: ``cx -> 1 - cx``, skew negated."""
    flipped = intrinsics.clone()
    flipped[..., 0, 1] = -intrinsics[..., 0, 1]
    flipped[..., 0, 2] = intrinsics[..., 2, 2] - intrinsics[..., 0, 2]
    return flipped


def flip_views(views: dict[str, Tensor]) -> dict[str, Tensor]:
    """A flipped copy of a views dict of the sample contract (``image [..., 3, H, W]``,
    ``extrinsics``, ``intrinsics``, optional ``depth [..., H, W]``; other keys are kept)."""
    flipped = dict(views)
    flipped['image'] = views['image'].flip(-1)
    flipped['extrinsics'] = flip_extrinsics(views['extrinsics'])
    flipped['intrinsics'] = flip_intrinsics(views['intrinsics'])
    if 'depth' in views:
        flipped['depth'] = views['depth'].flip(-1)
    return flipped
