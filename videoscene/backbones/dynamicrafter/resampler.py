"""DynamiCrafter's image projector (``image_proj_model``): a Perceiver resampler.

Learned queries (``num_queries`` per frame, ``video_length`` frames) attend to the CLIP image
tokens ``[B, 257, embedding_dim]`` and come out as ``[B, video_length * num_queries, output_dim]``
frame-major context tokens: tokens ``[t q, (t + 1) q)`` condition frame ``t`` in the UNet.
Parameter names follow the official checkpoint.
"""
from __future__ import annotations

import torch
from torch import nn

__all__ = ['Resampler']


class PerceiverAttention(nn.Module):
    """Queries from the latents; keys and values from the image tokens and the latents together."""

    def __init__(self, dim: int, dim_head: int, heads: int) -> None:
        super().__init__()
        inner = dim_head * heads
        self.heads = heads
        self.dim_head = dim_head
        self.norm1 = nn.LayerNorm(dim)
        self.norm2 = nn.LayerNorm(dim)
        self.to_q = nn.Linear(dim, inner, bias=False)
        self.to_kv = nn.Linear(dim, 2 * inner, bias=False)
        self.to_out = nn.Linear(inner, dim, bias=False)

    def forward(self, x: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
        """``x [B, N, dim]`` image tokens, ``latents [B, Q, dim]`` -> ``[B, Q, dim]``."""
        x, latents = self.norm1(x), self.norm2(latents)
        k, v = self.to_kv(torch.cat([x, latents], dim=1)).chunk(2, dim=-1)
        q, k, v = (z.unflatten(-1, (self.heads, self.dim_head)).transpose(1, 2)
                   for z in (self.to_q(latents), k, v))
        # Both factors scaled by dim_head^-1/4 (the official order, friendlier to float16);
        # softmax in float32.
        scale = self.dim_head ** -0.25
        weights = ((q * scale) @ (k * scale).transpose(-2, -1)).float().softmax(dim=-1)
        out = weights.to(v.dtype) @ v
        return self.to_out(out.transpose(1, 2).flatten(2))


def _feed_forward(dim: int, mult: int) -> nn.Sequential:
    return nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, mult * dim, bias=False), nn.GELU(),
                         nn.Linear(mult * dim, dim, bias=False))


class Resampler(nn.Module):
    """Perceiver resampler; arguments are the official ``image_proj_stage_config`` names.

    ``x [B, N, embedding_dim]`` -> ``[B, video_length * num_queries, output_dim]``.
    """

    def __init__(self, dim: int = 1024, depth: int = 4, dim_head: int = 64, heads: int = 12,
                 num_queries: int = 16, embedding_dim: int = 1280, output_dim: int = 1024,
                 ff_mult: int = 4, video_length: int = 16) -> None:
        super().__init__()
        self.num_queries = num_queries
        self.video_length = video_length
        self.latents = nn.Parameter(torch.randn(1, num_queries * video_length, dim) / dim ** 0.5)
        self.proj_in = nn.Linear(embedding_dim, dim)
        self.proj_out = nn.Linear(dim, output_dim)
        self.norm_out = nn.LayerNorm(output_dim)
        self.layers = nn.ModuleList(
            nn.ModuleList([PerceiverAttention(dim, dim_head, heads), _feed_forward(dim, ff_mult)])
            for _ in range(depth))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.proj_in(x)
        latents = self.latents.expand(x.shape[0], -1, -1)
        for attention, feed_forward in self.layers:
            latents = latents + attention(x, latents)
            latents = latents + feed_forward(latents)
        return self.norm_out(self.proj_out(latents))
