"""Relative pose of an image pair (SIFT + essential matrix) on a ray-cast synthetic pair."""
import math

import cv2
import numpy as np
import pytest
import torch

from videoscene.geometry.pose_estimation import (PoseEstimationError, RelativePose, default_intrinsics,
                                                 estimate_relative_pose)
from videoscene.geometry.rotations import so3_exp, so3_log

HEIGHT, WIDTH = 240, 320
TEXELS_PER_UNIT = 40.0


def noise_texture(rng: np.random.Generator, size: int = 256) -> np.ndarray:
    """Blurred uniform noise in [0, 1]: blobs at many scales for SIFT."""
    texture = cv2.GaussianBlur(rng.random((size, size)).astype(np.float32), (0, 0), 1.5)
    return (texture - texture.min()) / (texture.max() - texture.min())


def make_planes(seed: int = 0) -> list[tuple]:
    """Textured rectangles ``(corner, u axis, v axis, size_u, size_v, texture)`` at several depths:
    a back wall at z = 8, a floor at y = 1.5 (+y is down) and two panels at z = 3.5 and z = 5."""
    rng = np.random.default_rng(seed)
    x, y, z = np.eye(3)
    huge = 1e3
    return [
        (np.array([-huge / 2, -huge / 2, 8.0]), x, y, huge, huge, noise_texture(rng)),
        (np.array([-huge / 2, 1.5, -huge / 2]), x, z, huge, huge, noise_texture(rng)),
        (np.array([-1.5, -1.0, 3.5]), x, y, 1.3, 1.8, noise_texture(rng)),
        (np.array([0.5, -1.5, 5.0]), x, y, 1.7, 2.0, noise_texture(rng)),
    ]


def render(planes: list[tuple], extrinsics: np.ndarray, intrinsics: np.ndarray) -> torch.Tensor:
    """Ray-cast ``[3, H, W]`` grey image of the planes seen by an OpenCV camera-to-world camera
    with normalised intrinsics (centre of pixel ``i`` at ``(i + 0.5) / W``)."""
    rows, columns = np.meshgrid(np.arange(HEIGHT), np.arange(WIDTH), indexing='ij')
    pixels = np.stack([(columns + 0.5) / WIDTH, (rows + 0.5) / HEIGHT, np.ones((HEIGHT, WIDTH))], axis=-1)
    directions = pixels @ np.linalg.inv(intrinsics).T @ extrinsics[:3, :3].T
    centre = extrinsics[:3, 3]
    nearest = np.full((HEIGHT, WIDTH), np.inf)
    image = np.full((HEIGHT, WIDTH), 0.5, dtype=np.float32)
    for corner, u_axis, v_axis, size_u, size_v, texture in planes:
        normal = np.cross(u_axis, v_axis)
        with np.errstate(divide='ignore', invalid='ignore'):
            t = ((corner - centre) @ normal) / (directions @ normal)
        t = np.nan_to_num(t, nan=-1.0, posinf=-1.0, neginf=-1.0)
        local = centre + t[..., None] * directions - corner
        u, v = local @ u_axis, local @ v_axis
        hit = (t > 0) & (t < nearest) & (u >= 0) & (u <= size_u) & (v >= 0) & (v <= size_v)
        map_u = np.mod(u * TEXELS_PER_UNIT, texture.shape[1]).astype(np.float32)
        map_v = np.mod(v * TEXELS_PER_UNIT, texture.shape[0]).astype(np.float32)
        colour = cv2.remap(texture, map_u, map_v, cv2.INTER_LINEAR, borderMode=cv2.BORDER_WRAP)
        image = np.where(hit, colour, image)
        nearest = np.where(hit, t, nearest)
    return torch.from_numpy(image).expand(3, HEIGHT, WIDTH).clone()


def camera(rotation_vector: list[float], centre: list[float]) -> np.ndarray:
    extrinsics = np.eye(4)
    extrinsics[:3, :3] = so3_exp(torch.tensor(rotation_vector, dtype=torch.float64)).numpy()
    extrinsics[:3, 3] = centre
    return extrinsics


def rotation_error_degrees(estimated: torch.Tensor, expected: np.ndarray) -> float:
    relative = estimated[:3, :3].double().T @ torch.from_numpy(expected[:3, :3])
    return math.degrees(float(so3_log(relative).norm()))


def direction_error_degrees(estimated: torch.Tensor, expected: np.ndarray) -> float:
    expected = torch.from_numpy(expected / np.linalg.norm(expected))
    cosine = float((estimated.double() / estimated.double().norm()) @ expected)
    return math.degrees(math.acos(max(-1.0, min(1.0, cosine))))


@pytest.fixture(scope='module')
def planes() -> list[tuple]:
    return make_planes()


@pytest.fixture(scope='module')
def default_pair(planes):
    """Two views with the default intrinsics; camera 1 turned ~9 degrees and moved right and forward."""
    intrinsics = default_intrinsics(HEIGHT, WIDTH).double().numpy()
    second = camera([0.05, -0.15, 0.03], [0.6, -0.1, 0.25])
    images = render(planes, np.eye(4), intrinsics), render(planes, second, intrinsics)
    return images, second


def test_default_intrinsics_have_a_60_degree_field_of_view_and_square_pixels():
    intrinsics = default_intrinsics(HEIGHT, WIDTH)
    edge = intrinsics.double() @ torch.tensor([math.tan(math.radians(30)), 0.0, 1.0], dtype=torch.float64)
    assert edge[0].item() == pytest.approx(1.0) and edge[1].item() == pytest.approx(0.5)
    assert (intrinsics[0, 0] * WIDTH).item() == pytest.approx((intrinsics[1, 1] * HEIGHT).item())
    wide = default_intrinsics(HEIGHT, WIDTH, fov_x_degrees=90.0)
    assert (wide[0, 0] * math.tan(math.radians(45))).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match='fov_x_degrees'):
        default_intrinsics(HEIGHT, WIDTH, fov_x_degrees=180.0)


def test_recovers_a_known_relative_pose_with_default_intrinsics(default_pair):
    (image0, image1), second = default_pair
    result = estimate_relative_pose(image0, image1)
    assert isinstance(result, RelativePose)
    assert result.extrinsics.shape == (2, 4, 4) and result.intrinsics.shape == (2, 3, 3)
    torch.testing.assert_close(result.extrinsics[0], torch.eye(4), atol=0, rtol=0)
    torch.testing.assert_close(result.intrinsics, default_intrinsics(HEIGHT, WIDTH).expand(2, 3, 3))
    assert result.extrinsics[1, :3, 3].norm().item() == pytest.approx(1.0, abs=1e-6)
    assert rotation_error_degrees(result.extrinsics[1], second) < 2.0
    assert direction_error_degrees(result.extrinsics[1, :3, 3], second[:3, 3]) < 5.0
    report = result.report
    assert report.pose_inliers <= report.inliers <= report.matches <= min(report.keypoints)
    assert report.pose_inliers >= 20


def test_recovers_the_pose_with_different_intrinsics_per_image(planes):
    intrinsics = default_intrinsics(HEIGHT, WIDTH).repeat(2, 1, 1).double()
    intrinsics[1, :2, :2] *= 1.25  # the second photo is zoomed in
    intrinsics[1, 0, 2] = 0.47
    second = camera([-0.04, 0.12, -0.02], [-0.5, 0.15, 0.4])
    image0 = render(planes, np.eye(4), intrinsics[0].numpy())
    image1 = render(planes, second, intrinsics[1].numpy())
    result = estimate_relative_pose(image0, image1, intrinsics)
    torch.testing.assert_close(result.intrinsics, intrinsics.float())
    assert rotation_error_degrees(result.extrinsics[1], second) < 2.0
    assert direction_error_degrees(result.extrinsics[1, :3, 3], second[:3, 3]) < 5.0


def test_seeded_estimates_repeat(default_pair):
    (image0, image1), _ = default_pair
    first = estimate_relative_pose(image0, image1, seed=3)
    again = estimate_relative_pose(image0, image1, seed=3)
    torch.testing.assert_close(first.extrinsics, again.extrinsics, atol=0, rtol=0)
    assert first.report == again.report


def test_unrelated_noise_images_are_refused_with_their_names():
    generator = torch.Generator().manual_seed(0)
    noise0 = torch.rand(3, HEIGHT, WIDTH, generator=generator)
    noise1 = torch.rand(3, HEIGHT, WIDTH, generator=generator)
    with pytest.raises(PoseEstimationError, match=r"'a\.png' and 'b\.png': \d+ SIFT matches pass the ratio test"):
        estimate_relative_pose(noise0, noise1, names=('a.png', 'b.png'))


def test_flat_grey_images_are_refused():
    grey = torch.full((3, HEIGHT, WIDTH), 0.5)
    with pytest.raises(PoseEstimationError, match='0 SIFT matches .* keypoints 0 and 0'):
        estimate_relative_pose(grey, grey)


def test_too_few_inliers_are_refused_with_the_counts(default_pair):
    (image0, image1), _ = default_pair
    with pytest.raises(PoseEstimationError, match=r'\d+ of \d+ matches are essential-matrix inliers '
                                                  r'\(at least 100000 needed\)'):
        estimate_relative_pose(image0, image1, min_inliers=100_000)


def test_bad_inputs_are_named():
    image = torch.rand(3, 8, 8)
    with pytest.raises(ValueError, match=r"'left' must be a \[3, H, W\] tensor"):
        estimate_relative_pose(image[0], image, names=('left', 'right'))
    with pytest.raises(ValueError, match=r"'right' values must lie in \[0, 1\]"):
        estimate_relative_pose(image, image * 255, names=('left', 'right'))
    with pytest.raises(ValueError, match=r'intrinsics must be \[3, 3\] or \[2, 3, 3\]'):
        estimate_relative_pose(image, image, torch.eye(4))
    with pytest.raises(ValueError, match='at least 5 point pairs'):
        estimate_relative_pose(image, image, min_inliers=4)
