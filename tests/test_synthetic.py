"""The synthetic scene generator: determinism, exact geometry, camera walks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from videoscene.datasets.synthetic import SyntheticSpec, draw_scene, render_scene
from videoscene.datasets.synthetic.primitives import Boxes, Cylinders, Spheres
from videoscene.datasets.synthetic.trajectory import sample_trajectory
from videoscene.geometry.cameras import camera_rays, pixel_centers, project, unproject


def small_spec(**overrides) -> SyntheticSpec:
    options = dict(num_scenes=1, frames=12, height=16, width=16, num_eval_targets=4)
    options.update(overrides)
    return SyntheticSpec(**options)


@pytest.fixture(scope='module')
def walk():
    """A 64 x 64 scene of 40 frames, rendered once for the geometry tests."""
    spec = small_spec(frames=40, height=64, width=64)
    scene, _ = draw_scene(spec, 0)
    return scene, render_scene(spec, 0)


def test_same_seed_gives_identical_scenes():
    first, second = render_scene(small_spec(), 3), render_scene(small_spec(), 3)
    assert torch.equal(first.images, second.images)
    assert torch.equal(first.depths, second.depths)
    assert torch.equal(first.extrinsics, second.extrinsics)


@pytest.mark.parametrize('change', [dict(seed=1), dict(stage='test')])
def test_different_seed_or_stage_gives_different_scenes(change):
    base, other = render_scene(small_spec(), 0), render_scene(small_spec(**change), 0)
    assert (base.images - other.images).abs().mean() > 0.02
    assert (base.extrinsics - other.extrinsics).abs().max() > 0.1


def test_scene_depends_on_its_index_not_on_the_scene_count():
    alone = render_scene(small_spec(num_scenes=1), 2)
    among_many = render_scene(small_spec(num_scenes=7), 2)
    assert torch.equal(alone.images, among_many.images)
    assert (render_scene(small_spec(), 1).images - alone.images).abs().mean() > 0.02


def test_recording_shapes_and_ranges():
    recording = render_scene(small_spec(height=16, width=24, frames=5, num_eval_targets=3), 0)
    assert recording.images.shape == (5, 3, 16, 24) and recording.images.dtype == torch.float32
    assert recording.depths.shape == (5, 16, 24)
    assert recording.extrinsics.shape == (5, 4, 4) and recording.intrinsics.shape == (5, 3, 3)
    assert 0.0 <= recording.images.min() and recording.images.max() <= 1.0
    assert torch.isfinite(recording.depths).all()
    rotations = recording.extrinsics[:, :3, :3]
    assert torch.allclose(rotations @ rotations.transpose(1, 2), torch.eye(3).expand(5, 3, 3), atol=1e-5)
    assert torch.allclose(torch.linalg.det(rotations), torch.ones(5), atol=1e-5)


def test_depth_is_z_depth_of_points_on_the_surfaces(walk):
    """Back-projecting every pixel with its depth (as z-depth) lands exactly on a surface, and the
    segment from the camera to it is free (nothing nearer on the ray)."""
    scene, recording = walk
    uv = pixel_centers(64, 64)
    for frame in (0, 20, 39):
        k, c2w = recording.intrinsics[frame], recording.extrinsics[frame]
        points = unproject(uv, recording.depths[frame], k, c2w).reshape(-1, 3)
        assert scene.signed_distance(points).abs().max() < 1e-4
        for fraction in (0.3, 0.9):
            partway = unproject(uv, fraction * recording.depths[frame], k, c2w).reshape(-1, 3)
            assert scene.signed_distance(partway).min() > 0.0
        _, z = project(points, k, c2w)
        assert torch.allclose(z, recording.depths[frame].reshape(-1), rtol=1e-5)


def _reproject(recording, a: int, b: int):
    """Pixels of frame a moved into frame b: colours in a, sub-pixel positions and z in b."""
    height, width = recording.depths.shape[1:]
    points = unproject(pixel_centers(height, width), recording.depths[a], recording.intrinsics[a],
                       recording.extrinsics[a]).reshape(-1, 3)
    uv, z = project(points, recording.intrinsics[b], recording.extrinsics[b])
    colors = recording.images[a].permute(1, 2, 0).reshape(-1, 3)
    return colors, uv, z


@pytest.mark.parametrize('a, b', [(0, 6), (5, 25), (10, 39)])
def test_multi_view_consistency_on_rendered_pixels(walk, a, b):
    """A pixel of frame a, back-projected with its depth and projected into frame b, has the same
    colour there when visible (compared at the nearest pixel, where the projection falls close
    to that pixel's centre; occluded points are skipped using frame b's depth)."""
    _, recording = walk
    height, width = recording.depths.shape[1:]
    colors, uv, z = _reproject(recording, a, b)
    x, y = uv[:, 0] * width - 0.5, uv[:, 1] * height - 0.5
    col, row = x.round().long(), y.round().long()
    inside = (z > 0) & (col >= 0) & (col < width) & (row >= 0) & (row < height)
    col, row = col.clamp(0, width - 1), row.clamp(0, height - 1)
    visible = inside & ((z - recording.depths[b][row, col]).abs() < 0.01 * z)
    centred = visible & ((x - col).abs() < 0.15) & ((y - row).abs() < 0.15)
    errors = (colors - recording.images[b].permute(1, 2, 0)[row, col]).abs().max(dim=-1).values[centred]
    assert len(errors) >= 100
    assert errors.median() < 0.005
    assert errors.quantile(0.9) < 0.02


@pytest.mark.parametrize('a, b', [(0, 6), (10, 39)])
def test_multi_view_consistency_is_exact_when_casting_through_the_projection(walk, a, b):
    """Casting frame b's ray through the exact projection of a pixel of frame a hits the same
    point (depth) with the same colour."""
    scene, recording = walk
    colors, uv, z = _reproject(recording, a, b)
    inside = (z > 0) & (uv >= 0).all(-1) & (uv <= 1).all(-1)
    origins, directions = camera_rays(uv[inside], recording.intrinsics[b], recording.extrinsics[b])
    t, rgb = scene.cast(origins.contiguous(), directions.contiguous())
    visible = (t - z[inside]).abs() < 1e-3 * z[inside]
    assert visible.sum() >= 0.9 * inside.sum() >= 1000
    assert (rgb[visible] - colors[inside][visible]).abs().max() < 1e-4


def test_camera_stays_in_the_room_and_away_from_objects():
    for index in range(4):
        spec = small_spec(frames=120)
        scene, trajectory = draw_scene(spec, index)
        centres = trajectory.extrinsics[:, :3, 3]
        assert (centres > scene.room.low).all() and (centres < scene.room.high).all()
        assert scene.signed_distance(centres).min() > 0.5
        assert len(scene.textures) - 6 >= 4  # the room holds objects


def test_speed_varies_along_the_walk():
    """Step lengths vary smoothly (bounded, not constant), so frames between two views are not
    their linear interpolation; a constant-speed control shows the variation is the profile's."""
    low, high = np.array([-4.0, -3.0, -4.0]), np.array([4.0, 0.0, 4.0])
    for seed in range(3):
        varying = sample_trajectory(np.random.default_rng(seed), low, high, 96, mean_step=0.02)
        constant = sample_trajectory(np.random.default_rng(seed), low, high, 96, mean_step=0.02, speed_variation=0.0)
        steps = (varying.extrinsics[1:, :3, 3] - varying.extrinsics[:-1, :3, 3]).norm(dim=-1)
        steady = (constant.extrinsics[1:, :3, 3] - constant.extrinsics[:-1, :3, 3]).norm(dim=-1)
        assert steps.std() / steps.mean() > 0.15
        assert steady.std() / steady.mean() < 0.02
        assert steps.min() > 0.3 * 0.02 and steps.max() < 1.7 * 0.02
        # fraction of the path covered vs fraction of the time elapsed
        covered = torch.cat([torch.zeros(1), steps.cumsum(0)]) / steps.sum()
        elapsed = torch.linspace(0, 1, 96)
        assert (covered - elapsed).abs().max() > 0.05
        # interpolating the end cameras linearly in time misplaces the frames along the path
        assert _along_track_error(varying) > 0.04
        assert _along_track_error(varying) > 2 * _along_track_error(constant)


def _along_track_error(trajectory) -> float:
    """Largest gap between each camera's progress along the end-to-end chord and elapsed time."""
    centres = trajectory.extrinsics[:, :3, 3]
    chord = centres[-1] - centres[0]
    progress = (centres - centres[0]) @ chord / chord.dot(chord)
    return (progress - torch.linspace(0, 1, len(centres))).abs().max().item()


@pytest.mark.parametrize('primitive, inside_point, ray_hits_at', [
    (Spheres(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([1.0])), [0.0, 0.0, 5.0], 4.0),
    (Boxes(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([[1.0, 1.0, 1.0]]), torch.tensor([0.3])), [0.0, 0.0, 5.0], None),
    (Cylinders(torch.tensor([[0.0, 0.0, 5.0]]), torch.tensor([1.0]), torch.tensor([2.0])), [0.0, 0.0, 5.0], 4.0),
])
def test_primitive_hits_lie_on_their_surface(primitive, inside_point, ray_hits_at):
    generator = torch.Generator().manual_seed(0)
    directions = torch.nn.functional.normalize(
        torch.tensor([0.0, 0.0, 1.0]) + 0.15 * torch.randn(500, 3, generator=generator), dim=-1)
    origins = torch.zeros(500, 3)
    t = primitive.intersect(origins, directions)[:, 0]
    hit = torch.isfinite(t)
    assert hit.sum() > 100 and (~hit).sum() > 10
    points = origins[hit] + t[hit, None] * directions[hit]
    assert primitive.signed_distance(points).abs().max() < 1e-4
    assert (primitive.signed_distance(torch.tensor([inside_point])) < 0).all()
    misses = origins[~hit] + 5.0 * directions[~hit]
    assert (primitive.signed_distance(misses) > 0).all()
    if ray_hits_at is not None:
        axis = primitive.intersect(torch.zeros(1, 3), torch.tensor([[0.0, 0.0, 1.0]]))
        assert torch.allclose(axis, torch.tensor([[ray_hits_at]]))
    normals = primitive.normals(points, torch.zeros(len(points), dtype=torch.long))
    outside = primitive.signed_distance(points + 1e-2 * normals)
    assert (outside > 0).all() and torch.allclose(normals.norm(dim=-1), torch.ones(len(points)))


def test_render_culls_objects_without_changing_pixels(walk):
    """Rendering skips objects outside the view; the result equals casting against every object."""
    scene, recording = walk
    keeps = [scene.objects_in_view(recording.extrinsics[i:i + 1], recording.intrinsics[i:i + 1])
             for i in range(len(recording.images))]
    frame = next(i for i, keep in enumerate(keeps) if 0 < keep.sum() < len(keep))  # culls some, not all
    origins, directions = camera_rays(pixel_centers(64, 64), recording.intrinsics[frame], recording.extrinsics[frame])
    origins, directions = origins.reshape(-1, 3), directions.reshape(-1, 3)
    depth, rgb = scene.cast(origins, directions)
    culled_depth, culled_rgb = scene.restricted(keeps[frame]).cast(origins, directions)
    assert torch.equal(culled_depth, depth) and torch.equal(culled_rgb, rgb)
    assert torch.equal(depth.reshape(64, 64), recording.depths[frame])
    assert torch.equal(rgb.reshape(64, 64, 3).permute(2, 0, 1), recording.images[frame])
