"""Analytic ray intersections and signed distances of the synthetic scene's primitives.

World frame: OpenCV-like, +y points DOWN (the floor is the plane y = 0, the ceiling has y < 0).
Every primitive class holds a batch of K primitives of its kind and offers:

* ``intersect(origins [R, 3], directions [R, 3]) -> t [R, K]``: the smallest ray parameter
  ``t > EPS`` of the hit (``inf`` on a miss); the hit point is ``origin + t * direction``, so
  with directions of camera-frame z = 1, ``t`` is the z-depth;
* ``normals(points [N, 3], index [N]) -> [N, 3]``: unit normals at surface points of primitive
  ``index`` pointing into the free space the camera lives in;
* ``signed_distance(points [N, 3]) -> [N, K]``: distance to the surface, positive in free space.

Object kinds also give ``bounds() -> (centres [K, 3], radii [K])`` (bounding spheres) and
``subset(mask [K]) -> the selected primitives``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch
from torch import Tensor

__all__ = ['EPS', 'Room', 'Spheres', 'Boxes', 'Cylinders']

EPS = 1e-4  # rays ignore hits closer than this


def _safe(directions: Tensor) -> Tensor:
    """Directions with exact zeros replaced by a tiny value so slab divisions stay finite."""
    return directions.masked_fill(directions == 0, 1e-12)


def _box_distance(local: Tensor, half: Tensor) -> Tensor:
    """Signed distance from points ``local [..., 3]`` to a centred box of half sizes ``half [..., 3]``."""
    q = local.abs() - half
    outside = q.clamp(min=0.0).norm(dim=-1)
    inside = q.max(dim=-1).values.clamp(max=0.0)
    return outside + inside


class _Objects:
    """Shared by the object kinds: every dataclass field is a per-object tensor ``[K, ...]``."""

    def subset(self, mask: Tensor):
        return type(self)(**{field.name: getattr(self, field.name)[mask] for field in fields(self)})


@dataclass
class Room:
    """The inside of an axis-aligned box ``[low, high]``: walls, floor (max y) and ceiling (min y).

    Its six faces are numbered ``2 * axis + side`` (side 0 = the ``low`` face, 1 = the ``high`` face).
    """

    low: Tensor   # [3]
    high: Tensor  # [3]

    def intersect(self, origins: Tensor, directions: Tensor) -> Tensor:
        """Exit parameter ``[R, 1]`` of rays starting inside the room."""
        d = _safe(directions)
        far = torch.maximum((self.low - origins) / d, (self.high - origins) / d)
        return far.min(dim=-1, keepdim=True).values

    def faces(self, points: Tensor) -> Tensor:
        """Face number ``[N]`` (0..5) of surface points ``[N, 3]``."""
        gaps = torch.cat([points - self.low, self.high - points], dim=-1)  # [N, 6]: low x,y,z, high x,y,z
        nearest = gaps.argmin(dim=-1)
        return 2 * (nearest % 3) + nearest // 3

    def normals(self, points: Tensor, faces: Tensor) -> Tensor:
        axis, side = faces // 2, faces % 2
        normal = torch.zeros_like(points)
        normal[torch.arange(len(points)), axis] = 1.0 - 2.0 * side.to(points.dtype)
        return normal

    def signed_distance(self, points: Tensor) -> Tensor:
        gaps = torch.cat([points - self.low, self.high - points], dim=-1)
        return gaps.min(dim=-1, keepdim=True).values


@dataclass
class Spheres(_Objects):
    centers: Tensor  # [K, 3]
    radii: Tensor    # [K]

    def bounds(self) -> tuple[Tensor, Tensor]:
        return self.centers, self.radii

    def intersect(self, origins: Tensor, directions: Tensor) -> Tensor:
        rel = origins[:, None, :] - self.centers  # [R, K, 3]
        a = (directions * directions).sum(-1, keepdim=True)  # [R, 1]
        b = (rel * directions[:, None, :]).sum(-1)
        c = (rel * rel).sum(-1) - self.radii ** 2
        disc = b * b - a * c
        t = (-b - disc.clamp(min=0.0).sqrt()) / a
        return torch.where((disc >= 0) & (t > EPS), t, torch.full_like(t, math.inf))

    def normals(self, points: Tensor, index: Tensor) -> Tensor:
        return torch.nn.functional.normalize(points - self.centers[index], dim=-1)

    def signed_distance(self, points: Tensor) -> Tensor:
        return (points[:, None, :] - self.centers).norm(dim=-1) - self.radii


@dataclass
class Boxes(_Objects):
    """Boxes rotated by ``yaws`` (radians) about the vertical y axis."""

    centers: Tensor  # [K, 3]
    half_sizes: Tensor  # [K, 3]
    yaws: Tensor  # [K]

    def bounds(self) -> tuple[Tensor, Tensor]:
        return self.centers, self.half_sizes.norm(dim=-1)

    @property
    def rotations(self) -> Tensor:
        """Box-to-world rotations ``[K, 3, 3]``."""
        cos, sin = torch.cos(self.yaws), torch.sin(self.yaws)
        zero, one = torch.zeros_like(cos), torch.ones_like(cos)
        return torch.stack([cos, zero, sin, zero, one, zero, -sin, zero, cos], dim=-1).reshape(-1, 3, 3)

    def _to_local(self, vectors: Tensor) -> Tensor:
        """World vectors ``[N, K, 3]`` -> box frames ``[N, K, 3]`` (rotation by -yaw about y)."""
        cos, sin = torch.cos(self.yaws), torch.sin(self.yaws)
        x, y, z = vectors.unbind(-1)
        return torch.stack([cos * x - sin * z, y, sin * x + cos * z], dim=-1)

    def intersect(self, origins: Tensor, directions: Tensor) -> Tensor:
        o = self._to_local(origins[:, None, :] - self.centers)
        d = _safe(self._to_local(directions[:, None, :].expand(-1, len(self.yaws), -1)))
        t_low, t_high = (-self.half_sizes - o) / d, (self.half_sizes - o) / d
        near = torch.minimum(t_low, t_high).max(dim=-1).values
        far = torch.maximum(t_low, t_high).min(dim=-1).values
        return torch.where((near <= far) & (near > EPS), near, torch.full_like(near, math.inf))

    def normals(self, points: Tensor, index: Tensor) -> Tensor:
        rotation = self.rotations[index]  # [N, 3, 3]
        local = ((points - self.centers[index])[:, None, :] @ rotation).squeeze(1)
        scaled = local / self.half_sizes[index]
        axis = scaled.abs().argmax(dim=-1)
        normal = torch.zeros_like(points)
        rows = torch.arange(len(points))
        normal[rows, axis] = torch.sign(scaled[rows, axis])
        return (rotation @ normal.unsqueeze(-1)).squeeze(-1)

    def signed_distance(self, points: Tensor) -> Tensor:
        return _box_distance(self._to_local(points[:, None, :] - self.centers), self.half_sizes)


@dataclass
class Cylinders(_Objects):
    """Vertical capped cylinders (axis along y) centred at ``centers``."""

    centers: Tensor  # [K, 3]
    radii: Tensor  # [K]
    half_heights: Tensor  # [K]

    def bounds(self) -> tuple[Tensor, Tensor]:
        return self.centers, torch.hypot(self.radii, self.half_heights)

    def intersect(self, origins: Tensor, directions: Tensor) -> Tensor:
        rel = origins[:, None, :] - self.centers  # [R, K, 3]
        dx, dy, dz = (directions[:, None, i] for i in range(3))  # [R, 1] each
        rx, ry, rz = rel.unbind(-1)
        inf = torch.full_like(rx, math.inf)
        # side: |rel_xz + t d_xz| = r
        a = dx * dx + dz * dz
        b = rx * dx + rz * dz
        c = rx * rx + rz * rz - self.radii ** 2
        disc = b * b - a * c
        side = (-b - disc.clamp(min=0.0).sqrt()) / a.clamp(min=1e-12)
        side_ok = (disc >= 0) & (a > 1e-12) & (side > EPS) & ((ry + side * dy).abs() <= self.half_heights)
        best = torch.where(side_ok, side, inf)
        # caps: y = +-half_height within the radius
        safe_dy = _safe(dy)
        for sign in (-1.0, 1.0):
            cap = (sign * self.half_heights - ry) / safe_dy
            px, pz = rx + cap * dx, rz + cap * dz
            cap_ok = (cap > EPS) & (px * px + pz * pz <= self.radii ** 2)
            best = torch.minimum(best, torch.where(cap_ok, cap, inf))
        return best

    def normals(self, points: Tensor, index: Tensor) -> Tensor:
        local = points - self.centers[index]
        radial = local[:, [0, 2]].norm(dim=-1)
        on_cap = (local[:, 1].abs() - self.half_heights[index]).abs() < (radial - self.radii[index]).abs()
        cap_normal = torch.zeros_like(points)
        cap_normal[:, 1] = torch.sign(local[:, 1])
        side_normal = torch.nn.functional.normalize(local * local.new_tensor([1.0, 0.0, 1.0]), dim=-1)
        return torch.where(on_cap[:, None], cap_normal, side_normal)

    def signed_distance(self, points: Tensor) -> Tensor:
        local = points[:, None, :] - self.centers  # [N, K, 3]
        q = torch.stack([local[..., [0, 2]].norm(dim=-1) - self.radii,
                         local[..., 1].abs() - self.half_heights], dim=-1)
        return q.clamp(min=0.0).norm(dim=-1) + q.max(dim=-1).values.clamp(max=0.0)
