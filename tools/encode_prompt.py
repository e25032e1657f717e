"""Compute a prompt embedding once, so CogVideoX runs without T5.

    python tools/encode_prompt.py --text-encoder CogVideoX-5b-I2V/text_encoder \
        --tokenizer CogVideoX-5b-I2V/tokenizer --prompt "a static indoor scene" --out prompt_embeds.safetensors

Tokenises the prompt as CogVideoX's pipelines do (padded and truncated to ``--max-length`` tokens,
special tokens added), runs transformers' ``T5EncoderModel`` from the local folder and writes the
last hidden state ``[1, max_length, d_model]`` under the key ``prompt_embeds`` (the prompt is
kept in the file's metadata).  Give the file to ``CogVideoX(prompt_embedding=...)``; the embedding
of the empty prompt (``--prompt ""``) is the unconditional branch for classifier-free guidance,
``CogVideoX(negative_prompt_embedding=...)``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from pathlib import Path

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.backbones.prompt_encoding import (add_prompt_arguments, encode_text,  # noqa: E402
                                                  parse_prompt_arguments, write_prompt_embedding)
from videoscene.engine.cli import run_tool  # noqa: E402


def encode_prompt(prompt: str, text_encoder: str | Path, tokenizer: str | Path,
                  max_length: int = 226, device: str = 'cpu',
                  dtype: str | torch.dtype = 'float32') -> torch.Tensor:
    """The T5 embedding ``[1, max_length, d_model]`` (float32) of ``prompt``."""
    from transformers import T5EncoderModel
    return encode_text(prompt, text_encoder, tokenizer, T5EncoderModel, 'T5', max_length, device,
                       dtype)[0]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--text-encoder', required=True, help='local T5 encoder folder')
    parser.add_argument('--tokenizer', required=True, help='local T5 tokenizer folder')
    add_prompt_arguments(parser, 'T5', 226,
                         "tokens (the transformer's max_text_seq_length; 226 for CogVideoX)")
    args = parse_prompt_arguments(parser, argv)
    embedding = encode_prompt(args.prompt, args.text_encoder, args.tokenizer, args.max_length,
                              args.device, args.dtype)
    write_prompt_embedding(args.out, embedding, args.prompt)


if __name__ == '__main__':
    run_tool(main)
