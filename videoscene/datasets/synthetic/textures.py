"""Procedural solid textures: the colour of a surface is a pure function of the 3D point.

A texture maps world points ``[N, 3]`` to RGB ``[N, 3]`` in [0, 1]. Because nothing depends on
the viewer, every camera that sees a point sees the same colour (multi-view consistency).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ['Texture', 'Checkers', 'Stripes', 'ValueNoise', 'Gradient', 'TEXTURE_KINDS', 'sample_texture']


class Texture:
    """Base class: ``texture(points [N, 3]) -> rgb [N, 3]`` in [0, 1]."""

    colors: Tensor  # [2, 3]: the two colours the pattern blends between

    def pattern(self, points: Tensor) -> Tensor:
        """Blend weight ``[N]`` in [0, 1] between ``colors[0]`` and ``colors[1]``."""
        raise NotImplementedError

    def __call__(self, points: Tensor) -> Tensor:
        weight = self.pattern(points).unsqueeze(-1)
        return self.colors[0] * (1.0 - weight) + self.colors[1] * weight


@dataclass
class Checkers(Texture):
    """3D checkerboard of cubic cells of side ``size`` (a 2D checkerboard on any plane)."""

    colors: Tensor
    size: float
    offset: Tensor  # [3]: shifts the cell grid so faces do not sit on cell boundaries

    def pattern(self, points: Tensor) -> Tensor:
        cells = torch.floor(points / self.size + self.offset).sum(dim=-1)
        return torch.remainder(cells, 2.0)


@dataclass
class Stripes(Texture):
    """Parallel slabs of width ``period / 2`` across unit ``direction [3]``."""

    colors: Tensor
    direction: Tensor
    period: float
    phase: float

    def pattern(self, points: Tensor) -> Tensor:
        position = points @ self.direction / self.period + self.phase
        return (torch.remainder(position, 1.0) < 0.5).to(points.dtype)


@dataclass
class ValueNoise(Texture):
    """Two octaves of smooth 3D value noise on a periodic random ``lattice [n, n, n]``."""

    colors: Tensor
    lattice: Tensor
    cell: float
    offset: Tensor  # [3]

    def _octave(self, points: Tensor) -> Tensor:
        n, lattice = self.lattice.shape[0], self.lattice
        base = torch.floor(points)
        frac = points - base
        wx, wy, wz = (frac * frac * (3.0 - 2.0 * frac)).unbind(-1)  # smoothstep: C1 across cells
        x0, y0, z0 = torch.remainder(base.long(), n).unbind(-1)
        x1, y1, z1 = torch.remainder(x0 + 1, n), torch.remainder(y0 + 1, n), torch.remainder(z0 + 1, n)
        # trilinear blend as nested lerps: products of small weights would underflow into slow denormals
        near_y = torch.lerp(torch.lerp(lattice[x0, y0, z0], lattice[x1, y0, z0], wx),
                            torch.lerp(lattice[x0, y1, z0], lattice[x1, y1, z0], wx), wy)
        far_y = torch.lerp(torch.lerp(lattice[x0, y0, z1], lattice[x1, y0, z1], wx),
                           torch.lerp(lattice[x0, y1, z1], lattice[x1, y1, z1], wx), wy)
        return torch.lerp(near_y, far_y, wz)

    def pattern(self, points: Tensor) -> Tensor:
        scaled = points / self.cell + self.offset
        return (self._octave(scaled) + 0.5 * self._octave(2.03 * scaled + 17.0)) / 1.5


@dataclass
class Gradient(Texture):
    """A triangle-wave ramp along unit ``direction [3]``: colour 0 -> colour 1 -> colour 0 every ``period``."""

    colors: Tensor
    direction: Tensor
    period: float
    phase: float

    def pattern(self, points: Tensor) -> Tensor:
        position = torch.remainder(points @ self.direction / self.period + self.phase, 1.0)
        return 1.0 - torch.abs(2.0 * position - 1.0)


TEXTURE_KINDS = ('checkers', 'stripes', 'noise', 'gradient')


def _color_pair(rng: np.random.Generator) -> Tensor:
    """Two colours of random hue with a clear difference in value."""
    hue = rng.uniform(0.0, 1.0)
    second_hue = (hue + rng.uniform(0.1, 0.5)) % 1.0
    dark, bright = rng.uniform(0.15, 0.45), rng.uniform(0.65, 0.95)
    first = colorsys.hsv_to_rgb(hue, rng.uniform(0.3, 0.9), dark)
    second = colorsys.hsv_to_rgb(second_hue, rng.uniform(0.2, 0.8), bright)
    pair = [first, second] if rng.uniform() < 0.5 else [second, first]
    return torch.tensor(pair, dtype=torch.float32)


def _direction(rng: np.random.Generator, normal: np.ndarray | None) -> Tensor:
    """A random unit vector, perpendicular to ``normal`` when given (so a plane shows the pattern)."""
    vector = rng.normal(size=3)
    if normal is not None:
        vector -= vector.dot(normal) * normal
    return torch.tensor(vector / np.linalg.norm(vector), dtype=torch.float32)


def sample_texture(rng: np.random.Generator, kind: str | None = None,
                   normal: np.ndarray | None = None) -> Texture:
    """A random texture of ``kind`` (random among ``TEXTURE_KINDS`` when None).

    Args:
        rng: numpy generator, the only source of randomness.
        kind: one of ``TEXTURE_KINDS`` or None.
        normal: unit normal ``[3]`` of the plane the texture will cover, if it is planar; oriented
            patterns (stripes, gradients) then run along the plane.
    """
    if kind is None:
        kind = TEXTURE_KINDS[rng.integers(len(TEXTURE_KINDS))]
    colors = _color_pair(rng)
    if kind == 'checkers':
        offset = torch.tensor(rng.uniform(0.0, 1.0, size=3), dtype=torch.float32)
        return Checkers(colors, size=float(rng.uniform(0.25, 0.6)), offset=offset)
    if kind == 'stripes':
        return Stripes(colors, _direction(rng, normal), period=float(rng.uniform(0.3, 0.9)),
                       phase=float(rng.uniform()))
    if kind == 'noise':
        lattice = torch.tensor(rng.uniform(0.0, 1.0, size=(16, 16, 16)), dtype=torch.float32)
        offset = torch.tensor(rng.uniform(0.0, 16.0, size=3), dtype=torch.float32)
        return ValueNoise(colors, lattice, cell=float(rng.uniform(0.15, 0.4)), offset=offset)
    if kind == 'gradient':
        return Gradient(colors, _direction(rng, normal), period=float(rng.uniform(1.0, 3.0)),
                        phase=float(rng.uniform()))
    raise ValueError(f"Unknown texture kind '{kind}'; expected one of {TEXTURE_KINDS}")
