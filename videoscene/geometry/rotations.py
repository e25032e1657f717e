"""Rotations in SO(3): exponential and logarithm maps, geodesic interpolation, quaternions.

Batched torch functions: every leading dimension is a batch dimension and broadcasts.
Rotation vectors (axis-angle) are ``[..., 3]`` with the angle in radians as their norm;
rotation matrices are ``[..., 3, 3]`` and act on column vectors.

Quaternions are in **wxyz** order (scalar first, as in gsplat and PyTorch3D). MVSplat's and
pixelSplat's Gaussian heads predict **xyzw**; convert with ``q[..., [3, 0, 1, 2]]``.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

__all__ = ['hat', 'so3_exp', 'so3_log', 'slerp', 'quaternion_to_matrix', 'matrix_to_quaternion']


def _check_last_dims(tensor: Tensor, name: str, shape: tuple[int, ...]) -> None:
    if tensor.dim() < len(shape) or tuple(tensor.shape[tensor.dim() - len(shape):]) != shape:
        expected = ', '.join(['...'] + [str(s) for s in shape])
        raise ValueError(f'{name} must have shape [{expected}], got {list(tensor.shape)}')


def hat(omega: Tensor) -> Tensor:
    """The skew-symmetric matrix ``[..., 3, 3]`` of ``omega [..., 3]``: ``hat(w) @ v == w x v``."""
    _check_last_dims(omega, 'omega', (3,))
    x, y, z = omega.unbind(-1)
    zero = torch.zeros_like(x)
    return torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], dim=-1).unflatten(-1, (3, 3))


def _sinc(x: Tensor) -> Tensor:
    """``sin(x) / x`` with its limit 1 at 0."""
    return torch.sinc(x / math.pi)


def so3_exp(omega: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of rotation vectors ``omega [..., 3]`` (Rodrigues).

    Uses ``sin(t)/t`` and ``(1 - cos t)/t^2 = 2 sin^2(t/2)/t^2``, both accurate down to a zero angle.
    """
    _check_last_dims(omega, 'omega', (3,))
    angle = torch.linalg.vector_norm(omega, dim=-1)[..., None, None]
    k = hat(omega)
    a = _sinc(angle)
    b = 0.5 * _sinc(0.5 * angle) ** 2
    eye = torch.eye(3, dtype=omega.dtype, device=omega.device)
    return eye + a * k + b * (k @ k)


def so3_log(rotation: Tensor) -> Tensor:
    """Rotation vectors ``[..., 3]`` (angle in ``[0, pi]``) of rotation matrices ``[..., 3, 3]``.

    Below 90 degrees the axis comes from the antisymmetric part ``(R - R^T) / 2 = sin(t) [n]x``;
    above, where ``sin(t)`` vanishes towards pi, from the symmetric part
    ``(R + R^T) / 2 - cos(t) I = (1 - cos t) n n^T``, with the sign taken from the antisymmetric
    part. At exactly pi both ``n`` and ``-n`` are valid and either may be returned.
    """
    _check_last_dims(rotation, 'rotation', (3, 3))
    r = rotation
    sin_axis = 0.5 * torch.stack(
        [r[..., 2, 1] - r[..., 1, 2], r[..., 0, 2] - r[..., 2, 0], r[..., 1, 0] - r[..., 0, 1]], dim=-1)
    cos = ((r.diagonal(dim1=-2, dim2=-1).sum(-1) - 1) / 2).clamp(-1.0, 1.0)
    sin = torch.linalg.vector_norm(sin_axis, dim=-1)
    angle = torch.atan2(sin, cos)

    # Small and medium angles: divide sin(t) n by sin(t)/t (1 at t = 0).
    near_zero = sin_axis / _sinc(angle).clamp_min(1e-6)[..., None]

    # Large angles: the column of the symmetric part with the largest diagonal entry is
    # (1 - cos t) n n_k; normalise it to +-n and orient it along sin(t) n.
    eye = torch.eye(3, dtype=r.dtype, device=r.device)
    outer = 0.5 * (r + r.transpose(-1, -2)) - cos[..., None, None] * eye
    column = outer.diagonal(dim1=-2, dim2=-1).argmax(-1)
    axis = torch.take_along_dim(outer, column[..., None, None], dim=-1).squeeze(-1)
    axis = axis / torch.linalg.vector_norm(axis, dim=-1, keepdim=True).clamp_min(1e-12)
    sign = torch.where((axis * sin_axis).sum(-1, keepdim=True) < 0, -1.0, 1.0).to(r.dtype)
    near_pi = sign * axis * angle[..., None]

    return torch.where((cos < 0)[..., None], near_pi, near_zero)


def slerp(start: Tensor, end: Tensor, t: Tensor) -> Tensor:
    """Geodesic interpolation ``start @ exp(t * log(start^T @ end))`` of rotation matrices.

    Args:
        start: ``[..., 3, 3]`` rotations at ``t = 0``.
        end: ``[..., 3, 3]`` rotations at ``t = 1``.
        t: ``[...]`` interpolation weights; ``start``, ``end`` (without their matrix dims) and
            ``t`` broadcast together, e.g. ``start [B, 1, 3, 3]`` with ``t [1, N]`` gives ``[B, N, 3, 3]``.

    Returns ``start`` exactly at ``t = 0`` and ``end`` to round-off at ``t = 1``. For rotations
    that differ by exactly pi the shortest path is not unique; one of the two is followed.
    """
    _check_last_dims(start, 'start', (3, 3))
    _check_last_dims(end, 'end', (3, 3))
    delta = so3_log(start.transpose(-1, -2) @ end)
    return start @ so3_exp(t[..., None] * delta)


def quaternion_to_matrix(quaternion: Tensor) -> Tensor:
    """Rotation matrices ``[..., 3, 3]`` of quaternions ``[..., 4]`` in wxyz order.

    The quaternions are normalised first; a zero quaternion raises ``ValueError``.
    """
    _check_last_dims(quaternion, 'quaternion', (4,))
    norm = torch.linalg.vector_norm(quaternion, dim=-1, keepdim=True)
    if bool((norm <= torch.finfo(quaternion.dtype).tiny).any()):
        raise ValueError('quaternion_to_matrix got a zero quaternion; quaternions must be non-zero (wxyz)')
    w, x, y, z = (quaternion / norm).unbind(-1)
    return torch.stack([
        1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y),
        2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x),
        2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y),
    ], dim=-1).unflatten(-1, (3, 3))


def matrix_to_quaternion(rotation: Tensor) -> Tensor:
    """Unit quaternions ``[..., 4]`` in wxyz order with ``w >= 0`` of rotation matrices ``[..., 3, 3]``.

    Each row below holds ``4 q_k q`` for one component ``k``; the row with the largest ``4 q_k^2``
    is divided by ``4 |q_k|`` (Shepperd's method), which stays well conditioned for every rotation.
    """
    _check_last_dims(rotation, 'rotation', (3, 3))
    m = rotation
    m00, m01, m02 = m[..., 0, 0], m[..., 0, 1], m[..., 0, 2]
    m10, m11, m12 = m[..., 1, 0], m[..., 1, 1], m[..., 1, 2]
    m20, m21, m22 = m[..., 2, 0], m[..., 2, 1], m[..., 2, 2]
    rows = torch.stack([
        torch.stack([1 + m00 + m11 + m22, m21 - m12, m02 - m20, m10 - m01], dim=-1),
        torch.stack([m21 - m12, 1 + m00 - m11 - m22, m01 + m10, m02 + m20], dim=-1),
        torch.stack([m02 - m20, m01 + m10, 1 - m00 + m11 - m22, m12 + m21], dim=-1),
        torch.stack([m10 - m01, m02 + m20, m12 + m21, 1 - m00 - m11 + m22], dim=-1),
    ], dim=-2)
    squares = rows.diagonal(dim1=-2, dim2=-1)
    best = squares.argmax(-1)
    row = torch.take_along_dim(rows, best[..., None, None], dim=-2).squeeze(-2)
    scale = torch.take_along_dim(squares, best[..., None], dim=-1).clamp_min(1e-12).sqrt()
    quaternion = row / (2 * scale)
    return torch.where(quaternion[..., :1] < 0, -quaternion, quaternion)
