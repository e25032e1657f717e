"""Wan 2.1 first-last-frame-to-video (FLF2V) as a :class:`~videoscene.backbones.VideoBackbone`.

Reference: diffusers 0.42.1 ``WanImageToVideoPipeline`` with ``last_image`` (the official FLF2V
conditioning).  The model folder is a diffusers Wan I2V/FLF2V folder: ``transformer/``
(``WanTransformer3DModel``), ``vae/`` (``AutoencoderKLWan``), ``image_encoder/``
(``CLIPVisionModel``), ``image_processor/`` (``CLIPImageProcessor``) and ``scheduler/``
(``FlowMatchEulerDiscreteScheduler``, or ``UniPCMultistepScheduler`` with flow sigmas); no text
encoder is loaded, the prompt is a precomputed embedding ``[1, L, text_dim]``.

Conditioning on frames ``first``, ``last`` of an ``F``-frame video, as the pipeline does:

* ``'image_latents' [B, f, 4 + C, h, w]``: the VAE encoding (posterior mode, normalised by the
  VAE's ``latents_mean`` / ``latents_std``) of the video ``[first, 0, ..., 0, last]`` in
  ``[-1, 1]``, preceded by 4 mask channels that hold, for each of the 4 frames a latent frame
  stands for, 1 on the given frames and 0 elsewhere (the first frame repeated 4 times);
* ``'image_embeds' [B, 2 N, D]``: the CLIP vision encoder's penultimate hidden states of
  ``first`` and ``last`` (``N`` tokens each, side by side), the images prepared by the folder's
  ``CLIPImageProcessor`` from 8-bit pixels as the pipeline's PIL input is;
* ``'prompt_embeds' [B, L, text_dim]``.

Latents are ``[B, f, C, h, w]`` = ``(z - latents_mean) / latents_std``; the network runs on
``[x_t, image_latents]`` along channels, in its ``[B, C, f, h, w]`` layout, and predicts the flow
velocity of :class:`~.flow_match.FlowMatchEulerScheduler` from the timestep input ``sigma_t * T``.
"""
from __future__ import annotations

from pathlib import Path

import diffusers
import torch
from diffusers import AutoencoderKLWan, WanTransformer3DModel
from diffusers.models.transformers.transformer_wan import WanAttention
from safetensors.torch import load_file, save_file
from torch import nn
from transformers import CLIPImageProcessor, CLIPVisionModel

from videoscene.backbones.base import Conditioning, VideoBackbone
from videoscene.backbones.loading import (load_prompt_embedding, modules_of_type, read_json,
                                          require_folder, save_model_folder)
from videoscene.registry import VIDEO_BACKBONES
from .flow_match import FlowMatchEulerScheduler

MASK_CHANNELS = 4   # = the VAE's temporal factor: one mask channel per frame of a latent frame


def load_transformer(folder: Path) -> WanTransformer3DModel:
    """``WanTransformer3DModel`` from ``folder`` (``config.json`` + one safetensors file or shards
    with an index), loaded by hand: diffusers' ``from_pretrained`` refuses this class without
    ``accelerate`` (its fp32-kept modules need ``low_cpu_mem_usage``), which the project does not
    depend on.  Every tensor of the checkpoint must match the model exactly."""
    model = WanTransformer3DModel.from_config(WanTransformer3DModel.load_config(folder))
    index = folder / 'diffusion_pytorch_model.safetensors.index.json'
    if index.is_file():
        files = sorted(set(read_json(index)['weight_map'].values()))
    else:
        files = ['diffusion_pytorch_model.safetensors']
    missing = [name for name in files if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(f'Wan transformer weights {missing} are missing in {folder}')
    state = {key: value for name in files for key, value in load_file(folder / name).items()}
    model.load_state_dict(state, strict=True)
    return model


def read_flow_shift(folder: Path) -> dict:
    """``FlowMatchEuler`` kwargs from a diffusers flow scheduler config (``shift`` / ``flow_shift``)."""
    path = folder / 'scheduler_config.json'
    raw = read_json(path)
    name = raw.get('_class_name')
    if name == 'FlowMatchEulerDiscreteScheduler':
        config = diffusers.FlowMatchEulerDiscreteScheduler.from_config(raw).config
        unsupported = [key for key in ('use_dynamic_shifting', 'shift_terminal', 'use_karras_sigmas',
                                       'use_exponential_sigmas', 'use_beta_sigmas', 'invert_sigmas',
                                       'stochastic_sampling') if config.get(key)]
        if unsupported:
            raise ValueError(f'{path}: {unsupported} are not supported (only a fixed shift)')
        shift = config['shift']
    elif name == 'UniPCMultistepScheduler' and raw.get('use_flow_sigmas'):
        shift = diffusers.UniPCMultistepScheduler.from_config(raw).config['flow_shift']
    else:
        raise ValueError(f'{path}: scheduler {name!r} is not FlowMatchEulerDiscreteScheduler or '
                         'UniPCMultistepScheduler with use_flow_sigmas=true')
    return dict(num_train_timesteps=raw.get('num_train_timesteps', 1000), shift=float(shift))


@VIDEO_BACKBONES.register_module(name='WanFLF2V')
class WanFLF2V(VideoBackbone):
    """Wan 2.1 FLF2V (first + last frame) video diffusion model; see the module docstring.

    Args:
        pretrained: the local diffusers model folder (module docstring); the transformer must have
            ``image_dim`` and ``pos_embed_seq_len`` set (the FLF2V image embedding of 2 images).
        prompt_embedding: ``.safetensors`` / ``.pt`` file with the UMT5 prompt embedding
            ``[1, L, text_dim]`` (``'prompt_embeds'`` key for safetensors).
        negative_prompt_embedding: the same for the negative prompt (the unconditional branch of
            classifier-free guidance; None: no guidance).
        dtype, vae_tiling, vae_slicing: see :class:`~videoscene.backbones.VideoBackbone`.
    """

    prediction_type = 'flow'

    def __init__(self, pretrained: str | Path, prompt_embedding: str | Path,
                 negative_prompt_embedding: str | Path | None = None,
                 dtype: str | torch.dtype = 'float32', vae_tiling: bool = False,
                 vae_slicing: bool = False) -> None:
        super().__init__(dtype, vae_tiling, vae_slicing)
        self.pretrained = Path(pretrained)
        what = f'Wan FLF2V at {pretrained}'
        for sub in ('transformer', 'vae', 'image_encoder'):
            require_folder(pretrained, sub, ('config.json',), what)
        processor = require_folder(pretrained, 'image_processor', ('preprocessor_config.json',),
                                   what, weights=False)
        scheduler = require_folder(pretrained, 'scheduler', ('scheduler_config.json',), what,
                                   weights=False)
        self.transformer = load_transformer(self.pretrained / 'transformer')
        self.vae = AutoencoderKLWan.from_pretrained(pretrained, subfolder='vae',
                                                    low_cpu_mem_usage=False)
        self.image_encoder = CLIPVisionModel.from_pretrained(pretrained, subfolder='image_encoder')
        self.image_processor = CLIPImageProcessor.from_pretrained(processor)
        self._scheduler_config = read_flow_shift(scheduler)
        self.scheduler = FlowMatchEulerScheduler(**self._scheduler_config)

        config, vae = self.transformer.config, self.vae.config
        self.latent_channels = vae.z_dim
        self.temporal_factor, self.spatial_factor = vae.scale_factor_temporal, vae.scale_factor_spatial
        expected = 2 * self.latent_channels + MASK_CHANNELS
        if self.temporal_factor != MASK_CHANNELS or config.in_channels != expected:
            raise ValueError(f'{what}: needs a VAE with temporal factor {MASK_CHANNELS} and a '
                             f'transformer with in_channels = 2 x z_dim + {MASK_CHANNELS} = {expected}, got '
                             f'{self.temporal_factor} and {config.in_channels}')
        if config.image_dim is None or config.pos_embed_seq_len is None:
            raise ValueError(f'{what}: the transformer has image_dim={config.image_dim}, '
                             f'pos_embed_seq_len={config.pos_embed_seq_len}; first-last-frame '
                             'conditioning needs both (an FLF2V checkpoint)')
        if config.image_dim != self.image_encoder.config.hidden_size:
            raise ValueError(f'{what}: transformer image_dim={config.image_dim} but the image encoder '
                             f'has hidden_size={self.image_encoder.config.hidden_size}')
        self.register_buffer('latents_mean', torch.tensor(vae.latents_mean).float(), persistent=False)
        self.register_buffer('latents_std', torch.tensor(vae.latents_std).float(), persistent=False)
        self.register_buffer('prompt_embeds', load_prompt_embedding(prompt_embedding, config.text_dim),
                             persistent=False)
        self.register_buffer('negative_prompt_embeds', None if negative_prompt_embedding is None else
                             load_prompt_embedding(negative_prompt_embedding, config.text_dim),
                             persistent=False)

        self.vae.requires_grad_(False)
        self.image_encoder.requires_grad_(False)
        if vae_tiling:
            self.vae.enable_tiling()
        if vae_slicing:
            self.vae.enable_slicing()
        self.set_dtype(self.dtype)

    # ------------------------------------------------------------------------- sizes
    def latent_frames(self, num_frames: int) -> int:
        """``(F - 1) / 4 + 1``; ``F`` must be ``4k + 1`` (Wan's causal VAE)."""
        k = self.temporal_factor
        if num_frames < 1 or (num_frames - 1) % k:
            raise ValueError(f"Wan's VAE needs {k}k+1 frames (1, {k + 1}, {2 * k + 1}, ..., 81), "
                             f'got {num_frames}')
        return (num_frames - 1) // k + 1

    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        _, p_h, p_w = self.transformer.config.patch_size
        s = self.spatial_factor
        if height % (s * p_h) or width % (s * p_w):
            raise ValueError(f'Wan needs frame sizes divisible by {s * p_h} x {s * p_w} (VAE x patch '
                             f'size), got {height} x {width}')
        return height // s, width // s

    # ------------------------------------------------------------------------- VAE
    def _normalise(self, z: torch.Tensor) -> torch.Tensor:
        """VAE latents ``[B, C, f, h, w]`` -> project latents ``[B, f, C, h, w]`` (float32)."""
        mean, std = (v.reshape(1, -1, 1, 1, 1) for v in (self.latents_mean, self.latents_std))
        return ((z.float() - mean) / std).permute(0, 2, 1, 3, 4)

    def _encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """``[B, 3, F, H, W]`` in ``[-1, 1]`` -> project latents (posterior mode)."""
        return self._normalise(self.vae.encode(pixels.to(self.device, self.dtype)).latent_dist.mode())

    def encode(self, video: torch.Tensor) -> torch.Tensor:
        self.check_video(video)
        return self._encode_pixels((video * 2 - 1).permute(0, 2, 1, 3, 4))

    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        self.check_latents(latents)
        mean, std = (v.reshape(1, 1, -1, 1, 1) for v in (self.latents_mean, self.latents_std))
        z = (latents.to(self.device).float() * std + mean).permute(0, 2, 1, 3, 4)
        pixels = self.vae.decode(z.to(self.dtype)).sample
        return ((pixels.permute(0, 2, 1, 3, 4).float() + 1) / 2).clamp(0, 1)

    # ------------------------------------------------------------------------- conditioning
    def condition(self, first: torch.Tensor, last: torch.Tensor | None, num_frames: int,
                  augment: bool = False) -> Conditioning:
        """``{'image_latents', 'image_embeds', 'prompt_embeds'}`` (module docstring)."""
        if last is None:
            raise ValueError('WanFLF2V conditions on the first and the last frame; last=None given')
        if augment:
            raise ValueError('Wan FLF2V was trained without noise augmentation of its condition '
                             'frames; use augment=False (augment_conditions=False in configs)')
        f, h, w = self.check_condition_images(first, last, num_frames)
        batch, k = first.shape[0], self.temporal_factor
        pixels = first.new_zeros(batch, 3, num_frames, *first.shape[-2:])
        pixels[:, :, 0], pixels[:, :, -1] = first * 2 - 1, last * 2 - 1
        latents = self._encode_pixels(pixels)                                   # [B, f, C, h, w]
        given = torch.zeros(num_frames + k - 1, device=latents.device)         # first frame x k
        given[:k], given[-1] = 1, 1
        mask = given.reshape(f, k, 1, 1).expand(f, k, h, w)
        image_latents = torch.cat([mask.expand(batch, -1, -1, -1, -1), latents], dim=2)
        return {'image_latents': image_latents,
                'image_embeds': self._clip_embeddings(first, last),
                'prompt_embeds': self.prompt_embeds.expand(batch, -1, -1)}

    def _clip_embeddings(self, first: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
        """``[B, 2 N, D]``: penultimate CLIP hidden states of ``first`` then ``last``."""
        frames = torch.stack([first, last], dim=1).flatten(0, 1)                # [2B, 3, H, W]
        pixels = (frames.clamp(0, 1) * 255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu()
        inputs = self.image_processor(images=list(pixels.numpy()), return_tensors='pt')
        hidden = self.image_encoder(pixel_values=inputs['pixel_values'].to(self.device, self.dtype),
                                    output_hidden_states=True).hidden_states[-2]
        return hidden.float().unflatten(0, (len(first), 2)).flatten(1, 2)

    def unconditional(self, conditioning: Conditioning) -> Conditioning:
        """``conditioning`` with the negative prompt (same images), as the pipeline guides."""
        if self.negative_prompt_embeds is None:
            return super().unconditional(conditioning)
        batch = conditioning['prompt_embeds'].shape[0]
        return {**conditioning, 'prompt_embeds': self.negative_prompt_embeds.expand(batch, -1, -1)}

    # ------------------------------------------------------------------------- denoiser
    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        self.check_latents(x_t)
        image_latents = conditioning['image_latents']
        expected = (*x_t.shape[:2], self.latent_channels + MASK_CHANNELS, *x_t.shape[3:])
        if tuple(image_latents.shape) != expected:
            raise ValueError(f"conditioning['image_latents'] must be {expected} for x_t "
                             f'{tuple(x_t.shape)}, got {tuple(image_latents.shape)}')
        batch = x_t.shape[0]
        hidden = torch.cat([x_t, image_latents.to(x_t)], dim=2).permute(0, 2, 1, 3, 4)
        images = conditioning['image_embeds']                                   # [B, 2N, D]
        timestep = self.scheduler.noise_condition(t).to(self.device).expand(batch)
        output = self.transformer(
            hidden_states=hidden.to(self.device, self.dtype), timestep=timestep,
            encoder_hidden_states=conditioning['prompt_embeds'].to(self.device, self.dtype),
            encoder_hidden_states_image=images.reshape(2 * batch, -1, images.shape[-1]).to(
                self.device, self.dtype),
            return_dict=False)[0]
        return output.permute(0, 2, 1, 3, 4).float()

    def denoiser(self) -> nn.Module:
        return self.transformer

    def attention_modules(self) -> dict[str, nn.Module]:
        return modules_of_type(self.transformer, WanAttention)

    def scheduler_config(self) -> dict:
        return dict(type='FlowMatchEuler', **self._scheduler_config)

    def save_pretrained(self, out: str | Path) -> Path:
        """``out/{transformer,vae,image_encoder,image_processor,scheduler}/`` and the prompt
        embedding(s) as ``out/[negative_]prompt_embeds.safetensors``."""
        out = save_model_folder(out, {'transformer': self.transformer, 'vae': self.vae,
                                      'image_encoder': self.image_encoder}, self.pretrained,
                                ['scheduler', 'image_processor'])
        for name in ('prompt_embeds', 'negative_prompt_embeds'):
            embedding = getattr(self, name)
            if embedding is not None:
                save_file({'prompt_embeds': embedding.float().cpu().contiguous()},
                          out / f'{name}.safetensors')
        return out
