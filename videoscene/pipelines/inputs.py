"""Reading, checking and preparing the views a user hands to inference (``tools/infer.py``).

**Images** (:func:`read_image`) are read with Pillow and converted to float RGB ``[3, H, W]`` in
``[0, 1]``; every conversion is one of these:

* EXIF orientation is applied (``ImageOps.exif_transpose``): a phone photo stored sideways comes
  out as it is shown;
* grayscale (8- or 16-bit) is repeated into the three channels;
* an alpha channel (RGBA, LA, palette transparency) is composited over black, the renderers'
  background;
* 16-bit PNGs are scaled by 1/65535 (grayscale keeps its 16 bits; Pillow reads 16-bit colour PNGs
  as their 8 most significant bits per channel, then / 255);
* palette, CMYK and other 8-bit modes are converted to RGB by Pillow.

Refused with an :class:`~videoscene.errors.InputError` naming the file: a missing, empty (0 bytes),
unreadable, truncated or corrupt file, and 32-bit integer or float images (no known white level).

**Sizes.** Input images must share one size (the views of one camera); they are then resized and
centre-cropped to the size the models run at (:func:`prepare_views`,
``videoscene.datasets.crop.resize_and_center_crop``: scaled to cover the output, centre cropped,
intrinsics updated exactly), so any input size works and the output size is the one asked for.

**Camera files** (:func:`read_camera_file`) are JSON, the format of ``ImagePairDataset``'s
``cameras.json`` extended to N views; ``tools/infer.py`` writes the cameras of every generated
frame in it, so its output reads back as input::

    {"images": ["a.png", "b.png"],        # optional: files relative to this JSON, in view order
     "intrinsics": [[fx, 0, cx], [0, fy, cy], [0, 0, 1]],     # normalised (row 0 / W, row 1 / H);
                                                              # one for all views or one per view
     "extrinsics": [[4 x 4], [4 x 4]],    # OpenCV camera-to-world (+x right, +y down, +z forward),
                                          # one per view; absent: estimate the pose of two views
     "near": 1.0, "far": 100.0}           # optional depth bounds, one or one per view

A ``transforms.json`` (instant-ngp / nerfstudio) or a COLMAP model is read with the dataset readers
(``read_transforms_json``, ``read_colmap_scene``: OpenGL poses converted, distortion undistorted);
the views are the scene's frames whose file names match the given images. Two images without
extrinsics are posed by two-view estimation (:func:`estimate_views`,
``videoscene.geometry.pose_estimation``: the first camera at the identity, the baseline 1), which
refuses an unreliable estimate with a ``PoseEstimationError`` naming both files.

**Cameras** are checked by ``videoscene.geometry.camera_validation`` (finite, proper rotation,
normalised pinhole intrinsics, ``0 < near < far``); consecutive views with identical pixels, or
whose camera centres coincide (identical cameras, or a pure rotation that gives a reconstructor
no parallax), are refused.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

from videoscene.datasets.crop import resize_and_center_crop
from videoscene.datasets.image_files import ImageFileScene
from videoscene.errors import CameraError, InputError
from videoscene.geometry.camera_validation import check_extrinsics, check_intrinsics, check_near_far
from videoscene.geometry.pose_estimation import MatchReport, default_intrinsics, estimate_relative_pose

__all__ = ['Views', 'CameraFile', 'read_image', 'read_images', 'read_camera_file',
           'write_camera_file', 'views_from_camera_file', 'views_from_scene', 'estimate_views',
           'check_views', 'check_distinct_images', 'prepare_views', 'MIN_BASELINE']

MIN_BASELINE = 1e-6
"""Consecutive camera centres closer than this, relative to the scene's extent (at least 1), are
refused as coinciding."""

_WHITE_LEVEL = {'I;16': 65535.0, 'I;16B': 65535.0, 'I;16L': 65535.0, 'I;16N': 65535.0}


@dataclass
class Views:
    """Posed views, in order.

    Attributes:
        images: ``[V, 3, H, W]`` float32 in [0, 1].
        extrinsics: ``[V, 4, 4]`` OpenCV camera-to-world.
        intrinsics: ``[V, 3, 3]`` normalised.
        near, far: ``[V]`` depth bounds.
        names: how errors and reports name each view (its file).
    """

    images: Tensor
    extrinsics: Tensor
    intrinsics: Tensor
    near: Tensor
    far: Tensor
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    def pair(self, first: int) -> dict[str, Tensor]:
        """The batched context ``{image [1, 2, 3, H, W], extrinsics, intrinsics, near, far}`` of
        views ``first`` and ``first + 1``."""
        pick = slice(first, first + 2)
        return {'image': self.images[None, pick], 'extrinsics': self.extrinsics[None, pick],
                'intrinsics': self.intrinsics[None, pick], 'near': self.near[None, pick],
                'far': self.far[None, pick]}


@dataclass
class CameraFile:
    """A camera JSON file as read (format in the module docstring).

    Attributes:
        path: the file.
        images: the image files it lists (resolved), or None.
        intrinsics: ``[N, 3, 3]`` or ``[1, 3, 3]`` (one for every view), or None.
        extrinsics: ``[N, 4, 4]`` or None (estimate the pose).
        near, far: ``[N]`` or ``[1]``, or None.
    """

    path: Path
    images: list[Path] | None
    intrinsics: Tensor | None
    extrinsics: Tensor | None
    near: Tensor | None
    far: Tensor | None


def read_image(path: str | Path) -> Tensor:
    """An image file as float32 RGB ``[3, H, W]`` in [0, 1] (conversions in the module docstring).

    Raises:
        InputError: naming the file: missing, empty, unreadable, truncated, or an unsupported mode.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(path, 'no such image file')
    if path.stat().st_size == 0:
        raise InputError(path, 'the file is empty (0 bytes); expected an image (PNG, JPEG, ...)')
    try:
        with Image.open(path) as opened:
            opened.load()
            image = ImageOps.exif_transpose(opened)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError,
            Image.DecompressionBombError) as error:
        raise InputError(path, f'cannot be read as an image ({error}); expected a complete PNG, '
                         'JPEG, BMP, TIFF or WebP file') from None
    return _to_rgb(image, path)


def _to_rgb(image: Image.Image, path: Path) -> Tensor:
    if image.mode in _WHITE_LEVEL:
        grey = np.asarray(image, dtype=np.float64) / 65535.0     # 16-bit grayscale
        return torch.from_numpy(grey).float().clamp(0, 1)[None].expand(3, -1, -1).contiguous()
    if image.mode in ('I', 'F'):
        raise InputError(path, f'{image.mode!r} images (32-bit integer or float) have no known '
                         'white level; expected an 8- or 16-bit image')
    has_alpha = image.mode in ('RGBA', 'LA', 'PA', 'RGBa', 'La') or (
        image.mode == 'P' and 'transparency' in image.info)
    if has_alpha:
        rgba = np.asarray(image.convert('RGBA'), dtype=np.float32) / 255.0
        pixels = rgba[..., :3] * rgba[..., 3:]                 # over a black background
    else:
        pixels = np.asarray(image.convert('RGB'), dtype=np.float32) / 255.0
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(2, 0, 1).contiguous()


def read_images(paths: Sequence[str | Path]) -> list[Tensor]:
    """:func:`read_image` of each file; they must share one size.

    Raises:
        InputError: a file that does not read, or images of different sizes (naming them).
    """
    images = [read_image(path) for path in paths]
    sizes = [tuple(image.shape[1:]) for image in images]
    if len(set(sizes)) > 1:
        listing = ', '.join(f'{path} is {w} x {h}' for path, (h, w) in zip(paths, sizes))
        raise InputError(', '.join(map(str, paths)), f'images of different sizes ({listing}); '
                         'expected views of one camera at one size: resize or crop them to one size')
    return images


def _per_view(value, shape: tuple[int, ...], count: int | None, where: str) -> Tensor:
    """A JSON value as ``[1, *shape]`` (one for all views) or ``[N, *shape]``."""
    try:
        tensor = torch.tensor(value, dtype=torch.float64)
    except (TypeError, ValueError, RuntimeError):
        raise InputError(where, f'expected numbers shaped {list(shape)} or a list of them, got '
                         f'{json.dumps(value)[:80]}') from None
    if tuple(tensor.shape) == shape:
        tensor = tensor[None]
    if tuple(tensor.shape[1:]) != shape or (count is not None and len(tensor) not in (1, count)):
        expected = f'{list(shape)} or {count} of them' if count else f'a list of {list(shape)}'
        raise InputError(where, f'expected {expected}, got shape {list(tensor.shape)}')
    return tensor


def read_camera_file(path: str | Path) -> CameraFile:
    """A camera JSON file (format in the module docstring), shapes checked; values are checked
    when the views are made (:func:`views_from_camera_file`).

    Raises:
        InputError: naming the file and the field that is missing or malformed.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(path, 'no such camera file')
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, f'is not valid JSON ({error})') from None
    if not isinstance(content, dict):
        raise InputError(path, 'expected a JSON object with "intrinsics" and optional "extrinsics", '
                         '"images", "near", "far"')
    images = content.get('images')
    if images is not None:
        if not isinstance(images, list) or not all(isinstance(name, str) for name in images):
            raise InputError(f'{path} "images"', 'expected a list of file names relative to the file')
        images = [path.parent / name for name in images]
    extrinsics = content.get('extrinsics')
    count = len(images) if images is not None else (len(extrinsics) if isinstance(extrinsics, list)
                                                    else None)
    if extrinsics is not None:
        extrinsics = _per_view(extrinsics, (4, 4), count, f'{path} "extrinsics"')
        if count is None or len(extrinsics) != count:
            raise InputError(f'{path} "extrinsics"', 'expected one 4 x 4 matrix per view'
                             + (f' ({count} views)' if count else ''))
    if extrinsics is not None and 'intrinsics' not in content:
        raise InputError(path, 'gives "extrinsics" but no "intrinsics": both are needed to use them')
    intrinsics = (_per_view(content['intrinsics'], (3, 3), count, f'{path} "intrinsics"')
                  if 'intrinsics' in content else None)
    bounds = {}
    for key in ('near', 'far'):
        bounds[key] = (_per_view(content[key], (), count, f'{path} "{key}"')
                       if key in content else None)
    if (bounds['near'] is None) != (bounds['far'] is None):
        raise InputError(path, 'gives only one of "near" and "far": give both or neither')
    return CameraFile(path, images, intrinsics, extrinsics, bounds['near'], bounds['far'])


def write_camera_file(path: str | Path, images: Sequence[str], extrinsics: Tensor,
                      intrinsics: Tensor, near: Tensor, far: Tensor,
                      image_size: tuple[int, int] | None = None) -> Path:
    """Write ``[N, 4, 4]`` extrinsics, ``[N, 3, 3]`` intrinsics, ``[N]`` near and far of the
    ``images`` (names relative to ``path``'s folder) in the camera-file format; ``image_size``
    ``(H, W)`` is recorded as ``"image_size": [W, H]`` for readers that want pixel units."""
    content = {'images': list(images),
               'intrinsics': intrinsics.double().cpu().tolist(),
               'extrinsics': extrinsics.double().cpu().tolist(),
               'near': near.double().cpu().tolist(), 'far': far.double().cpu().tolist()}
    if image_size is not None:
        content['image_size'] = [int(image_size[1]), int(image_size[0])]
    path = Path(path)
    path.write_text(json.dumps(content, indent=1))
    return path


def _expand(values: Tensor | None, count: int, default: float | None = None) -> Tensor | None:
    if values is None:
        return None if default is None else torch.full((count,), float(default))
    return values.expand(count, *values.shape[1:]).float().clone()


def views_from_camera_file(paths: Sequence[str | Path], cameras: CameraFile,
                           near: float, far: float) -> Views:
    """The views of image files ``paths`` posed by a camera file with extrinsics; ``near`` and
    ``far`` are used where the file gives none."""
    if cameras.extrinsics is None:
        raise InputError(cameras.path, 'gives no "extrinsics"')
    if len(cameras.extrinsics) != len(paths):
        raise InputError(cameras.path, f'gives {len(cameras.extrinsics)} cameras for {len(paths)} '
                         'images; expected one camera per image')
    images = torch.stack(read_images(paths))
    count = len(paths)
    views = Views(images, cameras.extrinsics.float(), _expand(cameras.intrinsics, count),
                  _expand(cameras.near, count, near), _expand(cameras.far, count, far),
                  [str(path) for path in paths])
    check_views(views, str(cameras.path))
    return views


def views_from_scene(scene: ImageFileScene, paths: Sequence[str | Path], near: float,
                     far: float) -> Views:
    """The frames of a ``transforms.json`` / COLMAP scene whose image files are ``paths`` (matched
    by resolved path, else by file name), undistorted as the scene's cameras say."""
    by_path = {p.resolve(): i for i, p in enumerate(scene.paths)}
    by_name: dict[str, list[int]] = {}
    for i, p in enumerate(scene.paths):
        by_name.setdefault(p.name, []).append(i)
    frames = []
    for path in map(Path, paths):
        if path.resolve() in by_path:
            frames.append(by_path[path.resolve()])
        elif len(by_name.get(path.name, [])) == 1:
            frames.append(by_name[path.name][0])
        else:
            raise InputError(path, f'is not a frame of {scene.url or scene.key} (or its name is '
                             f'ambiguous there); its frames are e.g. {[p.name for p in scene.paths[:4]]}')
    images = read_images(paths)
    undistorted = []
    for frame, path, image in zip(frames, paths, images):
        camera = scene.cameras[frame]
        if tuple(image.shape[1:]) != (camera.height, camera.width):
            raise InputError(path, f'is {image.shape[2]} x {image.shape[1]} pixels but its camera in '
                             f'{scene.url or scene.key} is {camera.width} x {camera.height}')
        undistorted.append(camera.undistort(image))
    count = len(frames)
    views = Views(torch.stack(undistorted), scene.extrinsics[frames].float(),
                  torch.stack([scene.cameras[i].intrinsics() for i in frames]).float(),
                  torch.full((count,), float(near)), torch.full((count,), float(far)),
                  [str(path) for path in paths])
    check_views(views, scene.url or scene.key)
    return views


def check_views(views: Views, source: str) -> None:
    """Cameras valid (``camera_validation``), consecutive views distinct in pixels and in camera
    centre. Errors name ``source`` (the camera file) or the two image files."""
    names = views.names

    def name(index: tuple[int, ...]) -> str:
        return f'{source} (view {index[0]}: {names[index[0]]})' if index else source

    check_extrinsics(views.extrinsics, name)
    check_intrinsics(views.intrinsics, name)
    check_near_far(views.near, views.far, name)
    check_distinct_images(views.images, names)
    centres = views.extrinsics[:, :3, 3].double()
    extent = max(1.0, float(centres.abs().max()))
    for i in range(len(views) - 1):
        if float((centres[i] - centres[i + 1]).norm()) <= MIN_BASELINE * extent:
            same = bool(torch.allclose(views.extrinsics[i], views.extrinsics[i + 1], atol=1e-6))
            problem = 'identical cameras' if same else 'the cameras share one centre (a pure rotation)'
            raise CameraError(f"{source} ('{names[i]}' and '{names[i + 1]}')",
                              f'{problem}; a reconstructor needs two distinct viewpoints '
                              '(camera centres apart)')


def check_distinct_images(images: Tensor | Sequence[Tensor], names: Sequence[str]) -> None:
    """Refuse consecutive images whose pixels are identical (to half a grey level)."""
    for i in range(len(images) - 1):
        first, second = images[i], images[i + 1]
        if first.shape == second.shape and float((first - second).abs().max()) <= 0.5 / 255:
            raise InputError(f"'{names[i]}' and '{names[i + 1]}'", 'the two images are identical; '
                             'expected two views of the scene from different viewpoints')


def estimate_views(paths: Sequence[str | Path], intrinsics: Tensor | None, near: float, far: float,
                   fov_x_degrees: float = 60.0, **estimation) -> tuple[Views, MatchReport]:
    """Two image files posed by two-view pose estimation
    (``videoscene.geometry.pose_estimation.estimate_relative_pose``: the first camera at the
    identity, the baseline 1) and its match report.

    Args:
        intrinsics: normalised ``[3, 3]``, ``[1, 3, 3]`` or ``[2, 3, 3]``; None: square pixels,
            a horizontal field of view of ``fov_x_degrees`` and a centred principal point.
        estimation: keyword arguments of ``estimate_relative_pose`` (e.g. ``min_confidence``).

    Raises:
        PoseEstimationError: an unreliable estimate (naming both files and why).
    """
    if len(paths) != 2:
        raise InputError(', '.join(map(str, paths)), f'pose estimation takes exactly two images, got '
                         f'{len(paths)}; give cameras (a camera file, transforms.json or COLMAP) for more')
    names = [str(path) for path in paths]
    images = read_images(paths)
    check_distinct_images(images, names)
    if intrinsics is None:
        intrinsics = torch.stack([default_intrinsics(*image.shape[1:], fov_x_degrees) for image in images])
    intrinsics = intrinsics.reshape(-1, 3, 3)
    if len(intrinsics) not in (1, 2):
        raise InputError('intrinsics', f'expected one matrix or one per image (2), got {len(intrinsics)}')
    intrinsics = intrinsics.expand(2, 3, 3).float()
    pose = estimate_relative_pose(images[0], images[1], intrinsics, names=(names[0], names[1]),
                                  **estimation)
    views = Views(torch.stack(images), pose.extrinsics.float(), pose.intrinsics.float(),
                  torch.full((2,), float(near)), torch.full((2,), float(far)), names)
    check_views(views, 'estimated cameras')
    return views, pose.report


def prepare_views(views: Views, shape: tuple[int, int]) -> Views:
    """Resize and centre-crop every view to ``shape = (H, W)``, intrinsics updated (see the module
    docstring)."""
    images, intrinsics, _ = resize_and_center_crop(views.images, views.intrinsics, shape)
    return Views(images, views.extrinsics, intrinsics, views.near, views.far, views.names)
