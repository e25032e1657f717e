"""Image pairs, posed by the user or by two-view pose estimation.

A pair folder holds exactly two image files (ordered by name: the first is context view 0) and
optionally ``cameras.json``::

    {"intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]          # normalised; or a list of two
     "extrinsics": [[4 x 4], [4 x 4]]}                           # OpenCV camera-to-world, optional

Without ``extrinsics`` the relative pose is estimated (``videoscene.geometry.pose_estimation``:
SIFT matches, essential matrix or homography by model selection, cheirality, parallax and a
bootstrap confidence) with the given intrinsics, or with a 60 degree horizontal field of view and
centred principal point when the file or ``intrinsics`` is absent: view 0 at the identity, the
baseline normalised to 1. The match report is logged and kept in ``reports``; a pair whose pose
cannot be estimated reliably (identical, unrelated or mirrored images, too little parallax, an
unstable estimate) raises ``PoseEstimationError`` naming both files. Cameras from ``cameras.json``
are checked by ``geometry.camera_validation`` (errors name the file and the camera).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from mmengine.logging import print_log
from torch import Tensor

from videoscene.errors import InputError
from videoscene.geometry.camera_validation import check_extrinsics, check_intrinsics
from videoscene.geometry.pose_estimation import MatchReport, default_intrinsics, estimate_relative_pose
from videoscene.registry import DATASETS
from .base import SceneDataset
from .image_files import IMAGE_SUFFIXES, ImageFileScene, ImageFileSource, natural_key, read_image_file
from .pixel_cameras import PixelCamera
from .view_samplers import FixedViewSampler

__all__ = ['read_image_pair', 'ImagePairDataset']


def _matrices(value, shape: tuple[int, ...], count: int, where: str) -> Tensor:
    """``value`` as ``count`` matrices of ``shape`` (one matrix is repeated)."""
    try:
        matrices = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError):
        raise InputError(where, f'expected one {list(shape)} matrix of numbers or {count} of them, '
                                f'got {value!r:.200}') from None
    if matrices.shape == shape:
        matrices = matrices.expand(count, *shape)
    if matrices.shape != (count, *shape):
        raise InputError(where, f'expected one {list(shape)} matrix or {count} of them, got {list(matrices.shape)}')
    return matrices


def read_image_pair(folder: str | Path, **estimation) -> tuple[ImageFileScene, MatchReport | None]:
    """A pair folder (format in the module docstring) as a two-frame scene keyed by the folder name,
    and the pose-estimation report (None when ``cameras.json`` gives extrinsics).

    Args:
        folder: the pair folder.
        estimation: keyword arguments of ``estimate_relative_pose`` (e.g. ``min_inliers``).
    """
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise FileNotFoundError(f'image pair folder {folder} does not exist')
    paths = sorted((p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES),
                   key=lambda p: natural_key(p.name))
    if len(paths) != 2:
        raise InputError(folder, f'an image pair folder must hold exactly two images ({", ".join(IMAGE_SUFFIXES)}), '
                                 f'found {len(paths)}: {[p.name for p in paths]}')
    images = [read_image_file(path) for path in paths]
    camera_file = folder / 'cameras.json'
    try:
        cameras = json.loads(camera_file.read_text()) if camera_file.is_file() else {}
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(camera_file, f'not valid JSON ({error})') from None
    if not isinstance(cameras, dict):
        raise InputError(camera_file, 'must hold a JSON object with "intrinsics" and optional "extrinsics"')
    if 'extrinsics' in cameras and 'intrinsics' not in cameras:
        raise InputError(camera_file, 'gives extrinsics but no intrinsics: both are needed to use them')
    if 'intrinsics' in cameras:
        intrinsics = _matrices(cameras['intrinsics'], (3, 3), 2, f'{camera_file} intrinsics')
        check_intrinsics(intrinsics, f'{camera_file} intrinsics')
        intrinsics = intrinsics.float()
    else:
        intrinsics = torch.stack([default_intrinsics(*image.shape[1:]) for image in images])
    report = None
    if 'extrinsics' in cameras:
        extrinsics = _matrices(cameras['extrinsics'], (4, 4), 2, f'{camera_file} extrinsics')
        check_extrinsics(extrinsics, f'{camera_file} extrinsics')
        extrinsics = extrinsics.float()
    else:
        pose = estimate_relative_pose(images[0], images[1], intrinsics, names=(str(paths[0]), str(paths[1])),
                                      **estimation)
        extrinsics, report = pose.extrinsics, pose.report
        print_log(f"image pair '{folder.name}': relative pose estimated (baseline set to 1): {report.summary()}",
                  logger='current')
    pixel_cameras = []
    for index, (path, image, k) in enumerate(zip(paths, images, intrinsics)):
        if k[0, 1] != 0:
            raise InputError(f'{camera_file} intrinsics, camera {index}', f'the skew of {path.name} must be 0 '
                                                                          f'(a pinhole without skew), got {k.tolist()}')
        height, width = image.shape[1:]
        pixel_cameras.append(PixelCamera(width, height, float(k[0, 0]) * width, float(k[1, 1]) * height,
                                         float(k[0, 2]) * width, float(k[1, 2]) * height))
    scene = ImageFileScene(key=folder.name, paths=paths, extrinsics=extrinsics, cameras=pixel_cameras,
                           url=folder.resolve().as_uri())
    return scene, report


@DATASETS.register_module()
class ImagePairDataset(SceneDataset):
    """Image pairs as sample dicts: context = the two images, target = the same two views (the
    only views with known images; render an interpolated camera path for new ones).

    Args:
        pairs: one or more pair folders (format in the module docstring), keyed by folder name.
        estimation: keyword arguments of ``estimate_relative_pose`` for pairs without extrinsics.
        image_shape, near, far, flip_probability, min_baseline: see :class:`SceneDataset`.

    Attributes:
        reports: per estimated pair, its :class:`MatchReport` (inlier counts).
    """

    def __init__(self, pairs: str | Path | Sequence[str | Path], estimation: dict | None = None,
                 image_shape: tuple[int, int] | None = None, near: float = 1.0, far: float = 100.0,
                 flip_probability: float = 0.0, min_baseline: float | None = 0.0) -> None:
        folders = [pairs] if isinstance(pairs, (str, Path)) else list(pairs)
        read = [read_image_pair(folder, **(estimation or {})) for folder in folders]
        self.reports = {scene.key: report for scene, report in read if report is not None}
        super().__init__(ImageFileSource([scene for scene, _ in read]), FixedViewSampler([0, 1], [0, 1]),
                         image_shape=image_shape, near=near, far=far, flip_probability=flip_probability,
                         min_baseline=min_baseline)
