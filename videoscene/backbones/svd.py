"""Stable Video Diffusion (image-to-video), with a first+last-frame variant for interpolation.

The model folder has diffusers' layout: ``unet/`` (``UNetSpatioTemporalConditionModel``), ``vae/``
(``AutoencoderKLTemporalDecoder``), ``image_encoder/`` (``CLIPVisionModelWithProjection``),
``feature_extractor/`` (its normalisation) and ``scheduler/`` (``EulerDiscreteScheduler``).

First-frame conditioning is the pipeline's:

* CLIP image embedding of the frame (resized with antialiasing to the encoder's size,
  normalised) -> cross-attention context ``[B, 1, D]``;
* the VAE latent (posterior mode, *unscaled*, as the pipeline does) of the frame plus
  ``strength * N(0, 1)`` in ``[-1, 1]`` pixels, repeated on every latent frame and concatenated
  with the noisy latents on channels (4 + 4 = 8);
* added time ids ``[fps - 1, motion_bucket_id, strength]`` (SVD was trained on ``fps - 1``).

First+last-frame variant (``last`` given): the cross-attention context holds both embeddings
``[B, 2, D]``; the first frame's latent sits on latent frame 0 and the last frame's on the last
latent frame, zeros between, as CogVideoX-Interpolation lays them out.  A pretrained SVD never saw
this layout, so it interpolates only after the teacher fine-tuning stage.

Noise follows EDM; :class:`videoscene.schedulers.EulerScheduler` expresses it in the project's
``x_t = c_in * x_sigma`` form, and :meth:`SVD.predict` feeds the UNet ``0.25 log sigma_t``.
"""
from __future__ import annotations

from pathlib import Path

import torch
from diffusers import AutoencoderKLTemporalDecoder, EulerDiscreteScheduler, UNetSpatioTemporalConditionModel
from diffusers.models.attention_processor import Attention
from diffusers.pipelines.stable_video_diffusion.pipeline_stable_video_diffusion import (
    _resize_with_antialiasing)
from torch import nn
from transformers import CLIPVisionModelWithProjection

from videoscene.registry import VIDEO_BACKBONES
from .base import Conditioning, VideoBackbone
from .loading import modules_of_type, read_json, require_folder, save_model_folder


@VIDEO_BACKBONES.register_module(name='SVD')
class SVD(VideoBackbone):
    """Stable Video Diffusion with first-frame or first+last-frame conditioning.

    Args:
        pretrained: local model folder (layout in the module docstring).
        dtype, vae_slicing: see :class:`VideoBackbone`; SVD's VAE has no tiling.
        decode_chunk_size: frames the temporal decoder decodes together (``None``: a whole video).
        fps, motion_bucket_id: micro-conditioning (the pipeline's defaults 7 and 127).
        noise_aug_strength: condition-image noise when not augmenting (the pipeline's 0.02).
        image_noise_log_sigma: ``(mean, std)`` of ``log strength`` drawn per sample when
            ``condition(..., augment=True)``; ``None`` forbids augmenting.
    """

    def __init__(self, pretrained: str | Path, dtype: str | torch.dtype = 'float32',
                 vae_tiling: bool = False, vae_slicing: bool = False,
                 decode_chunk_size: int | None = None, fps: int = 7, motion_bucket_id: int = 127,
                 noise_aug_strength: float = 0.02,
                 image_noise_log_sigma: tuple[float, float] | None = (-3.0, 0.5)) -> None:
        if vae_tiling:
            raise ValueError("vae_tiling: SVD's AutoencoderKLTemporalDecoder has no tiled mode")
        super().__init__(dtype, vae_tiling, vae_slicing)
        self.pretrained = Path(pretrained)
        what = f'SVD at {pretrained}'
        for subfolder in ('unet', 'vae', 'image_encoder'):
            require_folder(pretrained, subfolder, ('config.json',), what)
        extractor = require_folder(pretrained, 'feature_extractor', ('preprocessor_config.json',), what,
                                   weights=False)
        scheduler = require_folder(pretrained, 'scheduler', ('scheduler_config.json',), what,
                                   weights=False)
        self.unet = UNetSpatioTemporalConditionModel.from_pretrained(
            pretrained, subfolder='unet', low_cpu_mem_usage=False)
        self.vae = AutoencoderKLTemporalDecoder.from_pretrained(
            pretrained, subfolder='vae', low_cpu_mem_usage=False)
        self.image_encoder = CLIPVisionModelWithProjection.from_pretrained(
            pretrained, subfolder='image_encoder')
        processor = read_json(extractor / 'preprocessor_config.json')
        self.register_buffer('clip_mean', torch.tensor(processor['image_mean']).reshape(1, 3, 1, 1),
                             persistent=False)
        self.register_buffer('clip_std', torch.tensor(processor['image_std']).reshape(1, 3, 1, 1),
                             persistent=False)
        self._scheduler_config = self._read_scheduler(scheduler)
        self.prediction_type = self._scheduler_config['prediction_type']

        self.latent_channels = self.vae.config.latent_channels
        if self.unet.config.in_channels != 2 * self.latent_channels:
            raise ValueError(f'{what}: unet in_channels={self.unet.config.in_channels}; SVD needs '
                             f'2 x {self.latent_channels} (noisy latents + image latents)')
        self.scaling_factor = self.vae.config.scaling_factor
        self.spatial_factor = 2 ** (len(self.vae.config.block_out_channels) - 1)
        self.unet_factor = 2 ** (len(self.unet.config.block_out_channels) - 1)
        self.decode_chunk_size = decode_chunk_size
        self.fps, self.motion_bucket_id = fps, motion_bucket_id
        self.noise_aug_strength = noise_aug_strength
        self.image_noise_log_sigma = image_noise_log_sigma

        self.vae.requires_grad_(False)
        self.image_encoder.requires_grad_(False)
        self.set_dtype(self.dtype)
        self.noise_scheduler = self.build_scheduler()

    @staticmethod
    def _read_scheduler(folder: Path) -> dict:
        """``EulerScheduler`` kwargs of the model's scheduler, defaults filled by diffusers."""
        raw = read_json(folder / 'scheduler_config.json')
        if raw.get('_class_name') != 'EulerDiscreteScheduler':
            raise ValueError(f'{folder}/scheduler_config.json: scheduler {raw.get("_class_name")!r} '
                             "is not 'EulerDiscreteScheduler'")
        config = EulerDiscreteScheduler.from_config(raw).config
        for key, supported in (('final_sigmas_type', 'zero'), ('use_exponential_sigmas', False),
                               ('use_beta_sigmas', False), ('trained_betas', None)):
            if config[key] != supported:
                raise ValueError(f'{folder}/scheduler_config.json: {key}={config[key]!r} is not '
                                 f'supported (expected {supported!r})')
        kwargs = {key: config[key] for key in (
            'num_train_timesteps', 'beta_start', 'beta_end', 'beta_schedule', 'prediction_type',
            'use_karras_sigmas', 'sigma_min', 'sigma_max', 'timestep_type')}
        if not config['use_karras_sigmas']:
            kwargs.update(timestep_spacing=config['timestep_spacing'], steps_offset=config['steps_offset'])
        return kwargs

    # ------------------------------------------------------------------------- sizes
    def latent_frames(self, num_frames: int) -> int:
        if num_frames < 1:
            raise ValueError(f'SVD needs at least 1 frame, got {num_frames}')
        return num_frames

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        step = self.spatial_factor * self.unet_factor
        if height % step or width % step:
            raise ValueError(f'SVD needs frame sizes divisible by {step} (VAE x UNet downsampling), '
                             f'got {height} x {width}')
        return height // self.spatial_factor, width // self.spatial_factor

    # ------------------------------------------------------------------------- VAE
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        pixels = video.to(self.device, self.dtype).flatten(0, 1) * 2 - 1
        latents = self.vae.encode(pixels).latent_dist.mode() * self.scaling_factor
        return latents.unflatten(0, video.shape[:2]).float()

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        z = latents.to(self.device, self.dtype) / self.scaling_factor
        videos = z.split(1) if self.vae_slicing else (z,)
        decoded = torch.cat([self._decode_frames(video) for video in videos])
        return ((decoded.float() + 1) / 2).clamp(0, 1)

    def _decode_frames(self, z: torch.Tensor) -> torch.Tensor:
        """``[B, F, C, h, w]`` -> ``[B, F, 3, H, W]`` in ``[-1, 1]``, ``decode_chunk_size`` frames at a
        time (the temporal decoder mixes the frames of one chunk)."""
        frames = z.shape[1]
        chunk = self.decode_chunk_size or frames
        pieces = []
        for start in range(0, frames, chunk):
            part = z[:, start:start + chunk]
            out = self.vae.decode(part.flatten(0, 1), num_frames=part.shape[1]).sample
            pieces.append(out.unflatten(0, part.shape[:2]))
        return torch.cat(pieces, dim=1)

    # ------------------------------------------------------------------------- conditioning
    def condition(self, first: torch.Tensor, last: torch.Tensor | None, num_frames: int,
                  augment: bool = False) -> Conditioning:
        """``{'image_embeds' [B, n, D], 'image_latents' [B, F, C, h, w], 'added_time_ids' [B, 3]}``
        with ``n`` = 1 (first frame) or 2 (first and last), laid out as in the module docstring."""
        f, _, _ = self.check_condition_images(first, last, num_frames)
        batch = first.shape[0]
        images = (first if last is None else torch.stack([first, last], 1).flatten(0, 1))
        images = images.to(self.device, torch.float32)
        embeds = self.image_encoder(self._clip_input(images)).image_embeds
        embeds = embeds.float().unflatten(0, (batch, -1))

        if augment:
            if self.image_noise_log_sigma is None:
                raise ValueError('augment=True but this SVD has image_noise_log_sigma=None')
            mean, std = self.image_noise_log_sigma
            strength = torch.exp(torch.randn(batch, device=self.device) * std + mean)
        else:
            strength = torch.full((batch,), self.noise_aug_strength, device=self.device)
        pixels = images * 2 - 1
        per_image = strength.repeat_interleave(len(images) // batch)[:, None, None, None]
        pixels = pixels + per_image * torch.randn_like(pixels)
        encoded = self.vae.encode(pixels.to(self.dtype)).latent_dist.mode().float()
        encoded = encoded.unflatten(0, (batch, -1))          # [B, n, C, h, w], unscaled
        if last is None:
            image_latents = encoded[:, :1].expand(-1, f, -1, -1, -1).contiguous()
        else:
            image_latents = encoded.new_zeros(batch, f, *encoded.shape[2:])
            image_latents[:, 0], image_latents[:, -1] = encoded[:, 0], encoded[:, 1]
        time_ids = torch.stack([torch.full_like(strength, self.fps - 1.0),
                                torch.full_like(strength, float(self.motion_bucket_id)), strength], 1)
        return {'image_embeds': embeds, 'image_latents': image_latents, 'added_time_ids': time_ids}

    def unconditional(self, conditioning: Conditioning) -> Conditioning:
        """Zero image embeddings and zero image latents, as diffusers' SVD pipeline guides (the
        micro-conditioning is kept)."""
        return {**conditioning, 'image_embeds': torch.zeros_like(conditioning['image_embeds']),
                'image_latents': torch.zeros_like(conditioning['image_latents'])}

    def _clip_input(self, images: torch.Tensor) -> torch.Tensor:
        """``[N, 3, H, W]`` in ``[0, 1]`` -> the image encoder's normalised square input."""
        size = self.image_encoder.config.image_size
        resized = _resize_with_antialiasing(images * 2 - 1, (size, size))
        normalised = ((resized + 1) / 2 - self.clip_mean.float()) / self.clip_std.float()
        return normalised.to(self.dtype)

    # ------------------------------------------------------------------------- denoiser
    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        image_latents = conditioning['image_latents']
        self.check_conditioning_matches("conditioning['image_latents']", image_latents, x_t)
        batch = x_t.shape[0]
        sample = torch.cat([x_t, image_latents], dim=2).to(self.device, self.dtype)
        noise_condition = self.noise_scheduler.noise_condition(t.cpu()).expand(batch)
        output = self.unet(sample, noise_condition.to(self.device, self.dtype),
                           encoder_hidden_states=conditioning['image_embeds'].to(self.device, self.dtype),
                           added_time_ids=conditioning['added_time_ids'].to(self.device, self.dtype),
                           return_dict=False)[0]
        return output.float()

    def denoiser(self) -> nn.Module:
        return self.unet

    def attention_modules(self) -> dict[str, nn.Module]:
        return modules_of_type(self.unet, Attention)

    def scheduler_config(self) -> dict:
        return dict(type='Euler', **self._scheduler_config)

    def save_pretrained(self, out: str | Path) -> Path:
        """``out/{unet,vae,image_encoder,feature_extractor,scheduler}/``."""
        return save_model_folder(
            out, {'unet': self.unet, 'vae': self.vae, 'image_encoder': self.image_encoder},
            self.pretrained, ['feature_extractor', 'scheduler'])
