"""Compute Wan's UMT5 prompt embedding once, so ``WanFLF2V`` runs without its 5B text encoder.

    python -m projects.wan_flf2v.encode_prompt --model Wan2.1-FLF2V-14B-720P-diffusers \
        --prompt "a static indoor scene" --out prompt_embeds.safetensors

Reads ``text_encoder/`` (transformers' ``UMT5EncoderModel``) and ``tokenizer/`` of a local
diffusers Wan folder (or ``--text-encoder`` / ``--tokenizer`` folders) and computes what
``WanImageToVideoPipeline.encode_prompt`` does: the prompt cleaned (``ftfy``, HTML entities,
whitespace), tokenised to ``--max-length`` tokens (512, the pipeline's default) with the
attention mask, encoded, and every position after the prompt's tokens set to zero.  Writes
``[1, max_length, d_model]`` float32 under ``prompt_embeds`` (the prompt in the file's metadata);
``--prompt ""`` gives the unconditional embedding for classifier-free guidance.
"""
from __future__ import annotations

import argparse
import html
import re
from pathlib import Path

import torch

from videoscene.backbones.prompt_encoding import (add_prompt_arguments, encode_text,
                                                  parse_prompt_arguments, write_prompt_embedding)
from videoscene.engine.cli import run_tool

__all__ = ['clean_prompt', 'encode_prompt']


def clean_prompt(prompt: str) -> str:
    """The pipeline's ``prompt_clean``: ``ftfy.fix_text``, HTML unescaped twice, whitespace
    collapsed."""
    import ftfy
    text = html.unescape(html.unescape(ftfy.fix_text(prompt))).strip()
    return re.sub(r'\s+', ' ', text).strip()


def encode_prompt(prompt: str, text_encoder: str | Path, tokenizer: str | Path,
                  max_length: int = 512, device: str = 'cpu',
                  dtype: str | torch.dtype = 'float32') -> torch.Tensor:
    """UMT5 embedding ``[1, max_length, d_model]`` (float32) of ``prompt``, zero after its tokens."""
    from transformers import UMT5EncoderModel
    hidden, length = encode_text(clean_prompt(prompt), text_encoder, tokenizer, UMT5EncoderModel,
                                 'UMT5', max_length, device, dtype, attention_mask=True)
    hidden[:, length:] = 0
    return hidden


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--model', help='a local diffusers Wan folder (text_encoder/, tokenizer/)')
    parser.add_argument('--text-encoder', help='UMT5 encoder folder (default: MODEL/text_encoder)')
    parser.add_argument('--tokenizer', help='tokenizer folder (default: MODEL/tokenizer)')
    add_prompt_arguments(parser, 'UMT5', 512,
                         "tokens (the transformer's text length; 512 for Wan 2.1)")
    args = parse_prompt_arguments(parser, argv)
    if args.model is None and (args.text_encoder is None or args.tokenizer is None):
        parser.error('give --model, or both --text-encoder and --tokenizer')
    text_encoder = args.text_encoder or Path(args.model) / 'text_encoder'
    tokenizer = args.tokenizer or Path(args.model) / 'tokenizer'
    embedding = encode_prompt(args.prompt, text_encoder, tokenizer, args.max_length, args.device,
                              args.dtype)
    write_prompt_embedding(args.out, embedding, args.prompt)


if __name__ == '__main__':
    run_tool(main)
