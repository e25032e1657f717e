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

Every frame is checked when the file is read, and errors name the file and the frame: the matrix
must be a 4x4 or 3x4 list of numbers and a rigid camera-to-world transform
(``geometry.camera_validation``: finite, last row ``[0, 0, 0, 1]``, a proper rotation, not scaled
or mirrored); ``w``, ``h`` positive integers; fields of view in (0, pi) radians; focal lengths positive.
"""
from __future__ import annotations

import json
import math
from collections.abc import Sequence
from pathlib import Path

import torch

from videoscene.errors import InputError
from videoscene.geometry.camera_validation import check_extrinsics
from videoscene.registry import DATASETS
from .base import SceneDataset
from .image_files import IMAGE_SUFFIXES, ImageFileScene, ImageFileSource, natural_key, read_image_file
from .pixel_cameras import PixelCamera, pixel_camera
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


def _number(fields: dict, name: str, where: str) -> float:
    value = fields[name]
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise InputError(where, f'{name} must be a finite number, got {value!r}')
    return float(value)


def _focal_from_angle(fields: dict, name: str, size: int, where: str) -> float:
    angle = _number(fields, name, where)
    if not 0 < angle < math.pi:
        raise InputError(where, f'{name} must lie in (0, pi) radians, got {angle:g} (it is a field of view)')
    return 0.5 * size / math.tan(0.5 * angle)


def _pixel_camera(fields: dict, size: tuple[int, int] | None, where: str) -> PixelCamera:
    """The pixel camera of a frame from its merged (top-level + frame) fields; ``size`` = ``(w, h)``
    for frames that give none."""
    if 'w' in fields and 'h' in fields:
        width, height = fields['w'], fields['h']
        if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
            raise InputError(where, f'w and h must be positive integers (pixels), got w={width!r}, h={height!r}')
    else:
        width, height = size
    if 'fl_x' in fields:
        fx = _number(fields, 'fl_x', where)
    elif 'camera_angle_x' in fields:
        fx = _focal_from_angle(fields, 'camera_angle_x', width, where)
    else:
        raise InputError(where, 'no focal length: expected fl_x or camera_angle_x')
    if 'fl_y' in fields:
        fy = _number(fields, 'fl_y', where)
    elif 'camera_angle_y' in fields:
        fy = _focal_from_angle(fields, 'camera_angle_y', height, where)
    else:
        fy = fx
    cx = _number(fields, 'cx', where) if 'cx' in fields else width / 2.0
    cy = _number(fields, 'cy', where) if 'cy' in fields else height / 2.0
    k = {name: _number(fields, name, where) if name in fields else 0.0 for name in _DISTORTION_KEYS}
    model = fields.get('camera_model', 'OPENCV' if any(k.values()) else 'PINHOLE')
    if model == 'PINHOLE':
        nonzero = {name: value for name, value in k.items() if value}
        if nonzero:
            raise InputError(where, f'camera_model PINHOLE with distortion coefficients {nonzero}')
        return pixel_camera(where, width, height, fx, fy, cx, cy)
    if model == 'OPENCV':
        if k['k4']:
            raise InputError(where, f"camera_model OPENCV with k4 = {k['k4']}: nerfstudio's r^8 radial term has "
                                    'no OpenCV counterpart, so these images cannot be undistorted faithfully')
        return pixel_camera(where, width, height, fx, fy, cx, cy, 'opencv', (k['k1'], k['k2'], k['p1'], k['p2'], k['k3']))
    if model == 'OPENCV_FISHEYE':
        if k['p1'] or k['p2']:
            raise InputError(where, f"camera_model OPENCV_FISHEYE with tangential terms p1 = {k['p1']}, "
                                    f"p2 = {k['p2']}, which the fisheye model does not have")
        return pixel_camera(where, width, height, fx, fy, cx, cy, 'fisheye', (k['k1'], k['k2'], k['k3'], k['k4']))
    raise InputError(where, f"camera_model '{model}' is not supported; expected PINHOLE, OPENCV or OPENCV_FISHEYE")


def _transform_matrix(value: object, where: str) -> torch.Tensor:
    """A frame's ``transform_matrix`` as a checked OpenGL camera-to-world ``[4, 4]`` (float64)."""
    rows = value if isinstance(value, list) and all(isinstance(row, list) for row in value) else None
    if (rows is None or len(rows) not in (3, 4) or any(len(row) != 4 for row in rows)
            or not all(isinstance(v, (int, float)) and not isinstance(v, bool) for row in rows for v in row)):
        raise InputError(where, f'transform_matrix must be a 4x4 or 3x4 list of numbers, got {value!r:.200}')
    matrix = torch.eye(4, dtype=torch.float64)
    matrix[:len(rows)] = torch.tensor(rows, dtype=torch.float64)
    check_extrinsics(matrix, where)
    return matrix


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
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, f'not valid JSON ({error})') from None
    frames = content.get('frames') if isinstance(content, dict) else None
    if not isinstance(frames, list) or not frames:
        raise InputError(path, "expected a JSON object with a non-empty 'frames' list")
    shared = {name: value for name, value in content.items() if name != 'frames'}
    folder = path.parent
    for i, frame in enumerate(frames):
        if not isinstance(frame, dict) or 'file_path' not in frame or 'transform_matrix' not in frame:
            keys = sorted(frame) if isinstance(frame, dict) else type(frame).__name__
            raise InputError(path, f"frame {i} needs 'file_path' and 'transform_matrix', got {keys}")
        if not isinstance(frame['file_path'], str):
            raise InputError(path, f"frame {i}: file_path must be a string, got {frame['file_path']!r}")
    frames = sorted(frames, key=lambda frame: natural_key(frame['file_path']))

    paths = [_resolve_image(folder, frame['file_path'], f'{path}, frame {frame["file_path"]}') for frame in frames]
    size = None
    if any('w' not in {**shared, **frame} or 'h' not in {**shared, **frame} for frame in frames):
        first = read_image_file(paths[0])
        size = (first.shape[2], first.shape[1])
    extrinsics, cameras = [], []
    for frame, image_path in zip(frames, paths):
        where = f'{path}, frame {frame["file_path"]}'
        extrinsics.append(_transform_matrix(frame['transform_matrix'], where) @ OPENGL_TO_OPENCV)
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
