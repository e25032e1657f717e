"""Sinusoidal encoding of values in ``[0, 1]`` (pixelSplat's depth and image-position encoding)."""
from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ['SinusoidalEncoding']


class SinusoidalEncoding(nn.Module):
    """``[..., D]`` values -> ``[..., D * 2 * num_octaves]`` sines and cosines.

    Octave ``k`` has frequency ``2 pi 2^k`` (octave 0 has period 1). The output is ordered value
    dimension first, then octave, then ``(sin, cos)``. The frequencies and phases are float32
    buffers cast with the module, as in the official code: the official checkpoints were trained
    with those float32-rounded constants, and at the highest octave the rounding moves the phase by
    ~1e-4 rad, so a float64 run must use them too.

    Args:
        num_octaves: number of frequencies.
    """

    def __init__(self, num_octaves: int) -> None:
        super().__init__()
        frequencies = 2 * math.pi * 2.0 ** torch.arange(num_octaves, dtype=torch.float32)
        self.register_buffer('frequencies', frequencies, persistent=False)
        phases = torch.tensor([0.0, 0.5 * math.pi], dtype=torch.float32)
        self.register_buffer('phases', phases, persistent=False)

    def out_channels(self, in_channels: int) -> int:
        """Encoded width for ``in_channels`` input values."""
        return in_channels * 2 * self.frequencies.numel()

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        angles = values[..., None, None] * self.frequencies[:, None] + self.phases
        return torch.sin(angles).flatten(-3)
