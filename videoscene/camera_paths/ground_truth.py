"""The ground-truth camera path: the target cameras of the sample (the RE10K benchmark setting)."""
from __future__ import annotations

from torch import Tensor

from videoscene.registry import CAMERA_PATHS

from .base import CAMERA_KEYS, CameraPath, check_cameras

__all__ = ['GroundTruthPath']


@CAMERA_PATHS.register_module(name='ground_truth')
class GroundTruthPath(CameraPath):
    """Returns the target cameras unchanged (the same tensors, not copies).

    ``num_frames`` must equal the number of target views: the path neither subsamples nor
    repeats them.
    """

    def __call__(self, context: dict, target: dict | None, num_frames: int) -> dict[str, Tensor]:
        if target is None:
            raise ValueError('GroundTruthPath needs the target cameras of the sample, got target=None')
        check_cameras(target, 'target')
        views = target['extrinsics'].shape[1]
        if num_frames != views:
            raise ValueError(f'GroundTruthPath was asked for num_frames={num_frames} but the sample '
                             f'has {views} target views; they must be equal')
        return {key: target[key] for key in CAMERA_KEYS}
