"""Scenes described by an instant-ngp / nerfstudio ``transforms.json``.

The file holds camera intrinsics at the top level (shared by all frames) and/or in each frame
(overriding the shared ones) and a list of ``frames``, each with a ``file_path`` (relative to the
file's folder; NeRF-synthetic paths without a suffix find their ``.png``) and a 4x4 (or 3x4)
``transform_matrix``:

* ``transform_matrix`` is an **OpenGL** camera-to-world matrix (+x right, +y up, +z backwards);
  it becomes OpenCV by negating the camera y and z axes: ``E_cv = E_gl @ diag(1, -1, -1, 1)``;
* intrinsics: ``w``, ``h`` (default: the size of the first image), ``fl_x`` (or
  ``camera_angle_x``, the horizontal field of view in radians), ``fl_y`` (or ``camera_angle_y``;
  default ``fl_x``), ``cx``, ``cy`` (default: the image centre), in pixels with the image corner
  at 0 (see ``pixel_cameras``);
* distortion: ``camera_model`` ``OPENCV`` (``k1 k2 p1 p2 k3``), ``OPENCV_FISHEYE`` (``k1 k2 k3 k4``)
  or ``PINHOLE``; without ``camera_model``, any of ``k1 k2 k3 p1 p2`` means ``OPENCV``. Distorted
  images are undistorted with OpenCV (or refused, see :class:`ImageFileSource`). Coefficients a
  model cannot honour are refused, never ignored: ``k4`` with ``OPENCV`` (nerfstudio's r^8 term
  has no OpenCV counterpart), ``p1 p2`` with ``OPENCV_FISHEYE``, any coefficient with ``PINHOLE``,
  and other camera models (e.g. ``EQUIRECTANGULAR``).

Frames are ordered by their file path with numbers compared by value (``frame_2`` before
``frame_10``), so a capture's frames come in capture order.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from videoscene.registry import DATASETS
from .base import SceneDataset
from .image_files import IMAGE_SUFFIXES, ImageFileScene, ImageFileSource, natural_key, read_image_file
from .pixel_cameras import PixelCamera
from .view_samplers import ViewSampler

__all__ = ['OPENGL_TO_OPENCV', 'read_transforms_json', 'TransformsJSONDataset']

OPENGL_TO_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64))
_DISTORTION_KEYS = ('k1', 'k2', 'k3', 'k4', 'p1', 'p2')


def _resolve_image(folder: Path, file_path: str, where: str) -> Path:
    path = folder / file_path
    if path.is_file() or path.suffix.lower() in IMAGE_SUFFIXES:
        return path
    candidates = [path.with_name(path.name + suffix) for suffix in IMAGE_SUFFIXES
                  if path.with_name(path.name + suffix).is_file()]
    if len(candidates) != 1:
        raise FileNotFoundError(f'{where}: image {path} does not exist'
                                + (f' (and several files match it: {candidates})' if candidates else ''))
    return candidates[0]


def _pixel_camera(fields: dict, size: tuple[int, int] | None, where: str) -> PixelCamera:
    """The pixel camera of a frame from its merged (top-level + frame) fields; ``size`` = ``(w, h)``
    for frames that give none."""
    width, height = (int(fields['w']), int(fields['h'])) if 'w' in fields and 'h' in fields else size
    if 'fl_x' in fields:
        fx = float(fields['fl_x'])
    elif 'camera_angle_x' in fields:
        fx = 0.5 * width / math.tan(0.5 * float(fields['camera_angle_x']))
    else:
        raise ValueError(f'{where}: no focal length: expected fl_x or camera_angle_x')
    if 'fl_y' in fields:
        fy = float(fields['fl_y'])
    elif 'camera_angle_y' in fields:
        fy = 0.5 * height / math.tan(0.5 * float(fields['camera_angle_y']))
    else:
        fy = fx
    cx, cy = float(fields.get('cx', width / 2.0)), float(fields.get('cy', height / 2.0))
    k = {name: float(fields.get(name, 0.0)) for name in _DISTORTION_KEYS}
    model = fields.get('camera_model', 'OPENCV' if any(k.values()) else 'PINHOLE')
    if model == 'PINHOLE':
        nonzero = {name: value for name, value in k.items() if value}
        if nonzero:
            raise ValueError(f'{where}: camera_model PINHOLE with distortion coefficients {nonzero}')
        return PixelCamera(width, height, fx, fy, cx, cy)
    if model == 'OPENCV':
        if k['k4']:
            raise ValueError(f"{where}: camera_model OPENCV with k4 = {k['k4']}: nerfstudio's r^8 radial term has "
                             'no OpenCV counterpart, so these images cannot be undistorted faithfully')
        return PixelCamera(width, height, fx, fy, cx, cy, 'opencv', (k['k1'], k['k2'], k['p1'], k['p2'], k['k3']))
    if model == 'OPENCV_FISHEYE':
        if k['p1'] or k['p2']:
            raise ValueError(f"{where}: camera_model OPENCV_FISHEYE with tangential terms p1 = {k['p1']}, "
                             f"p2 = {k['p2']}, which the fisheye model does not have")
        return PixelCamera(width, height, fx, fy, cx, cy, 'fisheye', (k['k1'], k['k2'], k['k3'], k['k4']))
    raise ValueError(f"{where}: camera_model '{model}' is not supported; expected PINHOLE, OPENCV or OPENCV_FISHEYE")


def read_transforms_json(path: str | Path, key: str | None = None) -> ImageFileScene:
    """A ``transforms.json`` scene (format in the module docstring).

    Args:
        path: the JSON file, or a folder holding ``transforms.json``.
        key: scene key; default: the name of the folder holding the file.
    """
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / 'transforms.json'
    if not path.is_file():
        raise FileNotFoundError(f'{path} does not exist: expected a transforms.json file or a folder holding one')
    try:
        content = json.loads(path.read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f'{path} is not valid JSON: {error}') from None
    frames = content.get('frames') if isinstance(content, dict) else None
    if not frames:
        raise ValueError(f"{path}: expected a JSON object with a non-empty 'frames' list")
    shared = {name: value for name, value in content.items() if name != 'frames'}
    folder = path.parent
    for i, frame in enumerate(frames):
        if 'file_path' not in frame or 'transform_matrix' not in frame:
            raise ValueError(f"{path}: frame {i} needs 'file_path' and 'transform_matrix', got keys {sorted(frame)}")
    frames = sorted(frames, key=lambda frame: natural_key(frame['file_path']))

    paths = [_resolve_image(folder, frame['file_path'], f'{path}, frame {frame["file_path"]}') for frame in frames]
    size = None
    if any('w' not in {**shared, **frame} or 'h' not in {**shared, **frame} for frame in frames):
        first = read_image_file(paths[0])
        size = (first.shape[2], first.shape[1])
    extrinsics, cameras = [], []
    for frame, image_path in zip(frames, paths):
        where = f'{path}, frame {frame["file_path"]}'
        matrix = torch.tensor(frame['transform_matrix'], dtype=torch.float64)
        if matrix.shape not in ((4, 4), (3, 4)):
            raise ValueError(f'{where}: transform_matrix must be 4x4 or 3x4, got {list(matrix.shape)}')
        c2w = torch.eye(4, dtype=torch.float64)
        c2w[:3] = matrix[:3]
        extrinsics.append(c2w @ OPENGL_TO_OPENCV)
        cameras.append(_pixel_camera({**shared, **frame}, size, where))
    return ImageFileScene(key=key or folder.name, paths=paths, extrinsics=torch.stack(extrinsics).float(),
                          cameras=cameras, url=path.resolve().as_uri())


@DATASETS.register_module()
class TransformsJSONDataset(SceneDataset):
    """``transforms.json`` scenes as sample dicts (contract and bad input: ``base``).

    Args:
        scenes: one or more ``transforms.json`` files or folders holding one; each is a scene
            keyed by its folder name.
        view_sampler: a view sampler or its config (these scenes have no evaluation index of their
            own: give ``index_path`` to the samplers that need one).
        undistort: undistort images with lens distortion; False refuses such scenes.
        image_shape, near, far, flip_probability, min_baseline: see :class:`SceneDataset`.
    """

    def __init__(self, scenes: str | Path | Sequence[str | Path], view_sampler: dict | ViewSampler,
                 undistort: bool = True, image_shape: tuple[int, int] | None = None, near: float = 1.0,
                 far: float = 100.0, flip_probability: float = 0.0, min_baseline: float | None = 0.0) -> None:
        paths = [scenes] if isinstance(scenes, (str, Path)) else list(scenes)
        source = ImageFileSource([read_transforms_json(path) for path in paths], undistort=undistort)
        super().__init__(source, view_sampler, image_shape=image_shape, near=near, far=far,
                         flip_probability=flip_probability, min_baseline=min_baseline)
