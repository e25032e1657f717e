"""pixelSplat's image encoder: DINO ViT-B/8 tokens plus a multi-scale ResNet-50, at full resolution.

Module names match the official checkpoints (``dino.*`` is a timm ViT-B/8 with DINO's keys,
``resnet_backbone.model.*`` a ResNet-50 with torchvision's keys). Images go in as they are, in
``[0, 1]`` without ImageNet normalisation, as the official checkpoints were trained.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['dino_position_embeddings', 'ResNetPyramid', 'DinoResNetBackbone']

#: DINO ViT-B/8 width.
_DINO_CHANNELS = 768


def dino_position_embeddings(position_embeddings: torch.Tensor, rows: int,
                             cols: int) -> torch.Tensor:
    """Resize ViT position embeddings ``[1, 1 + N, C]`` (square ``N``) to a ``rows x cols`` grid
    the way DINO does.

    DINO resizes bicubically by the *scale factor* ``((rows + 0.1) / sqrt(N), (cols + 0.1) /
    sqrt(N))``, so the sampling positions follow that factor rather than the output size (timm's
    resampling differs); the original table is kept when the grid is unchanged.

    Returns:
        ``[1, 1 + rows * cols, C]``: class-token embedding first.
    """
    count, channels = position_embeddings.shape[1] - 1, position_embeddings.shape[2]
    side = math.isqrt(count)
    if side * side != count:
        raise ValueError(f'expected a square grid of position embeddings, got {count}')
    if rows == cols == side:
        return position_embeddings
    grid = position_embeddings[:, 1:].reshape(1, side, side, channels).permute(0, 3, 1, 2)
    grid = F.interpolate(grid, scale_factor=((rows + 0.1) / side, (cols + 0.1) / side),
                         mode='bicubic')
    if grid.shape[-2:] != (rows, cols):
        raise RuntimeError(f'DINO position-embedding resize gave {tuple(grid.shape[-2:])}, '
                           f'expected {(rows, cols)}')
    return torch.cat((position_embeddings[:, :1], grid.flatten(2).transpose(1, 2)), dim=1)


class ResNetPyramid(nn.Module):
    """ResNet-50 stem and ``layer1..3`` (no max-pool), each level projected by a 1x1 convolution,
    upsampled bilinearly (``align_corners=True``) to the input size and summed.

    ``layer4`` exists (the official checkpoints hold it) but is not run.

    Args:
        out_channels: width of the projections.
    """

    def __init__(self, out_channels: int = 512) -> None:
        super().__init__()
        from timm.models.resnet import Bottleneck, ResNet  # timm takes seconds to import

        self.model = ResNet(Bottleneck, (3, 4, 6, 3), num_classes=0, zero_init_last=False)
        widths = {'layer0': 64, 'layer1': 256, 'layer2': 512, 'layer3': 1024}
        self.projections = nn.ModuleDict(
            {name: nn.Conv2d(width, out_channels, 1) for name, width in widths.items()})

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> ``[N, out_channels, H, W]``."""
        size = images.shape[-2:]

        def level(name: str, x: torch.Tensor) -> torch.Tensor:
            return F.interpolate(self.projections[name](x), size, mode='bilinear',
                                 align_corners=True)

        x = self.model.act1(self.model.bn1(self.model.conv1(images)))
        features = level('layer0', x)
        for name in ('layer1', 'layer2', 'layer3'):
            x = getattr(self.model, name)(x)
            features += level(name, x)
        return features


class DinoResNetBackbone(nn.Module):
    """``[B, V, 3, H, W]`` images in ``[0, 1]`` -> ``[B, V, out_channels, H, W]`` features.

    Sum of the ResNet pyramid, the DINO patch tokens (through an MLP, each repeated over its 8x8
    patch) and the DINO class token (through another MLP, broadcast over the image). H and W must
    be multiples of 8.

    Args:
        out_channels: feature width.
    """

    patch_size = 8

    def __init__(self, out_channels: int = 512) -> None:
        super().__init__()
        from timm.models.vision_transformer import VisionTransformer  # slow import, see above

        self.dino = VisionTransformer(patch_size=self.patch_size, embed_dim=_DINO_CHANNELS,
                                      depth=12, num_heads=12, num_classes=0)
        self.resnet_backbone = ResNetPyramid(out_channels)
        self.global_token_mlp = nn.Sequential(nn.Linear(_DINO_CHANNELS, _DINO_CHANNELS), nn.ReLU(),
                                              nn.Linear(_DINO_CHANNELS, out_channels))
        self.local_token_mlp = nn.Sequential(nn.Linear(_DINO_CHANNELS, _DINO_CHANNELS), nn.ReLU(),
                                             nn.Linear(_DINO_CHANNELS, out_channels))

    def dino_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` -> normalised last-layer tokens ``[N, 1 + (H/8)(W/8), 768]``."""
        vit = self.dino
        patches = vit.patch_embed.proj(images)
        rows, cols = patches.shape[-2:]
        tokens = torch.cat((vit.cls_token.expand(len(images), -1, -1),
                            patches.flatten(2).transpose(1, 2)), dim=1)
        tokens = tokens + dino_position_embeddings(vit.pos_embed, rows, cols)
        for block in vit.blocks:
            tokens = block(tokens)
        return vit.norm(tokens)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        b, v, _, h, w = images.shape
        if h % self.patch_size or w % self.patch_size:
            raise ValueError(f'image height and width must be multiples of {self.patch_size} for '
                             f'DINO ViT-B/8, got H={h}, W={w}')
        images = images.flatten(0, 1)
        features = self.resnet_backbone(images)

        tokens = self.dino_tokens(images)
        p, rows, cols = self.patch_size, h // self.patch_size, w // self.patch_size
        local = self.local_token_mlp(tokens[:, 1:]).transpose(1, 2).unflatten(2, (rows, cols))
        global_ = self.global_token_mlp(tokens[:, 0])
        # Add each patch token to its p x p pixels by broadcasting over a patch-split view.
        features = features.unflatten(2, (rows, p)).unflatten(4, (cols, p))
        features = features + local[:, :, :, None, :, None] + global_[:, :, None, None, None, None]
        return features.flatten(4, 5).flatten(2, 3).unflatten(0, (b, v))
