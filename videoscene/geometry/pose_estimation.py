"""Relative pose of an image pair: SIFT matches, Lowe's ratio test, essential matrix, cheirality.

For users who have two photos and no cameras. The pipeline is OpenCV's: SIFT keypoints on the
grey images, brute-force L2 matching with Lowe's ratio test, ``cv2.findEssentialMat`` with
RANSAC on normalised image coordinates (so the two images may have different intrinsics), and
``cv2.recoverPose`` to pick the decomposition that puts the points in front of both cameras.

The result is in the project convention: OpenCV camera-to-world extrinsics with the first
camera at the identity and the second camera's centre at distance 1 (the scale of a pair is
unobservable), and normalised intrinsics. A pure rotation (zero baseline) or a planar scene
makes the essential matrix degenerate; such pairs are not detected and give unreliable poses.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ['MatchReport', 'PoseEstimationError', 'RelativePose', 'default_intrinsics',
           'estimate_relative_pose']

DEFAULT_FOV_X_DEGREES = 60.0


class PoseEstimationError(RuntimeError):
    """An image pair could not be matched well enough to estimate its relative pose."""


@dataclass
class MatchReport:
    """How well the pair matched.

    Attributes:
        keypoints: SIFT keypoints found in each image.
        matches: matches that pass the ratio test.
        inliers: RANSAC inliers of the essential matrix.
        pose_inliers: inliers in front of both cameras for the recovered pose.
    """

    keypoints: tuple[int, int]
    matches: int
    inliers: int
    pose_inliers: int


@dataclass
class RelativePose:
    """Cameras of an image pair.

    Attributes:
        extrinsics: ``[2, 4, 4]`` OpenCV camera-to-world; ``extrinsics[0]`` is the identity and
            ``extrinsics[1]`` has its centre at distance 1 from the origin.
        intrinsics: ``[2, 3, 3]`` normalised intrinsics (row 0 / W, row 1 / H) used for each image.
        report: the match statistics.
    """

    extrinsics: Tensor
    intrinsics: Tensor
    report: MatchReport


def default_intrinsics(height: int, width: int, fov_x_degrees: float = DEFAULT_FOV_X_DEGREES) -> Tensor:
    """Normalised intrinsics ``[3, 3]`` (float32) of a pinhole camera with square pixels, the given
    horizontal field of view (60 degrees by default) and the principal point at the image centre."""
    if not 0 < fov_x_degrees < 180:
        raise ValueError(f'fov_x_degrees must lie in (0, 180), got {fov_x_degrees}')
    fx = 0.5 / math.tan(math.radians(fov_x_degrees) / 2)
    return torch.tensor([[fx, 0.0, 0.5], [0.0, fx * width / height, 0.5], [0.0, 0.0, 1.0]])


def estimate_relative_pose(
    image0: Tensor,
    image1: Tensor,
    intrinsics: Tensor | None = None,
    *,
    names: tuple[str, str] = ('image 0', 'image 1'),
    ratio: float = 0.75,
    max_keypoints: int = 8000,
    min_matches: int = 30,
    min_inliers: int = 20,
    ransac_threshold: float = 1.0,
    confidence: float = 0.999,
    seed: int = 0,
) -> RelativePose:
    """Estimate the cameras of two views of a static scene.

    Args:
        image0, image1: ``[3, H, W]`` RGB images in [0, 1]; the sizes may differ.
        intrinsics: normalised intrinsics, ``[3, 3]`` for both images or ``[2, 3, 3]`` one per
            image; ``None`` uses :func:`default_intrinsics` (60 degree horizontal field of view,
            centred principal point) for each image.
        names: how errors name the two images (e.g. their file names).
        ratio: Lowe's ratio test threshold (best / second-best descriptor distance).
        max_keypoints: SIFT keypoints kept per image (the strongest).
        min_matches: fewest ratio-test matches accepted (at least 5).
        min_inliers: fewest essential-matrix inliers in front of both cameras accepted (at least 5).
        ransac_threshold: RANSAC inlier threshold in pixels (converted to normalised
            coordinates with the mean focal length of the two cameras).
        confidence: RANSAC confidence.
        seed: seed of OpenCV's global random generator (``cv2.setRNGSeed``), set before RANSAC so
            that results repeat.

    Raises:
        PoseEstimationError: too few matches or inliers; the message names the images and the counts.
    """
    if min(min_matches, min_inliers) < 5:
        raise ValueError(f'the essential matrix needs at least 5 point pairs: min_matches '
                         f'({min_matches}) and min_inliers ({min_inliers}) must be >= 5')
    grey0, grey1 = (_to_grey(image, name) for image, name in zip((image0, image1), names))
    k0, k1 = _intrinsics_pair(intrinsics, grey0.shape, grey1.shape)
    which = f"'{names[0]}' and '{names[1]}'"

    sift = cv2.SIFT_create(nfeatures=max_keypoints)
    keypoints0, descriptors0 = sift.detectAndCompute(grey0, None)
    keypoints1, descriptors1 = sift.detectAndCompute(grey1, None)
    counts = (len(keypoints0), len(keypoints1))
    matches = []
    if min(counts) >= 2:
        candidates = cv2.BFMatcher(cv2.NORM_L2).knnMatch(descriptors0, descriptors1, k=2)
        matches = [best for best, *second in candidates
                   if second and best.distance < ratio * second[0].distance]
    if len(matches) < min_matches:
        raise PoseEstimationError(
            f'cannot estimate the relative pose of {which}: {len(matches)} SIFT matches pass the '
            f'ratio test {ratio} (at least {min_matches} needed; keypoints {counts[0]} and '
            f'{counts[1]}). The images may show different scenes or lack texture.')

    points0 = _normalised_points([keypoints0[m.queryIdx].pt for m in matches], k0, grey0.shape)
    points1 = _normalised_points([keypoints1[m.trainIdx].pt for m in matches], k1, grey1.shape)
    focal = np.mean([k0[0, 0] * grey0.shape[1], k0[1, 1] * grey0.shape[0],
                     k1[0, 0] * grey1.shape[1], k1[1, 1] * grey1.shape[0]])
    identity = np.eye(3)
    cv2.setRNGSeed(seed)
    essential, mask = cv2.findEssentialMat(points0, points1, identity, method=cv2.RANSAC,
                                           prob=confidence, threshold=ransac_threshold / focal)
    inliers = 0 if essential is None else int(mask.sum())
    if inliers < min_inliers:
        raise PoseEstimationError(
            f'cannot estimate the relative pose of {which}: {inliers} of {len(matches)} matches are '
            f'essential-matrix inliers (at least {min_inliers} needed). The images may show '
            'different scenes, a planar surface or no camera translation.')
    if essential.shape != (3, 3):  # only with the bare minimum of points: several exact solutions
        raise PoseEstimationError(
            f'cannot estimate the relative pose of {which}: {len(matches)} matches admit '
            f'{essential.shape[0] // 3} essential matrices; more matches are needed to choose one.')
    pose_inliers, rotation, translation, _ = cv2.recoverPose(essential, points0, points1, identity,
                                                             mask=mask.copy())
    if pose_inliers < min_inliers:
        raise PoseEstimationError(
            f'cannot estimate the relative pose of {which}: only {pose_inliers} of {inliers} '
            f'essential-matrix inliers lie in front of both cameras (at least {min_inliers} needed).')

    # recoverPose maps camera-0 coordinates to camera-1 coordinates: x1 = R x0 + t.
    rotation = torch.from_numpy(rotation).double()
    translation = torch.from_numpy(translation).double().reshape(3)
    extrinsics = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    extrinsics[1, :3, :3] = rotation.T
    extrinsics[1, :3, 3] = -rotation.T @ (translation / torch.linalg.vector_norm(translation))
    report = MatchReport(keypoints=counts, matches=len(matches), inliers=inliers,
                         pose_inliers=int(pose_inliers))
    return RelativePose(extrinsics=extrinsics.float(),
                        intrinsics=torch.from_numpy(np.stack([k0, k1])).float(), report=report)


def _to_grey(image: Tensor, name: str) -> np.ndarray:
    """``[3, H, W]`` float image in [0, 1] -> ``[H, W]`` uint8 grey image."""
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise ValueError(f"'{name}' must be a [3, H, W] tensor, got {shape}")
    if not image.is_floating_point() or not bool(torch.isfinite(image).all()):
        raise ValueError(f"'{name}' must be a finite float image in [0, 1], got dtype {image.dtype}")
    if float(image.min()) < 0 or float(image.max()) > 1:
        raise ValueError(f"'{name}' values must lie in [0, 1], got [{float(image.min()):.3g}, "
                         f'{float(image.max()):.3g}]')
    rgb = (image.detach().cpu().permute(1, 2, 0) * 255).round().to(torch.uint8).numpy()
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)


def _intrinsics_pair(intrinsics: Tensor | None, shape0: tuple[int, int],
                     shape1: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised intrinsics of both images as float64 arrays ``[3, 3]``."""
    if intrinsics is None:
        return default_intrinsics(*shape0).double().numpy(), default_intrinsics(*shape1).double().numpy()
    if intrinsics.shape not in ((3, 3), (2, 3, 3)):
        raise ValueError(f'intrinsics must be [3, 3] or [2, 3, 3] (normalised), got {list(intrinsics.shape)}')
    pair = intrinsics.detach().cpu().double().expand(2, 3, 3).numpy()
    return pair[0].copy(), pair[1].copy()


def _normalised_points(pixels: list[tuple[float, float]], intrinsics: np.ndarray,
                       shape: tuple[int, int]) -> np.ndarray:
    """Keypoint positions (OpenCV pixels, centre of pixel ``i`` at ``i``) -> ``[N, 2]`` ``x/z, y/z``
    camera coordinates through normalised intrinsics (centre of pixel ``i`` at ``(i + 0.5) / W``)."""
    height, width = shape
    points = np.asarray(pixels, dtype=np.float64)
    uv = np.stack([(points[:, 0] + 0.5) / width, (points[:, 1] + 0.5) / height, np.ones(len(points))])
    rays = np.linalg.solve(intrinsics, uv)
    return np.ascontiguousarray((rays[:2] / rays[2]).T)
