"""Relative pose of an image pair, with model selection and a refusal when it is unreliable.

For users who have two photos and no cameras. The steps:

1. **Matches.** SIFT keypoints (contrast threshold 0.005, below OpenCV's 0.04, so that
   low-contrast textures count) on grey images that project both images' colours on the first
   principal component of their pooled pixels (the grey with the most contrast), brute-force L2
   matching, Lowe's ratio test and a mutual best-match check.
2. **Two models, robustly.** An essential matrix and a homography are fitted to the matches with
   OpenCV's USAC (``cv2.USAC_ACCURATE``: graph-cut RANSAC with local optimisation) on normalised
   image coordinates (so the two images may have different intrinsics), at an inlier threshold
   given in pixels.
3. **Model selection.** Torr's GRIC (geometric robust information criterion) of each model over all
   matches, with the noise level ``sigma = ransac_threshold / 2``: a homography explains a
   planar scene (or a pure rotation) with fewer degrees of freedom per match, so it wins there.
   The essential matrix's pose comes from ``cv2.recoverPose`` (the decomposition that puts the
   points in front of both cameras). When the homography wins, its decomposition
   (``cv2.decomposeHomographyMat``) gives up to four poses. If the essential matrix's pose
   explains (Sampson distance within the threshold) at least 8 matches and 5 % of the matches
   more than every one of them, those off-plane points pin the essential pose down and it is
   kept (a dominant plane with some depth around it). Otherwise the decomposition poses that put
   most inliers in front of both cameras are kept and, when two remain (the planar ambiguity),
   the one that agrees with the essential matrix's pose is taken, or the pair is refused.
4. **Checks.** Cheirality (at least ``min_inliers`` inliers in front of both cameras) and parallax:
   the median angle between the two viewing rays of the inliers (with the rotation removed) must
   reach ``min_parallax_degrees``, otherwise the translation direction is unobservable (identical
   images, a pure rotation, a tiny baseline).
5. **Confidence.** The matches are resampled with replacement ``bootstrap`` times and the chosen
   model re-estimated; the confidence is the fraction of the re-estimates whose rotation agrees
   with the estimate within ``agreement_degrees[0]`` and whose translation direction within
   ``agreement_degrees[1]``. Below ``min_confidence`` the pair is refused.

Every failure (too few matches, no model, a degenerate or ambiguous geometry, a low confidence) is
a :class:`PoseEstimationError` naming both images and the reason; OpenCV and numpy errors never
escape. Inputs are checked first (images ``[3, H, W]`` in [0, 1], intrinsics by
``camera_validation.check_intrinsics``: normalised, finite, positive focal lengths).

The result is in the project convention: OpenCV camera-to-world extrinsics with the first camera
at the identity and the second camera's centre at distance 1 (the scale of a pair is
unobservable), and normalised intrinsics.

Measured on the synthetic default (``SyntheticSpec()``: 256 x 256, pairs 20 to 45 frames apart as
the default training sampler draws them, view overlap >= 50 %, JPEG quality 95; measured by
``tests/test_pose_estimation.py``): 16 of 26 pairs posed within 2 degrees of rotation and 10 of
direction, 2 accepted with larger errors, 8 refused (mostly too few SIFT matches on the least
textured rooms); median errors of the accepted poses 0.28 degrees (rotation) and 2.1 degrees
(direction). On a textured plane the homography gives errors below 0.2 degrees.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from videoscene.errors import InputError
from .camera_validation import check_intrinsics

__all__ = ['MatchReport', 'PoseEstimationError', 'RelativePose', 'default_intrinsics', 'estimate_relative_pose']

DEFAULT_FOV_X_DEGREES = 60.0
SIFT_CONTRAST_THRESHOLD = 0.005
MIN_OFF_PLANE_MATCHES = 8  # and 5 % of the matches: see step 3 of the module docstring
_USAC = cv2.USAC_ACCURATE


class PoseEstimationError(InputError):
    """An image pair whose relative pose cannot be estimated reliably; ``source`` names both images."""


@dataclass
class MatchReport:
    """How the pair matched and how far the estimate can be trusted.

    Attributes:
        keypoints: SIFT keypoints found in each image.
        matches: matches that pass the ratio test and the mutual check.
        essential_inliers: USAC inliers of the essential matrix.
        homography_inliers: USAC inliers of the homography.
        model: the model that won GRIC and gave the pose: ``'essential'`` or ``'homography'``.
        inliers: inliers of that model.
        pose_inliers: of those, the matches in front of both cameras for the pose.
        parallax_degrees: median angle between the two viewing rays of the pose inliers, with the
            rotation removed (0 for a pure rotation).
        confidence: fraction of bootstrap re-estimates that agree with the pose (see the module
            docstring), in [0, 1].
    """

    keypoints: tuple[int, int]
    matches: int
    essential_inliers: int
    homography_inliers: int
    model: str
    inliers: int
    pose_inliers: int
    parallax_degrees: float
    confidence: float

    def summary(self) -> str:
        """One line for logs."""
        return (f'{self.matches} SIFT matches ({self.keypoints[0]} and {self.keypoints[1]} keypoints), '
                f'{self.essential_inliers} essential-matrix and {self.homography_inliers} homography inliers; '
                f'{self.model} model: {self.pose_inliers} of {self.inliers} inliers in front of both cameras, '
                f'parallax {self.parallax_degrees:.2f} deg, confidence {self.confidence:.2f}')


@dataclass
class RelativePose:
    """Cameras of an image pair (the return type of :func:`estimate_relative_pose`).

    Attributes:
        extrinsics: ``[2, 4, 4]`` float32 OpenCV camera-to-world; ``extrinsics[0]`` is the identity
            and ``extrinsics[1]`` has its centre at distance 1 from the origin.
        intrinsics: ``[2, 3, 3]`` float32 normalised intrinsics (row 0 / W, row 1 / H) used for each image.
        report: the match statistics and the confidence (:class:`MatchReport`).
    """

    extrinsics: Tensor
    intrinsics: Tensor
    report: MatchReport


def default_intrinsics(height: int, width: int, fov_x_degrees: float = DEFAULT_FOV_X_DEGREES) -> Tensor:
    """Normalised intrinsics ``[3, 3]`` (float32) of a pinhole camera with square pixels, the given
    horizontal field of view (60 degrees by default) and the principal point at the image centre."""
    if not 0 < fov_x_degrees < 180:
        raise InputError('fov_x_degrees', f'must lie in (0, 180), got {fov_x_degrees}')
    fx = 0.5 / math.tan(math.radians(fov_x_degrees) / 2)
    return torch.tensor([[fx, 0.0, 0.5], [0.0, fx * width / height, 0.5], [0.0, 0.0, 1.0]])


def estimate_relative_pose(
    image0: Tensor,
    image1: Tensor,
    intrinsics: Tensor | None = None,
    *,
    names: tuple[str, str] = ('image 0', 'image 1'),
    ratio: float = 0.8,
    max_keypoints: int = 8000,
    min_matches: int = 30,
    min_inliers: int = 20,
    ransac_threshold: float = 0.5,
    min_parallax_degrees: float = 1.0,
    bootstrap: int = 20,
    agreement_degrees: tuple[float, float] = (2.0, 10.0),
    min_confidence: float = 0.5,
    seed: int = 0,
) -> RelativePose:
    """Estimate the cameras of two views of a static scene (method in the module docstring).

    Args:
        image0, image1: ``[3, H, W]`` RGB images in [0, 1]; the sizes may differ.
        intrinsics: normalised intrinsics, ``[3, 3]`` for both images or ``[2, 3, 3]`` one per
            image; ``None`` uses :func:`default_intrinsics` (60 degree horizontal field of view,
            centred principal point) for each image.
        names: how errors name the two images (e.g. their file names).
        ratio: Lowe's ratio test threshold (best / second-best descriptor distance).
        max_keypoints: SIFT keypoints kept per image (the strongest).
        min_matches: fewest matches accepted (at least 8).
        min_inliers: fewest inliers in front of both cameras accepted (at least 8).
        ransac_threshold: USAC inlier threshold in pixels (converted to normalised coordinates
            with the mean focal length of the two cameras).
        min_parallax_degrees: smallest median parallax accepted.
        bootstrap: re-estimates on resampled matches for the confidence (0: confidence 1).
        agreement_degrees: rotation and translation-direction differences (degrees) within which a
            re-estimate agrees with the pose.
        min_confidence: smallest confidence accepted.
        seed: seed of OpenCV's random generator (``cv2.setRNGSeed``) and of the resampling, so
            that results repeat.

    Returns:
        :class:`RelativePose` (``extrinsics [2, 4, 4]``, ``intrinsics [2, 3, 3]``, ``report``).

    Raises:
        InputError: an image or the intrinsics break the conventions (naming which).
        PoseEstimationError: the pose cannot be estimated reliably; names both images and the reason.
    """
    if min(min_matches, min_inliers) < 8:
        raise InputError('min_matches/min_inliers', f'must be at least 8 (got {min_matches} and {min_inliers}): '
                                                    'fewer point pairs cannot tell a homography from an essential matrix')
    grey0, grey1 = _grey_pair(*(_to_rgb(image, name) for image, name in zip((image0, image1), names)))
    k0, k1 = _intrinsics_pair(intrinsics, grey0.shape, grey1.shape)
    fail = _Failure(names)
    try:
        return _estimate(grey0, grey1, k0, k1, fail, ratio=ratio, max_keypoints=max_keypoints,
                         min_matches=min_matches, min_inliers=min_inliers, ransac_threshold=ransac_threshold,
                         min_parallax_degrees=min_parallax_degrees, bootstrap=bootstrap,
                         agreement_degrees=agreement_degrees, min_confidence=min_confidence, seed=seed)
    except (cv2.error, np.linalg.LinAlgError) as error:  # a degenerate configuration deep inside OpenCV
        first_line = str(error).strip().splitlines()[-1] if str(error).strip() else type(error).__name__
        raise fail(f'the geometry is degenerate ({type(error).__name__}: {first_line})') from None


class _Failure:
    """Makes the :class:`PoseEstimationError` of a pair."""

    def __init__(self, names: tuple[str, str]) -> None:
        self.source = f"'{names[0]}' and '{names[1]}'"

    def __call__(self, problem: str) -> PoseEstimationError:
        return PoseEstimationError(self.source, f'cannot estimate the relative pose: {problem}')


def _estimate(grey0: np.ndarray, grey1: np.ndarray, k0: np.ndarray, k1: np.ndarray, fail: _Failure, *,
              ratio: float, max_keypoints: int, min_matches: int, min_inliers: int, ransac_threshold: float,
              min_parallax_degrees: float, bootstrap: int, agreement_degrees: tuple[float, float],
              min_confidence: float, seed: int) -> RelativePose:
    counts, points0, points1 = _match(grey0, grey1, ratio, max_keypoints)
    if len(points0) < min_matches:
        raise fail(f'{len(points0)} SIFT matches pass the ratio test {ratio} and the mutual check (at least '
                   f'{min_matches} needed; keypoints {counts[0]} and {counts[1]}). The images may show different '
                   'scenes, be mirrored, or lack texture.')
    rays0, rays1 = _normalised_points(points0, k0, grey0.shape), _normalised_points(points1, k1, grey1.shape)
    focal = float(np.mean([k0[0, 0] * grey0.shape[1], k0[1, 1] * grey0.shape[0],
                           k1[0, 0] * grey1.shape[1], k1[1, 1] * grey1.shape[0]]))
    threshold = ransac_threshold / focal

    cv2.setRNGSeed(seed)
    essential, essential_mask = _fit_essential(rays0, rays1, threshold)
    homography, homography_mask = _fit_homography(rays0, rays1, threshold)
    essential_inliers = int(essential_mask.sum()) if essential is not None else 0
    homography_inliers = int(homography_mask.sum()) if homography is not None else 0
    if max(essential_inliers, homography_inliers) < min_inliers:
        raise fail(f'{essential_inliers} essential-matrix and {homography_inliers} homography inliers of '
                   f'{len(rays0)} matches (at least {min_inliers} needed). The images may show different scenes.')

    sigma = threshold / 2
    essential_pose = None
    if essential is not None:
        essential_pose = _pose_from_essential(essential, rays0, rays1, essential_mask)
    use_homography = homography is not None and (
        essential is None or _gric(_homography_errors(homography, rays0, rays1), sigma, 2, 8)
        < _gric(_sampson_errors(essential, rays0, rays1), sigma, 3, 5))
    if use_homography:
        decompositions = _decompose(homography)
        if essential_pose is not None and decompositions:
            # Points off the plane that only the essential matrix explains pin its pose down.
            off_plane = _support(essential_pose, rays0, rays1, threshold) - max(
                _support(pose, rays0, rays1, threshold) for pose in decompositions)
            use_homography = off_plane < max(MIN_OFF_PLANE_MATCHES, 0.05 * len(rays0))
    if use_homography:
        model, mask = 'homography', homography_mask
        rotation, translation = _pose_from_homography(decompositions, rays0, rays1, mask, essential_pose,
                                                      agreement_degrees, fail)
    else:
        model, mask = 'essential', essential_mask
        rotation, translation = essential_pose

    in_front = _in_front(rotation, translation, rays0, rays1) & mask
    pose_inliers = int(in_front.sum())
    if pose_inliers < min_inliers:
        raise fail(f'only {pose_inliers} of the {int(mask.sum())} {model} inliers lie in front of both cameras '
                   f'(at least {min_inliers} needed)')
    parallax = _parallax_degrees(rotation, rays0[in_front], rays1[in_front])
    if parallax < min_parallax_degrees:
        raise fail(f'the median parallax of the {pose_inliers} inliers is {parallax:.2f} degrees (at least '
                   f'{min_parallax_degrees} needed): the camera barely moved between the images (identical '
                   'images, a pure rotation or a tiny baseline), so the direction of its motion is unobservable')

    confidence = _bootstrap_confidence(rotation, translation, rays0, rays1, threshold, model, bootstrap,
                                       agreement_degrees, seed)
    report = MatchReport(keypoints=counts, matches=len(rays0), essential_inliers=essential_inliers,
                         homography_inliers=homography_inliers, model=model, inliers=int(mask.sum()),
                         pose_inliers=pose_inliers, parallax_degrees=parallax, confidence=confidence)
    if confidence < min_confidence:
        raise fail(f'the estimate is unstable: only {confidence:.0%} of {bootstrap} re-estimates on resampled '
                   f'matches agree with it within {agreement_degrees[0]} degrees of rotation and '
                   f'{agreement_degrees[1]} degrees of direction (at least {min_confidence:.0%} needed); '
                   f'{report.summary()}')

    # The pose maps camera-0 coordinates to camera-1 coordinates: x1 = R x0 + t.
    rotation_t = torch.from_numpy(rotation).double()
    translation_t = torch.from_numpy(translation).double().reshape(3)
    extrinsics = torch.eye(4, dtype=torch.float64).repeat(2, 1, 1)
    extrinsics[1, :3, :3] = rotation_t.T
    extrinsics[1, :3, 3] = -rotation_t.T @ (translation_t / torch.linalg.vector_norm(translation_t))
    return RelativePose(extrinsics=extrinsics.float(), intrinsics=torch.from_numpy(np.stack([k0, k1])).float(),
                        report=report)


def _match(grey0: np.ndarray, grey1: np.ndarray, ratio: float,
           max_keypoints: int) -> tuple[tuple[int, int], np.ndarray, np.ndarray]:
    """Keypoint counts and matched OpenCV pixel positions ``[N, 2]`` (ratio test + mutual check)."""
    sift = cv2.SIFT_create(nfeatures=max_keypoints, contrastThreshold=SIFT_CONTRAST_THRESHOLD)
    keypoints0, descriptors0 = sift.detectAndCompute(grey0, None)
    keypoints1, descriptors1 = sift.detectAndCompute(grey1, None)
    counts = (len(keypoints0), len(keypoints1))
    pairs = []
    if min(counts) >= 2:
        matcher = cv2.BFMatcher(cv2.NORM_L2)
        backward = {m.queryIdx: m.trainIdx for m in matcher.match(descriptors1, descriptors0)}
        pairs = [(best.queryIdx, best.trainIdx)
                 for best, *second in matcher.knnMatch(descriptors0, descriptors1, k=2)
                 if second and best.distance < ratio * second[0].distance
                 and backward.get(best.trainIdx) == best.queryIdx]
    points0 = np.array([keypoints0[i].pt for i, _ in pairs], dtype=np.float64).reshape(-1, 2)
    points1 = np.array([keypoints1[j].pt for _, j in pairs], dtype=np.float64).reshape(-1, 2)
    return counts, points0, points1


def _fit_essential(rays0: np.ndarray, rays1: np.ndarray, threshold: float) -> tuple[np.ndarray | None, np.ndarray]:
    essential, mask = cv2.findEssentialMat(rays0, rays1, np.eye(3), method=_USAC, prob=0.9999, threshold=threshold)
    if essential is None or essential.shape != (3, 3) or mask is None:
        return None, np.zeros(len(rays0), dtype=bool)
    return essential, mask.ravel().astype(bool)


def _fit_homography(rays0: np.ndarray, rays1: np.ndarray, threshold: float) -> tuple[np.ndarray | None, np.ndarray]:
    homography, mask = cv2.findHomography(rays0, rays1, _USAC, threshold, confidence=0.9999)
    if homography is None or mask is None or abs(np.linalg.det(homography)) < 1e-12:
        return None, np.zeros(len(rays0), dtype=bool)
    return homography, mask.ravel().astype(bool)


def _gric(errors: np.ndarray, sigma: float, dimension: int, parameters: int) -> float:
    """Torr's GRIC of a model with squared residuals ``errors [N]`` (normalised units): the robust
    cost ``sum min(e / sigma^2, 2 (4 - d))`` plus ``ln(4) d N`` for the manifold of dimension ``d``
    plus ``ln(4 N) k`` for the ``k`` model parameters (4 = the dimension of a match). Smaller is better."""
    n = len(errors)
    robust = np.minimum(errors / sigma ** 2, 2.0 * (4 - dimension)).sum()
    return float(robust + math.log(4) * dimension * n + math.log(4 * n) * parameters)


def _homogeneous(points: np.ndarray) -> np.ndarray:
    return np.concatenate([points, np.ones((len(points), 1))], axis=1)


def _sampson_errors(essential: np.ndarray, rays0: np.ndarray, rays1: np.ndarray) -> np.ndarray:
    """Squared Sampson distances ``[N]`` of the matches to the essential matrix."""
    x0, x1 = _homogeneous(rays0), _homogeneous(rays1)
    lines1, lines0 = x0 @ essential.T, x1 @ essential
    numerator = (x1 * lines1).sum(1) ** 2
    return numerator / np.maximum(lines1[:, 0] ** 2 + lines1[:, 1] ** 2 + lines0[:, 0] ** 2 + lines0[:, 1] ** 2,
                                  1e-30)


def _homography_errors(homography: np.ndarray, rays0: np.ndarray, rays1: np.ndarray) -> np.ndarray:
    """Mean of the squared forward and backward transfer errors ``[N]``."""

    def transfer(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
        mapped = _homogeneous(points) @ matrix.T
        return mapped[:, :2] / np.where(np.abs(mapped[:, 2:]) < 1e-12, 1e-12, mapped[:, 2:])

    forward = ((transfer(homography, rays0) - rays1) ** 2).sum(1)
    backward = ((transfer(np.linalg.inv(homography), rays1) - rays0) ** 2).sum(1)
    return 0.5 * (forward + backward)


def _pose_from_essential(essential: np.ndarray, rays0: np.ndarray, rays1: np.ndarray,
                         mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    _, rotation, translation, _ = cv2.recoverPose(essential, rays0, rays1, np.eye(3),
                                                  mask=mask.astype(np.uint8)[:, None].copy())
    return rotation, translation.reshape(3)


def _decompose(homography: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """The poses ``(R, t)`` of a homography's decomposition that have a translation (``t`` is the
    translation over the plane distance; a pure rotation gives none)."""
    _, rotations, translations, _ = cv2.decomposeHomographyMat(homography, np.eye(3))
    return [(rotation, translation.reshape(3)) for rotation, translation in zip(rotations, translations)
            if np.linalg.norm(translation) > 1e-9]


def _support(pose: tuple[np.ndarray, np.ndarray], rays0: np.ndarray, rays1: np.ndarray, threshold: float) -> int:
    """How many matches lie within ``threshold`` (Sampson distance) of the epipolar geometry of ``pose``."""
    rotation, translation = pose
    t = translation / np.linalg.norm(translation)
    skew = np.array([[0.0, -t[2], t[1]], [t[2], 0.0, -t[0]], [-t[1], t[0], 0.0]])
    return int((_sampson_errors(skew @ rotation, rays0, rays1) <= threshold ** 2).sum())


def _pose_from_homography(decompositions: list[tuple[np.ndarray, np.ndarray]], rays0: np.ndarray, rays1: np.ndarray,
                          mask: np.ndarray, essential_pose: tuple[np.ndarray, np.ndarray] | None,
                          agreement_degrees: tuple[float, float], fail: _Failure) -> tuple[np.ndarray, np.ndarray]:
    """The pose of a homography decomposition that puts the most inliers in front of both cameras;
    the planar two-fold ambiguity is resolved by the essential matrix's pose, or refused."""
    if not decompositions:
        raise fail('the matches fit a homography without translation (a pure rotation or identical images): '
                   'the direction of the camera motion is unobservable')
    counts = [int((_in_front(rotation, translation, rays0, rays1) & mask).sum()) for rotation, translation in decompositions]
    valid = [pose for pose, count in zip(decompositions, counts) if count >= 0.9 * max(counts)]
    distinct = []
    for pose in valid:
        if not any(_agrees(pose, other, agreement_degrees) for other in distinct):
            distinct.append(pose)
    if len(distinct) == 1:
        return distinct[0]
    agreeing = [pose for pose in distinct if essential_pose is not None
                and _agrees(pose, essential_pose, agreement_degrees)]
    if len(agreeing) == 1:
        return agreeing[0]
    raise fail(f'the scene is (nearly) planar and {len(distinct)} camera poses explain the matches equally well '
               '(the two-view planar ambiguity); the essential matrix does not single one out. Use images with '
               'more depth variation or give the extrinsics in cameras.json')


def _in_front(rotation: np.ndarray, translation: np.ndarray, rays0: np.ndarray, rays1: np.ndarray) -> np.ndarray:
    """Which matches triangulate in front of both cameras ``[I | 0]`` and ``[R | t]`` (mid-point method)."""
    d0 = _homogeneous(rays0)
    d1 = _homogeneous(rays1) @ rotation  # camera-1 rays in camera-0 axes (R^T x1)
    centre1 = -rotation.T @ translation
    # Solve s d0 - u d1 = centre1 in least squares for the depths s (camera 0) and u (camera 1).
    a, b, c = (d0 * d0).sum(1), (d0 * d1).sum(1), (d1 * d1).sum(1)
    p, q = d0 @ centre1, d1 @ centre1
    determinant = a * c - b * b
    ok = np.abs(determinant) > 1e-12
    safe = np.where(ok, determinant, 1.0)
    s, u = (c * p - b * q) / safe, (b * p - a * q) / safe
    return ok & (s > 0) & (u > 0)


def _parallax_degrees(rotation: np.ndarray, rays0: np.ndarray, rays1: np.ndarray) -> float:
    """Median angle (degrees) between the viewing rays of the matches once the rotation is removed."""
    d0 = _homogeneous(rays0)
    d1 = _homogeneous(rays1) @ rotation
    cosine = (d0 * d1).sum(1) / (np.linalg.norm(d0, axis=1) * np.linalg.norm(d1, axis=1))
    return float(np.degrees(np.median(np.arccos(np.clip(cosine, -1.0, 1.0)))))


def _pose_difference(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray]) -> tuple[float, float]:
    """Rotation angle and camera-centre direction angle (degrees) between two poses ``(R, t)``."""
    relative = first[0].T @ second[0]
    rotation = math.degrees(math.acos(float(np.clip((np.trace(relative) - 1) / 2, -1.0, 1.0))))
    centres = [-pose[0].T @ pose[1] for pose in (first, second)]
    cosine = centres[0] @ centres[1] / max(np.linalg.norm(centres[0]) * np.linalg.norm(centres[1]), 1e-30)
    return rotation, math.degrees(math.acos(float(np.clip(cosine, -1.0, 1.0))))


def _agrees(first: tuple[np.ndarray, np.ndarray], second: tuple[np.ndarray, np.ndarray],
            tolerance: tuple[float, float]) -> bool:
    rotation, direction = _pose_difference(first, second)
    return rotation <= tolerance[0] and direction <= tolerance[1]


def _bootstrap_confidence(rotation: np.ndarray, translation: np.ndarray, rays0: np.ndarray, rays1: np.ndarray,
                          threshold: float, model: str, rounds: int, tolerance: tuple[float, float],
                          seed: int) -> float:
    """Fraction of re-estimates on matches resampled with replacement that agree with ``(R, t)``."""
    if rounds == 0:
        return 1.0
    rng = np.random.default_rng(seed)
    agree = 0
    for _ in range(rounds):
        pick = rng.integers(0, len(rays0), len(rays0))
        a, b = rays0[pick], rays1[pick]
        if model == 'essential':
            essential, mask = _fit_essential(a, b, threshold)
            poses = [] if essential is None else [_pose_from_essential(essential, a, b, mask)]
        else:
            homography, _ = _fit_homography(a, b, threshold)
            poses = [] if homography is None else [
                (r, t.reshape(3)) for r, t in zip(*cv2.decomposeHomographyMat(homography, np.eye(3))[1:3])]
        agree += any(_agrees(pose, (rotation, translation), tolerance) for pose in poses)
    return agree / rounds


def _to_rgb(image: Tensor, name: str) -> np.ndarray:
    """``[3, H, W]`` float image in [0, 1] -> ``[H, W, 3]`` float64 array (checked)."""
    if not isinstance(image, Tensor) or image.dim() != 3 or image.shape[0] != 3:
        shape = list(image.shape) if isinstance(image, Tensor) else type(image).__name__
        raise InputError(name, f'must be a [3, H, W] RGB tensor, got {shape}')
    if not image.is_floating_point():
        raise InputError(name, f'must be a float image in [0, 1], got dtype {image.dtype}')
    rgb = image.detach().cpu().double().permute(1, 2, 0).numpy()
    if not np.isfinite(rgb).all():
        raise InputError(name, 'holds NaN or inf values; expected a float image in [0, 1]')
    low, high = float(rgb.min()), float(rgb.max())
    if low < 0 or high > 1:
        raise InputError(name, f'values must lie in [0, 1], got [{low:.3g}, {high:.3g}]'
                               + (' (divide 8-bit images by 255)' if high > 1 else ''))
    return rgb


def _grey_pair(rgb0: np.ndarray, rgb1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """uint8 grey images ``[H, W]``: both RGB images projected on the first principal component of
    their pooled pixel colours (the grey with the most contrast, so colour edges of equal luminance
    stay visible), scaled together to [0, 255] so that the two stay comparable."""
    pixels = [rgb.reshape(-1, 3) for rgb in (rgb0, rgb1)]
    pooled = np.concatenate(pixels)
    centred = pooled - pooled.mean(0)
    axis = np.linalg.eigh(centred.T @ centred)[1][:, -1]
    axis = axis if axis.sum() >= 0 else -axis
    projections = [p @ axis for p in pixels]
    low = min(float(p.min()) for p in projections)
    span = max(max(float(p.max()) for p in projections) - low, 1e-12)
    return tuple(np.round((p - low) / span * 255).astype(np.uint8).reshape(rgb.shape[:2])
                 for p, rgb in zip(projections, (rgb0, rgb1)))


def _intrinsics_pair(intrinsics: Tensor | None, shape0: tuple[int, int],
                     shape1: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Normalised intrinsics of both images as float64 arrays ``[3, 3]``."""
    if intrinsics is None:
        return default_intrinsics(*shape0).double().numpy(), default_intrinsics(*shape1).double().numpy()
    if not isinstance(intrinsics, Tensor) or intrinsics.shape not in ((3, 3), (2, 3, 3)):
        shape = list(intrinsics.shape) if isinstance(intrinsics, Tensor) else type(intrinsics).__name__
        raise InputError('intrinsics', f'must be a [3, 3] or [2, 3, 3] tensor (normalised), got {shape}')
    check_intrinsics(intrinsics, 'intrinsics')
    pair = intrinsics.detach().cpu().double().expand(2, 3, 3).numpy()
    return pair[0].copy(), pair[1].copy()


def _normalised_points(pixels: np.ndarray, intrinsics: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Keypoint positions (OpenCV pixels, centre of pixel ``i`` at ``i``) -> ``[N, 2]`` ``x/z, y/z``
    camera coordinates through normalised intrinsics (centre of pixel ``i`` at ``(i + 0.5) / W``)."""
    height, width = shape
    uv = np.stack([(pixels[:, 0] + 0.5) / width, (pixels[:, 1] + 0.5) / height, np.ones(len(pixels))])
    rays = np.linalg.solve(intrinsics, uv)
    return np.ascontiguousarray((rays[:2] / rays[2]).T)
