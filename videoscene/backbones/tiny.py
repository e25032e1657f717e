"""Tiny randomly initialised backbones saved in the real folder layouts.

For tests and CPU runs: each function builds the same diffusers / transformers classes the real
models use, with a few channels and layers, and writes them with ``save_pretrained`` so the
backbones load them through their ordinary ``from_pretrained`` path.  The weights are random
(CogVideoX can take the deterministic pixel-unshuffle VAE instead of a random one).
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

from .pixel_unshuffle_vae import PixelUnshuffleVAE


def save_tiny_cogvideox(out: str | Path, height: int = 32, width: int = 32, num_frames: int = 9,
                        num_layers: int = 2, heads: int = 2, head_dim: int = 16,
                        text_dim: int = 32, text_length: int = 8, learned_positions: bool = False,
                        vae: str = 'cogvideox', seed: int = 0) -> Path:
    """A CogVideoX I2V folder (``transformer/``, ``vae/``, ``scheduler/``) plus random
    ``prompt_embeds.safetensors`` and ``negative_prompt_embeds.safetensors``
    ``[1, text_length, text_dim]``.

    ``vae='cogvideox'``: a random CogVideoX VAE with 4x temporal compression and 3 blocks (4x
    spatial), 4 latent channels (its latents hardly vary across frames).  ``vae='pixel_unshuffle'``:
    the deterministic :class:`~.pixel_unshuffle_vae.PixelUnshuffleVAE` (2x2 pixel blocks, 12
    latent channels, every frame a latent frame), whose latents carry the frames exactly.
    ``height``, ``width``, ``num_frames`` set the transformer's sample size (which matters only with
    ``learned_positions``).
    """
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel

    out = Path(out)
    torch.manual_seed(seed)
    if vae == 'cogvideox':
        autoencoder = AutoencoderKLCogVideoX(
            down_block_types=('CogVideoXDownBlock3D',) * 3,
            up_block_types=('CogVideoXUpBlock3D',) * 3, block_out_channels=(8, 8, 16),
            latent_channels=4, layers_per_block=1, norm_num_groups=4, temporal_compression_ratio=4,
            sample_height=height, sample_width=width, scaling_factor=0.7)
        spatial, channels, temporal = 4, 4, 4
    elif vae == 'pixel_unshuffle':
        autoencoder = PixelUnshuffleVAE(spatial_compression_ratio=2)
        spatial, channels, temporal = 2, autoencoder.latent_channels, 1
    else:
        raise ValueError(f"vae must be 'cogvideox' or 'pixel_unshuffle', got {vae!r}")
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=heads, attention_head_dim=head_dim, in_channels=2 * channels,
        out_channels=channels,
        time_embed_dim=32, text_embed_dim=text_dim, num_layers=num_layers,
        sample_width=width // spatial, sample_height=height // spatial, sample_frames=num_frames,
        patch_size=2, temporal_compression_ratio=temporal, max_text_seq_length=text_length,
        use_rotary_positional_embeddings=True, use_learned_positional_embeddings=learned_positions)
    scheduler = CogVideoXDDIMScheduler(prediction_type='v_prediction', rescale_betas_zero_snr=True,
                                       snr_shift_scale=1.0, timestep_spacing='trailing',
                                       clip_sample=False)
    autoencoder.save_pretrained(out / 'vae')
    transformer.save_pretrained(out / 'transformer')
    scheduler.save_pretrained(out / 'scheduler')
    for name in ('prompt_embeds', 'negative_prompt_embeds'):
        save_file({'prompt_embeds': torch.randn(1, text_length, text_dim)},
                  out / f'{name}.safetensors')
    return out


def save_tiny_svd(out: str | Path, image_size: int = 32, seed: int = 0) -> Path:
    """An SVD folder (``unet/``, ``vae/``, ``image_encoder/``, ``feature_extractor/``,
    ``scheduler/``) with a 2x spatial VAE and a CLIP vision encoder taking ``image_size`` images."""
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    out = Path(out)
    torch.manual_seed(seed)
    unet = UNetSpatioTemporalConditionModel(
        sample_size=16, in_channels=8, out_channels=4,
        down_block_types=('CrossAttnDownBlockSpatioTemporal', 'DownBlockSpatioTemporal'),
        up_block_types=('UpBlockSpatioTemporal', 'CrossAttnUpBlockSpatioTemporal'),
        block_out_channels=(32, 64), addition_time_embed_dim=8,
        projection_class_embeddings_input_dim=24, layers_per_block=1, cross_attention_dim=32,
        num_attention_heads=(2, 4), num_frames=8)
    vae = AutoencoderKLTemporalDecoder(down_block_types=('DownEncoderBlock2D',) * 2,
                                       block_out_channels=(32, 64), layers_per_block=1,
                                       latent_channels=4, sample_size=image_size)
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, image_size=image_size, patch_size=8))
    processor = CLIPImageProcessor(size={'shortest_edge': image_size},
                                   crop_size={'height': image_size, 'width': image_size})
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule='scaled_linear', prediction_type='v_prediction',
        interpolation_type='linear', use_karras_sigmas=True, sigma_min=0.002, sigma_max=700.0,
        timestep_type='continuous', timestep_spacing='leading', steps_offset=1)
    unet.save_pretrained(out / 'unet')
    vae.save_pretrained(out / 'vae')
    encoder.save_pretrained(out / 'image_encoder')
    processor.save_pretrained(out / 'feature_extractor')
    scheduler.save_pretrained(out / 'scheduler')
    return out
