"""Writers of one recorded scene in every input format the datasets read, for the tests.

Every writer stores the same JPEG bytes, so every source decodes identical images.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import cv2
import numpy as np
import torch

from videoscene.datasets import chunks
from videoscene.geometry.cameras import c2w_to_w2c_rows
from videoscene.geometry.rotations import matrix_to_quaternion
from videoscene.visualization import save_video

OPENGL_FROM_OPENCV = torch.diag(torch.tensor([1.0, -1.0, -1.0, 1.0]))


def jpeg_bytes(images: torch.Tensor) -> list[torch.Tensor]:
    return [chunks.encode_image(image) for image in images]


def pixel_intrinsics(intrinsics: torch.Tensor, height: int, width: int) -> tuple[float, float, float, float]:
    """fx, fy, cx, cy in pixels of one normalised matrix."""
    return (float(intrinsics[0, 0]) * width, float(intrinsics[1, 1]) * height,
            float(intrinsics[0, 2]) * width, float(intrinsics[1, 2]) * height)


def write_chunks(root: Path, key: str, jpegs, extrinsics, intrinsics, num_eval_targets: int, **example) -> Path:
    """One scene as RE10K chunks with an evaluation index (context = first and last frame)."""
    chunks.write_dataset(root, 'test', [chunks.encode_example(key, jpegs, extrinsics, intrinsics, **example)],
                         num_eval_targets=num_eval_targets)
    return root


def write_images(folder: Path, jpegs, names: list[str] | None = None) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    names = names or [f'frame_{i:05d}.jpg' for i in range(len(jpegs))]
    for name, data in zip(names, jpegs):
        (folder / name).write_bytes(data.numpy().tobytes())
    return names


def write_transforms(folder: Path, jpegs, extrinsics, intrinsics, height: int, width: int, *,
                     per_frame: bool = False, shared: dict | None = None, frame_order=None) -> Path:
    """A nerfstudio ``transforms.json`` scene: shared intrinsics (or per-frame ones), OpenGL poses."""
    names = write_images(folder / 'images', jpegs)
    frames = []
    for i in (frame_order or range(len(jpegs))):
        frame = {'file_path': f'images/{names[i]}',
                 'transform_matrix': (extrinsics[i] @ OPENGL_FROM_OPENCV).tolist()}
        if per_frame:
            fx, fy, cx, cy = pixel_intrinsics(intrinsics[i], height, width)
            frame.update(fl_x=fx, fl_y=fy, cx=cx, cy=cy, w=width, h=height)
        frames.append(frame)
    shared_intrinsics = dict(zip(('fl_x', 'fl_y', 'cx', 'cy'), pixel_intrinsics(intrinsics[0], height, width)))
    content = {} if per_frame else dict(shared_intrinsics, w=width, h=height)
    content.update(shared or {})
    content['frames'] = frames
    (folder / 'transforms.json').write_text(json.dumps(content, indent=1))
    return folder


def _colmap_images(extrinsics):
    w2c = torch.linalg.inv(extrinsics.double())
    return matrix_to_quaternion(w2c[:, :3, :3]), w2c[:, :3, 3]


def write_colmap(folder: Path, jpegs, extrinsics, points: torch.Tensor, camera: tuple[str, int, int, tuple],
                 binary: bool, names: list[str] | None = None, point_lines: bool = True) -> Path:
    """A COLMAP scene: ``images/`` and a ``sparse/0`` model with one camera ``(model, width, height,
    params)`` shared by all images, written as text or binary. Text models give every image a 2D-point
    line (blank for every second image) unless ``point_lines`` is False: one line per image, as some
    exporters write."""
    names = write_images(folder / 'images', jpegs, names)
    model = folder / 'sparse' / '0'
    model.mkdir(parents=True)
    quaternions, translations = _colmap_images(extrinsics)
    name, width, height, params = camera
    ids = {'SIMPLE_PINHOLE': 0, 'PINHOLE': 1, 'SIMPLE_RADIAL': 2, 'RADIAL': 3, 'OPENCV': 4, 'OPENCV_FISHEYE': 5,
           'FULL_OPENCV': 6, 'FOV': 7}
    colors = (points.abs() * 40 % 255).to(torch.uint8)
    if binary:
        with (model / 'cameras.bin').open('wb') as file:
            file.write(struct.pack('<Q', 1) + struct.pack('<iiQQ', 1, ids[name], width, height))
            file.write(struct.pack(f'<{len(params)}d', *params))
        with (model / 'images.bin').open('wb') as file:
            file.write(struct.pack('<Q', len(names)))
            for i, image_name in enumerate(names):
                file.write(struct.pack('<i7di', i + 1, *quaternions[i].tolist(), *translations[i].tolist(), 1))
                file.write(image_name.encode() + b'\x00')
                file.write(struct.pack('<Q', 2) + struct.pack('<ddq', 1.5, 2.5, -1) + struct.pack('<ddq', 3.0, 4.0, 0))
        with (model / 'points3D.bin').open('wb') as file:
            file.write(struct.pack('<Q', len(points)))
            for i, (point, color) in enumerate(zip(points.tolist(), colors.tolist())):
                file.write(struct.pack('<Q3d3Bd', i, *point, *color, 0.5))
                file.write(struct.pack('<Q', 1) + struct.pack('<ii', 1, 0))
    else:
        (model / 'cameras.txt').write_text('# Camera list\n' + f'1 {name} {width} {height} ' +
                                           ' '.join(repr(float(p)) for p in params) + '\n')
        lines = ['# Image list with two lines of data per image:',
                 '#   IMAGE_ID, QW, QX, QY, QZ, TX, TY, TZ, CAMERA_ID, NAME']
        for i, image_name in enumerate(names):
            numbers = ' '.join(repr(v) for v in [*quaternions[i].tolist(), *translations[i].tolist()])
            lines.append(f'{i + 1} {numbers} 1 {image_name}')
            if point_lines:
                lines.append('' if i % 2 else '1.5 2.5 -1 3.0 4.0 0')  # an image without 2D points has a blank line
        (model / 'images.txt').write_text('\n'.join(lines) + '\n')
        rows = [f'{i} ' + ' '.join(repr(v) for v in point) + ' ' + ' '.join(str(c) for c in color) + ' 0.5 1 0'
                for i, (point, color) in enumerate(zip(points.tolist(), colors.tolist()))]
        (model / 'points3D.txt').write_text('# 3D point list\n' + '\n'.join(rows) + '\n')
    return folder


def write_pose_file(path: Path, extrinsics, intrinsics, timestamps, url: str = 'https://example.com/video') -> Path:
    rows = c2w_to_w2c_rows(extrinsics.double())
    lines = [url]
    for t, k, row in zip(timestamps.tolist(), intrinsics.double(), rows):
        numbers = [k[0, 0], k[1, 1], k[0, 2], k[1, 2], 0.0, 0.0, *row]
        lines.append(f'{t} ' + ' '.join(repr(float(v)) for v in numbers))
    path.write_text('\n'.join(lines) + '\n')
    return path


def write_video(folder: Path, key: str, images, extrinsics, intrinsics, fps: float = 30.0) -> Path:
    """``{key}.mp4`` (H.264 through imageio-ffmpeg) and ``{key}.txt`` (RE10K poses, one per frame)."""
    folder.mkdir(parents=True, exist_ok=True)
    save_video(folder / f'{key}.mp4', images, fps=fps, quality=10)
    timestamps = torch.arange(len(images), dtype=torch.int64) * 1_000_000 // int(fps)
    write_pose_file(folder / f'{key}.txt', extrinsics, intrinsics, timestamps)
    return folder


def png_bytes(images: torch.Tensor) -> list[torch.Tensor]:
    """Lossless 8-bit PNG bytes of float images ``[N, 3, H, W]``."""
    encoded = []
    for image in images:
        pixels = (image.clamp(0, 1) * 255).round().to(torch.uint8).permute(1, 2, 0).flip(-1).numpy()
        ok, data = cv2.imencode('.png', np.ascontiguousarray(pixels))
        assert ok
        encoded.append(torch.from_numpy(data.reshape(-1)))
    return encoded


def smooth_pattern(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """A smooth RGB pattern ``[3, ...]`` of normalised camera coordinates ``x = X/Z``, ``y = Y/Z``."""
    return torch.stack([0.5 + 0.4 * torch.sin(6 * x + 1) * torch.cos(5 * y), 0.5 + 0.4 * torch.cos(7 * x - 4 * y),
                        0.5 + 0.4 * torch.sin(5 * (x + y))])


def pinhole_pattern(height: int, width: int, fx: float, fy: float, cx: float, cy: float) -> torch.Tensor:
    """``smooth_pattern`` seen by a pinhole camera (pixel intrinsics, image corner at 0): ``[3, H, W]``."""
    rows, columns = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing='ij')
    return smooth_pattern((columns - cx) / fx, (rows - cy) / fy)


def distorted_pattern(height: int, width: int, fx: float, fy: float, cx: float, cy: float, model: str,
                      coefficients: tuple) -> torch.Tensor:
    """``smooth_pattern`` seen through a distorting lens: ``[3, H, W]``. Pixel intrinsics have the
    image corner at 0 (COLMAP's convention); OpenCV's have pixel centres at integers."""
    matrix = np.array([[fx, 0.0, cx - 0.5], [0.0, fy, cy - 0.5], [0.0, 0.0, 1.0]])
    rows, columns = np.meshgrid(np.arange(height), np.arange(width), indexing='ij')
    pixels = np.stack([columns, rows], -1).reshape(-1, 1, 2).astype(np.float64)
    distortion = np.array(coefficients, dtype=np.float64)
    if model == 'fisheye':
        normalised = cv2.fisheye.undistortPoints(pixels, matrix, distortion)
    else:
        normalised = cv2.undistortPoints(pixels, matrix, distortion)
    x, y = torch.from_numpy(normalised.reshape(height, width, 2)).float().unbind(-1)
    return smooth_pattern(x, y)
