"""Feed-forward reconstructors: posed context images -> 3D Gaussians.

Importing this package registers every reconstructor in ``videoscene.registry.RECONSTRUCTORS``.
"""
from .depth_unprojection import DepthUnprojection
from .gaussian_adapter import GaussianAdapter, GaussianParameters
from .mvsplat import MVSplat, MVSplatOutput
from .official_checkpoint import CheckpointMismatchError
from .pixelsplat import PixelSplat, PixelSplatOutput

__all__ = ['DepthUnprojection', 'GaussianAdapter', 'GaussianParameters', 'MVSplat', 'MVSplatOutput',
           'CheckpointMismatchError', 'PixelSplat', 'PixelSplatOutput']
