"""The attention layers of DynamiCrafter's 3-D UNet.

* :class:`SpatialTransformer`: per frame, tokens = pixels; self-attention, then a dual
  cross-attention on the text tokens and (through separate ``to_k_ip``/``to_v_ip`` projections)
  the image tokens of the resampler, then a GEGLU feed-forward.
* :class:`TemporalTransformer`: per pixel, tokens = frames; two self-attentions and a
  feed-forward, no positional encoding, not causal.

Parameter names are those of the official checkpoint (``attn1``, ``attn2``, ``ff.net.0.proj`` ...).
Attention runs through :func:`torch.nn.functional.scaled_dot_product_attention` (the official
einsum softmax gives the same result to float rounding).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['Attention', 'FeedForward', 'TransformerBlock', 'SpatialTransformer',
           'TemporalTransformer', 'pointwise']

# Length of the text part of the cross-attention context (OpenCLIP's 77 tokens); the rest of the
# context is image tokens.
TEXT_TOKENS = 77


def pointwise(layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Apply a ``Linear`` or a kernel-1 ``Conv1d``/``Conv2d`` to the channels-last ``x [..., C]``."""
    return F.linear(x, layer.weight.flatten(1), layer.bias)


class Attention(nn.Module):
    """Multi-head attention of ``x [N, L, dim]`` on itself (``context=None``) or on a context.

    With ``image_context=True`` the context ``[N, TEXT_TOKENS + M, context_dim]`` is split: the text
    tokens are attended through ``to_k``/``to_v``, the ``M`` image tokens through
    ``to_k_ip``/``to_v_ip``, and the two results are summed (image scale 1) before ``to_out``.
    Without it, a context is cut to its text tokens.
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None,
                 image_context: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        inner, source = heads * head_dim, context_dim or dim
        self.heads = heads
        self.image_context = image_context
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_k = nn.Linear(source, inner, bias=False)
        self.to_v = nn.Linear(source, inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(dropout))
        if image_context:
            self.to_k_ip = nn.Linear(source, inner, bias=False)
            self.to_v_ip = nn.Linear(source, inner, bias=False)

    def _attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """``[N, Lq, H*d]``, ``[N, Lk, H*d]`` x2 -> ``[N, Lq, H*d]``."""
        q, k, v = (z.unflatten(-1, (self.heads, -1)).transpose(1, 2) for z in (q, k, v))
        return F.scaled_dot_product_attention(q, k, v).transpose(1, 2).flatten(2)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        q = self.to_q(x)
        if context is None:
            out = self._attend(q, self.to_k(x), self.to_v(x))
        else:
            text = context[:, :TEXT_TOKENS]
            out = self._attend(q, self.to_k(text), self.to_v(text))
            if self.image_context:
                image = context[:, TEXT_TOKENS:]
                if image.shape[1] == 0:
                    raise ValueError(f'the context has no image tokens after its {TEXT_TOKENS} '
                                     f'text tokens (shape {tuple(context.shape)})')
                out = out + self._attend(q, self.to_k_ip(image), self.to_v_ip(image))
        return self.to_out(out)


class GEGLU(nn.Module):
    """``a * gelu(gate)`` with ``[a, gate] = proj(x)``."""

    def __init__(self, dim: int, inner: int) -> None:
        super().__init__()
        self.proj = nn.Linear(dim, 2 * inner)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        value, gate = self.proj(x).chunk(2, dim=-1)
        return value * F.gelu(gate)


class FeedForward(nn.Module):
    """GEGLU feed-forward ``dim -> 4 dim -> dim``."""

    def __init__(self, dim: int, dropout: float = 0.0, mult: int = 4) -> None:
        super().__init__()
        self.net = nn.Sequential(GEGLU(dim, mult * dim), nn.Dropout(dropout),
                                 nn.Linear(mult * dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class TransformerBlock(nn.Module):
    """Pre-norm ``attn1`` (self), ``attn2`` (cross on a context, or self without one), ``ff``."""

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None,
                 image_context: bool = False, dropout: float = 0.0) -> None:
        super().__init__()
        self.attn1 = Attention(dim, heads, head_dim, dropout=dropout)
        self.ff = FeedForward(dim, dropout=dropout)
        self.attn2 = Attention(dim, heads, head_dim, context_dim, image_context, dropout)
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.norm3 = nn.LayerNorm(dim)

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        x = x + self.attn1(self.norm1(x))
        x = x + self.attn2(self.norm2(x), context)
        return x + self.ff(self.norm3(x))


class SpatialTransformer(nn.Module):
    """Transformer over the pixels of each frame, with text + image cross-attention.

    ``x [N, C, H, W]`` (``N`` = batch x frames), ``context [N, L, context_dim]`` -> ``[N, C, H, W]``.
    ``proj_in``/``proj_out`` are ``Linear`` (``use_linear``) or 1x1 ``Conv2d``; ``proj_out`` is
    residual (the block starts as the identity when it is zero).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, depth: int, context_dim: int,
                 image_context: bool, use_linear: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv2d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(inner, heads, head_dim, context_dim, image_context, dropout)
            for _ in range(depth))
        self.proj_out = nn.Linear(inner, channels) if use_linear else nn.Conv2d(inner, channels, 1)

    def forward(self, x: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        tokens = pointwise(self.proj_in, self.norm(x).flatten(2).transpose(1, 2))
        for block in self.transformer_blocks:
            tokens = block(tokens, context)
        out = pointwise(self.proj_out, tokens).transpose(1, 2).reshape(n, c, h, w)
        return x + out


class TemporalTransformer(nn.Module):
    """Self-attention transformer across the frames of each pixel.

    ``x [B*T, C, H, W]`` with ``num_frames = T`` -> same shape. ``proj_in``/``proj_out`` are
    ``Linear`` (``use_linear``) or kernel-1 ``Conv1d`` (the UNet's first ``init_attn``).
    """

    def __init__(self, channels: int, heads: int, head_dim: int, depth: int,
                 use_linear: bool = True, dropout: float = 0.0) -> None:
        super().__init__()
        inner = heads * head_dim
        self.norm = nn.GroupNorm(32, channels, eps=1e-6)
        self.proj_in = nn.Linear(channels, inner) if use_linear else nn.Conv1d(channels, inner, 1)
        self.transformer_blocks = nn.ModuleList(
            TransformerBlock(inner, heads, head_dim, dropout=dropout) for _ in range(depth))
        self.proj_out = nn.Linear(inner, channels) if use_linear else nn.Conv1d(inner, channels, 1)

    def forward(self, x: torch.Tensor, num_frames: int) -> torch.Tensor:
        bt, c, h, w = x.shape
        b = bt // num_frames
        # [(B T), C, H, W] -> [(B H W), T, C]
        video = self.norm(x.reshape(b, num_frames, c, h, w).transpose(1, 2))
        tokens = video.permute(0, 3, 4, 2, 1).reshape(b * h * w, num_frames, c)
        tokens = pointwise(self.proj_in, tokens)
        for block in self.transformer_blocks:
            tokens = block(tokens)
        tokens = pointwise(self.proj_out, tokens)
        out = tokens.reshape(b, h, w, num_frames, c).permute(0, 3, 4, 1, 2).reshape(bt, c, h, w)
        return x + out
