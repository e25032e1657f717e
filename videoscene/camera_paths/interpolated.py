"""Camera paths interpolated between the two context cameras (the demo setting).

Two schemes move the camera from context view 0 (frame 0) to context view 1 (frame n - 1):

* ``'slerp'``: the rotation follows the SO(3) geodesic, the camera centre the straight line.
* ``'pivot'``: the scheme of pixelSplat/MVSplat, used by the official VideoScene demo. The
  pivot is the least-squares intersection of the two viewing axes (the midpoint of their
  common perpendicular), or the midpoint of the two centres when the axes are parallel. The
  pivot axis is normal to the plane of the two viewing directions. Each camera is described
  by its yaw, pitch and roll relative to a frame around the pivot axis (intrinsic Y-X-Z Euler
  angles; the pitch is zero by construction and carried only so the endpoints come back to
  round-off) and by the pivot's offset in a frame that turns with the camera's yaw. Offsets
  are interpolated linearly and angles along the shorter way round, so cameras that look at a
  common point swing around it instead of cutting the corner.

The interpolation weight of frame ``i`` is ``t = i / (n - 1)`` eased by ``'linear'`` (uniform
steps) or ``'cosine'`` (``(1 - cos(pi t)) / 2``: slow at both ends, the official demo's
choice). Intrinsics, near and far are linear in the eased weight (the official code repeats
context view 0's near and far instead). Everything is computed in float64 and returned in
the dtype of the context extrinsics; frame 0 and frame n - 1 reproduce the two context
cameras to round-off. Identical context cameras give a static path; a zero baseline with a
change of rotation is a valid pure rotation.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from videoscene.geometry.rotations import slerp
from videoscene.registry import CAMERA_PATHS

from .base import CameraPath, check_cameras

__all__ = ['InterpolatedPath']

MODES = ('slerp', 'pivot')
EASINGS = ('linear', 'cosine')


@CAMERA_PATHS.register_module(name='interpolated')
class InterpolatedPath(CameraPath):
    """Interpolates ``num_frames`` cameras between the two context views; ``target`` is ignored.

    Args:
        mode: ``'pivot'`` (official demo) or ``'slerp'``; see the module docstring.
        easing: ``'cosine'`` (official demo) or ``'linear'``.
        parallel_tolerance: viewing axes count as parallel for the pivot when
            ``| |cos angle| - 1 |`` is below this (MVSplat uses 1e-4, about 0.8 degrees).

    Context cameras are checked by ``geometry.camera_validation`` (``CameraError``).
    """

    def __init__(self, mode: str = 'pivot', easing: str = 'cosine', parallel_tolerance: float = 1e-4) -> None:
        if mode not in MODES:
            raise ValueError(f'InterpolatedPath mode must be one of {MODES}, got {mode!r}')
        if easing not in EASINGS:
            raise ValueError(f'InterpolatedPath easing must be one of {EASINGS}, got {easing!r}')
        self.mode = mode
        self.easing = easing
        self.parallel_tolerance = parallel_tolerance

    def __call__(self, context: dict, target: dict | None, num_frames: int) -> dict[str, Tensor]:
        check_cameras(context, 'context')
        views = context['extrinsics'].shape[1]
        if views != 2:
            raise ValueError(f'InterpolatedPath interpolates between exactly 2 context views, got {views}')
        if not isinstance(num_frames, int) or num_frames < 2:
            raise ValueError(f'InterpolatedPath needs num_frames >= 2 (an integer) to hold both '
                             f'context cameras, got {num_frames!r}')

        dtype = context['extrinsics'].dtype
        extrinsics = context['extrinsics'].double()
        t = self._weights(num_frames, extrinsics.device)
        if self.mode == 'slerp':
            rotation = slerp(extrinsics[:, :1, :3, :3], extrinsics[:, 1:, :3, :3], t[None])
            origin = _lerp(extrinsics[:, :1, :3, 3], extrinsics[:, 1:, :3, 3], t[None, :, None])
        else:
            rotation, origin = self._pivot(extrinsics, t)

        path = torch.zeros(*rotation.shape[:2], 4, 4, dtype=torch.float64, device=rotation.device)
        path[..., :3, :3] = rotation
        path[..., :3, 3] = origin
        path[..., 3, 3] = 1
        intrinsics, near, far = (context[key].double() for key in ('intrinsics', 'near', 'far'))
        return {
            'extrinsics': path.to(dtype),
            'intrinsics': _lerp(intrinsics[:, :1], intrinsics[:, 1:], t[None, :, None, None]).to(dtype),
            'near': _lerp(near[:, :1], near[:, 1:], t[None]).to(dtype),
            'far': _lerp(far[:, :1], far[:, 1:], t[None]).to(dtype),
        }

    def _weights(self, num_frames: int, device: torch.device) -> Tensor:
        """Eased interpolation weights ``[n]``, exactly 0 first and exactly 1 last."""
        t = torch.linspace(0, 1, num_frames, dtype=torch.float64, device=device)
        if self.easing == 'cosine':
            t = 0.5 * (1 - torch.cos(math.pi * t))
        return t

    def _pivot(self, extrinsics: Tensor, t: Tensor) -> tuple[Tensor, Tensor]:
        """Rotations ``[B, n, 3, 3]`` and centres ``[B, n, 3]`` of the pivot-point path."""
        rotations, origins = extrinsics[..., :3, :3], extrinsics[..., :3, 3]
        looks = rotations[..., :, 2]
        looks = looks / torch.linalg.vector_norm(looks, dim=-1, keepdim=True)
        cos = (looks[:, 0] * looks[:, 1]).sum(-1)
        parallel = ((cos.abs() - 1).abs() < self.parallel_tolerance)[:, None]

        pivot = _pivot_point(origins[:, 0], looks[:, 0], origins[:, 1], looks[:, 1], parallel)
        frame = _pivot_frame(looks[:, 0], looks[:, 1], parallel)
        offsets, angles = _to_pivot_parameters(rotations, origins, frame[:, None], pivot[:, None])

        turn = torch.remainder(angles[:, 1] - angles[:, 0] + math.pi, 2 * math.pi) - math.pi
        angles = angles[:, :1] + t[None, :, None] * turn[:, None]
        offsets = _lerp(offsets[:, :1], offsets[:, 1:], t[None, :, None])
        return _from_pivot_parameters(offsets, angles, frame[:, None], pivot[:, None])


def _lerp(start: Tensor, end: Tensor, t: Tensor) -> Tensor:
    """``(1 - t) start + t end``: exactly ``start`` at 0 and exactly ``end`` at 1."""
    return (1 - t) * start + t * end


def _pivot_point(origin0: Tensor, look0: Tensor, origin1: Tensor, look1: Tensor, parallel: Tensor) -> Tensor:
    """Midpoint ``[B, 3]`` of the common perpendicular of two lines (unit directions), or of the
    two origins where ``parallel [B, 1]``."""
    between = origin0 - origin1
    b = (look0 * look1).sum(-1, keepdim=True)
    d = (look0 * between).sum(-1, keepdim=True)
    e = (look1 * between).sum(-1, keepdim=True)
    denominator = torch.where(parallel, torch.ones_like(b), 1 - b * b)
    s = (b * e - d) / denominator
    u = (e - b * d) / denominator
    closest = 0.5 * (origin0 + s * look0 + origin1 + u * look1)
    return torch.where(parallel, 0.5 * (origin0 + origin1), closest)


def _frame(y: Tensor, z: Tensor) -> Tensor:
    """Orthonormal frame ``[..., 3, 3]`` with columns ``(y x z, y, z)`` from perpendicular unit ``y``, ``z``."""
    y, z = torch.broadcast_tensors(y, z)
    return torch.stack([torch.linalg.cross(y, z), y, z], dim=-1)


def _pivot_frame(look0: Tensor, look1: Tensor, parallel: Tensor) -> Tensor:
    """Frame ``[B, 3, 3]``: Y normal to the plane of the two viewing directions, Z along ``look0``.

    For parallel directions the plane is arbitrary (any axis normal to ``look0``).
    """
    unit_z = look0.new_tensor([0.0, 0.0, 1.0]).expand_as(look0)
    unit_y = look0.new_tensor([0.0, 1.0, 0.0]).expand_as(look0)
    helper = torch.where(look0[..., 2:].abs() > 0.9, unit_y, unit_z)
    other = torch.where(parallel, helper, look1)
    axis = torch.linalg.cross(look0, other)
    axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True)
    return _frame(axis, look0)


def _to_pivot_parameters(rotations: Tensor, origins: Tensor, frame: Tensor,
                         pivot: Tensor) -> tuple[Tensor, Tensor]:
    """Offsets ``[..., 3]`` of the pivot in each camera's yaw frame and yaw, pitch, roll ``[..., 3]``."""
    axis = frame[..., :, 1]
    yaw_frame = _frame(axis, rotations[..., :, 2])
    offsets = (yaw_frame.transpose(-1, -2) @ (pivot - origins)[..., None]).squeeze(-1)
    return offsets, _yxz_angles(frame.transpose(-1, -2) @ rotations)


def _from_pivot_parameters(offsets: Tensor, angles: Tensor, frame: Tensor,
                           pivot: Tensor) -> tuple[Tensor, Tensor]:
    """Inverse of :func:`_to_pivot_parameters`: rotations ``[..., 3, 3]`` and centres ``[..., 3]``."""
    rotations = frame @ _yxz_matrix(angles)
    yaw_frame = _frame(frame[..., :, 1], rotations[..., :, 2])
    origins = pivot - (yaw_frame @ offsets[..., None]).squeeze(-1)
    return rotations, origins


def _yxz_angles(matrix: Tensor) -> Tensor:
    """Angles ``(yaw, pitch, roll) [..., 3]`` with ``matrix = Ry(yaw) @ Rx(pitch) @ Rz(roll)``, |pitch| <= pi/2."""
    m = matrix
    yaw = torch.atan2(m[..., 0, 2], m[..., 2, 2])
    pitch = torch.atan2(-m[..., 1, 2], torch.hypot(m[..., 1, 0], m[..., 1, 1]))
    roll = torch.atan2(m[..., 1, 0], m[..., 1, 1])
    return torch.stack([yaw, pitch, roll], dim=-1)


def _yxz_matrix(angles: Tensor) -> Tensor:
    """``Ry(yaw) @ Rx(pitch) @ Rz(roll)`` ``[..., 3, 3]`` from ``angles [..., 3]``."""
    cos, sin = torch.cos(angles), torch.sin(angles)
    one, zero = torch.ones_like(cos[..., 0]), torch.zeros_like(cos[..., 0])

    def matrix(*entries: Tensor) -> Tensor:
        return torch.stack(entries, dim=-1).unflatten(-1, (3, 3))

    yaw = matrix(cos[..., 0], zero, sin[..., 0], zero, one, zero, -sin[..., 0], zero, cos[..., 0])
    pitch = matrix(one, zero, zero, zero, cos[..., 1], -sin[..., 1], zero, sin[..., 1], cos[..., 1])
    roll = matrix(cos[..., 2], -sin[..., 2], zero, sin[..., 2], cos[..., 2], zero, zero, zero, one)
    return yaw @ pitch @ roll
