"""The 2D U-Net MVSplat uses to refine its cost volume and its depth (an LDM-style U-Net without
time embedding, with post-normalisation and self-attention across all views).

Inputs are batched as ``[B * V, C, H, W]`` (batch-major, then view); the attention blocks regroup
the ``V`` views of each scene and attend over all their tokens together.

State-dict names follow the official checkpoint: ``input_blocks``, ``middle_block``,
``output_blocks``, ``out``; residual blocks have ``in_layers``, ``out_layers``, ``skip_connection``;
attention blocks ``qkv``, ``proj_out``, ``norm``; resamplers ``op`` (down) and ``conv`` (up).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ...nn import Downsample, Upsample

__all__ = ['group_norm', 'ResBlock', 'CrossViewAttention', 'UNet']


def group_norm(channels: int) -> nn.GroupNorm:
    """8 groups, or 4 when the channel count is not a multiple of 8."""
    return nn.GroupNorm(8 if channels % 8 == 0 else 4, channels)


class ResBlock(nn.Module):
    """``skip(x) + [conv-norm-SiLU, conv-norm-SiLU](x)``; the skip is a 1x1 conv if widths differ."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(nn.Conv2d(in_channels, out_channels, 3, padding=1),
                                       group_norm(out_channels), nn.SiLU())
        self.out_layers = nn.Sequential(nn.Conv2d(out_channels, out_channels, 3, padding=1),
                                        group_norm(out_channels), nn.SiLU())
        self.skip_connection = (nn.Identity() if in_channels == out_channels
                                else nn.Conv2d(in_channels, out_channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.skip_connection(x) + self.out_layers(self.in_layers(x))


class CrossViewAttention(nn.Module):
    """Multi-head self-attention over the tokens of all views of a scene, post-normalised:
    ``x + norm(proj_out(attention(qkv(x))))``.

    Args:
        channels: feature width.
        head_channels: channels per head.
    """

    def __init__(self, channels: int, head_channels: int) -> None:
        super().__init__()
        if channels % head_channels:
            raise ValueError(f'{channels} channels do not split into heads of {head_channels}')
        self.num_heads = channels // head_channels
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = nn.Conv1d(channels, channels, 1)
        self.norm = group_norm(channels)

    def forward(self, x: torch.Tensor, num_views: int) -> torch.Tensor:
        bv, c, h, w = x.shape
        b = bv // num_views
        tokens = x.reshape(bv, c, h * w)
        qkv = self.qkv(tokens)  # [B*V, 3C, L]
        # Gather the views of each scene into one token sequence: [B, 3C, V*L].
        qkv = qkv.reshape(b, num_views, 3 * c, h * w).transpose(1, 2).reshape(b, 3 * c, -1)
        # Channels are grouped per head as [q, k, v] blocks.
        head_channels = c // self.num_heads
        qkv = qkv.reshape(b, self.num_heads, 3, head_channels, -1).transpose(-1, -2).contiguous()
        out = F.scaled_dot_product_attention(qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2])
        out = out.transpose(-1, -2).reshape(b, c, num_views, h * w).transpose(1, 2)
        out = self.norm(self.proj_out(out.reshape(bv, c, h * w)))
        return x + out.reshape(bv, c, h, w)


class _Stage(nn.Sequential):
    """A sequence of U-Net layers; the attention layers also get the number of views."""

    def forward(self, x: torch.Tensor, num_views: int) -> torch.Tensor:
        for layer in self:
            x = layer(x, num_views) if isinstance(layer, CrossViewAttention) else layer(x)
        return x


class UNet(nn.Module):
    """U-Net with one residual block per level (plus one per skip on the way up).

    Args:
        channels: input, model and output width.
        channel_mult: width multiplier per level; ``len(channel_mult) - 1`` downsamplings.
        attention_resolutions: downsampling factors (1, 2, 4 ...) at which cross-view attention
            follows the residual blocks.
        head_channels: channels per attention head.
    """

    def __init__(self, channels: int, channel_mult: Sequence[int],
                 attention_resolutions: Sequence[int], head_channels: int = 32) -> None:
        super().__init__()

        def attention(width: int, factor: int) -> list[nn.Module]:
            return [CrossViewAttention(width, head_channels)] if factor in attention_resolutions else []

        self.input_blocks = nn.ModuleList([_Stage(nn.Conv2d(channels, channels, 3, padding=1))])
        skip_widths = [channels]
        width, factor = channels, 1
        for level, mult in enumerate(channel_mult):
            self.input_blocks.append(_Stage(ResBlock(width, mult * channels),
                                            *attention(mult * channels, factor)))
            width = mult * channels
            skip_widths.append(width)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(_Stage(Downsample(width)))
                skip_widths.append(width)
                factor *= 2

        # The identity in the middle keeps the official key numbering (middle_block.0 / .2).
        self.middle_block = _Stage(ResBlock(width, width), nn.Identity(), ResBlock(width, width))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(2):
                layers = [ResBlock(width + skip_widths.pop(), mult * channels)]
                width = mult * channels
                layers += attention(width, factor)
                if level and i == 1:
                    layers.append(Upsample(width))
                    factor //= 2
                self.output_blocks.append(_Stage(*layers))

        self.out = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), group_norm(channels),
                                 nn.SiLU())

    def forward(self, x: torch.Tensor, num_views: int) -> torch.Tensor:
        """``[B * V, C, H, W] -> [B * V, C, H, W]``; H, W divisible by ``2 ** (levels - 1)``."""
        skips = []
        for block in self.input_blocks:
            x = block(x, num_views)
            skips.append(x)
        x = self.middle_block(x, num_views)
        for block in self.output_blocks:
            x = block(torch.cat((x, skips.pop()), dim=1), num_views)
        return self.out(x)
