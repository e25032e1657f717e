"""Camera paths: ground truth and interpolation between the two context cameras."""
import math

import pytest
import torch

from videoscene.camera_paths import GroundTruthPath, InterpolatedPath
from videoscene.geometry.rotations import so3_exp, so3_log
from videoscene.registry import CAMERA_PATHS

SCHEMES = [(mode, easing) for mode in ('pivot', 'slerp') for easing in ('linear', 'cosine')]


def look_at(centre, target) -> torch.Tensor:
    """OpenCV camera-to-world ``[4, 4]`` at ``centre`` looking at ``target`` (world +y is down)."""
    centre, target = torch.as_tensor(centre, dtype=torch.float64), torch.as_tensor(target, dtype=torch.float64)
    forward = (target - centre) / (target - centre).norm()
    right = torch.linalg.cross(torch.tensor([0.0, 1.0, 0.0], dtype=torch.float64), forward)
    right = right / right.norm()
    extrinsics = torch.eye(4, dtype=torch.float64)
    extrinsics[:3, :3] = torch.stack([right, torch.linalg.cross(forward, right), forward], dim=-1)
    extrinsics[:3, 3] = centre
    return extrinsics


def make_context(extrinsics: torch.Tensor, dtype=torch.float32) -> dict:
    """Camera dict for ``extrinsics [B, V, 4, 4]`` with distinct intrinsics, near and far per view."""
    batch, views = extrinsics.shape[:2]
    intrinsics = torch.eye(3).repeat(batch, views, 1, 1)
    intrinsics[..., 0, 0] = torch.linspace(0.8, 1.1, views)
    intrinsics[..., 1, 1] = torch.linspace(1.2, 1.6, views)
    intrinsics[..., :2, 2] = 0.5
    near = torch.linspace(0.5, 1.5, views).repeat(batch, 1)
    far = torch.linspace(50.0, 100.0, views).repeat(batch, 1)
    return {'extrinsics': extrinsics.to(dtype), 'intrinsics': intrinsics.to(dtype), 'near': near.to(dtype),
            'far': far.to(dtype), 'image': torch.rand(batch, views, 3, 4, 4),
            'index': torch.arange(views).repeat(batch, 1)}


def random_pair(batch: int, seed: int = 0) -> torch.Tensor:
    """``[B, 2, 4, 4]``: random centres near the origin looking at random points 3-5 units ahead."""
    generator = torch.Generator().manual_seed(seed)
    pairs = []
    for _ in range(batch):
        focus = torch.tensor([0.0, 0.0, 4.0], dtype=torch.float64) + torch.randn(3, generator=generator,
                                                                                 dtype=torch.float64)
        roll = so3_exp(torch.tensor([0.0, 0.0, 0.1], dtype=torch.float64) * torch.randn(1, generator=generator))
        cameras = []
        for _ in range(2):
            camera = look_at(torch.randn(3, generator=generator, dtype=torch.float64) * 0.7, focus)
            camera[:3, :3] = camera[:3, :3] @ roll
            cameras.append(camera)
        pairs.append(torch.stack(cameras))
    return torch.stack(pairs)


def steps(extrinsics: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Angular (radians) and positional steps ``[..., n - 1]`` between consecutive frames."""
    rotations = extrinsics[..., :3, :3].double()
    relative = rotations[..., :-1, :, :].transpose(-1, -2) @ rotations[..., 1:, :, :]
    centres = extrinsics[..., :3, 3].double()
    return so3_log(relative).norm(dim=-1), (centres[..., 1:, :] - centres[..., :-1, :]).norm(dim=-1)


def test_both_paths_are_registered():
    assert isinstance(CAMERA_PATHS.build(dict(type='ground_truth')), GroundTruthPath)
    path = CAMERA_PATHS.build(dict(type='interpolated', mode='slerp', easing='linear'))
    assert isinstance(path, InterpolatedPath) and (path.mode, path.easing) == ('slerp', 'linear')


def test_ground_truth_path_returns_the_target_cameras():
    context = make_context(random_pair(2))
    target = make_context(torch.cat([random_pair(2, seed=1), random_pair(2, seed=2)], dim=1))
    cameras = GroundTruthPath()(context, target, num_frames=4)
    assert set(cameras) == {'extrinsics', 'intrinsics', 'near', 'far'}
    for key, value in cameras.items():
        assert value is target[key]


def test_ground_truth_path_refuses_a_missing_target_or_a_frame_count_mismatch():
    context = make_context(random_pair(1))
    with pytest.raises(ValueError, match='target=None'):
        GroundTruthPath()(context, None, num_frames=2)
    with pytest.raises(ValueError, match='num_frames=5 but the sample has 2 target views'):
        GroundTruthPath()(context, make_context(random_pair(1)), num_frames=5)


@pytest.mark.parametrize('mode,easing', SCHEMES)
def test_interpolation_passes_through_both_context_cameras(mode, easing):
    context = make_context(random_pair(4))
    cameras = InterpolatedPath(mode=mode, easing=easing)(context, None, num_frames=13)
    assert cameras['extrinsics'].shape == (4, 13, 4, 4) and cameras['intrinsics'].shape == (4, 13, 3, 3)
    assert cameras['near'].shape == (4, 13) and cameras['far'].shape == (4, 13)
    for key in ('extrinsics', 'intrinsics', 'near', 'far'):
        assert cameras[key].dtype == torch.float32
        torch.testing.assert_close(cameras[key][:, 0], context[key][:, 0], atol=1e-6, rtol=0)
        torch.testing.assert_close(cameras[key][:, -1], context[key][:, 1], atol=1e-6, rtol=0)


@pytest.mark.parametrize('mode,easing', SCHEMES)
def test_interpolated_rotations_are_proper_and_extrinsics_rigid(mode, easing):
    cameras = InterpolatedPath(mode=mode, easing=easing)(make_context(random_pair(3)), None, num_frames=17)
    rotations = cameras['extrinsics'][..., :3, :3].double()
    eye = torch.eye(3, dtype=torch.float64).expand_as(rotations)
    torch.testing.assert_close(rotations.transpose(-1, -2) @ rotations, eye, atol=1e-6, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotations), torch.ones(3, 17, dtype=torch.float64), atol=1e-6,
                               rtol=0)
    bottom = torch.tensor([0.0, 0.0, 0.0, 1.0]).expand(3, 17, 4)
    torch.testing.assert_close(cameras['extrinsics'][..., 3, :], bottom, atol=0, rtol=0)


def test_linear_slerp_moves_at_constant_speed_along_the_chord():
    pair = random_pair(3)
    cameras = InterpolatedPath(mode='slerp', easing='linear')(make_context(pair, torch.float64), None, 11)
    angular, positional = steps(cameras['extrinsics'])
    total_angle = so3_log(pair[:, 0, :3, :3].transpose(-1, -2) @ pair[:, 1, :3, :3]).norm(dim=-1)
    chord = (pair[:, 1, :3, 3] - pair[:, 0, :3, 3]).norm(dim=-1)
    torch.testing.assert_close(angular, (total_angle / 10)[:, None].expand(3, 10), atol=1e-9, rtol=0)
    torch.testing.assert_close(positional, (chord / 10)[:, None].expand(3, 10), atol=1e-9, rtol=0)


def test_linear_pivot_steps_are_bounded_by_a_small_factor_of_the_average():
    pair = random_pair(6, seed=3)
    cameras = InterpolatedPath(mode='pivot', easing='linear')(make_context(pair, torch.float64), None, 21)
    angular, positional = steps(cameras['extrinsics'])
    total_angle = so3_log(pair[:, 0, :3, :3].transpose(-1, -2) @ pair[:, 1, :3, :3]).norm(dim=-1)
    chord = (pair[:, 1, :3, 3] - pair[:, 0, :3, 3]).norm(dim=-1)
    assert bool((angular <= 1.5 * total_angle[:, None] / 20).all())
    assert bool((angular >= 0.5 * total_angle[:, None] / 20).all())
    assert bool((positional <= 2.0 * chord[:, None] / 20).all())
    assert bool((positional.sum(-1) <= 1.6 * chord).all())  # an arc, not a detour


def test_cosine_easing_starts_and_ends_slower_than_it_moves_midway():
    pair = random_pair(2, seed=4)
    for mode in ('pivot', 'slerp'):
        cameras = InterpolatedPath(mode=mode, easing='cosine')(make_context(pair, torch.float64), None, 21)
        for step in steps(cameras['extrinsics']):
            middle = step[:, 9:11].mean(-1)
            assert bool((step[:, 0] < 0.2 * middle).all()) and bool((step[:, -1] < 0.2 * middle).all())
            assert bool((step[:, :9].diff(dim=-1) > 0).all())  # accelerates to the middle
            assert bool((step[:, 11:].diff(dim=-1) < 0).all())  # and decelerates after it
            if mode == 'slerp':  # constant-speed geodesic: the eased steps are symmetric
                torch.testing.assert_close(step, step.flip(-1), atol=1e-9, rtol=0)


def test_pivot_path_orbits_the_common_focus_point():
    focus = torch.tensor([0.3, -0.2, 5.0], dtype=torch.float64)
    centres = [focus + 3.0 * torch.tensor([math.sin(a), 0.1, -math.cos(a)], dtype=torch.float64)
               for a in (-0.5, 0.4)]
    pair = torch.stack([look_at(c, focus) for c in centres])[None]
    pivot = InterpolatedPath(mode='pivot', easing='linear')(make_context(pair, torch.float64), None, 15)
    extrinsics = pivot['extrinsics'][0]
    to_focus = focus - extrinsics[:, :3, 3]
    distance = to_focus.norm(dim=-1)
    torch.testing.assert_close(distance, torch.full_like(distance, distance[0].item()), atol=1e-9, rtol=0)
    torch.testing.assert_close(extrinsics[:, :3, 2], to_focus / distance[:, None], atol=1e-9, rtol=0)

    slerped = InterpolatedPath(mode='slerp', easing='linear')(make_context(pair, torch.float64), None, 15)
    middle = (slerped['extrinsics'][0, 7, :3, 3] - focus).norm()
    assert middle < 0.95 * distance[0]  # the straight chord cuts the corner the pivot path goes round


def test_pivot_angles_turn_the_short_way_across_pi():
    # Camera 0 on the left: the pivot axis (look0 x look1) points up, against the cameras' +y,
    # so their rolls lie near +-pi; opposite small rolls put them on both sides of the cut.
    focus = torch.tensor([0.0, 0.0, 5.0], dtype=torch.float64)
    pair = torch.stack([look_at(focus + 3.0 * torch.tensor([math.sin(a), 0.0, -math.cos(a)],
                                                           dtype=torch.float64), focus) for a in (-0.4, 0.4)])
    for view, roll in enumerate((0.05, -0.05)):
        pair[view, :3, :3] = pair[view, :3, :3] @ so3_exp(torch.tensor([0.0, 0.0, roll], dtype=torch.float64))
    cameras = InterpolatedPath(mode='pivot', easing='linear')(make_context(pair[None], torch.float64), None, 11)
    angular, _ = steps(cameras['extrinsics'])
    total_angle = so3_log(pair[0, :3, :3].T @ pair[1, :3, :3]).norm()
    assert bool((angular <= 1.5 * total_angle / 10).all())


def test_parallel_viewing_axes_give_a_straight_track_and_a_roll():
    pair = torch.eye(4, dtype=torch.float64).repeat(1, 2, 1, 1)
    pair[0, 1, :3, :3] = so3_exp(torch.tensor([0.0, 0.0, 0.6], dtype=torch.float64))
    pair[0, 1, :3, 3] = torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64)
    context = make_context(pair, torch.float64)
    pivot = InterpolatedPath(mode='pivot', easing='linear')(context, None, 9)['extrinsics']
    slerped = InterpolatedPath(mode='slerp', easing='linear')(context, None, 9)['extrinsics']
    torch.testing.assert_close(pivot, slerped, atol=1e-12, rtol=0)


def test_identical_cameras_give_a_static_path():
    pair = random_pair(1, seed=5)[:, :1].repeat(1, 2, 1, 1)
    for mode, easing in SCHEMES:
        cameras = InterpolatedPath(mode=mode, easing=easing)(make_context(pair), None, 6)['extrinsics']
        torch.testing.assert_close(cameras, pair.float()[:, :1].expand(1, 6, 4, 4), atol=1e-6, rtol=0)


def test_zero_baseline_rotation_turns_in_place():
    pair = random_pair(1, seed=6)
    pair[:, 1, :3, 3] = pair[:, 0, :3, 3]
    for mode in ('pivot', 'slerp'):
        cameras = InterpolatedPath(mode=mode, easing='linear')(make_context(pair, torch.float64), None, 7)
        centres = cameras['extrinsics'][0, :, :3, 3]
        torch.testing.assert_close(centres, pair[0, :1, :3, 3].expand(7, 3), atol=1e-9, rtol=0)
        angular, _ = steps(cameras['extrinsics'])
        assert bool((angular > 0).all())


def test_batch_items_are_interpolated_independently():
    pair = random_pair(3, seed=7)
    pair[1, 1, :3, :3] = pair[1, 0, :3, :3]  # parallel viewing axes beside general pairs
    path = InterpolatedPath(mode='pivot', easing='cosine')
    batched = path(make_context(pair, torch.float64), None, 8)
    for item in range(3):
        single = path(make_context(pair[item:item + 1], torch.float64), None, 8)
        for key, value in single.items():
            torch.testing.assert_close(batched[key][item:item + 1], value, atol=1e-12, rtol=0)


def test_interpolation_keeps_float64():
    cameras = InterpolatedPath()(make_context(random_pair(1), torch.float64), None, 4)
    assert all(value.dtype == torch.float64 for value in cameras.values())


def test_non_finite_camera_is_named():
    context = make_context(random_pair(2))
    context['extrinsics'][1, 1, 0, 3] = float('nan')
    with pytest.raises(ValueError, match=r"context\['extrinsics'\] \(batch item 1, view 1\): non-finite extrinsics"):
        InterpolatedPath()(context, None, 5)
    target = make_context(random_pair(1))
    target['near'][0, 0] = float('inf')
    with pytest.raises(ValueError, match=r"target\['near'/'far'\] \(batch item 0, view 0\): need finite depth bounds"):
        GroundTruthPath()(make_context(random_pair(1)), target, 2)


def test_improper_rotation_is_refused():
    pair = random_pair(1)
    pair[0, 0, :3, 0] *= -1  # a reflection
    with pytest.raises(ValueError, match=r'batch item 0, view 0.*mirrored \(det = -1\)'):
        InterpolatedPath()(make_context(pair), None, 5)


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mode must be one of"):
        InterpolatedPath(mode='spline')
    with pytest.raises(ValueError, match="easing must be one of"):
        InterpolatedPath(easing='quadratic')
    three = make_context(torch.cat([random_pair(1), random_pair(1, seed=1)[:, :1]], dim=1))
    with pytest.raises(ValueError, match='exactly 2 context views, got 3'):
        InterpolatedPath()(three, None, 5)
    with pytest.raises(ValueError, match='num_frames >= 2'):
        InterpolatedPath()(make_context(random_pair(1)), None, 1)
    context = make_context(random_pair(1))
    context['near'] = context['near'][0]
    with pytest.raises(ValueError, match=r"context\['near'\]: must have shape \[1, 2\]"):
        InterpolatedPath()(context, None, 5)
    with pytest.raises(KeyError, match='lack'):
        InterpolatedPath()({'extrinsics': random_pair(1)}, None, 5)
