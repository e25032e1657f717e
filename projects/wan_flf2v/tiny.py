"""A tiny randomly initialised Wan FLF2V folder in the diffusers layout, for tests and CPU runs."""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file


def save_tiny_wan_flf2v(out: str | Path, shift: float = 3.0, text_dim: int = 16,
                        text_length: int = 6, seed: int = 0) -> Path:
    """``out/{transformer,vae,image_encoder,image_processor,scheduler}/`` with the classes of the
    real model (2 blocks of 2 x 12 channels, a 4-channel VAE with 4x temporal and 8x spatial
    compression, a 2-layer CLIP ViT on 32 x 32 crops in 16 x 16 patches) plus random
    ``prompt_embeds.safetensors`` and ``negative_prompt_embeds.safetensors`` ``[1, L, text_dim]``.
    Frame sizes must be multiples of 16; frame counts ``4k + 1``."""
    from diffusers import AutoencoderKLWan, FlowMatchEulerDiscreteScheduler, WanTransformer3DModel
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    out = Path(out)
    torch.manual_seed(seed)
    clip = CLIPVisionModel(CLIPVisionConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=2,
                                            num_attention_heads=2, image_size=32, patch_size=16,
                                            projection_dim=16))
    tokens = (32 // 16) ** 2 + 1
    vae = AutoencoderKLWan(base_dim=8, z_dim=4, dim_mult=[1, 2, 2, 2], num_res_blocks=1,
                           temperal_downsample=[False, True, True],
                           latents_mean=[0.1, -0.2, 0.05, 0.0], latents_std=[0.9, 1.2, 1.1, 0.8])
    transformer = WanTransformer3DModel(
        patch_size=(1, 2, 2), num_attention_heads=2, attention_head_dim=12, in_channels=4 + 2 * 4,
        out_channels=4, text_dim=text_dim, freq_dim=16, ffn_dim=32, num_layers=2, image_dim=16,
        added_kv_proj_dim=24, rope_max_seq_len=32, pos_embed_seq_len=2 * tokens)
    with torch.no_grad():   # diffusers zero-initialises it; random values make the test see it
        transformer.condition_embedder.image_embedder.pos_embed.normal_()
    transformer.save_pretrained(out / 'transformer')
    vae.save_pretrained(out / 'vae')
    clip.save_pretrained(out / 'image_encoder')
    CLIPImageProcessor(size={'shortest_edge': 32}, crop_size={'height': 32, 'width': 32}
                       ).save_pretrained(out / 'image_processor')
    FlowMatchEulerDiscreteScheduler(shift=shift).save_pretrained(out / 'scheduler')
    for name in ('prompt_embeds', 'negative_prompt_embeds'):
        save_file({'prompt_embeds': torch.randn(1, text_length, text_dim)},
                  out / f'{name}.safetensors')
    return out


if __name__ == '__main__':
    import argparse

    parser = argparse.ArgumentParser(description='Write a tiny random Wan FLF2V model folder.')
    parser.add_argument('--out', required=True, help='the folder to write')
    parser.add_argument('--shift', type=float, default=3.0, help='the flow scheduler shift')
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args()
    print(save_tiny_wan_flf2v(args.out, shift=args.shift, seed=args.seed))
