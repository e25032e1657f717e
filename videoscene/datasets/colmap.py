"""COLMAP sparse models (text and binary) as scenes.

A model folder holds ``cameras``, ``images`` and ``points3D``, either all as ``.bin`` (COLMAP's
default output; read when present) or all as ``.txt``:

* cameras: id, model, width, height, parameters;
* images: id, quaternion ``qw qx qy qz`` and translation of the **world-to-camera** rotation and
  translation (OpenCV axes: ``X_cam = R X_world + t``), camera id, file name, 2D points (skipped).
  In ``images.txt`` an image's 2D points follow on their own line, which may be blank or, as some
  exporters write, absent: lines are told apart by content (a 2D-point line is all numbers, a
  multiple of three of them), not by position;
* points3D: id, position, colour, error, track (skipped).

Camera models: SIMPLE_PINHOLE and PINHOLE are pinholes; SIMPLE_RADIAL, RADIAL, OPENCV and
FULL_OPENCV map onto OpenCV's radial-tangential model and OPENCV_FISHEYE onto OpenCV's fisheye
model, and their images are undistorted (see ``pixel_cameras``); the other models (FOV,
SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE, THIN_PRISM_FISHEYE, RAD_TAN_THIN_PRISM_FISHEYE) are
refused: undistort such a model with ``colmap image_undistorter`` first. COLMAP's pixel
convention (image corner at 0) is the one ``pixel_cameras`` uses.

Registered images become the frames of a scene, ordered by file name with numbers compared by
value; the sparse points give per-scene depth bounds when none are configured. Errors name the
model file with the line, camera or image: unreadable lines raise
:class:`~videoscene.errors.InputError`, a zero quaternion, non-positive focal lengths or a
non-finite pose :class:`~videoscene.errors.CameraError`.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from videoscene.errors import CameraError, InputError
from videoscene.geometry.camera_validation import check_extrinsics
from videoscene.geometry.rotations import quaternion_to_matrix
from videoscene.registry import DATASETS
from .base import SceneDataset
from .image_files import ImageFileScene, ImageFileSource, natural_key
from .pixel_cameras import PixelCamera, pixel_camera
from .view_samplers import ViewSampler

__all__ = ['CAMERA_MODELS', 'ColmapCamera', 'ColmapImage', 'ColmapModel', 'read_colmap_model', 'read_colmap_scene',
           'depth_bounds', 'COLMAPDataset']

# COLMAP model id -> (name, number of parameters)
CAMERA_MODELS = {
    0: ('SIMPLE_PINHOLE', 3), 1: ('PINHOLE', 4), 2: ('SIMPLE_RADIAL', 4), 3: ('RADIAL', 5), 4: ('OPENCV', 8),
    5: ('OPENCV_FISHEYE', 8), 6: ('FULL_OPENCV', 12), 7: ('FOV', 5), 8: ('SIMPLE_RADIAL_FISHEYE', 4),
    9: ('RADIAL_FISHEYE', 5), 10: ('THIN_PRISM_FISHEYE', 12), 11: ('RAD_TAN_THIN_PRISM_FISHEYE', 16),
}
_PARAMETER_COUNTS = dict(CAMERA_MODELS.values())
_UNDISTORTED_MODELS = ('SIMPLE_PINHOLE', 'PINHOLE', 'SIMPLE_RADIAL', 'RADIAL', 'OPENCV', 'FULL_OPENCV', 'OPENCV_FISHEYE')


@dataclass
class ColmapCamera:
    """A camera of the model; ``source`` names it in errors (file and camera id)."""

    id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]
    source: str = field(default='', compare=False)

    def pixel_camera(self) -> PixelCamera:
        """This camera as a :class:`PixelCamera`.

        Raises:
            InputError: a model videoscene does not undistort.
            CameraError: non-positive or non-finite intrinsics.
        """
        p, size, where = self.params, (self.width, self.height), self.source
        if self.model == 'SIMPLE_PINHOLE':
            return pixel_camera(where, *size, p[0], p[0], p[1], p[2])
        if self.model == 'PINHOLE':
            return pixel_camera(where, *size, *p)
        if self.model == 'SIMPLE_RADIAL':
            return pixel_camera(where, *size, p[0], p[0], p[1], p[2], 'opencv', (p[3], 0.0, 0.0, 0.0))
        if self.model == 'RADIAL':
            return pixel_camera(where, *size, p[0], p[0], p[1], p[2], 'opencv', (p[3], p[4], 0.0, 0.0))
        if self.model in ('OPENCV', 'FULL_OPENCV'):
            return pixel_camera(where, *size, *p[:4], 'opencv', tuple(p[4:]))
        if self.model == 'OPENCV_FISHEYE':
            return pixel_camera(where, *size, *p[:4], 'fisheye', tuple(p[4:]))
        raise InputError(where, f'the {self.model} model is not one videoscene undistorts ({_UNDISTORTED_MODELS})')


@dataclass
class ColmapImage:
    """A registered image; ``source`` names it in errors (file, image id and name)."""

    id: int
    qvec: tuple[float, float, float, float]  # w, x, y, z of the world-to-camera rotation
    tvec: tuple[float, float, float]
    camera_id: int
    name: str
    source: str = field(default='', compare=False)

    def camera_to_world(self) -> Tensor:
        """OpenCV camera-to-world ``[4, 4]`` (float64).

        Raises:
            CameraError: a zero or non-finite quaternion, or a non-finite translation.
        """
        qvec = torch.tensor(self.qvec, dtype=torch.float64)
        if not bool(torch.isfinite(qvec).all()) or float(qvec.norm()) < 1e-12:
            raise CameraError(self.source, f'zero or non-finite quaternion (qw qx qy qz) = {self.qvec}; expected the '
                                           'unit quaternion of the world-to-camera rotation')
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :3] = quaternion_to_matrix(qvec)
        w2c[:3, 3] = torch.tensor(self.tvec, dtype=torch.float64)
        check_extrinsics(w2c, self.source)
        return torch.linalg.inv(w2c)


@dataclass
class ColmapModel:
    """A sparse model: ``cameras`` and ``images`` by id, ``points [P, 3]`` float64 and ``colors [P, 3]`` uint8."""

    cameras: dict[int, ColmapCamera]
    images: dict[int, ColmapImage]
    points: Tensor
    colors: Tensor


def _check_count(model: str, params: Sequence[float], where: str) -> None:
    expected = _PARAMETER_COUNTS.get(model)
    if expected is None:
        raise InputError(where, f'unknown COLMAP camera model {model}; expected one of {list(_PARAMETER_COUNTS)}')
    if len(params) != expected:
        raise InputError(where, f'a {model} camera has {expected} parameters, got {len(params)}')


def _content_lines(path: Path) -> list[tuple[int, str]]:
    """``(line number, text)`` of the lines that are not comments."""
    return [(number, line) for number, line in enumerate(path.read_text().splitlines(), start=1)
            if not line.startswith('#')]


def _numbers(fields: Sequence[str]) -> bool:
    try:
        [float(field) for field in fields]
    except ValueError:
        return False
    return True


def _parse(path: Path, number: int, line: str, expected: str, parse):
    """``parse(fields)`` of one line; a malformed line raises ``InputError`` naming the file and line."""
    try:
        return parse(line.split())
    except (ValueError, IndexError) as error:
        raise InputError(f'{path}, line {number}', f'expected {expected}, got {line.strip()!r:.200} ({error})') from None


def _read_text(folder: Path) -> ColmapModel:
    cameras = {}
    path = folder / 'cameras.txt'
    for number, line in _content_lines(path):
        if not line.strip():
            continue
        camera_id, model, width, height, params = _parse(
            path, number, line, 'CAMERA_ID MODEL WIDTH HEIGHT PARAMS[]',
            lambda f: (int(f[0]), f[1], int(f[2]), int(f[3]), tuple(float(v) for v in f[4:])))
        where = f'{path}, camera {camera_id}'
        _check_count(model, params, where)
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, params, where)

    images = {}
    path = folder / 'images.txt'
    for number, line in _content_lines(path):
        fields = line.split()
        if not fields or (len(fields) % 3 == 0 and _numbers(fields)):
            continue  # an image's 2D points (x y point3D_id triples), or a blank line: none
        if len(fields) < 10:
            raise InputError(f'{path}, line {number}', 'expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, '
                                                       f'got {line.strip()!r:.200}')
        image_id, values, camera_id = _parse(
            path, number, line, 'IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME',
            lambda f: (int(f[0]), [float(v) for v in f[1:8]], int(f[8])))
        name = line.split(maxsplit=9)[9].strip()
        if image_id in images:
            raise InputError(f'{path}, line {number}', f'image id {image_id} appears twice')
        images[image_id] = ColmapImage(image_id, tuple(values[:4]), tuple(values[4:]), camera_id, name,
                                       f'{path}, image {image_id} ({name})')

    path = folder / 'points3D.txt'
    rows = [_parse(path, number, line, 'POINT3D_ID X Y Z R G B ERROR TRACK[]',
                   lambda f: ([float(v) for v in f[1:4]], [int(v) for v in f[4:7]]))
            for number, line in _content_lines(path) if line.strip()]
    points = torch.tensor([row[0] for row in rows], dtype=torch.float64).reshape(-1, 3)
    colors = torch.tensor([row[1] for row in rows], dtype=torch.uint8).reshape(-1, 3)
    return ColmapModel(cameras, images, points, colors)


class _Reader:
    """Little-endian fields from a binary file."""

    def __init__(self, path: Path) -> None:
        self.path, self.data, self.offset = path, path.read_bytes(), 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize('<' + fmt)
        if self.offset + size > len(self.data):
            raise InputError(self.path, 'ends early: it is not a complete COLMAP binary file')
        values = struct.unpack_from('<' + fmt, self.data, self.offset)
        self.offset += size
        return values

    def skip(self, size: int) -> None:
        if self.offset + size > len(self.data):
            raise InputError(self.path, 'ends early: it is not a complete COLMAP binary file')
        self.offset += size

    def name(self) -> str:
        end = self.data.find(b'\x00', self.offset)
        if end < 0:
            raise InputError(self.path, 'unterminated image name: it is not a complete COLMAP binary file')
        try:
            text = self.data[self.offset:end].decode()
        except UnicodeDecodeError:
            raise InputError(self.path, f'image name at byte {self.offset} is not UTF-8 text') from None
        self.offset = end + 1
        return text


def _read_binary(folder: Path) -> ColmapModel:
    reader = _Reader(folder / 'cameras.bin')
    cameras = {}
    for _ in range(reader.read('Q')[0]):
        camera_id, model_id, width, height = reader.read('iiQQ')
        where = f'{reader.path}, camera {camera_id}'
        if model_id not in CAMERA_MODELS:
            raise InputError(where, f'unknown COLMAP camera model id {model_id}')
        model, count = CAMERA_MODELS[model_id]
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, reader.read('d' * count), where)

    reader = _Reader(folder / 'images.bin')
    images = {}
    for _ in range(reader.read('Q')[0]):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.read('idddddddi')
        name = reader.name()
        reader.skip(24 * reader.read('Q')[0])  # 2D points: x, y (double), point3D id (int64)
        images[image_id] = ColmapImage(image_id, (qw, qx, qy, qz), (tx, ty, tz), camera_id, name,
                                       f'{reader.path}, image {image_id} ({name})')

    reader = _Reader(folder / 'points3D.bin')
    points, colors = [], []
    for _ in range(reader.read('Q')[0]):
        values = reader.read('QdddBBBd')
        points.append(values[1:4])
        colors.append(values[4:7])
        reader.skip(8 * reader.read('Q')[0])  # track: image id, 2D point index (int32 each)
    return ColmapModel(cameras, images, torch.tensor(points, dtype=torch.float64).reshape(-1, 3),
                       torch.tensor(colors, dtype=torch.uint8).reshape(-1, 3))


def read_colmap_model(folder: str | Path) -> ColmapModel:
    """The sparse model in ``folder`` (binary when ``cameras.bin``, ``images.bin`` and ``points3D.bin``
    are there, else text)."""
    folder = Path(folder).expanduser()
    names = ('cameras', 'images', 'points3D')
    for suffix, read in (('.bin', _read_binary), ('.txt', _read_text)):
        if all((folder / f'{name}{suffix}').is_file() for name in names):
            return read(folder)
    present = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else None
    raise FileNotFoundError(f'{folder} holds no COLMAP model: expected cameras, images and points3D as all .bin or '
                            f'all .txt files; found {present if present is not None else "no such folder"}')


def read_colmap_scene(scene_dir: str | Path, sparse_dir: str = 'sparse/0', image_dir: str = 'images',
                      key: str | None = None) -> tuple[ImageFileScene, Tensor]:
    """A COLMAP scene folder as an :class:`ImageFileScene` and its sparse points ``[P, 3]`` (float64).

    Args:
        scene_dir: the scene folder.
        sparse_dir: the model folder, relative to ``scene_dir``.
        image_dir: the image folder (the images' names are relative to it), relative to ``scene_dir``.
        key: scene key; default: the name of ``scene_dir``.
    """
    scene_dir = Path(scene_dir).expanduser()
    model = read_colmap_model(scene_dir / sparse_dir)
    if not model.images:
        raise InputError(scene_dir / sparse_dir, 'the COLMAP model has no registered images')
    images = sorted(model.images.values(), key=lambda image: natural_key(image.name))
    cameras = {}
    for image in images:
        if image.camera_id not in model.cameras:
            raise InputError(scene_dir / sparse_dir, f'image {image.name} refers to camera {image.camera_id}, which '
                                                     'the model does not have')
        if image.camera_id not in cameras:
            camera = model.cameras[image.camera_id]
            if camera.model not in _UNDISTORTED_MODELS:
                raise InputError(scene_dir / sparse_dir, f'COLMAP camera {camera.id} uses the {camera.model} model, '
                                                         'which videoscene does not undistort; run `colmap '
                                                         'image_undistorter` (it writes PINHOLE cameras) and read its '
                                                         'output')
            cameras[image.camera_id] = camera.pixel_camera()
    scene = ImageFileScene(
        key=key or scene_dir.name,
        paths=[scene_dir / image_dir / image.name for image in images],
        extrinsics=torch.stack([image.camera_to_world() for image in images]).float(),
        cameras=[cameras[image.camera_id] for image in images],
        url=(scene_dir / sparse_dir).resolve().as_uri())
    return scene, model.points


def depth_bounds(points: Tensor, extrinsics: Tensor, intrinsics: Tensor, max_points: int = 20000,
                 max_cameras: int = 64) -> tuple[float, float]:
    """Depth bounds ``(near, far)`` of a scene from its sparse points: half the 1st and twice the 99th
    percentile of the z-depths of the points that project inside the images of (up to
    ``max_cameras`` evenly spread) cameras; ``max_points`` evenly spread points are used."""
    if len(points):
        points = points[torch.linspace(0, len(points) - 1, min(max_points, len(points))).round().long()]
    cameras = torch.linspace(0, len(extrinsics) - 1, min(max_cameras, len(extrinsics))).round().long()
    w2c = torch.linalg.inv(extrinsics[cameras].double())
    local = points[None] @ w2c[:, :3, :3].transpose(-1, -2) + w2c[:, None, :3, 3]  # [C, P, 3]
    z = local[..., 2]
    uv = (local / z.clamp(min=1e-9)[..., None]) @ intrinsics[cameras].double().transpose(-1, -2)
    inside = (z > 0) & (uv[..., 0] >= 0) & (uv[..., 0] <= 1) & (uv[..., 1] >= 0) & (uv[..., 1] <= 1)
    depths = z[inside].numpy()
    if len(depths) < 2:
        raise InputError('depth bounds', f'too few sparse points ({len(depths)}) in front of the cameras to derive '
                                         'depth bounds; give near and far explicitly')
    return 0.5 * float(np.percentile(depths, 1)), 2.0 * float(np.percentile(depths, 99))


@DATASETS.register_module()
class COLMAPDataset(SceneDataset):
    """COLMAP scene folders as sample dicts (contract and bad input: ``base``).

    Args:
        scenes: one or more scene folders, each keyed by its name.
        view_sampler: a view sampler or its config (these scenes have no evaluation index of their
            own: give ``index_path`` to the samplers that need one).
        sparse_dir, image_dir: the model and image folders inside each scene folder.
        undistort: undistort images of radial / OpenCV / fisheye cameras; False refuses them.
        near, far: depth bounds for every scene, or both None (default): per scene from its
            sparse points (:func:`depth_bounds`), since COLMAP's scale is arbitrary.
        image_shape, flip_probability, min_baseline: see :class:`SceneDataset`.
    """

    def __init__(self, scenes: str | Path | Sequence[str | Path], view_sampler: dict | ViewSampler,
                 sparse_dir: str = 'sparse/0', image_dir: str = 'images', undistort: bool = True,
                 image_shape: tuple[int, int] | None = None, near: float | None = None, far: float | None = None,
                 flip_probability: float = 0.0, min_baseline: float | None = 0.0) -> None:
        folders = [scenes] if isinstance(scenes, (str, Path)) else list(scenes)
        read = [read_colmap_scene(folder, sparse_dir, image_dir) for folder in folders]
        self.points = {scene.key: points for scene, points in read}
        self._bounds: dict[str, tuple[float, float]] = {}
        super().__init__(ImageFileSource([scene for scene, _ in read], undistort=undistort), view_sampler,
                         image_shape=image_shape, near=near, far=far, flip_probability=flip_probability,
                         min_baseline=min_baseline)

    def bounds(self, key: str) -> tuple[float, float]:
        if self.near is not None:
            return self.near, self.far
        if key not in self._bounds:
            extrinsics, intrinsics = self.source.cameras(key)
            try:
                self._bounds[key] = depth_bounds(self.points[key], extrinsics, intrinsics)
            except InputError as error:
                raise InputError(f"COLMAP scene '{key}'", error.problem) from None
        return self._bounds[key]
