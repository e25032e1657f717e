"""Camera paths a reconstruction is rendered along; entries of ``videoscene.registry.CAMERA_PATHS``.

The call contract is documented in :mod:`videoscene.camera_paths.base`.
"""
from .base import CameraPath
from .ground_truth import GroundTruthPath
from .interpolated import InterpolatedPath

__all__ = ['CameraPath', 'GroundTruthPath', 'InterpolatedPath']
