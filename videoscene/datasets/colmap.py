"""COLMAP sparse models (text and binary) as scenes.

A model folder holds ``cameras``, ``images`` and ``points3D``, either all as ``.bin`` (COLMAP's
default output; read when present) or all as ``.txt``:

* cameras: id, model, width, height, parameters;
* images: id, quaternion ``qw qx qy qz`` and translation of the **world-to-camera** rotation and
  translation (OpenCV axes: ``X_cam = R X_world + t``), camera id, file name, 2D points (skipped);
* points3D: id, position, colour, error, track (skipped).

Camera models: SIMPLE_PINHOLE and PINHOLE are pinholes; SIMPLE_RADIAL, RADIAL, OPENCV and
FULL_OPENCV map onto OpenCV's radial-tangential model and OPENCV_FISHEYE onto OpenCV's fisheye
model, and their images are undistorted (see ``pixel_cameras``); the other models (FOV,
SIMPLE_RADIAL_FISHEYE, RADIAL_FISHEYE, THIN_PRISM_FISHEYE, RAD_TAN_THIN_PRISM_FISHEYE) are
refused: undistort such a model with ``colmap image_undistorter`` first. COLMAP's pixel
convention (image corner at 0) is the one ``pixel_cameras`` uses.

Registered images become the frames of a scene, ordered by file name with numbers compared by
value; the sparse points give per-scene depth bounds when none are configured.
"""
from __future__ import annotations

import struct
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from videoscene.geometry.rotations import quaternion_to_matrix
from videoscene.registry import DATASETS
from .base import SceneDataset
from .image_files import ImageFileScene, ImageFileSource, natural_key
from .pixel_cameras import PixelCamera
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


@dataclass
class ColmapCamera:
    id: int
    model: str
    width: int
    height: int
    params: tuple[float, ...]

    def pixel_camera(self) -> PixelCamera:
        """This camera as a :class:`PixelCamera`; unsupported models raise ``ValueError``."""
        p, size = self.params, (self.width, self.height)
        if self.model == 'SIMPLE_PINHOLE':
            return PixelCamera(*size, p[0], p[0], p[1], p[2])
        if self.model == 'PINHOLE':
            return PixelCamera(*size, *p)
        if self.model == 'SIMPLE_RADIAL':
            return PixelCamera(*size, p[0], p[0], p[1], p[2], 'opencv', (p[3], 0.0, 0.0, 0.0))
        if self.model == 'RADIAL':
            return PixelCamera(*size, p[0], p[0], p[1], p[2], 'opencv', (p[3], p[4], 0.0, 0.0))
        if self.model in ('OPENCV', 'FULL_OPENCV'):
            return PixelCamera(*size, *p[:4], 'opencv', tuple(p[4:]))
        if self.model == 'OPENCV_FISHEYE':
            return PixelCamera(*size, *p[:4], 'fisheye', tuple(p[4:]))
        raise ValueError(f'COLMAP camera {self.id} uses the {self.model} model, which videoscene does not undistort; '
                         'run `colmap image_undistorter` (it writes PINHOLE cameras) and read its output')


@dataclass
class ColmapImage:
    id: int
    qvec: tuple[float, float, float, float]  # w, x, y, z of the world-to-camera rotation
    tvec: tuple[float, float, float]
    camera_id: int
    name: str

    def camera_to_world(self) -> Tensor:
        """OpenCV camera-to-world ``[4, 4]`` (float64)."""
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3, :3] = quaternion_to_matrix(torch.tensor(self.qvec, dtype=torch.float64))
        w2c[:3, 3] = torch.tensor(self.tvec, dtype=torch.float64)
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
        raise ValueError(f'{where}: unknown COLMAP camera model {model}')
    if len(params) != expected:
        raise ValueError(f'{where}: a {model} camera has {expected} parameters, got {len(params)}')


def _content_lines(path: Path) -> list[str]:
    return [line for line in path.read_text().splitlines() if not line.startswith('#')]


def _read_text(folder: Path) -> ColmapModel:
    cameras = {}
    for line in _content_lines(folder / 'cameras.txt'):
        if not line.strip():
            continue
        fields = line.split()
        camera_id, model, params = int(fields[0]), fields[1], tuple(float(v) for v in fields[4:])
        _check_count(model, params, f'{folder / "cameras.txt"}, camera {camera_id}')
        cameras[camera_id] = ColmapCamera(camera_id, model, int(fields[2]), int(fields[3]), params)

    images = {}
    lines = _content_lines(folder / 'images.txt')
    i = 0
    while i < len(lines):
        if not lines[i].strip():  # blank lines between entries; an entry's 2D-point line may be blank too
            i += 1
            continue
        fields = lines[i].split(maxsplit=9)
        if len(fields) != 10:
            raise ValueError(f'{folder / "images.txt"}: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME, '
                             f'got {lines[i]!r}')
        values = [float(v) for v in fields[1:8]]
        image = ColmapImage(int(fields[0]), tuple(values[:4]), tuple(values[4:]), int(fields[8]), fields[9].strip())
        images[image.id] = image
        i += 2  # the next line lists the image's 2D points

    rows = [line.split() for line in _content_lines(folder / 'points3D.txt') if line.strip()]
    points = torch.tensor([[float(v) for v in row[1:4]] for row in rows], dtype=torch.float64).reshape(-1, 3)
    colors = torch.tensor([[int(v) for v in row[4:7]] for row in rows], dtype=torch.uint8).reshape(-1, 3)
    return ColmapModel(cameras, images, points, colors)


class _Reader:
    """Little-endian fields from a binary file."""

    def __init__(self, path: Path) -> None:
        self.path, self.data, self.offset = path, path.read_bytes(), 0

    def read(self, fmt: str) -> tuple:
        size = struct.calcsize('<' + fmt)
        if self.offset + size > len(self.data):
            raise ValueError(f'{self.path} ends early: it is not a complete COLMAP binary file')
        values = struct.unpack_from('<' + fmt, self.data, self.offset)
        self.offset += size
        return values

    def skip(self, size: int) -> None:
        if self.offset + size > len(self.data):
            raise ValueError(f'{self.path} ends early: it is not a complete COLMAP binary file')
        self.offset += size

    def name(self) -> str:
        end = self.data.find(b'\x00', self.offset)
        if end < 0:
            raise ValueError(f'{self.path}: unterminated image name')
        text = self.data[self.offset:end].decode()
        self.offset = end + 1
        return text


def _read_binary(folder: Path) -> ColmapModel:
    reader = _Reader(folder / 'cameras.bin')
    cameras = {}
    for _ in range(reader.read('Q')[0]):
        camera_id, model_id, width, height = reader.read('iiQQ')
        if model_id not in CAMERA_MODELS:
            raise ValueError(f'{reader.path}, camera {camera_id}: unknown COLMAP camera model id {model_id}')
        model, count = CAMERA_MODELS[model_id]
        cameras[camera_id] = ColmapCamera(camera_id, model, width, height, reader.read('d' * count))

    reader = _Reader(folder / 'images.bin')
    images = {}
    for _ in range(reader.read('Q')[0]):
        image_id, qw, qx, qy, qz, tx, ty, tz, camera_id = reader.read('idddddddi')
        name = reader.name()
        reader.skip(24 * reader.read('Q')[0])  # 2D points: x, y (double), point3D id (int64)
        images[image_id] = ColmapImage(image_id, (qw, qx, qy, qz), (tx, ty, tz), camera_id, name)

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
        raise ValueError(f'{scene_dir / sparse_dir}: the COLMAP model has no registered images')
    images = sorted(model.images.values(), key=lambda image: natural_key(image.name))
    cameras = {}
    for image in images:
        if image.camera_id not in model.cameras:
            raise ValueError(f'{scene_dir / sparse_dir}: image {image.name} refers to camera {image.camera_id}, '
                             'which the model does not have')
        if image.camera_id not in cameras:
            try:
                cameras[image.camera_id] = model.cameras[image.camera_id].pixel_camera()
            except ValueError as error:
                raise ValueError(f'{scene_dir / sparse_dir}: {error}') from None
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
        raise ValueError(f'too few sparse points ({len(depths)}) in front of the cameras to derive depth bounds; '
                         'give near and far explicitly')
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
            except ValueError as error:
                raise ValueError(f"COLMAP scene '{key}': {error}") from None
        return self._bounds[key]
