"""Image pairs, posed by the user or by two-view pose estimation.

A pair folder holds exactly two image files (ordered by name: the first is context view 0) and
optionally ``cameras.json``::

    {"intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]          # normalised; or a list of two
     "extrinsics": [[4 x 4], [4 x 4]]}                           # OpenCV camera-to-world, optional

Without ``extrinsics`` the relative pose is estimated (``videoscene.geometry.pose_estimation``:
SIFT, ratio test, essential matrix) with the given intrinsics, or with a 60 degree horizontal
field of view and centred principal point when the file or ``intrinsics`` is absent: view 0 at
the identity, the baseline normalised to 1. The match statistics are logged and kept in
``reports``; a pair that cannot be matched raises ``PoseEstimationError`` naming both files.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import torch
from mmengine.logging import print_log
from torch import Tensor

from videoscene.geometry.pose_estimation import MatchReport, default_intrinsics, estimate_relative_pose
from videoscene.registry import DATASETS
from .base import SceneDataset
from .image_files import IMAGE_SUFFIXES, ImageFileScene, ImageFileSource, natural_key, read_image_file
from .pixel_cameras import PixelCamera
from .view_samplers import FixedViewSampler

__all__ = ['read_image_pair', 'ImagePairDataset']


def _matrices(value, shape: tuple[int, ...], count: int, where: str) -> Tensor:
    """``value`` as ``count`` matrices of ``shape`` (one matrix is repeated)."""
    matrices = torch.tensor(value, dtype=torch.float64)
    if matrices.shape == shape:
        matrices = matrices.expand(count, *shape)
    if matrices.shape != (count, *shape):
        raise ValueError(f'{where}: expected one {list(shape)} matrix or {count} of them, got {list(matrices.shape)}')
    if not bool(torch.isfinite(matrices).all()):
        raise ValueError(f'{where}: non-finite values {matrices.tolist()}')
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
        raise ValueError(f'image pair folder {folder} must hold exactly two images ({", ".join(IMAGE_SUFFIXES)}), '
                         f'found {len(paths)}: {[p.name for p in paths]}')
    images = [read_image_file(path) for path in paths]
    camera_file = folder / 'cameras.json'
    try:
        cameras = json.loads(camera_file.read_text()) if camera_file.is_file() else {}
    except json.JSONDecodeError as error:
        raise ValueError(f'{camera_file} is not valid JSON: {error}') from None
    if not isinstance(cameras, dict):
        raise ValueError(f'{camera_file} must hold a JSON object with "intrinsics" and optional "extrinsics"')
    if 'extrinsics' in cameras and 'intrinsics' not in cameras:
        raise ValueError(f'{camera_file} gives extrinsics but no intrinsics: both are needed to use them')
    if 'intrinsics' in cameras:
        intrinsics = _matrices(cameras['intrinsics'], (3, 3), 2, f'{camera_file} intrinsics').float()
    else:
        intrinsics = torch.stack([default_intrinsics(*image.shape[1:]) for image in images])
    report = None
    if 'extrinsics' in cameras:
        extrinsics = _matrices(cameras['extrinsics'], (4, 4), 2, f'{camera_file} extrinsics').float()
    else:
        pose = estimate_relative_pose(images[0], images[1], intrinsics, names=(str(paths[0]), str(paths[1])),
                                      **estimation)
        extrinsics, report = pose.extrinsics, pose.report
        print_log(f"image pair '{folder.name}': relative pose from {report.matches} SIFT matches "
                  f'({report.keypoints[0]} and {report.keypoints[1]} keypoints): {report.inliers} essential-matrix '
                  f'inliers, {report.pose_inliers} in front of both cameras; baseline set to 1', logger='current')
    pixel_cameras = []
    for path, image, k in zip(paths, images, intrinsics):
        if k[0, 1] != 0 or k[1, 0] != 0 or k[2].tolist() != [0.0, 0.0, 1.0]:
            raise ValueError(f'{camera_file}: intrinsics of {path.name} must be [[fx, 0, cx], [0, fy, cy], [0, 0, 1]] '
                             f'(normalised, no skew), got {k.tolist()}')
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
