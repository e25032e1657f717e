"""MVSplat's multi-view transformer: Swin-style window attention within and across views.

Each block is a self-attention layer followed by a cross-attention + feed-forward layer whose keys
are the other views' features (from before the block). Odd blocks shift the windows by half a
window, with the usual Swin mask. Single-head attention throughout.

State-dict names follow the official checkpoint (``layers.<i>.self_attn.*``,
``layers.<i>.cross_attn_ffn.*``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['shifted_window_mask', 'window_attention', 'AttentionLayer', 'TransformerBlock',
           'MultiViewTransformer']


def _to_windows(x: torch.Tensor, splits: int) -> torch.Tensor:
    """``[N, H, W, *rest]`` -> ``[N, splits * splits, (H/splits) * (W/splits) * prod(rest)...]``.

    Tokens inside a window stay row-major; any trailing ``rest`` dims stay innermost.
    """
    n, h, w, *rest = x.shape
    x = x.reshape(n, splits, h // splits, splits, w // splits, *rest)
    x = x.transpose(2, 3)  # [N, sy, sx, h', w', *rest]
    return x.reshape(n, splits * splits, (h // splits) * (w // splits), *rest)


def _from_windows(x: torch.Tensor, splits: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`_to_windows` for ``[N, splits * splits, h' * w', C]`` -> ``[N, H, W, C]``."""
    n, _, _, c = x.shape
    x = x.reshape(n, splits, splits, h // splits, w // splits, c).transpose(2, 3)
    return x.reshape(n, h, w, c)


def shifted_window_mask(h: int, w: int, splits: int, device: torch.device,
                        dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Additive attention mask ``[splits^2, L, L]`` (``L`` tokens per window) for shifted windows.

    After rolling the map by half a window, a window may hold pixels from up to four regions that
    were not adjacent before the roll; tokens only attend within their region (-100 elsewhere).
    """
    window_h, window_w = h // splits, w // splits
    shift_h, shift_w = window_h // 2, window_w // 2

    def region(length: int, window: int, shift: int) -> torch.Tensor:
        index = torch.arange(length, device=device)
        return (index >= length - window).long() + (index >= length - shift).long()

    regions = region(h, window_h, shift_h)[:, None] * 3 + region(w, window_w, shift_w)[None, :]
    regions = _to_windows(regions[None], splits)[0]  # [splits^2, L]
    different = regions[:, :, None] != regions[:, None, :]
    return torch.zeros(different.shape, device=device, dtype=dtype).masked_fill(different, -100.0)


def window_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, h: int, w: int,
                     splits: int, shift_mask: torch.Tensor | None) -> torch.Tensor:
    """Single-head attention inside ``splits x splits`` windows, over one or more key views.

    Args:
        query: ``[N, H*W, C]``.
        key, value: ``[N, M, H*W, C]``: M views whose tokens in the same window are attended.
        h, w: feature map size.
        splits: windows per side; 1 means global attention.
        shift_mask: ``[splits^2, L, L]`` from :func:`shifted_window_mask` for shifted blocks,
            ``None`` for unshifted ones.

    Returns:
        ``[N, H*W, C]``.

    Keys are laid out position-major, view-minor inside a window and the shift mask is tiled M
    times along that key axis, as in the reference implementation. For M > 1 (more than two input
    views) this tiling does not line the mask up with the keys' regions; it is kept so that the
    official checkpoints give identical results for any number of views.
    """
    n, _, c = query.shape
    m = key.shape[1]
    query = query.reshape(n, h, w, c)
    key = key.reshape(n, m, h, w, c).permute(0, 2, 3, 1, 4)  # [N, H, W, M, C]
    value = value.reshape(n, m, h, w, c).permute(0, 2, 3, 1, 4)
    shift = (h // splits // 2, w // splits // 2) if shift_mask is not None else (0, 0)
    if shift_mask is not None:
        query = torch.roll(query, (-shift[0], -shift[1]), dims=(1, 2))
        key = torch.roll(key, (-shift[0], -shift[1]), dims=(1, 2))
        value = torch.roll(value, (-shift[0], -shift[1]), dims=(1, 2))

    query = _to_windows(query, splits)  # [N, S, L, C]
    key = _to_windows(key, splits).flatten(2, 3)  # [N, S, L*M, C]
    value = _to_windows(value, splits).flatten(2, 3)
    # A 4-D mask lets torch use its fused CPU attention kernel (a 3-D one falls back to the
    # reference implementation that materialises the attention matrix).
    mask = shift_mask.repeat(1, 1, m)[None] if shift_mask is not None else None
    out = F.scaled_dot_product_attention(query, key, value, attn_mask=mask)

    out = _from_windows(out, splits, h, w)
    if shift_mask is not None:
        out = torch.roll(out, shift, dims=(1, 2))
    return out.reshape(n, h * w, c)


class AttentionLayer(nn.Module):
    """``source + norm(merge(attention(source -> target)))``, optionally with a feed-forward network
    on ``[source, message]`` before the residual."""

    def __init__(self, channels: int, ffn_expansion: int | None) -> None:
        super().__init__()
        self.q_proj = nn.Linear(channels, channels, bias=False)
        self.k_proj = nn.Linear(channels, channels, bias=False)
        self.v_proj = nn.Linear(channels, channels, bias=False)
        self.merge = nn.Linear(channels, channels, bias=False)
        self.norm1 = nn.LayerNorm(channels)
        if ffn_expansion is None:
            self.mlp = None
        else:
            hidden = 2 * channels * ffn_expansion
            self.mlp = nn.Sequential(nn.Linear(2 * channels, hidden, bias=False), nn.GELU(),
                                     nn.Linear(hidden, channels, bias=False))
            self.norm2 = nn.LayerNorm(channels)

    def forward(self, source: torch.Tensor, target: torch.Tensor, h: int, w: int, splits: int,
                shift_mask: torch.Tensor | None) -> torch.Tensor:
        """``source [N, H*W, C]``, ``target [N, M, H*W, C]`` -> ``[N, H*W, C]``."""
        message = window_attention(self.q_proj(source), self.k_proj(target), self.v_proj(target),
                                   h, w, splits, shift_mask)
        message = self.norm1(self.merge(message))
        if self.mlp is not None:
            message = self.norm2(self.mlp(torch.cat((source, message), dim=-1)))
        return source + message


class TransformerBlock(nn.Module):
    """Self-attention, then cross-attention to the other views with a feed-forward network."""

    def __init__(self, channels: int, ffn_expansion: int, shifted: bool) -> None:
        super().__init__()
        self.shifted = shifted
        self.self_attn = AttentionLayer(channels, ffn_expansion=None)
        self.cross_attn_ffn = AttentionLayer(channels, ffn_expansion=ffn_expansion)

    def forward(self, tokens: torch.Tensor, h: int, w: int, splits: int,
                shift_mask: torch.Tensor | None) -> torch.Tensor:
        """``tokens [B, V, H*W, C]`` -> ``[B, V, H*W, C]``."""
        b, v = tokens.shape[:2]
        mask = shift_mask if self.shifted else None
        # For each view, the other views in their original order are the cross-attention keys.
        others = torch.stack([torch.cat((tokens[:, :i], tokens[:, i + 1:]), dim=1)
                              for i in range(v)], dim=1)  # [B, V, V-1, L, C]
        x = tokens.flatten(0, 1)
        x = self.self_attn(x, x[:, None], h, w, splits, mask)
        x = self.cross_attn_ffn(x, others.flatten(0, 1), h, w, splits, mask)
        return x.unflatten(0, (b, v))


class MultiViewTransformer(nn.Module):
    """Stack of :class:`TransformerBlock`; odd blocks use shifted windows.

    Args:
        num_layers: number of blocks.
        channels: feature width ``C``.
        ffn_expansion: feed-forward width is ``2 * C * ffn_expansion``.
    """

    def __init__(self, num_layers: int = 6, channels: int = 128, ffn_expansion: int = 4) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            TransformerBlock(channels, ffn_expansion, shifted=i % 2 == 1) for i in range(num_layers))

    def forward(self, features: torch.Tensor, splits: int) -> torch.Tensor:
        """``features [B, V, C, H, W]`` (position-encoded) -> ``[B, V, C, H, W]``."""
        b, v, c, h, w = features.shape
        if v < 2:
            raise ValueError(f'the multi-view transformer needs at least 2 views, got {v}')
        if h % splits or w % splits:
            raise ValueError(f'feature map {h}x{w} is not divisible into {splits}x{splits} windows')
        shift_mask = (shifted_window_mask(h, w, splits, features.device, features.dtype)
                      if splits > 1 else None)
        tokens = features.flatten(3).transpose(-1, -2)  # [B, V, H*W, C]
        for layer in self.layers:
            tokens = layer(tokens, h, w, splits, shift_mask)
        return tokens.transpose(-1, -2).reshape(b, v, c, h, w)
