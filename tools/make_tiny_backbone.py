"""Build a tiny randomly initialised video backbone and save it in its real folder layout.

    python tools/make_tiny_backbone.py --arch cogvideox --out checkpoints/tiny_cogvideox [--height 32 --width 32 --frames 9]
    python tools/make_tiny_backbone.py --arch cogvideox --vae pixel-unshuffle --out checkpoints/tiny_cogvideox_px
    python tools/make_tiny_backbone.py --arch svd --out checkpoints/tiny_svd

The folder loads through the ordinary ``from_pretrained`` path (``dict(type='CogVideoX',
pretrained=OUT, prompt_embedding=OUT/prompt_embeds.safetensors)`` or ``dict(type='SVD',
pretrained=OUT)``); it is for CPU runs and tests, its weights are random.  ``--vae
pixel-unshuffle`` gives CogVideoX the deterministic pixel-unshuffle VAE (exact inverse, latents that
carry every frame) instead of a random VAE whose latents hardly vary across frames.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.backbones.tiny import save_tiny_cogvideox, save_tiny_svd  # noqa: E402
from videoscene.engine.cli import run_tool  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--arch', required=True, choices=['cogvideox', 'svd'])
    parser.add_argument('--out', required=True, help='output model folder')
    parser.add_argument('--height', type=int, default=32, help='frame height (CogVideoX sample size)')
    parser.add_argument('--width', type=int, default=32, help='frame width (CogVideoX sample size)')
    parser.add_argument('--frames', type=int, default=9, help='frames (CogVideoX sample size)')
    parser.add_argument('--layers', type=int, default=2, help='CogVideoX transformer blocks')
    parser.add_argument('--heads', type=int, default=2, help='CogVideoX attention heads')
    parser.add_argument('--head-dim', type=int, default=16, help='CogVideoX attention head size')
    parser.add_argument('--vae', choices=['cogvideox', 'pixel-unshuffle'], default='cogvideox',
                        help="CogVideoX's VAE: a random tiny one, or the pixel-unshuffle VAE")
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.arch == 'cogvideox':
        out = save_tiny_cogvideox(args.out, height=args.height, width=args.width,
                                  num_frames=args.frames, num_layers=args.layers,
                                  heads=args.heads, head_dim=args.head_dim,
                                  vae=args.vae.replace('-', '_'), seed=args.seed)
    else:
        out = save_tiny_svd(args.out, image_size=args.height, seed=args.seed)
    print(f'wrote a tiny random {args.arch} to {out}')


if __name__ == '__main__':
    run_tool(main)
