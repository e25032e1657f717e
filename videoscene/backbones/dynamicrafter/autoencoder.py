"""DynamiCrafter's image autoencoder (``first_stage_model``): the Stable Diffusion KL VAE.

Frames are encoded one image at a time (``[N, 3, H, W]`` in ``[-1, 1]``); the encoder outputs
the mean and log-variance of a diagonal Gaussian over ``[N, 4, H/8, W/8]`` latents
(``2 ** (len(ch_mult) - 1)`` downsampling). Latents are multiplied by ``scale_factor`` (0.18215)
outside this module, by the backbone. Parameter names follow the official checkpoint.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...nn import Upsample

__all__ = ['AutoencoderKL', 'DiagonalGaussian']


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(32, channels, eps=1e-6)


class ResnetBlock(nn.Module):
    """Two (norm, swish, 3x3 conv) layers with a residual (1x1 ``nin_shortcut`` if widths differ)."""

    def __init__(self, channels: int, out_channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.norm1 = _norm(channels)
        self.conv1 = nn.Conv2d(channels, out_channels, 3, padding=1)
        self.norm2 = _norm(out_channels)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1)
        if channels != out_channels:
            self.nin_shortcut = nn.Conv2d(channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, 'nin_shortcut') else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over the pixels, 1x1-conv projections, residual."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.norm = _norm(channels)
        self.q = nn.Conv2d(channels, channels, 1)
        self.k = nn.Conv2d(channels, channels, 1)
        self.v = nn.Conv2d(channels, channels, 1)
        self.proj_out = nn.Conv2d(channels, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        normed = self.norm(x)
        q, k, v = (layer(normed).flatten(2).transpose(1, 2)[:, None]
                   for layer in (self.q, self.k, self.v))
        out = F.scaled_dot_product_attention(q, k, v)[:, 0].transpose(1, 2).reshape(n, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    """Stride-2 3x3 convolution after padding one pixel at the right and bottom (unlike the U-Net
    blocks of :mod:`videoscene.nn`, which pad symmetrically)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, stride=2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))


class MidBlock(nn.Module):
    """ResNet block, self-attention, ResNet block at the lowest resolution."""

    def __init__(self, channels: int, dropout: float) -> None:
        super().__init__()
        self.block_1 = ResnetBlock(channels, channels, dropout)
        self.attn_1 = AttnBlock(channels)
        self.block_2 = ResnetBlock(channels, channels, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.block_2(self.attn_1(self.block_1(x)))


class DownLevel(nn.Module):
    """The ResNet blocks of one encoder resolution (``block``), then ``downsample`` if not the last."""

    def __init__(self, widths: Sequence[tuple[int, int]], dropout: float, downsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o, dropout) for i, o in widths)
        if downsample:
            self.downsample = Downsample(widths[-1][1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return self.downsample(x) if hasattr(self, 'downsample') else x


class UpLevel(nn.Module):
    """The ResNet blocks of one decoder resolution (``block``), then ``upsample`` if not the last."""

    def __init__(self, widths: Sequence[tuple[int, int]], dropout: float, upsample: bool) -> None:
        super().__init__()
        self.block = nn.ModuleList(ResnetBlock(i, o, dropout) for i, o in widths)
        if upsample:
            self.upsample = Upsample(widths[-1][1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.block:
            x = block(x)
        return self.upsample(x) if hasattr(self, 'upsample') else x


class Encoder(nn.Module):
    """``[N, in_channels, H, W]`` -> ``[N, 2 z_channels, H / 2**(L-1), W / 2**(L-1)]``."""

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, in_channels: int,
                 z_channels: int, dropout: float) -> None:
        super().__init__()
        self.conv_in = nn.Conv2d(in_channels, ch, 3, padding=1)
        widths = [ch * m for m in (1, *ch_mult)]
        self.down = nn.ModuleList()
        for level in range(len(ch_mult)):
            blocks = [(widths[level] if i == 0 else widths[level + 1], widths[level + 1])
                      for i in range(num_res_blocks)]
            self.down.append(DownLevel(blocks, dropout, downsample=level < len(ch_mult) - 1))
        self.mid = MidBlock(widths[-1], dropout)
        self.norm_out = _norm(widths[-1])
        self.conv_out = nn.Conv2d(widths[-1], 2 * z_channels, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv_in(x)
        for level in self.down:
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(self.mid(h))))


class Decoder(nn.Module):
    """``[N, z_channels, h, w]`` -> ``[N, out_ch, h * 2**(L-1), w * 2**(L-1)]``.

    ``up[i]`` is the level of resolution ``i`` (0 = full size); they run from the coarsest.
    """

    def __init__(self, ch: int, ch_mult: Sequence[int], num_res_blocks: int, out_ch: int,
                 z_channels: int, dropout: float) -> None:
        super().__init__()
        top = ch * ch_mult[-1]
        self.conv_in = nn.Conv2d(z_channels, top, 3, padding=1)
        self.mid = MidBlock(top, dropout)
        levels, width = [], top
        for level in reversed(range(len(ch_mult))):
            out = ch * ch_mult[level]
            blocks = [(width if i == 0 else out, out) for i in range(num_res_blocks + 1)]
            levels.insert(0, UpLevel(blocks, dropout, upsample=level > 0))
            width = out
        self.up = nn.ModuleList(levels)
        self.norm_out = _norm(width)
        self.conv_out = nn.Conv2d(width, out_ch, 3, padding=1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.mid(self.conv_in(z))
        for level in reversed(self.up):
            h = level(h)
        return self.conv_out(F.silu(self.norm_out(h)))


@dataclass
class DiagonalGaussian:
    """The encoder's posterior: ``mean``, ``logvar`` (clamped to [-30, 20]) ``[N, C, h, w]``."""

    mean: torch.Tensor
    logvar: torch.Tensor

    @property
    def std(self) -> torch.Tensor:
        return torch.exp(0.5 * self.logvar)

    def sample(self, noise: torch.Tensor) -> torch.Tensor:
        """``mean + std * noise``."""
        return self.mean + self.std * noise.to(self.mean)


class AutoencoderKL(nn.Module):
    """The KL autoencoder; arguments are the official ``first_stage_config`` names.

    Args:
        embed_dim: latent channels (4).
        ddconfig: ``ch``, ``ch_mult``, ``num_res_blocks``, ``in_channels``, ``out_ch``,
            ``z_channels``, ``double_z`` (must be True), ``attn_resolutions`` (must be empty, as in
            DynamiCrafter), ``dropout``; ``resolution`` is accepted and unused.
    """

    def __init__(self, embed_dim: int = 4, ddconfig: dict | None = None, **ignored) -> None:
        super().__init__()
        unknown = set(ignored) - {'lossconfig', 'monitor'}
        if unknown:
            raise TypeError(f'AutoencoderKL got unknown arguments {sorted(unknown)}')
        cfg = dict(double_z=True, z_channels=4, resolution=256, in_channels=3, out_ch=3, ch=128,
                   ch_mult=(1, 2, 4, 4), num_res_blocks=2, attn_resolutions=(), dropout=0.0)
        unknown = set(ddconfig or {}) - set(cfg)
        if unknown:
            raise TypeError(f'AutoencoderKL ddconfig has unknown keys {sorted(unknown)}')
        cfg.update(ddconfig or {})
        if not cfg['double_z'] or list(cfg['attn_resolutions']):
            raise ValueError('AutoencoderKL supports double_z=True and attn_resolutions=[] only '
                             f"(DynamiCrafter's VAE), got double_z={cfg['double_z']}, "
                             f"attn_resolutions={cfg['attn_resolutions']}")
        common = dict(ch=cfg['ch'], ch_mult=cfg['ch_mult'], num_res_blocks=cfg['num_res_blocks'],
                      z_channels=cfg['z_channels'], dropout=cfg['dropout'])
        self.encoder = Encoder(in_channels=cfg['in_channels'], **common)
        self.decoder = Decoder(out_ch=cfg['out_ch'], **common)
        self.quant_conv = nn.Conv2d(2 * cfg['z_channels'], 2 * embed_dim, 1)
        self.post_quant_conv = nn.Conv2d(embed_dim, cfg['z_channels'], 1)
        self.downsampling = 2 ** (len(cfg['ch_mult']) - 1)

    def encode(self, images: torch.Tensor) -> DiagonalGaussian:
        """``images [N, 3, H, W]`` in ``[-1, 1]`` -> posterior over ``[N, embed_dim, h, w]``."""
        mean, logvar = self.quant_conv(self.encoder(images)).chunk(2, dim=1)
        return DiagonalGaussian(mean, logvar.clamp(-30.0, 20.0))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Unscaled ``latents [N, embed_dim, h, w]`` -> images ``[N, 3, H, W]`` (about ``[-1, 1]``)."""
        return self.decoder(self.post_quant_conv(latents))
