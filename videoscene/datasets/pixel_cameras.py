"""Pixel cameras of file sources (``transforms.json``, COLMAP) and undistortion with OpenCV.

Pixel intrinsics here follow COLMAP and nerfstudio: the top-left image corner is ``(0, 0)`` and
the centre of pixel ``(row i, column j)`` is ``(j + 0.5, i + 0.5)``, so dividing by the image
size gives the project's normalised intrinsics directly. OpenCV puts pixel centres at integers;
the conversion (``cx - 0.5``, ``cy - 0.5``) happens only at the OpenCV boundary.

Lens distortion models:

* ``'pinhole'``: none;
* ``'opencv'``: OpenCV's radial-tangential model, coefficients ``k1, k2, p1, p2[, k3[, k4, k5, k6]]``
  (COLMAP's SIMPLE_RADIAL, RADIAL, OPENCV and FULL_OPENCV, nerfstudio's OPENCV);
* ``'fisheye'``: OpenCV's equidistant fisheye model, coefficients ``k1, k2, k3, k4`` (COLMAP's and
  nerfstudio's OPENCV_FISHEYE).

A distorted image is undistorted onto the pinhole camera with the **same** intrinsics, so the
camera's normalised intrinsics describe the undistorted image; pixels whose source falls outside
the distorted image become black.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch import Tensor

from videoscene.errors import CameraError

__all__ = ['PixelCamera', 'DISTORTION_MODELS', 'pixel_camera']

DISTORTION_MODELS = {'pinhole': (0,), 'opencv': (4, 5, 8), 'fisheye': (4,)}  # model -> accepted coefficient counts


@dataclass(frozen=True)
class PixelCamera:
    """A camera in pixels (convention in the module docstring).

    Attributes:
        width, height: image size in pixels.
        fx, fy, cx, cy: pixel intrinsics.
        model: a key of ``DISTORTION_MODELS``.
        coefficients: the model's distortion coefficients (empty for ``'pinhole'``).
    """

    width: int
    height: int
    fx: float
    fy: float
    cx: float
    cy: float
    model: str = 'pinhole'
    coefficients: tuple[float, ...] = ()

    def __post_init__(self) -> None:
        if self.model not in DISTORTION_MODELS:
            raise CameraError('camera', f"unknown distortion model '{self.model}'; expected one of "
                                        f'{list(DISTORTION_MODELS)}')
        if len(self.coefficients) not in DISTORTION_MODELS[self.model]:
            raise CameraError('camera', f"distortion model '{self.model}' takes {DISTORTION_MODELS[self.model]} "
                                        f'coefficients, got {len(self.coefficients)}: {self.coefficients}')
        values = (self.fx, self.fy, self.cx, self.cy, *self.coefficients)
        if not all(np.isfinite(value) for value in values):
            raise CameraError('camera', f'non-finite intrinsics or distortion: {values}')
        if self.width < 1 or self.height < 1:
            raise CameraError('camera', f'image size must be positive, got {self.width} x {self.height}')
        if not (self.fx > 0 and self.fy > 0):
            raise CameraError('camera', f'focal lengths must be positive, got fx = {self.fx:.4g}, fy = {self.fy:.4g}')

    @property
    def distorted(self) -> bool:
        """Whether any distortion coefficient is non-zero."""
        return any(c != 0.0 for c in self.coefficients)

    def intrinsics(self) -> Tensor:
        """Normalised intrinsics ``[3, 3]`` (float32)."""
        return torch.tensor([[self.fx / self.width, 0.0, self.cx / self.width],
                             [0.0, self.fy / self.height, self.cy / self.height],
                             [0.0, 0.0, 1.0]])

    def undistort(self, image: Tensor) -> Tensor:
        """Image ``[3, H, W]`` taken through this camera -> the pinhole image with the same intrinsics."""
        if not self.distorted:
            return image
        map_x, map_y = _undistortion_maps(self)
        pixels = np.ascontiguousarray(image.permute(1, 2, 0).numpy())
        undistorted = cv2.remap(pixels, map_x, map_y, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
        return torch.from_numpy(undistorted).permute(2, 0, 1).contiguous()


def pixel_camera(where: str, *args, **kwargs) -> PixelCamera:
    """``PixelCamera(*args, **kwargs)`` whose errors name ``where`` (e.g. a file and frame)."""
    try:
        return PixelCamera(*args, **kwargs)
    except CameraError as error:
        raise CameraError(where, error.problem) from None


@functools.lru_cache(maxsize=32)
def _undistortion_maps(camera: PixelCamera) -> tuple[np.ndarray, np.ndarray]:
    """Per output pixel, where to sample the distorted image (OpenCV pixel coordinates)."""
    matrix = np.array([[camera.fx, 0.0, camera.cx - 0.5], [0.0, camera.fy, camera.cy - 0.5], [0.0, 0.0, 1.0]])
    coefficients = np.array(camera.coefficients, dtype=np.float64)
    size = (camera.width, camera.height)
    if camera.model == 'fisheye':
        return cv2.fisheye.initUndistortRectifyMap(matrix, coefficients, np.eye(3), matrix, size, cv2.CV_32FC1)
    return cv2.initUndistortRectifyMap(matrix, coefficients, None, matrix, size, cv2.CV_32FC1)
