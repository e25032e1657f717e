"""Gaussian renderers: ``torch`` (pure torch, CPU) and ``gsplat`` (CUDA), registered in RENDERERS."""
from .base import GaussianRenderer, RenderOutput, pixel_intrinsics
from .gsplat_renderer import GsplatRenderer
from .torch_renderer import TorchRenderer

__all__ = ['GaussianRenderer', 'RenderOutput', 'pixel_intrinsics', 'GsplatRenderer', 'TorchRenderer']
