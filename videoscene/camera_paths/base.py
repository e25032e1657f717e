"""The contract every camera path follows.

A camera path chooses the cameras a reconstruction is rendered from::

    path(context: dict, target: dict | None, num_frames: int) -> dict(
        extrinsics [B, n, 4, 4],   # OpenCV camera-to-world
        intrinsics [B, n, 3, 3],   # normalised (row 0 / W, row 1 / H)
        near [B, n],
        far [B, n],
    )

``context`` and ``target`` are the batched camera dicts of a scene sample (MVSplat's batch
layout): ``extrinsics [B, V, 4, 4]``, ``intrinsics [B, V, 3, 3]``, ``near [B, V]``, ``far [B, V]``;
other keys (``image``, ``index``, ...) are ignored. ``n == num_frames``. Paths that do not need
the target views accept ``target=None``.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

from torch import Tensor

from videoscene.errors import InputError
from videoscene.geometry.camera_validation import check_camera_tensors

__all__ = ['CameraPath', 'CAMERA_KEYS', 'check_cameras']

CAMERA_KEYS = ('extrinsics', 'intrinsics', 'near', 'far')


class CameraPath(ABC):
    """Base class of the entries of ``videoscene.registry.CAMERA_PATHS`` (contract above)."""

    @abstractmethod
    def __call__(self, context: dict, target: dict | None, num_frames: int) -> dict[str, Tensor]:
        """Cameras ``{extrinsics [B, n, 4, 4], intrinsics [B, n, 3, 3], near [B, n], far [B, n]}``."""


def check_cameras(cameras: dict, role: str) -> None:
    """Validate a batched camera dict; errors name ``role['key']`` (e.g. ``context['extrinsics']``),
    the batch item and the view.

    Checks the keys and shapes of the contract, then every camera with
    ``geometry.camera_validation`` (finite, rigid extrinsics with a proper rotation, normalised
    intrinsics with positive focal lengths, ``0 < near < far``): ``CameraError``.
    """
    if not isinstance(cameras, dict):
        raise InputError(f'{role} cameras', f'must be a dict with keys {CAMERA_KEYS}, got {type(cameras).__name__}')
    missing = [key for key in CAMERA_KEYS if key not in cameras]
    if missing:
        raise KeyError(f'{role} cameras lack {missing}; a camera dict needs {CAMERA_KEYS}')
    extrinsics = cameras['extrinsics']
    if extrinsics.dim() != 4 or extrinsics.shape[-2:] != (4, 4):
        raise InputError(f"{role}['extrinsics']", f'must be batched [B, V, 4, 4], got {list(extrinsics.shape)}')
    batch, views = extrinsics.shape[:2]
    expected = {'intrinsics': (batch, views, 3, 3), 'near': (batch, views), 'far': (batch, views)}
    for key, shape in expected.items():
        if tuple(cameras[key].shape) != shape:
            raise InputError(f"{role}['{key}']", f'must have shape {list(shape)} to match extrinsics '
                                                 f'{list(extrinsics.shape)}, got {list(cameras[key].shape)}')
    check_camera_tensors({key: cameras[key] for key in CAMERA_KEYS}, role)
