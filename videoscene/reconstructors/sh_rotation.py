"""Rotation of real spherical-harmonic coefficients (Wigner-D matrices) in pure torch.

MVSplat and pixelSplat predict colour harmonics in camera space and rotate them into world space
with e3nn's real Wigner-D matrices, so their checkpoints expect e3nn's real basis:

* degree-major, orthonormal real harmonics, ``(degree + 1) ** 2`` coefficients in all;
* within degree ``l`` the ``2l + 1`` functions are the standard real harmonics (the table on
  Wikipedia, no Condon-Shortley phase) ordered ``m = -l .. l`` and evaluated at the permuted point
  ``(z, x, y)``. For ``l = 1`` this is simply ``(x, y, z)``, so ``D^1(R) = R``.

The Wigner-D block of degree ``l`` is the matrix with ``Y_l(R v) = D_l(R) Y_l(v)`` for every
direction ``v``. It is solved here by least squares from the harmonics evaluated at a fixed set of
sample directions and at their rotated copies, in float64. Rotating a function ``f(v) = c . Y(v)``
by ``R`` (``f'(v) = f(R^T v)``) gives the coefficients ``c' = D(R) c``.
"""
from __future__ import annotations

import functools
import math

import torch

__all__ = ['real_spherical_harmonics', 'wigner_d', 'rotate_sh']


def _standard_real_harmonics(x: torch.Tensor, y: torch.Tensor, z: torch.Tensor,
                             degree: int) -> torch.Tensor:
    """Orthonormal real harmonics of unit vectors ``(x, y, z)`` without Condon-Shortley phase.

    Returns ``[..., (degree + 1) ** 2]``, degree-major, ``m = -l .. l`` within a degree.
    """
    # cos_m + i sin_m = (x + i y) ** m carries the azimuthal part (and the sin(theta) ** m factor).
    cos_m, sin_m = [torch.ones_like(x)], [torch.zeros_like(x)]
    for _ in range(degree):
        cos_prev, sin_prev = cos_m[-1], sin_m[-1]
        cos_m.append(x * cos_prev - y * sin_prev)
        sin_m.append(x * sin_prev + y * cos_prev)

    # legendre[l][m]: associated Legendre polynomial in z with the sin(theta) ** m factor removed.
    legendre = [[None] * (degree + 1) for _ in range(degree + 1)]
    for m in range(degree + 1):
        legendre[m][m] = torch.full_like(z, float(math.prod(range(1, 2 * m, 2))))
        if m + 1 <= degree:
            legendre[m + 1][m] = (2 * m + 1) * z * legendre[m][m]
        for l in range(m + 2, degree + 1):
            legendre[l][m] = ((2 * l - 1) * z * legendre[l - 1][m]
                              - (l + m - 1) * legendre[l - 2][m]) / (l - m)

    values = []
    for l in range(degree + 1):
        for m in range(-l, l + 1):
            a = abs(m)
            norm = math.sqrt((2 * l + 1) / (4 * math.pi)
                             * math.factorial(l - a) / math.factorial(l + a))
            if m == 0:
                values.append(norm * legendre[l][0])
            else:
                azimuth = cos_m[a] if m > 0 else sin_m[a]
                values.append(math.sqrt(2.0) * norm * legendre[l][a] * azimuth)
    return torch.stack(values, dim=-1)


def real_spherical_harmonics(directions: torch.Tensor, degree: int) -> torch.Tensor:
    """Real spherical harmonics in e3nn's basis (orthonormal, "integral" normalisation).

    Args:
        directions: ``[..., 3]`` unit vectors.
        degree: highest degree ``L``.

    Returns:
        ``[..., (L + 1) ** 2]`` values, degree-major.
    """
    if directions.shape[-1] != 3:
        raise ValueError(f'directions must have shape [..., 3], got {tuple(directions.shape)}')
    x, y, z = directions.unbind(-1)
    return _standard_real_harmonics(z, x, y, degree)


@functools.lru_cache(maxsize=None)
def _sample_directions(count: int) -> torch.Tensor:
    """``[count, 3]`` float64 unit vectors spread over the sphere (Fibonacci lattice)."""
    index = torch.arange(count, dtype=torch.float64) + 0.5
    height = 1.0 - 2.0 * index / count
    radius = torch.sqrt(1.0 - height ** 2)
    azimuth = math.pi * (3.0 - math.sqrt(5.0)) * index
    return torch.stack((radius * torch.cos(azimuth), radius * torch.sin(azimuth), height), dim=-1)


@functools.lru_cache(maxsize=None)
def _solver(degree: int) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Sample directions and, per degree, the pseudo-inverse of the harmonics evaluated there."""
    directions = _sample_directions(2 * (degree + 1) ** 2)
    basis = real_spherical_harmonics(directions, degree)
    inverses = [torch.linalg.pinv(basis[:, l * l:(l + 1) ** 2]) for l in range(degree + 1)]
    return directions, inverses


def wigner_d(rotations: torch.Tensor, degree: int) -> torch.Tensor:
    """Block-diagonal real Wigner-D matrices up to ``degree`` in e3nn's basis.

    Args:
        rotations: ``[..., 3, 3]`` rotation matrices.
        degree: highest degree ``L``.

    Returns:
        ``[..., n, n]`` with ``n = (L + 1) ** 2`` (float64), such that
        ``real_spherical_harmonics(R v) = D(R) @ real_spherical_harmonics(v)``.
    """
    if rotations.shape[-2:] != (3, 3):
        raise ValueError(f'rotations must have shape [..., 3, 3], got {tuple(rotations.shape)}')
    directions, inverses = _solver(degree)
    rotations = rotations.to(torch.float64)
    directions = directions.to(rotations.device)
    rotated = torch.einsum('...ij,nj->...ni', rotations, directions)
    basis = real_spherical_harmonics(rotated, degree)  # [..., N, n]
    n = (degree + 1) ** 2
    matrix = rotations.new_zeros((*rotations.shape[:-2], n, n))
    for l, inverse in enumerate(inverses):
        block = slice(l * l, (l + 1) ** 2)
        # Y_l(R X) = Y_l(X) D_l^T  =>  D_l^T = pinv(Y_l(X)) Y_l(R X)
        matrix[..., block, block] = (inverse.to(rotations.device) @ basis[..., block]).transpose(-1, -2)
    return matrix


def rotate_sh(coefficients: torch.Tensor, rotations: torch.Tensor) -> torch.Tensor:
    """Rotate real SH coefficients (e3nn basis) by rotation matrices.

    Args:
        coefficients: ``[..., n]`` with ``n = (L + 1) ** 2``, degree-major.
        rotations: ``[..., 3, 3]``, broadcastable against ``coefficients.shape[:-1]``. Wigner-D
            matrices are computed once per rotation (e.g. once per camera), not per coefficient
            vector.

    Returns:
        ``[..., n]`` coefficients of the rotated function ``v -> f(R^T v)``, in the dtype of
        ``coefficients``.
    """
    n = coefficients.shape[-1]
    degree = math.isqrt(n) - 1
    if (degree + 1) ** 2 != n:
        raise ValueError(f'the last dimension of coefficients must be a square (d + 1) ** 2, got {n}')
    matrix = wigner_d(rotations, degree).to(coefficients.dtype)
    return torch.einsum('...ij,...j->...i', matrix, coefficients)
