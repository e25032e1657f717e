"""CogVideoX image-to-video, conditioned on the first frame or on the first and last frames.

The model folder has diffusers' layout (``transformer/``, ``vae/``, ``scheduler/``), as the
CogVideoX-5B-I2V release and the CogVideoX-Interpolation fine-tune used by VideoScene ship it.
Both use the same channel-concatenation conditioning, so one class loads either:

* each condition image is VAE-encoded on its own, as a 1-frame video, and scaled;
* the first image's latent goes to latent frame 0, the last image's (interpolation) to the last
  latent frame, zeros everywhere else: ``image_latents [B, f, 16, h, w]``;
* the transformer reads ``cat([x_t, image_latents], channels)``: 16 + 16 = 32 input channels.

Training-time noise augmentation adds ``sigma * N(0, 1)`` to the images (in ``[-1, 1]``) before
encoding, with ``log sigma ~ N(-3, 0.5)`` per sample as in the official release.  The text
condition is a fixed precomputed prompt embedding (``tools/encode_prompt.py``); no T5 is loaded.
"""
from __future__ import annotations

from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel, SchedulerMixin
from diffusers.models.attention_processor import Attention
from diffusers.models.embeddings import get_3d_rotary_pos_embed
from diffusers.pipelines.cogvideo.pipeline_cogvideox_image2video import (
    get_resize_crop_region_for_grid)
from safetensors.torch import save_file
from torch import nn

from videoscene.registry import VIDEO_BACKBONES
from .base import Conditioning, VideoBackbone
from .pixel_unshuffle_vae import PixelUnshuffleVAE
from .loading import (load_prompt_embedding, modules_of_type, read_json, require_folder,
                      save_model_folder)

# Scheduler classes whose training schedule (betas, SNR shift, zero-SNR rescaling) our DDIM
# reproduces; they differ only in how they sample, which the project does itself.
DDIM_COMPATIBLE = ('CogVideoXDDIMScheduler', 'CogVideoXDPMScheduler', 'DDIMScheduler')
DDIM_FIELDS = ('num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'prediction_type',
               'rescale_betas_zero_snr', 'timestep_spacing', 'set_alpha_to_one', 'steps_offset')


@VIDEO_BACKBONES.register_module(name='CogVideoX')
class CogVideoX(VideoBackbone):
    """CogVideoX I2V (1.0 layout: no temporal patches, no ``ofs``) with first / first+last-frame
    conditioning.

    Args:
        pretrained: local model folder with ``transformer/``, ``vae/`` and ``scheduler/``; a tiny
            model's ``vae/`` may hold a :class:`~.pixel_unshuffle_vae.PixelUnshuffleVAE` instead
            of CogVideoX's VAE (latents = pixel blocks of every frame, no temporal compression).
        prompt_embedding: ``.safetensors`` / ``.pt`` file with the prompt embedding
            ``[1, max_text_seq_length, text_embed_dim]`` (``tools/encode_prompt.py``).
        dtype, vae_tiling, vae_slicing: see :class:`VideoBackbone`.
        image_noise_log_sigma: ``(mean, std)`` of ``log sigma`` for the noise augmentation of the
            condition images when ``condition(..., augment=True)``; ``None`` forbids augmenting.
        negative_prompt_embedding: the embedding of the empty (or a negative) prompt, same format
            as ``prompt_embedding`` (``tools/encode_prompt.py --prompt ""``); it is the
            unconditional branch of classifier-free guidance (None: no guidance).
    """

    def __init__(self, pretrained: str | Path, prompt_embedding: str | Path,
                 dtype: str | torch.dtype = 'float32', vae_tiling: bool = False,
                 vae_slicing: bool = False,
                 image_noise_log_sigma: tuple[float, float] | None = (-3.0, 0.5),
                 negative_prompt_embedding: str | Path | None = None) -> None:
        super().__init__(dtype, vae_tiling, vae_slicing)
        self.pretrained = Path(pretrained)
        what = f'CogVideoX at {pretrained}'
        require_folder(pretrained, 'transformer', ('config.json',), what)
        vae_folder = require_folder(pretrained, 'vae', ('config.json',), what, weights=False)
        pixel_vae = PixelUnshuffleVAE.is_saved_in(vae_folder)   # tiny models only
        if not pixel_vae:
            require_folder(pretrained, 'vae', ('config.json',), what)
        scheduler_folder = require_folder(pretrained, 'scheduler', ('scheduler_config.json',), what,
                                          weights=False)
        self.transformer = CogVideoXTransformer3DModel.from_pretrained(pretrained,
                                                                       subfolder='transformer',
                                                                       low_cpu_mem_usage=False)
        self.vae = (PixelUnshuffleVAE.from_pretrained(vae_folder) if pixel_vae else
                    AutoencoderKLCogVideoX.from_pretrained(pretrained, subfolder='vae',
                                                           low_cpu_mem_usage=False))
        self._scheduler_config = self._read_scheduler(scheduler_folder)
        self.prediction_type = self._scheduler_config['prediction_type']

        config = self.transformer.config
        if config.patch_size_t is not None or config.ofs_embed_dim is not None:
            raise ValueError(f'{what}: transformer has patch_size_t={config.patch_size_t}, ofs_embed_dim='
                             f'{config.ofs_embed_dim} (CogVideoX 1.5); only the 1.0 layout (both None) '
                             'is supported')
        if pixel_vae:
            if vae_tiling or vae_slicing:
                raise ValueError(f'{what}: its PixelUnshuffleVAE works pixel block by pixel block; '
                                 'vae_tiling and vae_slicing do not apply to it')
            vae = self.vae
            self.latent_channels, self.scaling_factor = vae.latent_channels, vae.scaling_factor
            self.temporal_factor = vae.temporal_compression_ratio
            self.spatial_factor = vae.spatial_compression_ratio
        else:
            vae_config = self.vae.config
            self.latent_channels = vae_config.latent_channels
            self.scaling_factor = vae_config.scaling_factor
            self.temporal_factor = vae_config.temporal_compression_ratio
            self.spatial_factor = 2 ** (len(vae_config.block_out_channels) - 1)
        if config.in_channels != 2 * self.latent_channels:
            raise ValueError(f'{what}: transformer in_channels={config.in_channels}; an image-to-video '
                             f'model needs 2 x {self.latent_channels} (noisy latents + image latents)')
        self.image_noise_log_sigma = image_noise_log_sigma

        length = config.max_text_seq_length if config.use_learned_positional_embeddings else None
        embedding = load_prompt_embedding(prompt_embedding, config.text_embed_dim, length)
        self.register_buffer('prompt_embeds', embedding, persistent=False)
        self.register_buffer('negative_prompt_embeds', None if negative_prompt_embedding is None else
                             load_prompt_embedding(negative_prompt_embedding, config.text_embed_dim,
                                                   embedding.shape[1]), persistent=False)

        self.vae.requires_grad_(False)
        if vae_tiling:
            self.vae.enable_tiling()
        if vae_slicing:
            self.vae.enable_slicing()
        self.set_dtype(self.dtype)

    @staticmethod
    def _read_scheduler(folder: Path) -> dict:
        """DDIM kwargs of the scheduler the model was trained with, defaults filled by diffusers."""
        raw = read_json(folder / 'scheduler_config.json')
        name = raw.get('_class_name')
        if name not in DDIM_COMPATIBLE:
            raise ValueError(f'{folder}/scheduler_config.json: scheduler {name!r} is not one of '
                             f'{DDIM_COMPATIBLE}')
        if raw.get('trained_betas') is not None:
            raise ValueError(f'{folder}/scheduler_config.json: trained_betas are not supported')
        scheduler: SchedulerMixin = getattr(diffusers, name).from_config(raw)
        kwargs = {key: scheduler.config[key] for key in DDIM_FIELDS}
        kwargs['snr_shift_scale'] = scheduler.config.get('snr_shift_scale', 1.0)
        return kwargs

    # ------------------------------------------------------------------------- sizes
    def latent_frames(self, num_frames: int) -> int:
        """``(F - 1) / 4 + 1`` latent frames; ``F`` must be ``8k + 1`` (1, 9, 17, ..., 49).

        The VAE encodes any ``4k + 1`` frames, but its decoder only inverts an odd latent count:
        ``f`` even decodes to ``4 f`` frames (13 frames -> 4 latents -> 16 frames), so such
        videos cannot round-trip and are rejected here.  Without temporal compression (the
        pixel-unshuffle VAE of tiny models) every frame is a latent frame.
        """
        k = self.temporal_factor
        if k == 1 and num_frames >= 1:
            return num_frames
        if num_frames < 1 or (num_frames - 1) % (2 * k):
            raise ValueError(f"CogVideoX's VAE needs {2 * k}k+1 frames (1, {2 * k + 1}, {4 * k + 1}, ..., 49)"
                             f' so that it decodes back to the same count, got {num_frames}')
        return (num_frames - 1) // k + 1

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        step = self.spatial_factor * self.transformer.config.patch_size
        if height % step or width % step:
            raise ValueError(f'CogVideoX needs frame sizes divisible by {step} (VAE x patch size), '
                             f'got {height} x {width}')
        return height // self.spatial_factor, width // self.spatial_factor

    # ------------------------------------------------------------------------- VAE
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        pixels = (video.to(self.device, self.dtype) * 2 - 1).permute(0, 2, 1, 3, 4)
        latents = self.vae.encode(pixels).latent_dist.mode()
        return (latents.permute(0, 2, 1, 3, 4) * self.scaling_factor).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        z = (latents.to(self.device, self.dtype) / self.scaling_factor).permute(0, 2, 1, 3, 4)
        pixels = self.vae.decode(z).sample
        return ((pixels.permute(0, 2, 1, 3, 4).float() + 1) / 2).clamp(0, 1)

    # ------------------------------------------------------------------------- conditioning
    def condition(self, first: torch.Tensor, last: torch.Tensor | None, num_frames: int,
                  augment: bool = False) -> Conditioning:
        """``{'image_latents' [B, f, C, h, w], 'prompt_embeds' [B, L, D]}``, laid out as in the
        module docstring."""
        f, _, _ = self.check_condition_images(first, last, num_frames)
        images = first if last is None else torch.stack([first, last], dim=1).flatten(0, 1)
        batch = first.shape[0]
        pixels = images.to(self.device, torch.float32) * 2 - 1
        if augment:
            if self.image_noise_log_sigma is None:
                raise ValueError('augment=True but this CogVideoX has image_noise_log_sigma=None')
            mean, std = self.image_noise_log_sigma
            sigma = torch.exp(torch.randn(batch, device=self.device) * std + mean)
            sigma = sigma.repeat_interleave(len(images) // batch)  # one sigma per sample
            pixels = pixels + torch.randn_like(pixels) * sigma[:, None, None, None]
        # every image is its own 1-frame video: [N, 3, 1, H, W] -> [N, C, 1, h, w]
        encoded = self.vae.encode(pixels.to(self.dtype).unsqueeze(2)).latent_dist.mode()
        encoded = encoded.squeeze(2).float().unflatten(0, (batch, -1)) * self.scaling_factor
        image_latents = encoded.new_zeros(batch, f, *encoded.shape[2:])
        image_latents[:, 0] = encoded[:, 0]
        if last is not None:
            image_latents[:, -1] = encoded[:, 1]
        return {'image_latents': image_latents,
                'prompt_embeds': self.prompt_embeds.expand(batch, -1, -1)}

    def unconditional(self, conditioning: Conditioning) -> Conditioning:
        """``conditioning`` with the negative prompt embedding (same image latents), as CogVideoX's
        pipelines guide."""
        if self.negative_prompt_embeds is None:
            return super().unconditional(conditioning)
        batch = conditioning['prompt_embeds'].shape[0]
        return {**conditioning, 'prompt_embeds': self.negative_prompt_embeds.expand(batch, -1, -1)}

    # ------------------------------------------------------------------------- denoiser
    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        image_latents = conditioning['image_latents']
        self.check_conditioning_matches("conditioning['image_latents']", image_latents, x_t)
        config = self.transformer.config
        batch, f, _, h, w = x_t.shape
        if config.use_learned_positional_embeddings and (h, w) != (config.sample_height,
                                                               config.sample_width):
            raise ValueError(
                f'this CogVideoX has learned positional embeddings for '
                f'{config.sample_height * self.spatial_factor} x {config.sample_width * self.spatial_factor}'
                f' frames (latents {config.sample_height} x {config.sample_width}), got latents {h} x {w}')
        hidden = torch.cat([x_t, image_latents], dim=2).to(self.device, self.dtype)
        output = self.transformer(
            hidden_states=hidden,
            encoder_hidden_states=conditioning['prompt_embeds'].to(self.device, self.dtype),
            timestep=t.to(self.device).reshape(-1).expand(batch),
            image_rotary_emb=self._rotary_embedding(f, h, w),
            return_dict=False)[0]
        return output.float()

    def _rotary_embedding(self, f: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor] | None:
        """3-D rotary embedding of the latent grid, cropped as the CogVideoX 1.0 pipelines do."""
        config = self.transformer.config
        if not config.use_rotary_positional_embeddings:
            return None
        p = config.patch_size
        grid = (h // p, w // p)
        crops = get_resize_crop_region_for_grid(grid, config.sample_width // p,
                                                config.sample_height // p)
        # float32 whatever the model dtype: diffusers applies the rotation in float32
        return get_3d_rotary_pos_embed(embed_dim=config.attention_head_dim, crops_coords=crops,
                                       grid_size=grid, temporal_size=f, device=self.device)

    def denoiser(self) -> nn.Module:
        return self.transformer

    def attention_modules(self) -> dict[str, nn.Module]:
        return modules_of_type(self.transformer, Attention)

    def scheduler_config(self) -> dict:
        return dict(type='DDIM', **self._scheduler_config)

    def save_pretrained(self, out: str | Path) -> Path:
        """``out/{transformer,vae,scheduler}/``, ``out/prompt_embeds.safetensors`` and, with a
        negative prompt, ``out/negative_prompt_embeds.safetensors``."""
        out = save_model_folder(out, {'transformer': self.transformer, 'vae': self.vae},
                                self.pretrained, ['scheduler'])
        embeddings = {'prompt_embeds': self.prompt_embeds, 'negative_prompt_embeds':
                      self.negative_prompt_embeds}
        for name, embedding in embeddings.items():
            if embedding is not None:
                save_file({'prompt_embeds': embedding.float().cpu().contiguous()},
                          out / f'{name}.safetensors')
        return out
