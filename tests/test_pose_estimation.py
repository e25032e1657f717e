"""Relative pose of an image pair: accuracy on ray-cast pairs and on the synthetic default's pairs,
model selection on a planar wall, and refusals (never a raw OpenCV/numpy error) on degenerate pairs."""
import math

import cv2
import numpy as np
import pytest
import torch

from videoscene.datasets.chunks import decode_image, encode_image
from videoscene.datasets.synthetic import SyntheticSpec, draw_scene
from videoscene.errors import CameraError, InputError
from videoscene.geometry.cameras import intrinsics_from_fov, pixel_centers, project, unproject
from videoscene.geometry.pose_estimation import (MatchReport, PoseEstimationError, RelativePose, default_intrinsics,
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
    with pytest.raises(PoseEstimationError, match=r"'a\.png' and 'b\.png': cannot estimate the relative pose: \d+ SIFT "
                                                  r'matches pass the ratio test'):
        estimate_relative_pose(noise0, noise1, names=('a.png', 'b.png'))


def test_flat_grey_images_are_refused():
    grey = torch.full((3, HEIGHT, WIDTH), 0.5)
    with pytest.raises(PoseEstimationError, match='0 SIFT matches .* keypoints 0 and 0'):
        estimate_relative_pose(grey, grey)


def test_too_few_inliers_are_refused_with_the_counts(default_pair):
    (image0, image1), _ = default_pair
    with pytest.raises(PoseEstimationError, match=r'\d+ essential-matrix and \d+ homography inliers of \d+ matches '
                                                  r'\(at least 100000 needed\)'):
        estimate_relative_pose(image0, image1, min_matches=8, min_inliers=100_000)


def test_the_report_says_which_model_and_how_confident(default_pair):
    (image0, image1), _ = default_pair
    report = estimate_relative_pose(image0, image1).report
    assert isinstance(report, MatchReport) and report.model == 'essential'
    assert report.essential_inliers > report.homography_inliers  # three planes at different depths
    assert report.parallax_degrees > 1.0 and report.confidence >= 0.9
    assert f'confidence {report.confidence:.2f}' in report.summary()


@pytest.mark.parametrize('name, second', [
    ('identical', lambda image0, image1: image0.clone()),
    ('mirrored', lambda image0, image1: image0.flip(-1)),
    ('mirrored pair', lambda image0, image1: image1.flip(-1)),
])
def test_degenerate_pairs_are_refused_naming_both_images(default_pair, name, second):
    (image0, image1), _ = default_pair
    with pytest.raises(PoseEstimationError, match=r"^'left\.jpg' and 'right\.jpg': cannot estimate the relative pose"):
        estimate_relative_pose(image0, second(image0, image1), names=('left.jpg', 'right.jpg'))


def test_a_pure_rotation_is_refused(planes):
    intrinsics = default_intrinsics(HEIGHT, WIDTH).double().numpy()
    image0 = render(planes, np.eye(4), intrinsics)
    image1 = render(planes, camera([0.02, -0.1, 0.01], [0.0, 0.0, 0.0]), intrinsics)
    with pytest.raises(PoseEstimationError, match='without translation|parallax'):
        estimate_relative_pose(image0, image1)


def test_a_planar_wall_is_posed_from_the_homography():
    """A single textured wall (the near-planar case that gave a silently wrong essential-matrix pose):
    the homography wins the model selection and its decomposition gives the pose."""
    wall = [(np.array([-50.0, -50.0, 4.0]), *np.eye(3)[:2], 100.0, 100.0, noise_texture(np.random.default_rng(1)))]
    intrinsics = default_intrinsics(HEIGHT, WIDTH).double().numpy()
    image0 = render(wall, np.eye(4), intrinsics)
    for rotation_vector, centre in (([0.02, -0.12, 0.0], [0.5, 0.0, 0.1]), ([0.0, 0.1, 0.02], [-0.4, 0.1, 0.0])):
        second = camera(rotation_vector, centre)
        result = estimate_relative_pose(image0, render(wall, second, intrinsics))
        assert result.report.model == 'homography'
        assert rotation_error_degrees(result.extrinsics[1], second) < 0.5
        assert direction_error_degrees(result.extrinsics[1, :3, 3], second[:3, 3]) < 2.0


@pytest.mark.parametrize('intrinsics, error, message', [
    (torch.full((3, 3), math.nan), CameraError, r'^intrinsics: non-finite intrinsics'),
    (torch.tensor([[500.0, 0, 160], [0, 500, 120], [0, 0, 1]]), CameraError, r'^intrinsics: .*look like pixel units'),
    (torch.tensor([[0.0, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]]), CameraError, r'^intrinsics: focal lengths must be positive'),
    (torch.tensor([[-0.8, 0, 0.5], [0, 1.2, 0.5], [0, 0, 1]]), CameraError, r'^intrinsics: focal lengths must be positive'),
    (torch.eye(4), InputError, r'^intrinsics: must be a \[3, 3\] or \[2, 3, 3\] tensor'),
])
def test_bad_intrinsics_are_refused_before_matching(default_pair, intrinsics, error, message):
    (image0, image1), _ = default_pair
    with pytest.raises(error, match=message):
        estimate_relative_pose(image0, image1, intrinsics)


def test_bad_images_are_named():
    image = torch.rand(3, 8, 8)
    with pytest.raises(InputError, match=r"^left: must be a \[3, H, W\] RGB tensor"):
        estimate_relative_pose(image[0], image, names=('left', 'right'))
    with pytest.raises(InputError, match=r"^right: values must lie in \[0, 1\], got .* \(divide 8-bit images by 255\)"):
        estimate_relative_pose(image, image * 255, names=('left', 'right'))
    with pytest.raises(InputError, match=r'^right: holds NaN or inf'):
        estimate_relative_pose(image, image.clone().fill_(math.nan), names=('left', 'right'))
    with pytest.raises(InputError, match='must be at least 8'):
        estimate_relative_pose(image, image, min_inliers=4)


# --- the synthetic default: pairs the default training sampler draws (gaps 20-45 frames) -------------

SYNTHETIC = SyntheticSpec()  # the SyntheticScenes default: 8 scenes x 120 frames at 256 x 256
MIN_OVERLAP = 0.5


def synthetic_pairs() -> list[tuple]:
    """32 pairs (4 per scene of the default spec) with gaps spread over the default sampler's
    [20, 45] frames, JPEG-encoded like the dataset; kept when at least ``MIN_OVERLAP`` of view 0's
    pixels are seen by view 1 (from the ground-truth depth). Returns ``(name, images, relative
    camera-to-world of view 1 in view 0's frame)``."""
    intrinsics = intrinsics_from_fov(SYNTHETIC.fov_deg, SYNTHETIC.height, SYNTHETIC.width)
    uv = pixel_centers(SYNTHETIC.height, SYNTHETIC.width)
    pairs = []
    for index in range(SYNTHETIC.num_scenes):
        scene, trajectory = draw_scene(SYNTHETIC, index)
        for k, first in enumerate((0, 24, 48, 72)):
            gap = 20 + (7 * index + 11 * k) % 26
            extrinsics = trajectory.extrinsics[[first, first + gap]]
            images, depths = scene.render(extrinsics, intrinsics.expand(2, 3, 3), SYNTHETIC.height, SYNTHETIC.width)
            seen, z = project(unproject(uv, depths[0], intrinsics, extrinsics[0]), intrinsics, extrinsics[1])
            overlap = float(((z > 0) & (seen >= 0).all(-1) & (seen <= 1).all(-1)).float().mean())
            if overlap >= MIN_OVERLAP:
                images = [decode_image(encode_image(image, SYNTHETIC.jpeg_quality)) for image in images]
                relative = torch.linalg.inv(extrinsics[0].double()) @ extrinsics[1].double()
                pairs.append((f'scene {index} frames {first}-{first + gap}', images, relative.numpy()))
    return pairs


def test_synthetic_default_pairs_are_posed_accurately_or_refused():
    """Most overlapping pairs are posed with small errors; the rest are refused (never a raw error),
    and a wrong pose is rarely accepted."""
    intrinsics = intrinsics_from_fov(SYNTHETIC.fov_deg, SYNTHETIC.height, SYNTHETIC.width)
    pairs = synthetic_pairs()
    results = {}
    for name, (image0, image1), truth in pairs:
        try:
            estimate = estimate_relative_pose(image0, image1, intrinsics, names=(f'{name} a', f'{name} b')).extrinsics[1]
        except PoseEstimationError as error:
            assert str(error).startswith(f"'{name} a' and '{name} b': cannot estimate")
            results[name] = None
            continue
        results[name] = (rotation_error_degrees(estimate, truth), direction_error_degrees(estimate[:3, 3], truth[:3, 3]))
    accepted = [errors for errors in results.values() if errors is not None]
    good = [errors for errors in accepted if errors[0] < 2.0 and errors[1] < 10.0]
    rotation, direction = np.median(np.array(accepted), axis=0)
    print(f'synthetic default: {len(pairs)} pairs with overlap >= {MIN_OVERLAP}: {len(good)} posed within 2 deg '
          f'rotation and 10 deg direction, {len(accepted) - len(good)} accepted with larger errors, '
          f'{len(pairs) - len(accepted)} refused; median errors of the accepted: rotation {rotation:.2f} deg, '
          f'direction {direction:.2f} deg')
    assert len(pairs) >= 25
    assert len(good) > 0.5 * len(pairs)
    assert len(accepted) - len(good) <= 0.1 * len(pairs)
    assert rotation < 1.0 and direction < 5.0
