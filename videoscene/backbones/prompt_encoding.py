"""Text-encoder prompt embeddings, computed once offline so backbones run without their text
encoder: the part shared by ``tools/encode_prompt.py`` (CogVideoX's T5) and plugins' tools (Wan's
UMT5 in ``projects/wan_flf2v``).

The embedding file is a ``.safetensors`` with ``prompt_embeds [1, L, D]`` (float32) and the prompt
in its metadata, as :func:`videoscene.backbones.loading.load_prompt_embedding` reads it.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch
from safetensors.torch import save_file

from .base import resolve_dtype
from .loading import require_folder

__all__ = ['add_prompt_arguments', 'encode_text', 'parse_prompt_arguments',
           'write_prompt_embedding']


def encode_text(prompt: str, text_encoder: str | Path, tokenizer: str | Path, encoder_class,
                name: str, max_length: int, device: str = 'cpu',
                dtype: str | torch.dtype = 'float32',
                attention_mask: bool = False) -> tuple[torch.Tensor, int]:
    """``(hidden, tokens)``: the last hidden state ``[1, max_length, D]`` (float32, CPU) of
    ``encoder_class`` (a transformers encoder, e.g. ``T5EncoderModel``) from the local folder
    ``text_encoder`` on ``prompt`` tokenised by ``tokenizer`` as the pipelines do (padded and
    truncated to ``max_length``, special tokens added), and the prompt's token count.

    ``attention_mask``: give the encoder the padding mask (Wan) or not (CogVideoX).  ``name`` names
    the model in errors about missing folders.
    """
    from transformers import AutoTokenizer

    require_folder(text_encoder, '.', ('config.json',), f'{name} text encoder')
    require_folder(tokenizer, '.', (), f'{name} tokenizer', weights=False)
    tokens = AutoTokenizer.from_pretrained(tokenizer)(
        prompt, padding='max_length', max_length=max_length, truncation=True,
        add_special_tokens=True, return_attention_mask=True, return_tensors='pt')
    encoder = encoder_class.from_pretrained(text_encoder, dtype=resolve_dtype(dtype))
    encoder = encoder.to(device).eval()
    inputs = [tokens.input_ids.to(device)]
    if attention_mask:
        inputs.append(tokens.attention_mask.to(device))
    with torch.no_grad():
        hidden = encoder(*inputs).last_hidden_state
    return hidden.float().cpu(), int(tokens.attention_mask.sum())


def add_prompt_arguments(parser: argparse.ArgumentParser, name: str, max_length: int,
                         length_help: str) -> None:
    """``--prompt --out --max-length --device --dtype`` of a prompt-embedding tool."""
    parser.add_argument('--prompt', required=True)
    parser.add_argument('--out', required=True, help='output .safetensors file')
    parser.add_argument('--max-length', type=int, default=max_length, help=length_help)
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', help=f'dtype {name} runs in')


def parse_prompt_arguments(parser: argparse.ArgumentParser,
                           argv: list[str] | None) -> argparse.Namespace:
    args = parser.parse_args(argv)
    if not args.out.endswith('.safetensors'):
        parser.error(f'--out must end with .safetensors, got {args.out}')
    return args


def write_prompt_embedding(path: str | Path, embedding: torch.Tensor, prompt: str) -> None:
    """Save ``embedding [1, L, D]`` under ``prompt_embeds`` with the prompt as metadata."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file({'prompt_embeds': embedding.contiguous()}, str(path), metadata={'prompt': prompt})
    print(f'wrote prompt embedding {tuple(embedding.shape)} to {path}')
