"""pixelSplat's epipolar transformer: each pixel attends to features sampled along its epipolar
lines in the other views, tagged with the depth each sample implies."""
from __future__ import annotations

import torch
from torch import nn

from .depth_predictor import depth_to_relative_disparity
from .epipolar_geometry import ray_depths
from .epipolar_sampler import other_views, sample_epipolar_lines
from .image_self_attention import ImageSelfAttention
from .positional_encoding import SinusoidalEncoding
from .transformer import Transformer

__all__ = ['EpipolarTransformer']


class _ResidualImageSelfAttention(nn.Module):
    """Image self-attention in the transformer's feed-forward slot, on per-pixel tokens.

    Tokens ``[B * V * h * w, 1, C]`` are viewed as ``B * V`` images; the block adds its own
    residual (the transformer adds another one around it).
    """

    def __init__(self, self_attention: ImageSelfAttention) -> None:
        super().__init__()
        self.self_attention = self_attention

    def forward(self, tokens: torch.Tensor, image_shape: tuple[int, int, int]) -> torch.Tensor:
        n, h, w = image_shape
        image = tokens.reshape(n, h, w, -1).permute(0, 3, 1, 2)
        image = self.self_attention(image) + image
        return image.permute(0, 2, 3, 1).reshape(tokens.shape)


class EpipolarTransformer(nn.Module):
    """``[B, V, C, H, W]`` features -> refined features of the same shape.

    Features are downscaled by ``downscale`` (strided convolution); every low-resolution pixel
    attends to ``num_samples`` points on its epipolar line in each other view (sampled features plus
    an encoding of the sample's relative disparity between the view's near and far); then image
    self-attention; finally a transposed convolution and a residual refinement restore full
    resolution. H and W must be multiples of :attr:`size_multiple` (``downscale`` times the
    self-attention patch size).

    Args:
        channels: feature width.
        num_layers: transformer layers (cross-attention + image self-attention each).
        num_heads: cross-attention heads.
        head_dim: width per head.
        num_samples: samples per epipolar line.
        num_octaves: octaves of the depth encoding.
        downscale: resolution factor of the attention.
        patch_size, self_attention_octaves, self_attention_layers, self_attention_heads,
        self_attention_head_dim, self_attention_mlp_dim: the image self-attention's patch side,
            position-encoding octaves, layers, heads, width per head and feed-forward width.
    """

    def __init__(self, channels: int = 128, num_layers: int = 2, num_heads: int = 4,
                 head_dim: int = 128, num_samples: int = 32, num_octaves: int = 10,
                 downscale: int = 4, patch_size: int = 4, self_attention_octaves: int = 10,
                 self_attention_layers: int = 2, self_attention_heads: int = 4,
                 self_attention_head_dim: int = 128, self_attention_mlp_dim: int = 256) -> None:
        super().__init__()
        self.num_samples = num_samples
        self.size_multiple = downscale * patch_size
        encoding = SinusoidalEncoding(num_octaves)
        self.depth_encoding = nn.Sequential(encoding, nn.Linear(encoding.out_channels(1), channels))

        def image_self_attention() -> nn.Module:
            return _ResidualImageSelfAttention(ImageSelfAttention(
                channels, patch_size, self_attention_octaves, self_attention_layers,
                self_attention_heads, self_attention_head_dim, self_attention_mlp_dim))

        self.transformer = Transformer(channels, num_layers, num_heads, head_dim,
                                       feed_forward=image_self_attention, context_dim=channels)
        self.downscaler = nn.Conv2d(channels, channels, downscale, downscale)
        self.upscaler = nn.ConvTranspose2d(channels, channels, downscale, downscale)
        self.upscale_refinement = nn.Sequential(
            nn.Conv2d(channels, 2 * channels, 7, 1, 3), nn.GELU(),
            nn.Conv2d(2 * channels, channels, 7, 1, 3))

    def forward(self, features: torch.Tensor, extrinsics: torch.Tensor, intrinsics: torch.Tensor,
                near: torch.Tensor, far: torch.Tensor) -> torch.Tensor:
        """Cameras ``[B, V, 4, 4]`` and ``[B, V, 3, 3]``; ``near``, ``far`` ``[B, V]``."""
        b, v = features.shape[:2]
        features = self.downscaler(features.flatten(0, 1))
        c, h, w = features.shape[1:]
        features = features.unflatten(0, (b, v))

        samples = sample_epipolar_lines(features, extrinsics, intrinsics, near, far,
                                        self.num_samples)
        # The depth each sample stands for, along this view's ray, clamped to [near, far].
        depths = ray_depths(samples.origins[:, :, None, :, None],
                            samples.directions[:, :, None, :, None], samples.xy,
                            other_views(extrinsics)[:, :, :, None, None],
                            other_views(intrinsics)[:, :, :, None, None])
        bounds = near[:, :, None, None, None], far[:, :, None, None, None]
        depths = depths.maximum(bounds[0]).minimum(bounds[1])
        disparities = depth_to_relative_disparity(depths, *bounds)
        keys = samples.features + self.depth_encoding(disparities[..., None])

        queries = features.permute(0, 1, 3, 4, 2).reshape(b * v * h * w, 1, c)
        keys = keys.transpose(2, 3).reshape(b * v * h * w, -1, c)  # [B*V*R, (V-1)*S, C]
        tokens = self.transformer(queries, context=keys, image_shape=(b * v, h, w))

        features = tokens.reshape(b * v, h, w, c).permute(0, 3, 1, 2)
        features = self.upscaler(features)
        features = self.upscale_refinement(features) + features
        return features.unflatten(0, (b, v))
