"""SO(3) exp/log, slerp and quaternions of videoscene.geometry.rotations."""
import math

import pytest
import torch

from videoscene.geometry.rotations import (hat, matrix_to_quaternion, quaternion_to_matrix, slerp, so3_exp,
                                           so3_log)

ANGLES = [0.0, 1e-9, 1e-6, 1e-3, 0.5, math.pi / 2 - 1e-7, math.pi / 2 + 1e-7, 2.0, math.pi - 1e-3,
          math.pi - 1e-6]


def random_axes(count: int, dtype=torch.float64, seed: int = 0) -> torch.Tensor:
    axes = torch.randn(count, 3, dtype=dtype, generator=torch.Generator().manual_seed(seed))
    return axes / axes.norm(dim=-1, keepdim=True)


def rotation_about_z(angle: float, dtype=torch.float64) -> torch.Tensor:
    c, s = math.cos(angle), math.sin(angle)
    return torch.tensor([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]], dtype=dtype)


def test_hat_is_the_cross_product():
    a, b = torch.randn(2, 5, 3, dtype=torch.float64).unbind(0)
    torch.testing.assert_close((hat(a) @ b[..., None]).squeeze(-1), torch.linalg.cross(a, b))


@pytest.mark.parametrize('angle', [0.0, 1e-8, 0.3, 2.5, math.pi])
def test_exp_matches_the_analytic_rotation_about_z(angle):
    omega = torch.tensor([0.0, 0.0, angle], dtype=torch.float64)
    torch.testing.assert_close(so3_exp(omega), rotation_about_z(angle), atol=1e-14, rtol=0)


@pytest.mark.parametrize('dtype,atol', [(torch.float64, 1e-12), (torch.float32, 2e-6)])
def test_exp_is_a_rotation(dtype, atol):
    omega = random_axes(64, dtype) * torch.linspace(0, math.pi, 64, dtype=dtype)[:, None]
    rotation = so3_exp(omega)
    eye = torch.eye(3, dtype=dtype).expand_as(rotation)
    torch.testing.assert_close(rotation.transpose(-1, -2) @ rotation, eye, atol=atol, rtol=0)
    torch.testing.assert_close(torch.linalg.det(rotation), torch.ones(64, dtype=dtype), atol=atol, rtol=0)


@pytest.mark.parametrize('dtype,atol', [(torch.float64, 1e-12), (torch.float32, 2e-6)])
@pytest.mark.parametrize('angle', ANGLES)
def test_log_inverts_exp_near_zero_and_pi(angle, dtype, atol):
    omega = random_axes(200, dtype) * angle
    torch.testing.assert_close(so3_log(so3_exp(omega)), omega, atol=atol, rtol=0)


def test_log_at_exactly_pi_gives_the_axis_up_to_sign():
    axes = random_axes(50)
    rotation = so3_exp(axes * math.pi)
    omega = so3_log(rotation)
    torch.testing.assert_close(omega.norm(dim=-1), torch.full((50,), math.pi, dtype=torch.float64))
    alignment = (omega / math.pi * axes).sum(-1).abs()
    torch.testing.assert_close(alignment, torch.ones(50, dtype=torch.float64))
    torch.testing.assert_close(so3_exp(omega), rotation, atol=1e-12, rtol=0)


def test_slerp_follows_the_rotation_about_a_fixed_axis():
    axis = random_axes(1, seed=3)[0]
    start_angle, end_angle = -0.4, 2.3
    base = so3_exp(torch.tensor([0.3, -1.1, 0.7], dtype=torch.float64))
    start = base @ so3_exp(axis * start_angle)
    end = base @ so3_exp(axis * end_angle)
    t = torch.linspace(0, 1, 11, dtype=torch.float64)
    expected = base @ so3_exp(axis * (start_angle + t[:, None] * (end_angle - start_angle)))
    torch.testing.assert_close(slerp(start, end, t), expected, atol=1e-12, rtol=0)


def test_slerp_about_z_matches_the_analytic_angles():
    t = torch.tensor([0.0, 0.25, 0.5, 1.0], dtype=torch.float64)
    result = slerp(rotation_about_z(0.2), rotation_about_z(1.4), t)
    expected = torch.stack([rotation_about_z(0.2 + 1.2 * float(w)) for w in t])
    torch.testing.assert_close(result, expected, atol=1e-14, rtol=0)


def test_slerp_broadcasts_batches_against_times():
    start = so3_exp(random_axes(4, seed=1) * 0.5)[:, None]
    end = so3_exp(random_axes(4, seed=2) * 1.5)[:, None]
    t = torch.linspace(0, 1, 7, dtype=torch.float64)[None]
    result = slerp(start, end, t)
    assert result.shape == (4, 7, 3, 3)
    torch.testing.assert_close(result[:, 0], start[:, 0], atol=0, rtol=0)
    torch.testing.assert_close(result[:, -1], end[:, 0], atol=1e-12, rtol=0)
    torch.testing.assert_close(result[2, 3], slerp(start[2, 0], end[2, 0], t[0, 3]))


def test_quaternion_of_an_axis_angle_is_half_angle_wxyz():
    axes = random_axes(20, seed=4)
    angles = torch.linspace(0, math.pi - 1e-3, 20, dtype=torch.float64)[:, None]
    quaternion = torch.cat([torch.cos(angles / 2), torch.sin(angles / 2) * axes], dim=-1)
    torch.testing.assert_close(quaternion_to_matrix(quaternion), so3_exp(axes * angles), atol=1e-12, rtol=0)
    torch.testing.assert_close(matrix_to_quaternion(so3_exp(axes * angles)), quaternion, atol=1e-12, rtol=0)


@pytest.mark.parametrize('angle', [0.0, 1e-7, 1.0, math.pi - 1e-7, math.pi])
def test_matrix_quaternion_round_trip(angle):
    rotation = so3_exp(random_axes(100, seed=5) * angle)
    quaternion = matrix_to_quaternion(rotation)
    assert bool((quaternion[:, 0] >= 0).all())
    torch.testing.assert_close(quaternion.norm(dim=-1), torch.ones(100, dtype=torch.float64))
    torch.testing.assert_close(quaternion_to_matrix(quaternion), rotation, atol=1e-12, rtol=0)


def test_quaternions_are_normalised_and_zero_is_refused():
    quaternion = torch.tensor([2.0, 0.0, 0.0, 2.0], dtype=torch.float64)
    torch.testing.assert_close(quaternion_to_matrix(quaternion), rotation_about_z(math.pi / 2), atol=1e-14, rtol=0)
    with pytest.raises(ValueError, match='zero quaternion'):
        quaternion_to_matrix(torch.zeros(2, 4))


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match=r'rotation must have shape \[..., 3, 3\]'):
        so3_log(torch.eye(4))
    with pytest.raises(ValueError, match=r'omega must have shape \[..., 3\]'):
        so3_exp(torch.zeros(2, 4))
