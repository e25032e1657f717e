"""pixelSplat, the epipolar-transformer Gaussian reconstructor (official checkpoints load as-is)."""
from .model import PixelSplat, PixelSplatOutput

__all__ = ['PixelSplat', 'PixelSplatOutput']
