"""Camera utilities: RE10K rows, intrinsics (de)normalisation, rays, projection."""
from __future__ import annotations

import math

import pytest
import torch

from videoscene.geometry.cameras import (c2w_to_w2c_rows, camera_rays, denormalize_intrinsics,
                                         intrinsics_from_fov, normalize_intrinsics, pixel_centers, project,
                                         unproject, w2c_rows_to_c2w)


def random_c2w(count: int, seed: int = 0) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    rotations, _ = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator))
    rotations[:, :, 0] *= torch.linalg.det(rotations).sign()[:, None]
    c2w = torch.eye(4).repeat(count, 1, 1)
    c2w[:, :3, :3], c2w[:, :3, 3] = rotations, torch.randn(count, 3, generator=generator)
    return c2w


def test_w2c_rows_round_trip_and_meaning():
    c2w = random_c2w(6)
    rows = c2w_to_w2c_rows(c2w)
    assert rows.shape == (6, 12)
    assert torch.allclose(w2c_rows_to_c2w(rows), c2w, atol=1e-5)
    w2c = rows.reshape(6, 3, 4)
    centre = c2w[:, :3, 3]
    assert torch.allclose((w2c[:, :, :3] @ centre.unsqueeze(-1)).squeeze(-1) + w2c[:, :, 3], torch.zeros(6, 3), atol=1e-5)
    with pytest.raises(ValueError, match='rows must have shape'):
        w2c_rows_to_c2w(torch.zeros(3, 16))


def test_intrinsics_normalisation_round_trip():
    pixels = torch.tensor([[500.0, 0.0, 320.0], [0.0, 480.0, 180.0], [0.0, 0.0, 1.0]])
    normalised = normalize_intrinsics(pixels, 360, 640)
    assert torch.allclose(normalised[:2, 2], torch.tensor([0.5, 0.5]))
    assert torch.allclose(denormalize_intrinsics(normalised, 360, 640), pixels)


def test_intrinsics_from_fov_edges_see_half_the_field_of_view():
    k = intrinsics_from_fov(60.0, 30, 40)
    origins, directions = camera_rays(torch.tensor([[1.0, 0.5], [0.5, 0.0]]), k, torch.eye(4))
    assert torch.allclose(origins, torch.zeros(2, 3))
    assert math.isclose(math.degrees(math.atan2(directions[0, 0], directions[0, 2])), 30.0, abs_tol=1e-4)
    vertical = math.degrees(math.atan(math.tan(math.radians(30.0)) * 30 / 40))
    assert math.isclose(math.degrees(math.atan2(-directions[1, 1], directions[1, 2])), vertical, abs_tol=1e-4)
    with pytest.raises(ValueError, match='fov_x_deg'):
        intrinsics_from_fov(180.0, 8, 8)


def test_pixel_centres_are_half_a_pixel_in():
    uv = pixel_centers(2, 4)
    assert uv.shape == (2, 4, 2)
    assert torch.allclose(uv[0, 0], torch.tensor([0.125, 0.25])) and torch.allclose(uv[1, 3], torch.tensor([0.875, 0.75]))


def test_unproject_then_project_is_identity_with_z_depth():
    c2w = random_c2w(3, seed=1)[:, None, None]
    k = torch.tensor([[0.9, 0.0, 0.45], [0.0, 1.1, 0.55], [0.0, 0.0, 1.0]])
    uv = pixel_centers(5, 7).expand(3, 5, 7, 2)
    depth = 1.0 + torch.rand(3, 5, 7, generator=torch.Generator().manual_seed(0))
    points = unproject(uv, depth, k, c2w)
    back, z = project(points, k, c2w)
    assert torch.allclose(back, uv, atol=1e-5) and torch.allclose(z, depth, atol=1e-5)
    # z-depth, not distance: the point's offset from the camera projects onto the optical axis as depth
    offset = points - c2w[..., :3, 3]
    assert torch.allclose((offset * c2w[..., :3, 2]).sum(-1), depth, atol=1e-5)
    assert (offset.norm(dim=-1) > depth + 1e-4).any()
