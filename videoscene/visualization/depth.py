"""Depth maps as colour images."""
from __future__ import annotations

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ['colorize_depth']

# inferno, a perceptually uniform colormap: index 0 = black-purple, 255 = bright yellow
_INFERNO = torch.from_numpy(
    cv2.applyColorMap(np.arange(256, dtype=np.uint8)[:, None], cv2.COLORMAP_INFERNO)[:, 0, ::-1].copy()
).float() / 255.0


def colorize_depth(depth: Tensor, near: float | None = None, far: float | None = None) -> Tensor:
    """Colour depth maps ``[..., H, W]`` -> RGB ``[..., 3, H, W]`` in [0, 1] (e.g. ``[F, H, W] -> [F, 3, H, W]``).

    Inverse depth is mapped linearly from ``1 / far`` (dark purple) to ``1 / near`` (bright
    yellow) on the inferno colormap, so near is warm and bright. Pixels without depth
    (0, negative, inf or NaN) are black. All maps share one range, so a video does not flicker.

    Args:
        depth: ``[..., H, W]`` depths.
        near, far: the range to show; by default the 2nd and 98th percentiles of the valid depths.
    """
    if depth.dim() < 2:
        raise ValueError(f'expected depth maps [..., H, W], got {list(depth.shape)}')
    depth = depth.detach().float().cpu()
    valid = torch.isfinite(depth) & (depth > 0)
    if not valid.any():
        return torch.zeros(*depth.shape[:-2], 3, *depth.shape[-2:])
    values = depth[valid].numpy()
    near = float(np.percentile(values, 2)) if near is None else near
    far = float(np.percentile(values, 98)) if far is None else far
    if not 0.0 < near <= far:
        raise ValueError(f'need 0 < near <= far, got near={near}, far={far}')
    inverse = torch.where(valid, 1.0 / depth.clamp(min=1e-12), torch.zeros_like(depth))
    scale = max(1.0 / near - 1.0 / far, 1e-12)
    level = ((inverse - 1.0 / far) / scale).clamp(0.0, 1.0)
    rgb = _INFERNO[(level * 255.0).round().long()] * valid.unsqueeze(-1)
    return rgb.movedim(-1, -3)
