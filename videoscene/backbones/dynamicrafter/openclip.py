"""The OpenCLIP (ViT-H-14) encoders DynamiCrafter conditions on, in the checkpoint's layout.

* :class:`OpenCLIPTextEncoder` (``cond_stage_model``): token ids ``[B, 77]`` -> the hidden states
  of the *penultimate* text layer after ``ln_final``, ``[B, 77, 1024]``.
* :class:`OpenCLIPImageEncoder` (``embedder``): images ``[B, 3, H, W]`` in ``[-1, 1]`` -> all
  ``257`` tokens of the last vision layer (class token first, before ``ln_post``),
  ``[B, 257, 1280]``, after the official preprocessing (:func:`clip_preprocess`).

Both wrap an OpenCLIP ``CLIP`` module named ``model`` whose unused half was deleted in the official
code (the vision tower of the text encoder, the text transformer of the image encoder); what
remained, used or not (``text_projection``, ``logit_scale``, ``visual.proj``, the image encoder's
token embedding ...), is in the checkpoint, so it is kept here as frozen parameters. Configs use
OpenCLIP's model-config names (``embed_dim``, ``vision_cfg``, ``text_cfg``).

Text is given as token ids (OpenCLIP's BPE tokenizer is not a dependency):
:func:`empty_prompt_tokens` builds the ids of the empty prompt; for other prompts pass ids from a
CLIP tokenizer padded with 0 to 77 (OpenCLIP's ``tokenize``).
"""
from __future__ import annotations

import math
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ['OpenCLIPTextEncoder', 'OpenCLIPImageEncoder', 'clip_preprocess', 'resize_antialiased',
           'empty_prompt_tokens', 'VIT_H_14']

# OpenCLIP's ViT-H-14 model config (the one DynamiCrafter's checkpoint holds).
VIT_H_14 = dict(embed_dim=1024,
                vision_cfg=dict(image_size=224, layers=32, width=1280, head_width=80, patch_size=14),
                text_cfg=dict(context_length=77, vocab_size=49408, width=1024, heads=16, layers=24))

START_TOKEN, END_TOKEN = 49406, 49407   # CLIP BPE vocabulary: <|startoftext|>, <|endoftext|>
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def empty_prompt_tokens(batch_size: int, context_length: int = 77) -> torch.Tensor:
    """Token ids ``[B, context_length]`` of the empty prompt: start, end, zero padding."""
    tokens = torch.zeros(batch_size, context_length, dtype=torch.long)
    tokens[:, 0], tokens[:, 1] = START_TOKEN, END_TOKEN
    return tokens


def _gaussian_kernel(size: int, sigma: float) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float32) - size // 2
    kernel = torch.exp(-x ** 2 / (2 * sigma ** 2))
    return kernel / kernel.sum()


def resize_antialiased(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bicubic resize (``align_corners=True``) of ``images [N, C, H, W]``, blurred first when shrinking.

    The blur is kornia's ``resize(antialias=True)``: per axis with shrink factor ``f > 1``
    (when any axis shrinks) a normalised Gaussian with ``sigma = max((f - 1) / 2, 0.001)`` and
    ``int(max(4 sigma, 3))`` taps (made odd), reflect padding, along the width then the height.
    """
    factors = (images.shape[-2] / size[0], images.shape[-1] / size[1])
    if max(factors) > 1:
        n, c, h, w = images.shape
        flat = images.reshape(n * c, 1, h, w)
        for axis, factor in ((1, factors[1]), (0, factors[0])):   # width, then height
            sigma = max((factor - 1.0) / 2.0, 0.001)
            taps = int(max(4.0 * sigma, 3))
            taps += 1 - taps % 2
            kernel = _gaussian_kernel(taps, sigma).to(images)
            pad = taps // 2
            if axis == 1:
                flat = F.conv2d(F.pad(flat, (pad, pad, 0, 0), mode='reflect'),
                                kernel.reshape(1, 1, 1, taps))
            else:
                flat = F.conv2d(F.pad(flat, (0, 0, pad, pad), mode='reflect'),
                                kernel.reshape(1, 1, taps, 1))
        images = flat.reshape(n, c, h, w)
    return F.interpolate(images, size=size, mode='bicubic', align_corners=True)


def clip_preprocess(images: torch.Tensor, image_size: int = 224) -> torch.Tensor:
    """``images [N, 3, H, W]`` in ``[-1, 1]`` -> the CLIP input ``[N, 3, S, S]`` (resized to the
    square ``S = image_size`` whatever the aspect ratio, mapped to [0, 1], CLIP-normalised)."""
    x = (resize_antialiased(images, (image_size, image_size)) + 1.0) / 2.0
    mean = torch.tensor(CLIP_MEAN, dtype=x.dtype, device=x.device)[:, None, None]
    std = torch.tensor(CLIP_STD, dtype=x.dtype, device=x.device)[:, None, None]
    return (x - mean) / std


class SelfAttention(nn.Module):
    """``nn.MultiheadAttention``'s parameters (``in_proj_*``, ``out_proj``), self-attention only."""

    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.in_proj_weight = nn.Parameter(torch.empty(3 * width, width))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * width))
        self.out_proj = nn.Linear(width, width)
        nn.init.xavier_uniform_(self.in_proj_weight)

    def forward(self, x: torch.Tensor, causal: bool) -> torch.Tensor:
        """``x [B, L, width]`` -> ``[B, L, width]``."""
        q, k, v = (z.unflatten(-1, (self.heads, -1)).transpose(1, 2) for z in
                   F.linear(x, self.in_proj_weight, self.in_proj_bias).chunk(3, dim=-1))
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.out_proj(out.transpose(1, 2).flatten(2))


class ResidualAttentionBlock(nn.Module):
    def __init__(self, width: int, heads: int, mlp_ratio: float = 4.0) -> None:
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.ln_1 = nn.LayerNorm(width)
        self.attn = SelfAttention(width, heads)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(c_fc=nn.Linear(width, hidden), gelu=nn.GELU(),
                                             c_proj=nn.Linear(hidden, width)))

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), causal)
        return x + self.mlp(self.ln_2(x))


class Transformer(nn.Module):
    def __init__(self, width: int, layers: int, heads: int) -> None:
        super().__init__()
        self.resblocks = nn.ModuleList(ResidualAttentionBlock(width, heads) for _ in range(layers))


class TextTower(nn.Module):
    """The text half of OpenCLIP's ``CLIP`` (``transformer`` optional: the image encoder lacks it)."""

    def __init__(self, embed_dim: int, text_cfg: dict, with_transformer: bool) -> None:
        super().__init__()
        width, length = text_cfg['width'], text_cfg['context_length']
        self.token_embedding = nn.Embedding(text_cfg['vocab_size'], width)
        self.positional_embedding = nn.Parameter(torch.empty(length, width).normal_(std=0.01))
        if with_transformer:
            self.transformer = Transformer(width, text_cfg['layers'], text_cfg['heads'])
        self.ln_final = nn.LayerNorm(width)
        self.text_projection = nn.Parameter(torch.empty(width, embed_dim).normal_(std=width ** -0.5))
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))


class VisionTower(nn.Module):
    """OpenCLIP's ``VisionTransformer`` (``visual``)."""

    def __init__(self, embed_dim: int, vision_cfg: dict) -> None:
        super().__init__()
        width, patch = vision_cfg['width'], vision_cfg['patch_size']
        grid = vision_cfg['image_size'] // patch
        self.image_size = vision_cfg['image_size']
        self.conv1 = nn.Conv2d(3, width, patch, stride=patch, bias=False)
        scale = width ** -0.5
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(scale * torch.randn(grid * grid + 1, width))
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = Transformer(width, vision_cfg['layers'],
                                       width // vision_cfg['head_width'])
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, embed_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Preprocessed ``x [N, 3, S, S]`` -> last-layer tokens ``[N, 1 + grid^2, width]``."""
        patches = self.conv1(x).flatten(2).transpose(1, 2)
        cls = self.class_embedding.to(patches.dtype).expand(patches.shape[0], 1, -1)
        tokens = self.ln_pre(torch.cat([cls, patches], dim=1) + self.positional_embedding)
        for block in self.transformer.resblocks:
            tokens = block(tokens)
        return tokens


class OpenCLIPTextEncoder(nn.Module):
    """DynamiCrafter's ``FrozenOpenCLIPEmbedder``: ``tokens [B, 77]`` -> ``[B, 77, width]``.

    Args:
        config: OpenCLIP model config (default ViT-H-14).
        layer: ``'penultimate'`` (DynamiCrafter: the last block is skipped) or ``'last'``.
    """

    def __init__(self, config: dict | None = None, layer: str = 'penultimate') -> None:
        super().__init__()
        if layer not in ('penultimate', 'last'):
            raise ValueError(f"layer must be 'penultimate' or 'last', got '{layer}'")
        config = config or VIT_H_14
        self.skip_last = layer == 'penultimate'
        self.context_length = config['text_cfg']['context_length']
        self.model = TextTower(config['embed_dim'], config['text_cfg'], with_transformer=True)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.ndim != 2 or tokens.shape[1] != self.context_length:
            raise ValueError(f'tokens must be [B, {self.context_length}] ids, '
                             f'got shape {tuple(tokens.shape)}')
        tower = self.model
        x = tower.token_embedding(tokens) + tower.positional_embedding
        blocks = tower.transformer.resblocks
        for block in blocks[:len(blocks) - 1] if self.skip_last else blocks:
            x = block(x, causal=True)
        return tower.ln_final(x)


class ImageModel(TextTower):
    """What the image encoder's ``model`` holds: the vision tower and the text tower's leftovers."""

    def __init__(self, config: dict) -> None:
        super().__init__(config['embed_dim'], config['text_cfg'], with_transformer=False)
        self.visual = VisionTower(config['embed_dim'], config['vision_cfg'])


class OpenCLIPImageEncoder(nn.Module):
    """DynamiCrafter's ``FrozenOpenCLIPImageEmbedderV2``: images ``[B, 3, H, W]`` in ``[-1, 1]``
    (any size) -> all last-layer tokens ``[B, 257, width]``."""

    def __init__(self, config: dict | None = None) -> None:
        super().__init__()
        self.model = ImageModel(config or VIT_H_14)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f'images must be [B, 3, H, W] in [-1, 1], got {tuple(images.shape)}')
        visual = self.model.visual
        return visual(clip_preprocess(images, visual.image_size).to(visual.conv1.weight.dtype))
