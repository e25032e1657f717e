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

import torch
from torch import Tensor

__all__ = ['CameraPath', 'CAMERA_KEYS', 'check_cameras']

CAMERA_KEYS = ('extrinsics', 'intrinsics', 'near', 'far')


class CameraPath(ABC):
    """Base class of the entries of ``videoscene.registry.CAMERA_PATHS`` (contract above)."""

    @abstractmethod
    def __call__(self, context: dict, target: dict | None, num_frames: int) -> dict[str, Tensor]:
        """Cameras ``{extrinsics [B, n, 4, 4], intrinsics [B, n, 3, 3], near [B, n], far [B, n]}``."""


def check_cameras(cameras: dict, role: str, rotation_tolerance: float | None = None) -> None:
    """Validate a batched camera dict; errors name ``role`` (e.g. ``'context'``), batch item and view.

    Checks the keys and shapes of the contract and that every value is finite. With
    ``rotation_tolerance``, also that each camera-to-world rotation is orthonormal with det +1
    (largest entry of ``|R^T R - I|`` and ``|det R - 1|`` at most the tolerance).
    """
    if not isinstance(cameras, dict):
        raise TypeError(f'{role} cameras must be a dict with keys {CAMERA_KEYS}, got {type(cameras).__name__}')
    missing = [key for key in CAMERA_KEYS if key not in cameras]
    if missing:
        raise KeyError(f'{role} cameras lack {missing}; a camera dict needs {CAMERA_KEYS}')
    extrinsics = cameras['extrinsics']
    if extrinsics.dim() != 4 or extrinsics.shape[-2:] != (4, 4):
        raise ValueError(f'{role} extrinsics must be batched [B, V, 4, 4], got {list(extrinsics.shape)}')
    batch, views = extrinsics.shape[:2]
    expected = {'intrinsics': (batch, views, 3, 3), 'near': (batch, views), 'far': (batch, views)}
    for key, shape in expected.items():
        if tuple(cameras[key].shape) != shape:
            raise ValueError(f'{role} {key} must have shape {list(shape)} to match extrinsics '
                             f'{list(extrinsics.shape)}, got {list(cameras[key].shape)}')

    for key in CAMERA_KEYS:
        finite = torch.isfinite(cameras[key].reshape(batch, views, -1)).all(-1)
        if not bool(finite.all()):
            b, v = (~finite).nonzero()[0].tolist()
            raise ValueError(f'{role} camera (batch item {b}, view {v}) has non-finite {key}')

    if rotation_tolerance is not None:
        rotation = extrinsics[..., :3, :3].double()
        eye = torch.eye(3, dtype=rotation.dtype, device=rotation.device)
        orthogonality = (rotation.transpose(-1, -2) @ rotation - eye).abs().amax((-1, -2))
        determinant = torch.linalg.det(rotation)
        bad = (orthogonality > rotation_tolerance) | ((determinant - 1).abs() > rotation_tolerance)
        if bool(bad.any()):
            b, v = bad.nonzero()[0].tolist()
            raise ValueError(
                f'{role} camera (batch item {b}, view {v}): the rotation of its extrinsics is not '
                f'orthonormal with det +1 (max |R^T R - I| = {orthogonality[b, v].item():.3g}, '
                f'det = {determinant[b, v].item():.6g}, tolerance {rotation_tolerance:g})')
