"""RealEstate10K-like camera walks through a room.

The camera walks forward along a smooth closed loop (between an ellipse and a rounded rectangle:
the superellipse ``|x/a|^n + |z/b|^n = 1`` with n in [2, 3], with a gentle lateral wobble) at eye height, turning as the loop turns,
looking roughly where it goes, turned a little towards the inside of the room (a constant inward
yaw bias plus a smooth random yaw offset, slight pitch and a small bob). Its speed
varies smoothly along the walk, so the end views of a clip do not determine the frames between them.

World frame: +y DOWN (floor y = 0, see ``primitives``); camera-to-world matrices in OpenCV
convention (+x right, +y down, +z forward).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

__all__ = ['Trajectory', 'smooth_signal', 'look_rotation', 'sample_trajectory']

LOOP_SAMPLES = 2048  # points on the dense loop


@dataclass
class Trajectory:
    """A camera walk.

    Attributes:
        extrinsics: ``[F, 4, 4]`` camera-to-world matrices.
        loop: ``[M, 3]`` dense points of the closed loop the camera centres follow (at eye height);
            scene layout keeps objects away from all of it.
    """

    extrinsics: Tensor
    loop: Tensor


def smooth_signal(rng: np.random.Generator, length: int, period_range: tuple[float, float],
                  components: int = 3) -> np.ndarray:
    """A smooth random signal ``[length]`` in [-1, 1]: a sum of sinusoids of random period (in samples)."""
    steps = np.arange(length, dtype=np.float64)
    periods = rng.uniform(*period_range, size=components)
    phases = rng.uniform(0.0, 2.0 * math.pi, size=components)
    weights = rng.uniform(0.5, 1.0, size=components)
    weights /= weights.sum()
    return (weights[:, None] * np.sin(2.0 * math.pi * steps[None] / periods[:, None] + phases[:, None])).sum(0)


def look_rotation(yaw: np.ndarray, pitch: np.ndarray) -> np.ndarray:
    """Camera-to-world rotations ``[F, 3, 3]`` looking at heading ``yaw`` (radians, 0 = +z, positive
    towards +x) and elevation ``pitch`` (radians, positive = up), without roll."""
    forward = np.stack([np.sin(yaw) * np.cos(pitch), -np.sin(pitch), np.cos(yaw) * np.cos(pitch)], -1)
    right = np.stack([np.cos(yaw), np.zeros_like(yaw), -np.sin(yaw)], -1)
    down = np.cross(forward, right)
    return np.stack([right, down, forward], axis=-1)


def _superellipse_loop(a: float, b: float, exponent: float) -> np.ndarray:
    """Points ``[M, 2]`` (x, z) of ``|x/a|^n + |z/b|^n = 1``, counter-clockwise from +x."""
    theta = np.linspace(0.0, 2.0 * math.pi, LOOP_SAMPLES, endpoint=False)
    cos, sin = np.cos(theta), np.sin(theta)
    radius = (np.abs(cos / a) ** exponent + np.abs(sin / b) ** exponent) ** (-1.0 / exponent)
    return np.stack([radius * cos, radius * sin], axis=-1)


def _tangents(loop: np.ndarray) -> np.ndarray:
    """Unit tangents ``[M, 2]`` of a closed polyline by central differences."""
    tangent = np.roll(loop, -1, axis=0) - np.roll(loop, 1, axis=0)
    return tangent / np.linalg.norm(tangent, axis=-1, keepdims=True)


def _interpolate_closed(values: np.ndarray, arc: np.ndarray, length: float, s: np.ndarray) -> np.ndarray:
    """Linear interpolation of per-point ``values [M, C]`` at arc lengths ``s`` on a closed loop."""
    arc_closed = np.append(arc, length)
    values_closed = np.concatenate([values, values[:1]], axis=0)
    s = np.mod(s, length)
    return np.stack([np.interp(s, arc_closed, values_closed[:, c]) for c in range(values.shape[1])], -1)


def sample_trajectory(rng: np.random.Generator, room_low: np.ndarray, room_high: np.ndarray,
                      frames: int, mean_step: float = 0.015, speed_variation: float = 0.6,
                      wall_margin: float = 1.0) -> Trajectory:
    """A random walk of ``frames`` cameras inside the room ``[room_low, room_high]`` (world, y down).

    Args:
        rng: numpy generator, the only source of randomness.
        room_low, room_high: ``[3]`` room corners (floor at ``room_high[1]``).
        frames: number of cameras.
        mean_step: mean distance walked between consecutive frames, in scene units (metres).
        speed_variation: relative amplitude of the speed profile; the step length stays within
            ``mean_step * (1 +- speed_variation)``. Must be in [0, 1).
        wall_margin: minimum distance between the loop and the walls.
    """
    if frames < 1:
        raise ValueError(f'frames must be >= 1, got {frames}')
    if not 0.0 <= speed_variation < 1.0:
        raise ValueError(f'speed_variation must be in [0, 1), got {speed_variation}')
    wobble = 0.15
    half = (room_high - room_low) / 2.0
    centre = (room_high + room_low) / 2.0
    room_x, room_z = half[0] - wall_margin - wobble, half[2] - wall_margin - wobble
    if min(room_x, room_z) <= 0.2:
        raise ValueError(f'room {room_low} .. {room_high} is too small for a wall margin of {wall_margin}')
    a, b = room_x * rng.uniform(0.65, 1.0), room_z * rng.uniform(0.65, 1.0)
    shift = np.array([rng.uniform(-1, 1) * (room_x - a), rng.uniform(-1, 1) * (room_z - b)])
    loop = _superellipse_loop(a, b, rng.uniform(2.0, 3.0)) + centre[[0, 2]] + shift

    # lateral wobble along the normal, periodic around the loop
    theta = np.linspace(0.0, 2.0 * math.pi, LOOP_SAMPLES, endpoint=False)
    harmonics = rng.integers(3, 8, size=2)
    lateral = sum(0.5 * wobble * np.sin(k * theta + rng.uniform(0, 2 * math.pi)) for k in harmonics)
    tangent = _tangents(loop)
    loop = loop + lateral[:, None] * np.stack([tangent[:, 1], -tangent[:, 0]], -1)
    clockwise = rng.uniform() < 0.5
    if clockwise:
        loop = loop[::-1].copy()
    tangent = _tangents(loop)
    segment = np.linalg.norm(np.roll(loop, -1, axis=0) - loop, axis=-1)
    arc = np.concatenate([[0.0], np.cumsum(segment[:-1])])
    length = float(segment.sum())

    # where the camera is at each frame: a smoothly varying speed along the loop
    speed = mean_step * (1.0 + speed_variation * smooth_signal(rng, max(frames - 1, 1), (24.0, 96.0)))
    s = rng.uniform(0.0, length) + np.concatenate([[0.0], np.cumsum(speed)[:frames - 1]])
    position_xz = _interpolate_closed(loop, arc, length, s)
    heading = _interpolate_closed(tangent, arc, length, s)

    eye = rng.uniform(1.35, 1.7)
    height = room_high[1] - eye + 0.02 * smooth_signal(rng, frames, (30.0, 90.0))
    yaw = np.arctan2(heading[:, 0], heading[:, 1])
    inward = 1.0 if clockwise else -1.0  # yaw sign that turns the view towards the inside of the loop
    yaw = (yaw + inward * math.radians(rng.uniform(10.0, 30.0))
           + math.radians(rng.uniform(3.0, 10.0)) * smooth_signal(rng, frames, (40.0, 160.0)))
    pitch = math.radians(rng.uniform(-6.0, 2.0)) + math.radians(3.0) * smooth_signal(rng, frames, (40.0, 160.0))

    extrinsics = np.tile(np.eye(4), (frames, 1, 1))
    extrinsics[:, :3, :3] = look_rotation(yaw, pitch)
    extrinsics[:, :3, 3] = np.stack([position_xz[:, 0], height, position_xz[:, 1]], -1)
    loop_3d = np.stack([loop[:, 0], np.full(LOOP_SAMPLES, room_high[1] - eye), loop[:, 1]], -1)
    return Trajectory(torch.tensor(extrinsics, dtype=torch.float32), torch.tensor(loop_3d, dtype=torch.float32))
