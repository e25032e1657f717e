"""Resize-then-centre-crop of views with the matching update of normalised intrinsics.

Like pixelSplat's crop shim: scale the image so that it covers the output shape (the short side,
relative to the output aspect ratio, matches), then crop the centre. Normalised image coordinates
``uv`` (0..1 edge to edge) do not change under resizing, so only the crop moves them:
``u' = (u * W_s - left) / w``, ``v' = (v * H_s - top) / h`` for the resized size ``(H_s, W_s)``;
the intrinsics are multiplied on the left by that affine map. Unlike pixelSplat's shim, the
principal point is updated as well, so off-centre principal points and odd crops stay exact.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

__all__ = ['resize_and_center_crop']


def resize_and_center_crop(images: Tensor, intrinsics: Tensor, shape: tuple[int, int],
                           depths: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor | None]:
    """Resize and centre-crop views to ``shape = (height, width)``.

    Args:
        images: ``[V, 3, H, W]`` in [0, 1]; resized bilinearly (antialiased when shrinking).
        intrinsics: ``[V, 3, 3]`` normalised.
        depths: optional ``[V, H, W]`` z-depths; resized by nearest neighbour (depth values do not
            change with the image size).

    Returns:
        ``images [V, 3, h, w]``, ``intrinsics [V, 3, 3]`` and ``depths [V, h, w]`` (or None).
    """
    if images.dim() != 4 or images.shape[1] != 3:
        raise ValueError(f'expected images [V, 3, H, W], got {list(images.shape)}')
    if depths is not None and depths.shape != (images.shape[0], *images.shape[2:]):
        raise ValueError(f'expected depths [V, H, W] = {[images.shape[0], *images.shape[2:]]}, got {list(depths.shape)}')
    height_in, width_in = images.shape[-2:]
    height, width = shape
    if (height_in, width_in) == (height, width):
        return images, intrinsics, depths
    scale = max(height / height_in, width / width_in)
    height_s, width_s = max(height, round(height_in * scale)), max(width, round(width_in * scale))
    top, left = (height_s - height) // 2, (width_s - width) // 2

    images = F.interpolate(images, size=(height_s, width_s), mode='bilinear', align_corners=False,
                           antialias=scale < 1.0).clamp(0.0, 1.0)[..., top:top + height, left:left + width]
    if depths is not None:
        depths = F.interpolate(depths[:, None], size=(height_s, width_s), mode='nearest-exact')[:, 0]
        depths = depths[..., top:top + height, left:left + width]
    crop = intrinsics.new_tensor([[width_s / width, 0.0, -left / width],
                                  [0.0, height_s / height, -top / height],
                                  [0.0, 0.0, 1.0]])
    return images.contiguous(), crop @ intrinsics, None if depths is None else depths.contiguous()
