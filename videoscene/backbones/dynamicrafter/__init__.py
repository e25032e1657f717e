"""DynamiCrafter 512 / 512-Interp, re-implemented on the official checkpoint layout.

One file per part: :mod:`.unet` (3-D UNet) with :mod:`.attention` (spatial / temporal
transformers, image cross-attention), :mod:`.autoencoder` (KL VAE), :mod:`.resampler` (image
projector), :mod:`.openclip` (OpenCLIP text and image encoders), :mod:`.backbone` (the registered
``DynamiCrafter`` video backbone) and :mod:`.tiny` (a tiny configuration for tests and CPU runs).
Sampling (the official recipe: DDIM with eta 1, guidance 7.5 rescaled by 0.7) is the project's one
loop, :func:`videoscene.pipelines.sampling.denoise`.
"""
from .autoencoder import AutoencoderKL
from .backbone import DynamiCrafter, schedule_buffers
from .openclip import OpenCLIPImageEncoder, OpenCLIPTextEncoder, empty_prompt_tokens
from .resampler import Resampler
from .tiny import TINY_DYNAMICRAFTER, save_tiny_dynamicrafter
from .unet import UNet3D

__all__ = ['AutoencoderKL', 'DynamiCrafter', 'OpenCLIPImageEncoder', 'OpenCLIPTextEncoder',
           'Resampler', 'TINY_DYNAMICRAFTER', 'UNet3D', 'empty_prompt_tokens',
           'save_tiny_dynamicrafter', 'schedule_buffers']
