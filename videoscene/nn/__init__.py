"""Small network blocks shared by several re-implemented models."""
from .resampling import Downsample, Upsample

__all__ = ['Downsample', 'Upsample']
