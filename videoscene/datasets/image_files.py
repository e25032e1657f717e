"""Scenes whose frames are image files with pixel cameras (the common ground of ``transforms.json``,
COLMAP and image-pair sources)."""
from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from videoscene.errors import InputError
from .base import SceneSource
from .chunks import decode_image, encode_image
from .pixel_cameras import PixelCamera

__all__ = ['IMAGE_SUFFIXES', 'ImageFileScene', 'ImageFileSource', 'natural_key', 'read_image_file']

IMAGE_SUFFIXES = ('.jpg', '.jpeg', '.png', '.bmp', '.tif', '.tiff', '.webp')
_JPEG_SUFFIXES = ('.jpg', '.jpeg')


def natural_key(text: str) -> list:
    """Sort key that orders embedded numbers by value (``r_2`` before ``r_10``)."""
    return [int(part) if part.isdigit() else part for part in re.split(r'(\d+)', text)]


def read_image_file(path: str | Path) -> Tensor:
    """An image file as float32 RGB ``[3, H, W]`` in [0, 1].

    Raises:
        FileNotFoundError: no such file.
        CorruptImageError: the file is empty or does not decode (the message names it).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'image file {path} does not exist')
    return decode_image(torch.from_numpy(np.frombuffer(path.read_bytes(), dtype=np.uint8).copy()), str(path))


@dataclass
class ImageFileScene:
    """A scene of image files.

    Attributes:
        key: scene key.
        paths: N image files, in frame order.
        extrinsics: ``[N, 4, 4]`` camera-to-world (OpenCV), float32.
        cameras: N pixel cameras (size, intrinsics, distortion) of the files.
        url: where the scene came from (e.g. its ``transforms.json``).
    """

    key: str
    paths: list[Path]
    extrinsics: Tensor
    cameras: list[PixelCamera]
    url: str = ''

    def __post_init__(self) -> None:
        if not (len(self.paths) == len(self.cameras) == len(self.extrinsics)) or not self.paths:
            raise InputError(f"scene '{self.key}'", f'need as many image files ({len(self.paths)}), cameras '
                                                    f'({len(self.cameras)}) and extrinsics ({len(self.extrinsics)}), '
                                                    'at least one')
        if self.extrinsics.shape[1:] != (4, 4):
            raise InputError(f"scene '{self.key}'", f'extrinsics must be [N, 4, 4], got {list(self.extrinsics.shape)}')


class ImageFileSource(SceneSource):
    """Serves :class:`ImageFileScene` s: reads, checks and undistorts their image files.

    Args:
        scenes: the scenes; keys must be unique and every file must exist.
        undistort: undistort images of cameras with lens distortion (OpenCV, see
            ``pixel_cameras``); False refuses such scenes with an error that names them.
    """

    def __init__(self, scenes: Sequence[ImageFileScene], undistort: bool = True) -> None:
        self.scenes: dict[str, ImageFileScene] = {}
        for scene in scenes:
            if scene.key in self.scenes:
                raise InputError(f"scene '{scene.key}'", 'two scenes have this key (scenes are keyed by their folder '
                                                         'names, which must differ)')
            missing = [str(path) for path in scene.paths if not path.is_file()]
            if missing:
                raise FileNotFoundError(f"scene '{scene.key}': {len(missing)} image files do not exist, "
                                        f'e.g. {missing[:3]}')
            distorted = [camera for camera in scene.cameras if camera.distorted]
            if distorted and not undistort:
                raise InputError(f"scene '{scene.key}'", f'has lens distortion ({distorted[0].model} coefficients '
                                                         f'{distorted[0].coefficients}) and undistort=False: its images '
                                                         'do not fit a pinhole camera; enable undistort or undistort '
                                                         'them first')
            self.scenes[scene.key] = scene

    @property
    def keys(self) -> list[str]:
        return list(self.scenes)

    def cameras(self, key: str) -> tuple[Tensor, Tensor]:
        scene = self.scenes[key]
        return scene.extrinsics, torch.stack([camera.intrinsics() for camera in scene.cameras])

    def images(self, key: str, frames: Sequence[int]) -> list[Tensor]:
        scene = self.scenes[key]
        images = []
        for frame in frames:
            path, camera = scene.paths[frame], scene.cameras[frame]
            image = read_image_file(path)
            if tuple(image.shape[1:]) != (camera.height, camera.width):
                raise InputError(f"{path} (scene '{key}', frame {frame})", f'is {image.shape[2]} x {image.shape[1]} '
                                                                           f'pixels but its camera is {camera.width} x '
                                                                           f'{camera.height}')
            images.append(camera.undistort(image))
        return images

    def describe(self, key: str, frame: int) -> str:
        return f"{self.scenes[key].paths[frame]} (frame {frame} of scene '{key}')"

    def encoded_images(self, key: str, jpeg_quality: int = 95) -> list[Tensor]:
        """JPEG files of pinhole cameras pass through byte for byte; other frames are re-encoded."""
        scene = self.scenes[key]
        encoded = []
        for frame, (path, camera) in enumerate(zip(scene.paths, scene.cameras)):
            if path.suffix.lower() in _JPEG_SUFFIXES and not camera.distorted:
                self.images(key, [frame])  # checks that the file decodes at its camera's size
                encoded.append(torch.from_numpy(np.frombuffer(path.read_bytes(), dtype=np.uint8).copy()))
            else:
                encoded.append(encode_image(self.images(key, [frame])[0], jpeg_quality))
        return encoded

    def url(self, key: str) -> str:
        return self.scenes[key].url
