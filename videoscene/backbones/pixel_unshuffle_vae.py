"""A deterministic, parameter-free "VAE" for tiny backbones: pixel unshuffle and its exact inverse.

A tiny random video VAE maps every frame to nearly the same latent, so a toy denoiser trained on
its latents sees no motion.  :class:`PixelUnshuffleVAE` instead folds each ``r x r`` pixel block
into channels (``torch.nn.functional.pixel_unshuffle``) frame by frame, without temporal
compression: latents carry every frame exactly and decode back bit for bit.  It speaks the part of
diffusers' ``AutoencoderKL`` interface that :class:`~videoscene.backbones.CogVideoX` uses
(``encode(x).latent_dist.mode()``, ``decode(z).sample``) and lives in a model folder's ``vae/`` as
a ``config.json`` alone (``_class_name: PixelUnshuffleVAE``); ``tools/make_tiny_backbone.py
--vae pixel-unshuffle`` writes one.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
from diffusers.models.autoencoders.vae import DecoderOutput, IdentityDistribution
from diffusers.models.modeling_outputs import AutoencoderKLOutput
from torch import nn

from videoscene.errors import InputError

__all__ = ['PixelUnshuffleVAE']

CONFIG_NAME = 'config.json'


class PixelUnshuffleVAE(nn.Module):
    """``[B, C, F, H, W]`` pixels <-> ``[B, C r^2, F, H / r, W / r]`` latents, ``z = unshuffle(x)``.

    Args:
        spatial_compression_ratio: ``r``, the side of the pixel block folded into channels.
        in_channels: image channels ``C``.
        scaling_factor: the factor the backbone multiplies latents by (as a diffusers VAE's
            ``config.scaling_factor``); pixels in ``[-1, 1]`` give latents in ``[-1, 1]``.

    Latent channel ``c r^2 + i r + j`` holds pixel ``(i, j)`` of each block of image channel ``c``.
    """

    temporal_compression_ratio = 1

    def __init__(self, spatial_compression_ratio: int = 2, in_channels: int = 3,
                 scaling_factor: float = 1.0) -> None:
        super().__init__()
        if spatial_compression_ratio < 1 or in_channels < 1:
            raise ValueError(f'spatial_compression_ratio and in_channels must be >= 1, got '
                             f'{spatial_compression_ratio} and {in_channels}')
        self.spatial_compression_ratio = spatial_compression_ratio
        self.in_channels = in_channels
        self.scaling_factor = scaling_factor
        self.latent_channels = in_channels * spatial_compression_ratio ** 2

    def encode(self, x: torch.Tensor) -> AutoencoderKLOutput:
        """``x [B, C, F, H, W]`` -> latents ``[B, C r^2, F, H / r, W / r]`` (a point mass)."""
        r = self.spatial_compression_ratio
        if x.ndim != 5 or x.shape[1] != self.in_channels or x.shape[-1] % r or x.shape[-2] % r:
            raise ValueError(f'PixelUnshuffleVAE.encode takes [B, {self.in_channels}, F, H, W] '
                             f'with H and W multiples of {r}, got {tuple(x.shape)}')
        frames = x.transpose(1, 2).flatten(0, 1)
        latents = F.pixel_unshuffle(frames, r).unflatten(0, x.shape[:1] + x.shape[2:3])
        return AutoencoderKLOutput(latent_dist=IdentityDistribution(latents.transpose(1, 2)))

    def decode(self, z: torch.Tensor) -> DecoderOutput:
        """``z [B, C r^2, F, h, w]`` -> pixels ``[B, C, F, h r, w r]``, the exact inverse."""
        if z.ndim != 5 or z.shape[1] != self.latent_channels:
            raise ValueError(f'PixelUnshuffleVAE.decode takes '
                             f'[B, {self.latent_channels}, F, h, w], got {tuple(z.shape)}')
        frames = z.transpose(1, 2).flatten(0, 1)
        pixels = F.pixel_shuffle(frames, self.spatial_compression_ratio)
        return DecoderOutput(sample=pixels.unflatten(0, z.shape[:1] + z.shape[2:3]).transpose(1, 2))

    # ------------------------------------------------------------------ model folder
    def save_pretrained(self, folder: str | Path) -> Path:
        """Write ``folder/config.json`` (the VAE has no weights)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        config = {'_class_name': type(self).__name__,
                  'spatial_compression_ratio': self.spatial_compression_ratio,
                  'in_channels': self.in_channels, 'scaling_factor': self.scaling_factor}
        (folder / CONFIG_NAME).write_text(json.dumps(config, indent=1))
        return folder

    @classmethod
    def is_saved_in(cls, folder: str | Path) -> bool:
        """Whether ``folder/config.json`` names this class."""
        path = Path(folder) / CONFIG_NAME
        return path.is_file() and json.loads(path.read_text()).get('_class_name') == cls.__name__

    @classmethod
    def from_pretrained(cls, folder: str | Path) -> PixelUnshuffleVAE:
        """The VAE described by ``folder/config.json``."""
        path = Path(folder) / CONFIG_NAME
        config = json.loads(path.read_text())
        if config.pop('_class_name', None) != cls.__name__:
            raise InputError(path, f"is not a {cls.__name__} config (its '_class_name' differs)")
        unknown = set(config) - {'spatial_compression_ratio', 'in_channels', 'scaling_factor'}
        if unknown:
            raise InputError(path, f'has unknown {cls.__name__} entries {sorted(unknown)}')
        return cls(**config)
