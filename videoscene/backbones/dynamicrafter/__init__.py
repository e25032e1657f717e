"""DynamiCrafter 512 / 512-Interp, re-implemented on the official checkpoint layout.

One file per part: :mod:`.unet` (3-D UNet) with :mod:`.attention` (spatial / temporal
transformers, image cross-attention), :mod:`.autoencoder` (KL VAE), :mod:`.resampler` (image
projector), :mod:`.openclip` (OpenCLIP text and image encoders), :mod:`.backbone` (the registered
``DynamiCrafter`` video backbone), :mod:`.sampling` (the official DDIM + guidance sampler) and
:mod:`.tiny` (a tiny configuration for tests and CPU runs).
"""
from .autoencoder import AutoencoderKL
from .backbone import DynamiCrafter, schedule_buffers
from .openclip import OpenCLIPImageEncoder, OpenCLIPTextEncoder, empty_prompt_tokens
from .resampler import Resampler
from .sampling import interpolate, sample
from .tiny import TINY_DYNAMICRAFTER, save_tiny_dynamicrafter
from .unet import UNet3D

__all__ = ['AutoencoderKL', 'DynamiCrafter', 'OpenCLIPImageEncoder', 'OpenCLIPTextEncoder',
           'Resampler', 'TINY_DYNAMICRAFTER', 'UNet3D', 'empty_prompt_tokens', 'interpolate',
           'sample', 'save_tiny_dynamicrafter', 'schedule_buffers']
