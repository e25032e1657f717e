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
from safetensors.torch import save_file

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.backbones.base import resolve_dtype  # noqa: E402
from videoscene.backbones.loading import require_folder  # noqa: E402
from videoscene.engine.cli import run_tool  # noqa: E402


def encode_prompt(prompt: str, text_encoder: str | Path, tokenizer: str | Path,
                  max_length: int = 226, device: str = 'cpu',
                  dtype: str | torch.dtype = 'float32') -> torch.Tensor:
    """The T5 embedding ``[1, max_length, d_model]`` (float32) of ``prompt``."""
    from transformers import AutoTokenizer, T5EncoderModel

    require_folder(text_encoder, '.', ('config.json',), 'T5 text encoder')
    require_folder(tokenizer, '.', (), 'T5 tokenizer', weights=False)
    tokens = AutoTokenizer.from_pretrained(tokenizer)(
        prompt, padding='max_length', max_length=max_length, truncation=True,
        add_special_tokens=True, return_tensors='pt')
    encoder = T5EncoderModel.from_pretrained(text_encoder, dtype=resolve_dtype(dtype)).to(device).eval()
    with torch.no_grad():
        hidden = encoder(tokens.input_ids.to(device)).last_hidden_state
    return hidden.float().cpu()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--text-encoder', required=True, help='local T5 encoder folder')
    parser.add_argument('--tokenizer', required=True, help='local T5 tokenizer folder')
    parser.add_argument('--prompt', required=True)
    parser.add_argument('--out', required=True, help='output .safetensors file')
    parser.add_argument('--max-length', type=int, default=226,
                        help="tokens (the transformer's max_text_seq_length; 226 for CogVideoX)")
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--dtype', default='float32', help='dtype T5 runs in')
    args = parser.parse_args(argv)
    if not args.out.endswith('.safetensors'):
        parser.error(f'--out must end with .safetensors, got {args.out}')
    embedding = encode_prompt(args.prompt, args.text_encoder, args.tokenizer, args.max_length,
                              args.device, args.dtype)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    save_file({'prompt_embeds': embedding.contiguous()}, args.out, metadata={'prompt': args.prompt})
    print(f'wrote prompt embedding {tuple(embedding.shape)} to {args.out}')


if __name__ == '__main__':
    run_tool(main)
