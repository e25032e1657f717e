"""Procedural rooms, ray-cast exactly.

A :class:`SyntheticScene` is a box-shaped room (four walls, floor and ceiling) holding boxes,
spheres and cylinders, every surface with its own procedural solid texture, lit by a fixed mild
ambient + directional term. The colour of a pixel is a pure function of the surface point the
pixel's ray hits (texture and normal of that point), so all views are exactly consistent.

World frame: +y DOWN, floor at y = 0 (see ``primitives``). Depth is z-depth along each camera's
+z axis. Every ray hits something (the room is closed), so depth is finite everywhere.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from videoscene.geometry.cameras import camera_rays, pixel_centers
from .primitives import Boxes, Cylinders, Room, Spheres
from .textures import Texture, sample_texture
from .trajectory import Trajectory, sample_trajectory

__all__ = ['SyntheticScene', 'sample_scene']

RAYS_PER_BATCH = 1 << 18
AMBIENT = 0.65  # shading = AMBIENT + (1 - AMBIENT) * max(0, normal . light)


@dataclass
class SyntheticScene:
    """A textured room.

    Surfaces are numbered: 0..5 the room faces (``Room.faces``), then the spheres, boxes and
    cylinders in that order; ``textures[i]`` colours surface ``i``.
    """

    room: Room
    spheres: Spheres
    boxes: Boxes
    cylinders: Cylinders
    textures: list[Texture]
    light: Tensor  # [3] unit vector towards the light

    def __post_init__(self) -> None:
        expected = 6 + len(self.spheres.radii) + len(self.boxes.yaws) + len(self.cylinders.radii)
        if len(self.textures) != expected:
            raise ValueError(f'expected {expected} textures (6 room faces + objects), got {len(self.textures)}')

    def signed_distance(self, points: Tensor) -> Tensor:
        """Distance ``[N]`` from world points ``[N, 3]`` to the nearest surface, positive in free space."""
        parts = [self.room.signed_distance(points), self.spheres.signed_distance(points),
                 self.boxes.signed_distance(points), self.cylinders.signed_distance(points)]
        return torch.cat(parts, dim=-1).min(dim=-1).values

    def objects_in_view(self, extrinsics: Tensor, intrinsics: Tensor) -> Tensor:
        """Which objects ``[K]`` (bool, surface order) may be seen by any of the cameras
        ``extrinsics [n, 4, 4]``, ``intrinsics [n, 3, 3]``: a conservative frustum test of bounding spheres."""
        kinds = (self.spheres, self.boxes, self.cylinders)
        centres = torch.cat([kind.bounds()[0] for kind in kinds])
        radii = torch.cat([kind.bounds()[1] for kind in kinds])
        corners = torch.tensor([[0.0, 0.0], [1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])  # clockwise on screen
        _, edges = camera_rays(corners, intrinsics[:, None], torch.eye(4))  # camera frame [n, 4, 3]
        inward = torch.nn.functional.normalize(torch.cross(edges, edges.roll(-1, dims=1), dim=-1), dim=-1)
        local = (centres - extrinsics[:, None, :3, 3]) @ extrinsics[:, :3, :3]  # camera frame [n, K, 3]
        inside_sides = ((local[:, :, None] * inward[:, None]).sum(-1) >= -radii[:, None]).all(-1)
        return (inside_sides & (local[..., 2] >= -radii)).any(0)

    def restricted(self, keep: Tensor) -> SyntheticScene:
        """The room with only the objects ``keep [K]`` (bool, surface order)."""
        kinds = (self.spheres, self.boxes, self.cylinders)
        masks = keep.split([len(kind.bounds()[1]) for kind in kinds])
        textures = self.textures[:6] + [texture for texture, kept in zip(self.textures[6:], keep.tolist()) if kept]
        return SyntheticScene(self.room, *(kind.subset(mask) for kind, mask in zip(kinds, masks)), textures, self.light)

    def cast(self, origins: Tensor, directions: Tensor) -> tuple[Tensor, Tensor]:
        """Cast rays ``origins [R, 3]``, ``directions [R, 3]`` (float32, world frame).

        Returns:
            ``t [R]``: ray parameter of the first hit (the z-depth when directions have a
            camera-frame z of 1) and ``rgb [R, 3]`` in [0, 1].
        """
        kinds = (self.spheres, self.boxes, self.cylinders)
        parts = [kind.intersect(origins, directions) for kind in kinds]
        hits = torch.cat([self.room.intersect(origins, directions)] + parts, dim=-1)
        t, column = hits.min(dim=-1)  # column 0 = room, then one column per object
        points = origins + t[:, None] * directions

        surface = column + 5  # object in column c is surface 5 + c
        normals = torch.empty_like(points)
        in_room = column == 0
        surface[in_room] = self.room.faces(points[in_room])
        normals[in_room] = self.room.normals(points[in_room], surface[in_room])
        first = 1
        for kind, part in zip(kinds, parts):
            mask = (column >= first) & (column < first + part.shape[1])
            normals[mask] = kind.normals(points[mask], column[mask] - first)
            first += part.shape[1]

        order = torch.argsort(surface)  # group rays by surface, colour each group with its texture
        counts = torch.bincount(surface, minlength=len(self.textures)).tolist()
        groups = points[order].split(counts)
        rgb = torch.empty_like(points)
        rgb[order] = torch.cat([texture(group) for texture, group in zip(self.textures, groups)])
        shading = AMBIENT + (1.0 - AMBIENT) * (normals @ self.light).clamp(min=0.0)
        return t, (rgb * shading[:, None]).clamp(0.0, 1.0)

    @torch.no_grad()
    def render(self, extrinsics: Tensor, intrinsics: Tensor, height: int, width: int) -> tuple[Tensor, Tensor]:
        """Ray-cast one ray through each pixel centre.

        Args:
            extrinsics: ``[F, 4, 4]`` camera-to-world (OpenCV).
            intrinsics: ``[F, 3, 3]`` normalised intrinsics.

        Returns:
            ``images [F, 3, H, W]`` in [0, 1] and z-depths ``[F, H, W]``, float32.
        """
        if extrinsics.shape[-2:] != (4, 4) or intrinsics.shape[-2:] != (3, 3) or extrinsics.shape[0] != intrinsics.shape[0]:
            raise ValueError(f'expected extrinsics [F, 4, 4] and intrinsics [F, 3, 3], got '
                             f'{list(extrinsics.shape)} and {list(intrinsics.shape)}')
        uv = pixel_centers(height, width).reshape(-1, 2)
        frames_per_batch = max(1, RAYS_PER_BATCH // len(uv))
        depths, colors = [], []
        for start in range(0, len(extrinsics), frames_per_batch):
            c2w = extrinsics[start:start + frames_per_batch, None].float()
            k = intrinsics[start:start + frames_per_batch, None].float()
            origins, directions = (x.reshape(-1, 3) for x in camera_rays(uv, k, c2w))
            visible = self.restricted(self.objects_in_view(c2w[:, 0], k[:, 0]))
            for first in range(0, len(origins), RAYS_PER_BATCH):
                t, rgb = visible.cast(origins[first:first + RAYS_PER_BATCH], directions[first:first + RAYS_PER_BATCH])
                depths.append(t)
                colors.append(rgb)
        images = torch.cat(colors).reshape(-1, height, width, 3).permute(0, 3, 1, 2).contiguous()
        return images, torch.cat(depths).reshape(-1, height, width)


def _table(rows: list[tuple[float, ...]], width: int) -> Tensor:
    return torch.tensor(rows, dtype=torch.float32).reshape(len(rows), width)


def _spheres(rows: list[tuple[float, ...]]) -> Spheres:
    """Spheres from rows ``(x, y, z, radius)``."""
    table = _table(rows, 4)
    return Spheres(table[:, :3], table[:, 3])


def _boxes(rows: list[tuple[float, ...]]) -> Boxes:
    """Boxes from rows ``(x, y, z, half x, half y, half z, yaw)``."""
    table = _table(rows, 7)
    return Boxes(table[:, :3], table[:, 3:6], table[:, 6])


def _cylinders(rows: list[tuple[float, ...]]) -> Cylinders:
    """Cylinders from rows ``(x, y, z, radius, half height)``."""
    table = _table(rows, 5)
    return Cylinders(table[:, :3], table[:, 3], table[:, 4])


_BUILDERS = {'sphere': _spheres, 'box': _boxes, 'cylinder': _cylinders}


def _place_objects(rng: np.random.Generator, low: np.ndarray, high: np.ndarray, loop: Tensor,
                   count: int, clearance: float) -> dict[str, list[tuple[float, ...]]]:
    """Rows (see ``_BUILDERS``) of up to ``count`` objects standing on the floor (spheres may
    float), none closer than ``clearance`` to the camera loop, inside the room and apart from
    each other. Rejection sampling with a fixed number of tries keeps it deterministic."""
    rows: dict[str, list[tuple[float, ...]]] = {kind: [] for kind in _BUILDERS}
    footprints: list[tuple[float, float, float]] = []  # (x, z, radius) on the floor plan
    floor, height = float(high[1]), float(high[1] - low[1])
    for _ in range(40 * count):
        if len(footprints) == count:
            break
        kind = tuple(_BUILDERS)[rng.integers(len(_BUILDERS))]
        x, z = float(rng.uniform(low[0], high[0])), float(rng.uniform(low[2], high[2]))
        if kind == 'sphere':
            r = float(rng.uniform(0.2, 0.6))
            y = floor - r if rng.uniform() < 0.6 else floor - float(rng.uniform(r + 0.3, 1.8))
            row, extent = (x, y, z, r), r
        elif kind == 'box':
            hx, hy, hz = (float(v) for v in rng.uniform([0.2, 0.15, 0.2], [0.8, 0.7, 0.8]))
            row, extent = (x, floor - hy, z, hx, hy, hz, float(rng.uniform(0.0, math.pi / 2))), math.hypot(hx, hz)
        else:
            r = float(rng.uniform(0.15, 0.5))
            half_height = float(rng.uniform(0.2, height / 2 - 0.05))  # clear of the ceiling
            row, extent = (x, floor - half_height, z, r, half_height), r
        inside = low[0] + extent < x < high[0] - extent and low[2] + extent < z < high[2] - extent
        apart = all(math.hypot(x - fx, z - fz) > extent + fr + 0.1 for fx, fz, fr in footprints)
        if inside and apart and _BUILDERS[kind]([row]).signed_distance(loop).min() > clearance:
            footprints.append((x, z, extent))
            rows[kind].append(row)
    return rows


def sample_scene(rng: np.random.Generator, frames: int, mean_step: float = 0.015,
                 speed_variation: float = 0.6) -> tuple[SyntheticScene, Trajectory]:
    """A random room, its objects and a camera walk of ``frames`` views through it.

    The walk is drawn first; objects are then placed at least 0.6 scene units away from the
    whole loop the camera follows, so the camera never enters or grazes them.
    """
    size = rng.uniform([6.0, 2.6, 6.0], [10.0, 3.2, 10.0])
    low = np.array([-size[0] / 2, -size[1], -size[2] / 2])
    high = np.array([size[0] / 2, 0.0, size[2] / 2])
    trajectory = sample_trajectory(rng, low, high, frames, mean_step=mean_step, speed_variation=speed_variation)
    rows = _place_objects(rng, low, high, trajectory.loop, int(rng.integers(8, 15)), clearance=0.6)

    face_normals = [np.eye(3)[axis] for axis in range(3) for _ in range(2)]  # faces 2 * axis + side
    textures = [sample_texture(rng, normal=normal) for normal in face_normals]
    textures += [sample_texture(rng) for kind in _BUILDERS for _ in rows[kind]]
    light = np.array([rng.uniform(-0.5, 0.5), -1.0, rng.uniform(-0.5, 0.5)])
    scene = SyntheticScene(
        room=Room(torch.tensor(low, dtype=torch.float32), torch.tensor(high, dtype=torch.float32)),
        spheres=_spheres(rows['sphere']),
        boxes=_boxes(rows['box']),
        cylinders=_cylinders(rows['cylinder']),
        textures=textures,
        light=torch.tensor(light / np.linalg.norm(light), dtype=torch.float32),
    )
    return scene, trajectory
