"""The pre-norm transformer pixelSplat uses for epipolar and image attention (from SRT).

Module names follow the official checkpoints: ``layers.<i>.0`` is the attention sub-block and
``layers.<i>.1`` the feed-forward sub-block, each a :class:`PreNorm` (``.norm``, ``.fn``).
"""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['Attention', 'FeedForward', 'PreNorm', 'Transformer']


class Attention(nn.Module):
    """Multi-head attention without biases on the input projections.

    Args:
        dim: token width.
        heads: number of heads.
        head_dim: width of each head (the softmax scale is ``head_dim ** -0.5``).
        context_dim: width of the key/value tokens for cross-attention (``to_q``, ``to_kv``);
            ``None`` for self-attention (``to_qkv``).
    """

    def __init__(self, dim: int, heads: int, head_dim: int, context_dim: int | None = None) -> None:
        super().__init__()
        self.heads = heads
        inner = heads * head_dim
        if context_dim is None:
            self.to_qkv = nn.Linear(dim, 3 * inner, bias=False)
        else:
            self.to_q = nn.Linear(dim, inner, bias=False)
            self.to_kv = nn.Linear(context_dim, 2 * inner, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim))  # ``to_out.0`` as in the checkpoints

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None) -> torch.Tensor:
        """``x [N, Lq, dim]`` (and ``context [N, Lk, context_dim]``) -> ``[N, Lq, dim]``."""
        if context is None:
            q, k, v = self.to_qkv(x).chunk(3, dim=-1)
        else:
            q = self.to_q(x)
            k, v = self.to_kv(context).chunk(2, dim=-1)
        q, k, v = (t.unflatten(-1, (self.heads, -1)).transpose(1, 2) for t in (q, k, v))
        out = F.scaled_dot_product_attention(q, k, v)
        return self.to_out(out.transpose(1, 2).flatten(2))


class FeedForward(nn.Module):
    """``Linear -> GELU -> Linear``, stored as ``net.0`` and ``net.3`` like the checkpoints
    (slot 2 held a zero-rate dropout there)."""

    def __init__(self, dim: int, hidden_dim: int) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Identity(),
                                 nn.Linear(hidden_dim, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class PreNorm(nn.Module):
    """``fn(LayerNorm(x), **kwargs)``; only ``x`` is normalised, not a cross-attention context."""

    def __init__(self, dim: int, fn: nn.Module) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x: torch.Tensor, **kwargs) -> torch.Tensor:
        return self.fn(self.norm(x), **kwargs)


class Transformer(nn.Module):
    """``depth`` layers of ``x = attention(x) + x; x = feed_forward(x) + x``.

    Args:
        dim: token width.
        depth: number of layers.
        heads: attention heads.
        head_dim: width per head.
        feed_forward: builds one feed-forward block (e.g. ``lambda: FeedForward(dim, 256)``);
            extra keyword arguments of :meth:`forward` are passed to it.
        context_dim: key/value width for cross-attention; ``None`` for self-attention.
    """

    def __init__(self, dim: int, depth: int, heads: int, head_dim: int,
                 feed_forward: Callable[[], nn.Module], context_dim: int | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            nn.ModuleList([PreNorm(dim, Attention(dim, heads, head_dim, context_dim)),
                           PreNorm(dim, feed_forward())])
            for _ in range(depth))

    def forward(self, x: torch.Tensor, context: torch.Tensor | None = None,
                **feed_forward_kwargs) -> torch.Tensor:
        """``x [N, L, dim]`` (attending to ``context [N, Lk, context_dim]`` if cross-attention)."""
        for attention, feed_forward in self.layers:
            x = attention(x, context=context) + x
            x = feed_forward(x, **feed_forward_kwargs) + x
        return x
