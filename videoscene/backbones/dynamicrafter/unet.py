"""DynamiCrafter's 3-D UNet (``model.diffusion_model`` in the official checkpoint).

An SD-style 2-D UNet applied to every frame, with video layers added:

* each ``ResBlock`` ends with a temporal convolution stack (``temopral_conv``, the official
  spelling, over ``(3, 1, 1)`` kernels);
* each attention level has a :class:`SpatialTransformer` (text + image cross-attention) followed by
  a :class:`TemporalTransformer`; one more temporal transformer (``init_attn``) follows the input
  convolution;
* the timestep embedding is summed with an embedding of the frame rate condition ``fs``.

Layout: ``x [B, C, T, H, W]`` (the official one; the backbone converts from ``[B, F, C, h, w]``).
Inside, frames are folded into the batch, row ``b * T + t``.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from ...nn import Downsample, Upsample
from .attention import TEXT_TOKENS, Attention, SpatialTransformer, TemporalTransformer

__all__ = ['UNet3D', 'timestep_embedding']


def timestep_embedding(t: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding ``[cos, sin]`` of ``t [N]`` (integers or floats) -> ``[N, dim]``."""
    half = dim // 2
    freqs = torch.exp(-math.log(max_period)
                      * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([args.cos(), args.sin()], dim=-1)


class GroupNorm32(nn.GroupNorm):
    """32-group norm computed in float32 whatever the input dtype (as the official ResBlocks)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.group_norm(x.float(), self.num_groups, self.weight.float(), self.bias.float(),
                            self.eps).to(x.dtype)


class TemporalConvBlock(nn.Module):
    """Residual stack of four (norm, SiLU, [dropout], ``(3, 1, 1)`` conv) on ``[B, C, T, H, W]``."""

    def __init__(self, channels: int, dropout: float = 0.1) -> None:
        super().__init__()

        def stage(with_dropout: bool) -> nn.Sequential:
            layers = [nn.GroupNorm(32, channels), nn.SiLU()]
            layers += [nn.Dropout(dropout)] if with_dropout else []
            return nn.Sequential(*layers, nn.Conv3d(channels, channels, (3, 1, 1),
                                                    padding=(1, 0, 0)))

        self.conv1 = stage(False)
        self.conv2 = stage(True)
        self.conv3 = stage(True)
        self.conv4 = stage(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv4(self.conv3(self.conv2(self.conv1(x))))


class ResBlock(nn.Module):
    """Residual block conditioned on the time embedding, then the temporal conv stack.

    ``x [B*T, C, H, W]``, ``emb [B*T, E]`` -> ``[B*T, out_channels, H, W]``.
    """

    def __init__(self, channels: int, emb_channels: int, out_channels: int, dropout: float,
                 temporal_conv: bool) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(GroupNorm32(32, channels), nn.SiLU(),
                                       nn.Conv2d(channels, out_channels, 3, padding=1))
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, out_channels))
        self.out_layers = nn.Sequential(GroupNorm32(32, out_channels), nn.SiLU(),
                                        nn.Dropout(dropout),
                                        nn.Conv2d(out_channels, out_channels, 3, padding=1))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else nn.Conv2d(channels, out_channels, 1))
        if temporal_conv:
            self.temopral_conv = TemporalConvBlock(out_channels)

    def forward(self, x: torch.Tensor, emb: torch.Tensor, num_frames: int) -> torch.Tensor:
        h = self.in_layers(x) + self.emb_layers(emb)[..., None, None].to(x.dtype)
        h = self.skip_connection(x) + self.out_layers(h)
        if hasattr(self, 'temopral_conv'):
            bt, c, height, width = h.shape
            video = h.reshape(bt // num_frames, num_frames, c, height, width).transpose(1, 2)
            h = self.temopral_conv(video).transpose(1, 2).reshape(bt, c, height, width)
        return h


class Stage(nn.ModuleList):
    """One entry of ``input_blocks`` / ``middle_block`` / ``output_blocks``: its layers in order,
    each given what it needs (time embedding, context or frame count)."""

    def forward(self, h: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, num_frames: int,
                checkpointing: bool = False) -> torch.Tensor:
        for layer in self:
            if isinstance(layer, ResBlock):
                args = (h, emb, num_frames)
            elif isinstance(layer, SpatialTransformer):
                args = (h, context)
            elif isinstance(layer, TemporalTransformer):
                args = (h, num_frames)
            else:
                h = layer(h)
                continue
            h = checkpoint(layer, *args, use_reentrant=False) if checkpointing else layer(*args)
        return h


class UNet3D(nn.Module):
    """DynamiCrafter's video UNet; arguments are the official ``unet_config`` names.

    Args:
        in_channels: noisy latents + concatenated condition latents (8 for the 512 models).
        model_channels: base width (320); ``channel_mult`` per level, ``num_res_blocks`` per level.
        attention_resolutions: downsampling factors (1, 2, 4 ...) whose levels get transformers.
        num_head_channels: attention head width; heads = channels // num_head_channels.
        context_dim: width of the cross-attention context (1024).
        temporal_length: frames the model was trained on (16), kept as an attribute (the
            official code uses it only for options not supported here).
        image_tokens_per_frame: image tokens the resampler makes per frame (16); see
            :meth:`frame_context`.
        addition_attention: the extra temporal transformer ``init_attn`` after the input conv.
        image_cross_attention: spatial cross-attention also on image tokens (``to_k_ip``...).
        default_fs, fs_condition: the frame-rate embedding and its value when ``fs`` is None.
        use_checkpoint: gradient checkpointing of every block (see
            :meth:`enable_gradient_checkpointing`).

    The official options this re-implementation does not cover (relative positions, causal or
    cross temporal attention, scale-shift norm, ResBlock up/down sampling, spatially aware
    temporal convolutions, a learnable image-attention scale) must keep their 512-model values;
    any other value raises.
    """

    def __init__(self, in_channels: int = 8, model_channels: int = 320, out_channels: int = 4,
                 num_res_blocks: int = 2, attention_resolutions: Sequence[int] = (4, 2, 1),
                 dropout: float = 0.1, channel_mult: Sequence[int] = (1, 2, 4, 4),
                 num_head_channels: int = 64, transformer_depth: int = 1,
                 context_dim: int = 1024, use_linear: bool = True, use_checkpoint: bool = False,
                 temporal_conv: bool = True, temporal_attention: bool = True,
                 temporal_selfatt_only: bool = True, use_relative_position: bool = False,
                 use_causal_attention: bool = False, temporal_length: int = 16,
                 addition_attention: bool = True, image_cross_attention: bool = True,
                 default_fs: int = 24, fs_condition: bool = True,
                 image_tokens_per_frame: int = 16, **unsupported) -> None:
        super().__init__()
        fixed = {'use_relative_position': (use_relative_position, False),
                 'use_causal_attention': (use_causal_attention, False),
                 'temporal_selfatt_only': (temporal_selfatt_only, True),
                 'use_scale_shift_norm': (unsupported.pop('use_scale_shift_norm', False), False),
                 'resblock_updown': (unsupported.pop('resblock_updown', False), False),
                 'tempspatial_aware': (unsupported.pop('tempspatial_aware', False), False),
                 'image_cross_attention_scale_learnable': (
                     unsupported.pop('image_cross_attention_scale_learnable', False), False),
                 'conv_resample': (unsupported.pop('conv_resample', True), True),
                 'dims': (unsupported.pop('dims', 2), 2)}
        for name, (value, supported) in fixed.items():
            if value != supported:
                raise ValueError(f'UNet3D supports {name}={supported!r} only (the DynamiCrafter '
                                 f'512 models), got {value!r}')
        if unsupported:
            raise TypeError(f'UNet3D got unknown arguments {sorted(unsupported)}')
        self.model_channels = model_channels
        self.temporal_length = temporal_length
        self.image_tokens_per_frame = image_tokens_per_frame
        self.default_fs = default_fs
        self.fs_condition = fs_condition
        self.gradient_checkpointing = use_checkpoint
        self.downsampling = 2 ** (len(channel_mult) - 1)
        emb_dim = 4 * model_channels

        def embedding() -> nn.Sequential:
            return nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(),
                                 nn.Linear(emb_dim, emb_dim))

        def transformers(ch: int) -> list[nn.Module]:
            heads = ch // num_head_channels
            layers: list[nn.Module] = [SpatialTransformer(
                ch, heads, num_head_channels, transformer_depth, context_dim,
                image_cross_attention, use_linear)]
            if temporal_attention:
                layers.append(TemporalTransformer(ch, heads, num_head_channels,
                                                  transformer_depth, use_linear))
            return layers

        def resblock(ch: int, out: int) -> ResBlock:
            return ResBlock(ch, emb_dim, out, dropout, temporal_conv)

        self.time_embed = embedding()
        if fs_condition:
            self.fps_embedding = embedding()
        self.input_blocks = nn.ModuleList([Stage([nn.Conv2d(in_channels, model_channels, 3,
                                                            padding=1)])])
        if addition_attention:
            self.init_attn = Stage([TemporalTransformer(model_channels, 8, num_head_channels,
                                                        transformer_depth, use_linear=False)])
        skip_channels, ch, factor = [model_channels], model_channels, 1
        for level, mult in enumerate(channel_mult):
            for _ in range(num_res_blocks):
                layers = [resblock(ch, mult * model_channels)]
                ch = mult * model_channels
                if factor in attention_resolutions:
                    layers += transformers(ch)
                self.input_blocks.append(Stage(layers))
                skip_channels.append(ch)
            if level != len(channel_mult) - 1:
                self.input_blocks.append(Stage([Downsample(ch)]))
                skip_channels.append(ch)
                factor *= 2
        self.middle_block = Stage([resblock(ch, ch), *transformers(ch), resblock(ch, ch)])
        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_res_blocks + 1):
                layers = [resblock(ch + skip_channels.pop(), mult * model_channels)]
                ch = mult * model_channels
                if factor in attention_resolutions:
                    layers += transformers(ch)
                if level and i == num_res_blocks:
                    layers.append(Upsample(ch))
                    factor //= 2
                self.output_blocks.append(Stage(layers))
        self.out = nn.Sequential(GroupNorm32(32, ch), nn.SiLU(),
                                 nn.Conv2d(model_channels, out_channels, 3, padding=1))

    # ------------------------------------------------------------------ helpers
    def enable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = True

    def disable_gradient_checkpointing(self) -> None:
        self.gradient_checkpointing = False

    def attention_modules(self) -> dict[str, Attention]:
        """Every attention layer (spatial and temporal ``attn1``/``attn2``) by qualified name."""
        return {name: m for name, m in self.named_modules() if isinstance(m, Attention)}

    def frame_context(self, context: torch.Tensor, num_frames: int) -> torch.Tensor:
        """``context [B, L, D]`` -> the per-frame context ``[B*T, L', D]``.

        If ``L == 77 + T * image_tokens_per_frame`` the image tokens are per frame (frame ``t``
        sees tokens ``[t q, (t + 1) q)`` after the text); otherwise every frame gets the whole
        context (as the official model does, e.g. for ``T`` other than its trained length).
        """
        q = self.image_tokens_per_frame
        if context.shape[1] == TEXT_TOKENS + num_frames * q:
            text = context[:, :TEXT_TOKENS].repeat_interleave(num_frames, dim=0)
            image = context[:, TEXT_TOKENS:].reshape(-1, q, context.shape[-1])
            return torch.cat([text, image], dim=1)
        return context.repeat_interleave(num_frames, dim=0)

    def embed(self, timesteps: torch.Tensor, fs: torch.Tensor | None) -> torch.Tensor:
        """Time (+ frame-rate) embedding ``[B, 4 model_channels]``."""
        dtype = self.time_embed[0].weight.dtype
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels).to(dtype))
        if self.fs_condition:
            if fs is None:
                fs = torch.full_like(timesteps, self.default_fs)
            emb = emb + self.fps_embedding(timestep_embedding(fs, self.model_channels).to(dtype))
        return emb

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, context: torch.Tensor,
                fs: torch.Tensor | None = None) -> torch.Tensor:
        """``x [B, in_channels, T, H, W]``, ``timesteps [B]``, ``context [B, L, context_dim]``,
        ``fs [B]`` (None: ``default_fs``) -> ``[B, out_channels, T, H, W]``.

        ``H`` and ``W`` must be divisible by ``2 ** (len(channel_mult) - 1)``.
        """
        if x.ndim != 5:
            raise ValueError(f'x must be [B, C, T, H, W], got shape {tuple(x.shape)}')
        b, _, t, h, w = x.shape
        emb = self.embed(timesteps, fs).to(x.dtype).repeat_interleave(t, dim=0)
        context = self.frame_context(context.to(x.dtype), t)
        run = dict(emb=emb, context=context, num_frames=t,
                   checkpointing=self.gradient_checkpointing and torch.is_grad_enabled())
        hidden = x.transpose(1, 2).reshape(b * t, -1, h, w)
        skips = []
        for index, stage in enumerate(self.input_blocks):
            hidden = stage(hidden, **run)
            if index == 0 and hasattr(self, 'init_attn'):
                hidden = self.init_attn(hidden, **run)
            skips.append(hidden)
        hidden = self.middle_block(hidden, **run)
        for stage in self.output_blocks:
            hidden = stage(torch.cat([hidden, skips.pop()], dim=1), **run)
        out = self.out(hidden)
        return out.reshape(b, t, -1, h, w).transpose(1, 2)
