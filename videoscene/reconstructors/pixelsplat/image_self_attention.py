"""Patch-wise self-attention over a feature map, with sinusoidal patch positions (pixelSplat)."""
from __future__ import annotations

from functools import partial

import torch
from torch import nn

from .epipolar_geometry import pixel_centres
from .positional_encoding import SinusoidalEncoding
from .transformer import FeedForward, Transformer

__all__ = ['ImageSelfAttention']


class ImageSelfAttention(nn.Module):
    """``[N, C, H, W]`` -> ``[N, C, H, W]``: patchify, add encoded patch centres, transformer,
    transposed-convolution back to full resolution. H and W must be multiples of ``patch_size``.

    Args:
        channels: input and output width (also the token width).
        patch_size: patch side in pixels.
        num_octaves: octaves of the patch-centre encoding.
        num_layers: transformer layers.
        num_heads: attention heads.
        head_dim: width per head.
        mlp_dim: hidden width of the feed-forward blocks.
    """

    def __init__(self, channels: int = 128, patch_size: int = 4, num_octaves: int = 10,
                 num_layers: int = 2, num_heads: int = 4, head_dim: int = 128,
                 mlp_dim: int = 256) -> None:
        super().__init__()
        encoding = SinusoidalEncoding(num_octaves)
        self.positional_encoding = nn.Sequential(encoding,
                                                 nn.Linear(encoding.out_channels(2), channels))
        self.patch_embedder = nn.Sequential(nn.Conv2d(channels, channels, patch_size, patch_size),
                                            nn.ReLU())
        self.transformer = Transformer(channels, num_layers, num_heads, head_dim,
                                       feed_forward=partial(FeedForward, channels, mlp_dim))
        self.resampler = nn.ConvTranspose2d(channels, channels, patch_size, patch_size)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embedder(image)
        n, c, h, w = tokens.shape
        positions = pixel_centres(h, w, device=image.device, dtype=image.dtype)
        tokens = tokens + self.positional_encoding(positions).permute(2, 0, 1)
        tokens = self.transformer(tokens.flatten(2).transpose(1, 2))
        return self.resampler(tokens.transpose(1, 2).unflatten(2, (h, w)))
