"""DynamiCrafter (512 and 512-Interp) as a :class:`~videoscene.backbones.base.VideoBackbone`.

The module tree is the official ``LatentVisualDiffusion``'s, so ``state_dict()`` has exactly the
keys of the official ``model.ckpt`` (``ckpt['state_dict']``, 2,520 entries for the 512 models):

==========================  ======================================================
``model.diffusion_model``   :class:`UNet3D` (v-prediction)
``first_stage_model``       :class:`AutoencoderKL`, latents scaled by ``scale_factor``
``cond_stage_model``        :class:`OpenCLIPTextEncoder` (penultimate layer)
``embedder``                :class:`OpenCLIPImageEncoder` (all 257 tokens)
``image_proj_model``        :class:`Resampler` (16 tokens per frame)
13 buffers                  the diffusion schedule and ``scale_arr`` (dynamic rescale)
==========================  ======================================================

Conditioning (``configs/inference_512_v1.0.yaml`` + ``scripts/evaluation/inference.py``):

* ``context [B, 77 + T*16, 1024]``: the prompt's text tokens, then the resampler's tokens of the
  CLIP embedding of the *first* frame (frame ``t`` of the UNet attends to its own 16);
* ``concat [B, F, 4, h, w]``: scaled VAE latents concatenated with the noisy latents on channels;
  interpolation (``last`` given): first frame's latent on frame 0, last frame's on frame ``F-1``,
  zeros between; image-to-video (``last=None``): the first frame's latent on every frame;
* ``fps [B]``: the frame-rate condition (the official interpolation script uses 5).

The official run encodes condition frames as posterior *samples*; :meth:`DynamiCrafter.condition`
uses the posterior mode unless ``augment=True`` (fresh noise) or ``latent_noise`` is given.
"""
from __future__ import annotations

from contextlib import nullcontext
from pathlib import Path

import torch
from torch import nn

from videoscene.reconstructors.official_checkpoint import (CheckpointMismatchError,
                                                           read_official_state_dict)
from videoscene.registry import VIDEO_BACKBONES
from ..base import Conditioning, VideoBackbone
from .autoencoder import AutoencoderKL
from .openclip import OpenCLIPImageEncoder, OpenCLIPTextEncoder, empty_prompt_tokens
from .resampler import Resampler
from .unet import UNet3D

__all__ = ['DynamiCrafter', 'schedule_buffers']


def schedule_buffers(num_timesteps: int = 1000, linear_start: float = 0.00085,
                     linear_end: float = 0.012, base_scale: float = 0.7,
                     turning_step: int = 400) -> dict[str, torch.Tensor]:
    """The 13 float32 schedule buffers of an official checkpoint (v-parameterisation), on the
    CPU even inside a ``torch.device('meta')`` block.

    Betas ``linspace(sqrt(start), sqrt(end))**2`` rescaled to zero terminal SNR, every derived
    quantity in float64 then stored as float32, and ``scale_arr = [linspace(1, base_scale,
    turning_step), base_scale x num_timesteps]`` (DynamiCrafter's dynamic rescale).
    """
    float64 = torch.float64
    betas = torch.linspace(linear_start ** 0.5, linear_end ** 0.5, num_timesteps,
                           dtype=torch.float64, device='cpu') ** 2
    root = torch.cumprod(1 - betas, 0).sqrt()
    root = (root - root[-1]) * root[0] / (root[0] - root[-1])   # zero terminal SNR (Lin et al.)
    alphas_cumprod = root ** 2
    alphas = torch.cat([alphas_cumprod[:1], alphas_cumprod[1:] / alphas_cumprod[:-1]])
    betas = 1 - alphas
    alphas_cumprod = torch.cumprod(alphas, 0)
    previous = torch.cat([alphas_cumprod.new_ones(1), alphas_cumprod[:-1]])
    posterior_variance = betas * (1 - previous) / (1 - alphas_cumprod)
    buffers = {
        'betas': betas,
        'alphas_cumprod': alphas_cumprod,
        'alphas_cumprod_prev': previous,
        'sqrt_alphas_cumprod': alphas_cumprod.sqrt(),
        'sqrt_one_minus_alphas_cumprod': (1 - alphas_cumprod).sqrt(),
        'log_one_minus_alphas_cumprod': (1 - alphas_cumprod).log(),
        # zeros under v-parameterisation, as the official code stores them
        'sqrt_recip_alphas_cumprod': torch.zeros(num_timesteps, dtype=float64, device='cpu'),
        'sqrt_recipm1_alphas_cumprod': torch.zeros(num_timesteps, dtype=float64, device='cpu'),
        'posterior_variance': posterior_variance,
        'posterior_log_variance_clipped': posterior_variance.clamp(min=1e-20).log(),
        'posterior_mean_coef1': betas * previous.sqrt() / (1 - alphas_cumprod),
        'posterior_mean_coef2': (1 - previous) * alphas.sqrt() / (1 - alphas_cumprod),
        'scale_arr': torch.cat([
            torch.linspace(1.0, base_scale, turning_step, dtype=float64, device='cpu'),
            torch.full((num_timesteps,), base_scale, dtype=float64, device='cpu')]),
    }
    return {name: value.float() for name, value in buffers.items()}


class DiffusionWrapper(nn.Module):
    """The official ``model`` attribute: holds the UNet as ``diffusion_model``."""

    def __init__(self, unet: UNet3D) -> None:
        super().__init__()
        self.diffusion_model = unet


@VIDEO_BACKBONES.register_module(name='DynamiCrafter')
class DynamiCrafter(VideoBackbone):
    """DynamiCrafter 512 / 512-Interp loaded from an official checkpoint file.

    Args:
        checkpoint: path of the official ``model.ckpt`` (or a ``.pt`` holding
            ``{'state_dict': ...}``); keys and shapes must match exactly, else the error lists the
            missing, unexpected and mismatched keys. ``None`` keeps random weights (tests).
        unet, autoencoder, resampler: the official ``unet_config`` / ``first_stage_config`` /
            ``image_proj_stage_config`` params (None: the 512 model's).
        text_encoder, image_encoder: OpenCLIP model configs (None: ViT-H-14).
        scale_factor: VAE latent scale (0.18215).
        linear_start, linear_end, num_timesteps, base_scale, turning_step: the diffusion schedule
            and dynamic-rescale curve (the 512 config's values).
        fps: frame-rate condition given to the UNet (5 in the official interpolation script).
        allow_pickle: read the checkpoint with full unpickling (trusted files only).
        dtype, vae_slicing: see :class:`VideoBackbone`; ``vae_slicing`` encodes and decodes one
            video at a time. There is no tiled VAE mode.
    """

    prediction_type = 'v_prediction'

    def __init__(self, checkpoint: str | Path | None, unet: dict | None = None,
                 autoencoder: dict | None = None, text_encoder: dict | None = None,
                 image_encoder: dict | None = None, resampler: dict | None = None,
                 scale_factor: float = 0.18215, linear_start: float = 0.00085,
                 linear_end: float = 0.012, num_timesteps: int = 1000, base_scale: float = 0.7,
                 turning_step: int = 400, fps: int = 5, allow_pickle: bool = False,
                 dtype: str | torch.dtype = 'float32', vae_tiling: bool = False,
                 vae_slicing: bool = False) -> None:
        if vae_tiling:
            raise ValueError("vae_tiling: DynamiCrafter's autoencoder has no tiled mode")
        super().__init__(dtype, vae_tiling, vae_slicing)
        # With a checkpoint, the networks are built without memory and take the checkpoint's
        # tensors (assign).
        buffers = schedule_buffers(num_timesteps, linear_start, linear_end, base_scale,
                                   turning_step)
        with torch.device('meta') if checkpoint is not None else nullcontext():
            self.model = DiffusionWrapper(UNet3D(**(unet or {})))
            self.first_stage_model = AutoencoderKL(**(autoencoder or {}))
            self.cond_stage_model = OpenCLIPTextEncoder(text_encoder)
            self.embedder = OpenCLIPImageEncoder(image_encoder)
            self.image_proj_model = Resampler(**(resampler or {}))
        for name, value in buffers.items():
            self.register_buffer(name, value)
        self._schedule_buffers = tuple(buffers)
        self.latent_channels = self.first_stage_model.post_quant_conv.in_channels
        self.scale_factor = scale_factor
        self.fps = fps
        self._schedule = dict(num_train_timesteps=num_timesteps, beta_start=linear_start,
                              beta_end=linear_end)
        unet_in = self.unet.input_blocks[0][0].in_channels
        if unet_in != 2 * self.latent_channels:
            raise ValueError(f'the UNet takes {unet_in} input channels; DynamiCrafter needs '
                             f'2 x {self.latent_channels} (noisy latents + condition latents)')
        self.noise_scheduler = self.build_scheduler()
        if checkpoint is not None:
            self._load_checkpoint(checkpoint, allow_pickle)
        for frozen in (self.first_stage_model, self.cond_stage_model, self.embedder,
                       self.image_proj_model):
            frozen.requires_grad_(False)
        self.set_dtype(self.dtype)

    def _load_checkpoint(self, checkpoint: str | Path, allow_pickle: bool) -> None:
        """Take every tensor of the official state dict; keys and shapes must match exactly."""
        state_dict = read_official_state_dict(checkpoint, allow_pickle)
        expected = self.state_dict()
        mismatched = [(key, tuple(state_dict[key].shape), tuple(value.shape))
                      for key, value in expected.items()
                      if key in state_dict and state_dict[key].shape != value.shape]
        missing = sorted(set(expected) - set(state_dict))
        unexpected = sorted(set(state_dict) - set(expected))
        if missing or unexpected or mismatched:
            raise CheckpointMismatchError(str(checkpoint), missing, unexpected, mismatched)
        self.load_state_dict(state_dict, strict=True, assign=True)
        self._check_schedule(str(checkpoint))

    def set_dtype(self, dtype: str | torch.dtype) -> None:
        """Run the networks in ``dtype``; the schedule buffers stay float32 (as the official code)."""
        super().set_dtype(dtype)
        for name in self._schedule_buffers:
            self._buffers[name] = self._buffers[name].float()

    @property
    def unet(self) -> UNet3D:
        return self.model.diffusion_model

    def _check_schedule(self, source: str) -> None:
        """The loaded ``alphas_cumprod`` must be the schedule :meth:`scheduler_config` builds (the
        sampler and training use that scheduler, not the checkpoint's buffers)."""
        ours = self.noise_scheduler.alphas_cumprod.float()
        difference = (self.alphas_cumprod.detach().cpu().float() - ours).abs().max().item()
        if difference > 1e-6:
            raise ValueError(f"{source}: alphas_cumprod differ from the schedule "
                             f"{self.scheduler_config()} by up to {difference:.3g}; set "
                             "linear_start / linear_end to the model's values")

    # ------------------------------------------------------------------------- sizes
    def latent_frames(self, num_frames: int) -> int:
        if num_frames < 1:
            raise ValueError(f'DynamiCrafter needs at least 1 frame, got {num_frames}')
        return num_frames

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        vae = self.first_stage_model.downsampling
        step = vae * self.unet.downsampling
        if height % step or width % step:
            raise ValueError(f'DynamiCrafter needs frame sizes divisible by {step} (VAE x UNet '
                             f'downsampling), got {height} x {width}')
        return height // vae, width // vae

    # ------------------------------------------------------------------------- VAE
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        return self._encode_frames(video, noise=None)

    def _encode_frames(self, video: torch.Tensor, noise: torch.Tensor | None) -> torch.Tensor:
        """``video [B, F, 3, H, W]`` in ``[0, 1]`` -> scaled latents ``[B, F, C, h, w]``: the
        posterior mode, or the posterior sample with ``noise [B, F, C, h, w]``."""
        pixels = video.to(self.device, self.dtype) * 2 - 1
        step = 1 if self.vae_slicing else len(pixels)
        latents = []
        for start in range(0, len(pixels), step):
            chunk = pixels[start:start + step]
            posterior = self.first_stage_model.encode(chunk.flatten(0, 1))
            z = posterior.mean if noise is None else posterior.sample(
                noise[start:start + step].flatten(0, 1))
            latents.append(z.unflatten(0, chunk.shape[:2]))
        return torch.cat(latents).float() * self.scale_factor

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        z = latents.to(self.device, self.dtype) / self.scale_factor
        step = 1 if self.vae_slicing else len(z)
        frames = [self.first_stage_model.decode(z[start:start + step].flatten(0, 1))
                  .unflatten(0, z[start:start + step].shape[:2]) for start in range(0, len(z), step)]
        return ((torch.cat(frames).float() + 1) / 2).clamp(0, 1)

    # ------------------------------------------------------------------------- conditioning
    def text_embedding(self, prompt_tokens: torch.Tensor | None, batch_size: int) -> torch.Tensor:
        """``[B, 77, D]`` from CLIP token ids ``[B, 77]`` (zero padded); None: the empty prompt."""
        if prompt_tokens is None:
            prompt_tokens = empty_prompt_tokens(batch_size, self.cond_stage_model.context_length)
        if prompt_tokens.shape[0] != batch_size:
            raise ValueError(f'prompt_tokens has {prompt_tokens.shape[0]} rows for a batch of '
                             f'{batch_size}')
        return self.cond_stage_model(prompt_tokens.to(self.device)).float()

    def image_tokens(self, images: torch.Tensor) -> torch.Tensor:
        """Resampled CLIP tokens ``[B, video_length * 16, D]`` of ``images [B, 3, H, W]`` in [0, 1]."""
        pixels = images.to(self.device, self.dtype) * 2 - 1
        return self.image_proj_model(self.embedder(pixels)).float()

    def condition(self, first: torch.Tensor, last: torch.Tensor | None, num_frames: int,
                  augment: bool = False, *, prompt_tokens: torch.Tensor | None = None,
                  latent_noise: torch.Tensor | None = None) -> Conditioning:
        """``{'context' [B, 77 + T*16, D], 'concat' [B, F, C, h, w], 'fps' [B]}``.

        Args:
            first, last: frames ``[B, 3, H, W]`` in ``[0, 1]``; ``last=None`` conditions on the
                first frame only (image-to-video).
            num_frames: ``F``.
            augment: encode the frames as posterior samples with fresh noise (as the official
                training and inference do) instead of the posterior mode.
            prompt_tokens: CLIP token ids ``[B, 77]``; None: the empty prompt.
            latent_noise: the posterior noise ``[B, n, C, h, w]`` (``n`` = 1 or 2 frames) to use
                instead of drawing it, e.g. to replay an official run.

        The image tokens are per frame only when ``F`` equals the resampler's ``video_length``
        (16); for other frame counts every frame attends to all of them, as in the official code.
        """
        frames, h, w = self.check_condition_images(first, last, num_frames)
        batch = first.shape[0]
        images = first[:, None] if last is None else torch.stack([first, last], dim=1)
        noise_shape = (*images.shape[:2], self.latent_channels, h, w)
        if latent_noise is None and augment:
            latent_noise = torch.randn(noise_shape)
        if latent_noise is not None and tuple(latent_noise.shape) != noise_shape:
            raise ValueError(f'latent_noise must be {noise_shape}, got {tuple(latent_noise.shape)}')
        latents = self._encode_frames(images, latent_noise)
        if last is None:
            concat = latents.expand(-1, frames, -1, -1, -1).contiguous()
        else:
            concat = latents.new_zeros(batch, frames, *latents.shape[2:])
            concat[:, 0], concat[:, -1] = latents[:, 0], latents[:, 1]
        context = torch.cat([self.text_embedding(prompt_tokens, batch), self.image_tokens(first)],
                            dim=1)
        fps = torch.full((batch,), self.fps, dtype=torch.long, device=self.device)
        return {'context': context, 'concat': concat, 'fps': fps}

    def unconditional(self, conditioning: Conditioning) -> Conditioning:
        """The classifier-free-guidance counterpart of ``conditioning``: empty prompt and the image
        tokens of a mid-gray image (zeros in ``[-1, 1]``); ``concat`` and ``fps`` unchanged."""
        batch = conditioning['context'].shape[0]
        size = self.embedder.model.visual.image_size
        gray = torch.full((batch, 3, size, size), 0.5, device=self.device)
        context = torch.cat([self.text_embedding(None, batch), self.image_tokens(gray)], dim=1)
        return {**conditioning, 'context': context}

    # ------------------------------------------------------------------------- denoiser
    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        concat = conditioning['concat']
        self.check_conditioning_matches("conditioning['concat']", concat, x_t)
        sample = torch.cat([x_t, concat], dim=2).to(self.device, self.dtype).transpose(1, 2)
        t = torch.as_tensor(t, device=self.device).long().reshape(-1).expand(x_t.shape[0])
        output = self.unet(sample, t, conditioning['context'].to(self.device, self.dtype),
                           conditioning['fps'].to(self.device))
        return output.transpose(1, 2).float()

    def denoiser(self) -> nn.Module:
        return self.unet

    def attention_modules(self) -> dict[str, nn.Module]:
        return self.unet.attention_modules()

    def scheduler_config(self) -> dict:
        return dict(type='DDIM', beta_schedule='scaled_linear', prediction_type='v_prediction',
                    rescale_betas_zero_snr=True, timestep_spacing='trailing',
                    set_alpha_to_one=False, **self._schedule)

    def clean_scale(self, t: torch.Tensor | int) -> torch.Tensor:
        """``scale_arr[t]`` ``[B]`` (1 for ``t < 0``): DynamiCrafter trains on ``scale_arr[t] * x0``
        (its dynamic rescale), and its sampler rescales every clean estimate made at ``t`` by
        ``scale_arr[t_prev] / scale_arr[t]``, which is what the project's sampler does with this
        factor.  Unlike the official sampler, the last estimate is brought back to the data's
        scale (the official one stays at ``scale_arr[t]``: 0.986 x at ``t = 19``, 0.7 x after a
        one-step leap)."""
        t = torch.as_tensor(t).long().reshape(-1).cpu()
        if (t >= len(self.scale_arr)).any():
            raise ValueError(f'timesteps must be < {len(self.scale_arr)}, got {t.tolist()}')
        scale = self.scale_arr.detach().cpu().float()[t.clamp(min=0)]
        return torch.where(t < 0, torch.ones_like(scale), scale)
