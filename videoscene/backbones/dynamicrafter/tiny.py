"""A tiny DynamiCrafter for tests and CPU runs, saved in the official checkpoint layout.

:data:`TINY_DYNAMICRAFTER` is the architecture of the golden fixtures (every structural feature of
the 512-Interp model at a few channels: 3 UNet levels, 4 frames, 32-wide context); pass it to
``DynamiCrafter`` (or a config) beside the checkpoint. Frames must be multiples of 32 pixels.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .backbone import DynamiCrafter

__all__ = ['TINY_DYNAMICRAFTER', 'save_tiny_dynamicrafter']

_TINY_VISION = dict(image_size=224, layers=2, width=48, head_width=16, patch_size=14)

TINY_DYNAMICRAFTER = dict(
    unet=dict(in_channels=8, out_channels=4, model_channels=32, attention_resolutions=[2, 1],
              num_res_blocks=1, channel_mult=[1, 2, 2], dropout=0.1, num_head_channels=16,
              transformer_depth=1, context_dim=32, use_linear=True, use_checkpoint=False,
              temporal_conv=True, temporal_attention=True, temporal_selfatt_only=True,
              use_relative_position=False, use_causal_attention=False, temporal_length=4,
              addition_attention=True, image_cross_attention=True, default_fs=24,
              fs_condition=True),
    autoencoder=dict(embed_dim=4, ddconfig=dict(
        double_z=True, z_channels=4, resolution=32, in_channels=3, out_ch=3, ch=32,
        ch_mult=[1, 2, 2, 2], num_res_blocks=1, attn_resolutions=[], dropout=0.0)),
    text_encoder=dict(embed_dim=32, vision_cfg=_TINY_VISION, text_cfg=dict(
        context_length=77, vocab_size=49408, width=32, heads=2, layers=3)),
    image_encoder=dict(embed_dim=32, vision_cfg=_TINY_VISION, text_cfg=dict(
        context_length=77, vocab_size=8, width=32, heads=2, layers=1)),
    resampler=dict(dim=64, depth=2, dim_head=16, heads=3, num_queries=16, embedding_dim=48,
                   output_dim=32, ff_mult=4, video_length=4),
)


def save_tiny_dynamicrafter(path: str | Path, seed: int = 0) -> Path:
    """Write a randomly initialised tiny model as ``{'state_dict': ...}`` (official layout)."""
    path = Path(path)
    torch.manual_seed(seed)
    model = DynamiCrafter(None, **TINY_DYNAMICRAFTER)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': model.state_dict()}, path)
    return path
