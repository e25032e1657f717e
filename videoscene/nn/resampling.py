"""The latent-diffusion U-Net resampling blocks (MVSplat's U-Nets and DynamiCrafter use them).

Attribute names (``op``, ``conv``) are the official state-dict keys.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class Downsample(nn.Module):
    """Strided 3x3 convolution halving the resolution: ``[N, C, H, W] -> [N, C, H/2, W/2]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.op = nn.Conv2d(channels, channels, 3, stride=2, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.op(x)


class Upsample(nn.Module):
    """Nearest 2x upsampling then a 3x3 convolution: ``[N, C, H, W] -> [N, C, 2H, 2W]``."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2, mode='nearest'))
