"""Epipolar geometry for pixelSplat: where a ray lands in another view, and how deep a point on
its epipolar line is.

Conventions: extrinsics are OpenCV camera-to-world ``[..., 4, 4]``; intrinsics are normalised
``[..., 3, 3]``; image coordinates are normalised ``(x, y)`` in ``[0, 1]``. The tolerances and
the projection's ``z + eps`` guard are those of the official code, which the checkpoints were
trained with.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from ..gaussian_adapter import world_rays

__all__ = ['pixel_centres', 'EpipolarSegments', 'project_ray_segments', 'ray_depths']

#: Slack on the image borders, on "in front of the camera" and on "positive ray parameter".
_BORDER_EPS = 1e-6
#: Added to z before the perspective division (float32 machine epsilon, also in float64 runs).
_PROJECTION_EPS = float(torch.finfo(torch.float32).eps)
#: Finite stand-in for points projected to infinity.
_PROJECTION_INF = 1e8
#: Two rays whose unit directions have a dot product above ``1 - eps`` count as parallel.
_PARALLEL_EPS = 1e-5


def pixel_centres(height: int, width: int, device: torch.device | None = None,
                  dtype: torch.dtype | None = None) -> torch.Tensor:
    """``[H, W, 2]`` normalised ``(x, y)`` pixel centres, ``(i, j) -> ((j+.5) / W, (i+.5) / H)``."""
    ys = (torch.arange(height, device=device, dtype=dtype) + 0.5) / height
    xs = (torch.arange(width, device=device, dtype=dtype) + 0.5) / width
    return torch.stack(torch.meshgrid(xs, ys, indexing='xy'), dim=-1)


def _in_image(xy: torch.Tensor) -> torch.Tensor:
    return ((xy >= -_BORDER_EPS) & (xy <= 1 + _BORDER_EPS)).all(dim=-1)


def _project(points: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Camera-space ``[..., 3]`` points -> normalised image ``[..., 2]``."""
    normalised = points / (points[..., 2:] + _PROJECTION_EPS)
    normalised = normalised.nan_to_num(posinf=_PROJECTION_INF, neginf=-_PROJECTION_INF)
    return torch.einsum('...ij,...j->...i', intrinsics, normalised)[..., :2]


def _border_crossings(origins: torch.Tensor, directions: torch.Tensor,
                      intrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Where camera-space rays ``o + t d`` cross the lines x = 0, x = 1, y = 0, y = 1 of the image.

    Returns ``t [4, ...]``, ``xy [4, ..., 2]`` and ``valid [4, ...]`` (crossing inside the image,
    in front of the camera, at ``t >= 0``). Rays parallel to a border give infinite values there,
    which are simply invalid.
    """
    ts, xys, valids = [], [], []
    for axis in (0, 1):
        other = 1 - axis
        focal, focal_other = intrinsics[..., axis, axis], intrinsics[..., other, other]
        centre, centre_other = intrinsics[..., axis, 2], intrinsics[..., other, 2]
        o_axis, o_other, o_z = origins[..., axis], origins[..., other], origins[..., 2]
        d_axis, d_other, d_z = directions[..., axis], directions[..., other], directions[..., 2]
        for border in (0.0, 1.0):
            slope = (border - centre) / focal  # the border line is {axis / z = slope}
            t = (slope * o_z - o_axis) / (d_axis - slope * d_z)
            # The other image coordinate there, written so that t itself is not needed.
            other_coordinate = centre_other + focal_other * (
                o_other * (slope * d_z - d_axis) + d_other * (o_axis - slope * o_z)
            ) / (d_z * o_axis - d_axis * o_z)
            border_coordinate = torch.full_like(other_coordinate, border)
            pair = (border_coordinate, other_coordinate) if axis == 0 else (other_coordinate,
                                                                            border_coordinate)
            xy = torch.stack(pair, dim=-1)
            z = o_z + t * d_z
            ts.append(t)
            xys.append(xy)
            valids.append(_in_image(xy) & (z > -_BORDER_EPS) & (t > -_BORDER_EPS))
    return torch.stack(ts), torch.stack(xys), torch.stack(valids)


@dataclass
class EpipolarSegments:
    """The images of ray segments in another view.

    Attributes:
        start: ``[..., 2]`` image point of the segment's near end (or where it enters the image).
        end: ``[..., 2]`` image point of the far end (or where it leaves the image).
        overlaps: ``[...]`` whether the segment is visible at all; ``start``/``end`` are
            meaningless where it is not.
    """

    start: torch.Tensor
    end: torch.Tensor
    overlaps: torch.Tensor


def project_ray_segments(origins: torch.Tensor, directions: torch.Tensor,
                         extrinsics: torch.Tensor, intrinsics: torch.Tensor,
                         near: torch.Tensor, far: torch.Tensor) -> EpipolarSegments:
    """Project world-space ray segments ``o + t d``, ``near <= t <= far``, into a camera.

    Args:
        origins, directions: ``[..., 3]`` world-space rays (unit directions).
        extrinsics: ``[..., 4, 4]`` camera-to-world of the camera projected into.
        intrinsics: ``[..., 3, 3]`` its normalised intrinsics.
        near, far: ``[...]`` segment bounds along the rays.

    All arguments broadcast together. An end that projects inside the image is kept; otherwise
    the segment is clipped where it first enters (near end) or last leaves (far end) the image.
    """
    world_to_camera = torch.linalg.inv(extrinsics)
    rotation, translation = world_to_camera[..., :3, :3], world_to_camera[..., :3, 3]
    origins = torch.einsum('...ij,...j->...i', rotation, origins) + translation
    directions = torch.einsum('...ij,...j->...i', rotation, directions)

    t, xy, valid = _border_crossings(origins, directions, intrinsics)
    first = t.masked_fill(~valid, torch.inf).min(dim=0).indices[None]
    last = t.masked_fill(~valid, -torch.inf).max(dim=0).indices[None]

    def pick(index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        xy_index = index[..., None].expand(1, *xy.shape[1:])
        return xy.gather(0, xy_index)[0], valid.gather(0, index)[0]

    entry_xy, entry_valid = pick(first)
    exit_xy, exit_valid = pick(last)

    near_points = origins + near[..., None] * directions
    far_points = origins + far[..., None] * directions
    near_xy, far_xy = _project(near_points, intrinsics), _project(far_points, intrinsics)
    near_valid = _in_image(near_xy) & (near_points[..., 2] > -_BORDER_EPS)
    far_valid = _in_image(far_xy) & (far_points[..., 2] > -_BORDER_EPS)

    return EpipolarSegments(
        start=torch.where(near_valid[..., None], near_xy, entry_xy),
        end=torch.where(far_valid[..., None], far_xy, exit_xy),
        overlaps=(near_valid | entry_valid) & (far_valid | exit_valid))


def ray_depths(origins: torch.Tensor, directions: torch.Tensor, xy: torch.Tensor,
               extrinsics: torch.Tensor, intrinsics: torch.Tensor) -> torch.Tensor:
    """Distance along rays ``o + t d`` to where they meet the rays of another camera through ``xy``.

    "Meet" is the least-squares closest point of the two lines.

    Args:
        origins, directions: ``[..., 3]`` world-space rays (unit directions).
        xy: ``[..., 2]`` normalised image points of the other camera.
        extrinsics, intrinsics: ``[..., 4, 4]``, ``[..., 3, 3]`` of the other camera.

    Returns:
        ``[...]`` distances (all arguments broadcast together); ``inf`` for parallel rays.
    """
    other_origins, other_directions = world_rays(xy, extrinsics, intrinsics)
    shape = torch.broadcast_shapes(origins.shape, directions.shape, other_origins.shape)
    line_origins = torch.stack((origins.broadcast_to(shape), other_origins.broadcast_to(shape)))
    line_directions = torch.stack((directions.broadcast_to(shape),
                                   other_directions.broadcast_to(shape)))
    parallel = (line_directions[0] * line_directions[1]).sum(-1) > 1 - _PARALLEL_EPS

    # The closest point p to lines (o_i, d_i) solves sum_i (d_i d_i^T - I)(p - o_i) = 0.
    eye = torch.eye(3, dtype=origins.dtype, device=origins.device)
    projectors = line_directions[..., :, None] * line_directions[..., None, :] - eye
    lhs = projectors.sum(0)
    rhs = (projectors @ line_origins[..., None]).sum(0)
    lhs = torch.where(parallel[..., None, None], eye, lhs)  # keep the solve well posed
    points = torch.linalg.lstsq(lhs, rhs).solution[..., 0]
    depths = (points - origins).norm(dim=-1)
    return depths.masked_fill(parallel, torch.inf)
