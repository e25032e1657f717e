"""MVSplat's feature backbone: a UniMatch CNN at 1/4 resolution + a multi-view transformer.

State-dict names follow the official checkpoint (``backbone.backbone.*`` for the CNN,
``backbone.transformer.*`` for the transformer).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from .transformer import MultiViewTransformer

__all__ = ['ResidualBlock', 'CNNEncoder', 'sine_position_encoding', 'MultiViewBackbone']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class ResidualBlock(nn.Module):
    """Two 3x3 convolutions with instance norm (no affine parameters) and a residual path."""

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.norm1 = nn.InstanceNorm2d(out_channels)
        self.norm2 = nn.InstanceNorm2d(out_channels)
        self.relu = nn.ReLU()
        if stride == 1 and in_channels == out_channels:
            self.downsample = None
        else:
            self.downsample = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride),
                nn.InstanceNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu(self.norm1(self.conv1(x)))
        y = self.relu(self.norm2(self.conv2(y)))
        if self.downsample is not None:
            x = self.downsample(x)
        return self.relu(x + y)


class CNNEncoder(nn.Module):
    """UniMatch's CNN trimmed to one output scale: ``[N, 3, H, W] -> [N, C, H/4, W/4]``."""

    def __init__(self, out_channels: int = 128) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(3, 64, 7, stride=2, padding=3, bias=False)  # 1/2
        self.norm1 = nn.InstanceNorm2d(64)
        self.relu1 = nn.ReLU()
        self.layer1 = nn.Sequential(ResidualBlock(64, 64), ResidualBlock(64, 64))  # 1/2
        self.layer2 = nn.Sequential(ResidualBlock(64, 96, stride=2), ResidualBlock(96, 96))  # 1/4
        self.layer3 = nn.Sequential(ResidualBlock(96, 128), ResidualBlock(128, 128))  # 1/4
        self.conv2 = nn.Conv2d(128, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.relu1(self.norm1(self.conv1(x)))
        return self.conv2(self.layer3(self.layer2(self.layer1(x))))


def sine_position_encoding(height: int, width: int, channels: int, device: torch.device,
                           dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """DETR-style 2D sine encoding ``[channels, height, width]``: first half encodes y, second x.

    Coordinates run ``(i + 1) / (n + 1e-6) * 2 pi``; within each half, channel ``2k`` is
    ``sin(a / T_k)`` and ``2k + 1`` is ``cos(a / T_k)`` with ``T_k = 10000 ** (2k / (channels / 2))``.
    """
    half = channels // 2
    frequencies = 10000 ** (2 * (torch.arange(half, device=device, dtype=dtype) // 2) / half)

    def encode(length: int) -> torch.Tensor:
        coordinate = torch.arange(1, length + 1, device=device, dtype=dtype)
        angles = (coordinate / (length + 1e-6) * (2 * math.pi))[:, None] / frequencies
        return torch.where(torch.arange(half, device=device) % 2 == 0, angles.sin(), angles.cos())

    y = encode(height)[:, None, :].expand(height, width, half)
    x = encode(width)[None, :, :].expand(height, width, half)
    return torch.cat((y, x), dim=-1).permute(2, 0, 1)


class MultiViewBackbone(nn.Module):
    """Per-view CNN features, then cross-view transformer features.

    Args:
        feature_channels: feature width ``C``.
        num_layers: transformer blocks.
        ffn_expansion: width factor of the transformer feed-forward networks.
    """

    def __init__(self, feature_channels: int = 128, num_layers: int = 6,
                 ffn_expansion: int = 4) -> None:
        super().__init__()
        self.feature_channels = feature_channels
        self.backbone = CNNEncoder(feature_channels)
        self.transformer = MultiViewTransformer(num_layers, feature_channels, ffn_expansion)

    def forward(self, images: torch.Tensor, attn_splits: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, V, 3, H, W]`` in [0, 1] -> (transformer features, CNN features), both
        ``[B, V, C, H/4, W/4]``."""
        b, v = images.shape[:2]
        mean = images.new_tensor(IMAGENET_MEAN)[:, None, None]
        std = images.new_tensor(IMAGENET_STD)[:, None, None]
        cnn_features = self.backbone(((images - mean) / std).flatten(0, 1))
        cnn_features = cnn_features.unflatten(0, (b, v))

        # The position encoding spans one attention window and is tiled over the windows.
        h, w = cnn_features.shape[-2:]
        position = sine_position_encoding(h // attn_splits, w // attn_splits,
                                          self.feature_channels, images.device, images.dtype)
        features = cnn_features + position.repeat(1, attn_splits, attn_splits)
        return self.transformer(features, attn_splits), cnn_features
