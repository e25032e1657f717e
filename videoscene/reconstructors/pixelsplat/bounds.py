"""pixelSplat's near and far planes from the camera baseline (the official "bounds shim")."""
from __future__ import annotations

import torch

__all__ = ['baseline_near_far']

#: Smallest baseline, so that views from one position still get finite bounds.
_MIN_BASELINE = 1e-6


def baseline_near_far(extrinsics: torch.Tensor, intrinsics: torch.Tensor,
                      image_shape: tuple[int, int], near_disparity: float = 3.0,
                      far_disparity: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
    """Depths at which the widest camera baseline of a scene spans a given disparity.

    ``near`` is the depth where moving across the baseline shifts a point by
    ``near_disparity * min(H, W)`` pixels, ``far`` where it shifts by ``far_disparity`` pixels
    (pixel size averaged over x, y and the views). The official pixelSplat checkpoints were
    trained and evaluated with these bounds.

    Args:
        extrinsics: ``[B, V, 4, 4]`` camera-to-world.
        intrinsics: ``[B, V, 3, 3]`` normalised.
        image_shape: ``(H, W)``.
        near_disparity: near-plane disparity in units of ``min(H, W)`` pixels (official: 3.0).
        far_disparity: far-plane disparity in pixels (official: 0.5).

    Returns:
        ``near``, ``far``: ``[B]`` each.
    """
    h, w = image_shape
    centres = extrinsics[..., :3, 3]
    baselines = (centres[:, None] - centres[:, :, None]).norm(dim=-1).clamp_min(_MIN_BASELINE)
    baselines = baselines.flatten(1).amax(dim=1)
    pixel = torch.tensor((1.0 / w, 1.0 / h), dtype=intrinsics.dtype, device=intrinsics.device)
    pixel_size = torch.einsum('...ij,j->...i', intrinsics[..., :2, :2].inverse(), pixel)
    pixel_size = pixel_size.flatten(1).mean(dim=1)
    near = baselines / (near_disparity * min(h, w) * pixel_size)
    far = baselines / (far_disparity * pixel_size)
    return near, far
