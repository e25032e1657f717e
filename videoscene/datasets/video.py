"""Video files with camera poses, decoded with decord.

A video ``{name}.mp4`` (or ``.mov``, ``.mkv``, ``.avi``, ``.webm``) comes with its poses in
``{name}.txt``, RealEstate10K's camera file format:

* line 1: the video's URL (may be empty);
* every other line: ``timestamp fx fy cx cy k1 k2 r11 r12 r13 t1 r21 r22 r23 t2 r31 r32 r33 t3``:
  the time of the posed frame in microseconds from the start of the video, normalised
  intrinsics, two unused numbers (zeros in RE10K) and the row-major 3x4 OpenCV world-to-camera
  matrix.

A posed line's video frame is ``round(timestamp * fps / 1e6)``; two posed lines on one video frame
(e.g. repeated timestamps) are refused, since they would repeat that frame under different
cameras. Every line's camera is checked (``geometry.camera_validation``) and errors name the
file and line. The scene's frames are ``num_frames`` posed frames at equal intervals over the
posed span (all of them for None).
Frames are decoded one by one at the video's native size and resized by the dataset's
``image_shape``: decord 0.6's own resizing returns garbage at small widths, and at some widths
(8, 12, 16, 24, 48, 72 among those tried) even native frames come back with the decoder's row
padding folded into extra channels (``[H, W, C > 3]``) while ``get_batch`` fails outright; such
frames are unfolded (the first ``3 W`` bytes of each row are the pixels).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import decord
import numpy as np
import torch
from torch import Tensor

from videoscene.errors import InputError
from videoscene.geometry.camera_validation import check_extrinsics, check_intrinsics
from videoscene.geometry.cameras import w2c_rows_to_c2w
from videoscene.registry import DATASETS
from .base import SceneDataset, SceneSource
from .image_files import natural_key
from .view_samplers import ViewSampler

__all__ = ['VIDEO_SUFFIXES', 'PoseFile', 'equally_spaced', 'read_pose_file', 'read_video_frames', 'VideoSource',
           'VideoDataset']

VIDEO_SUFFIXES = ('.mp4', '.mov', '.mkv', '.avi', '.webm')


def equally_spaced(count: int, num: int, what: str) -> list[int]:
    """``num`` distinct indices at (near-)equal intervals from 0 to ``count - 1``, both included.

    Raises:
        InputError: ``count < num``; the message names ``what``.
    """
    if num < 1:
        raise InputError('num_frames', f'need at least one frame, got {num}')
    if count < num:
        raise InputError(what, f'has {count} frames, fewer than the {num} frames asked for')
    if num == 1:
        return [0]
    return [round(k * (count - 1) / (num - 1)) for k in range(num)]


@dataclass
class PoseFile:
    """A RE10K camera file: ``url``, ``timestamps`` int64 ``[N]`` (microseconds), camera-to-world
    ``extrinsics [N, 4, 4]`` and normalised ``intrinsics [N, 3, 3]`` (float32), sorted by time."""

    url: str
    timestamps: Tensor
    extrinsics: Tensor
    intrinsics: Tensor


def read_pose_file(path: str | Path) -> PoseFile:
    """Read a RE10K camera file (format in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f'pose file {path} does not exist: a video needs its poses as a RealEstate10K '
                                'camera file (URL line, then one line of 19 numbers per posed frame)')
    lines = path.read_text().splitlines()
    rows = []
    expected = 'expected 19 numbers (timestamp, fx fy cx cy, two unused, a 3x4 world-to-camera matrix)'
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        where = f'{path}, line {number}'
        fields = line.split()
        if len(fields) != 19:
            raise InputError(where, f'{expected}, got {len(fields)} fields')
        try:
            row = torch.tensor([float(value) for value in fields], dtype=torch.float64)
        except ValueError as error:
            raise InputError(where, f'{expected}: {error}') from None
        w2c = torch.eye(4, dtype=torch.float64)
        w2c[:3] = row[7:].reshape(3, 4)
        check_extrinsics(w2c, where)
        check_intrinsics(torch.tensor([[row[1], 0, row[3]], [0, row[2], row[4]], [0, 0, 1]], dtype=torch.float64),
                         where)
        rows.append(row)
    if not rows:
        raise InputError(path, 'holds no poses (expected a URL line, then one line per posed frame)')
    table = torch.stack(rows)
    table = table[table[:, 0].argsort()]
    intrinsics = torch.eye(3, dtype=torch.float64).repeat(len(table), 1, 1)
    intrinsics[:, 0, 0], intrinsics[:, 1, 1], intrinsics[:, 0, 2], intrinsics[:, 1, 2] = table[:, 1:5].T
    return PoseFile(url=lines[0].strip() if lines else '', timestamps=table[:, 0].round().long(),
                    extrinsics=w2c_rows_to_c2w(table[:, 7:]).float(), intrinsics=intrinsics.float())


def _open(path: Path) -> decord.VideoReader:
    if not path.is_file():
        raise FileNotFoundError(f'video {path} does not exist')
    try:
        return decord.VideoReader(str(path), ctx=decord.cpu(0))
    except RuntimeError as error:
        raise InputError(path, f'decord cannot read the video: {str(error).splitlines()[0]}') from None


def _decode(reader: decord.VideoReader, frame: int) -> np.ndarray:
    """One RGB frame ``[H, W, 3]`` uint8, with decord's row padding unfolded (module docstring)."""
    pixels = reader[frame].asnumpy()
    height, width, channels = pixels.shape
    if channels != 3:
        pixels = pixels.reshape(height, width * channels)[:, :width * 3].reshape(height, width, 3)
    return pixels


def read_video_frames(path: str | Path, frames: Sequence[int]) -> Tensor:
    """Frames of a video at its native size: float32 ``[F, 3, H, W]`` in [0, 1]."""
    path = Path(path)
    reader = _open(path)
    bad = [frame for frame in frames if not 0 <= frame < len(reader)]
    if bad:
        raise InputError(path, f'has {len(reader)} frames; frames {bad} do not exist')
    pixels = np.stack([_decode(reader, frame) for frame in frames])
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255.0


@dataclass
class _PosedVideo:
    path: Path
    url: str
    frames: list[int]     # video frame of each scene frame
    timestamps: Tensor    # [N]
    extrinsics: Tensor    # [N, 4, 4]
    intrinsics: Tensor    # [N, 3, 3]


class VideoSource(SceneSource):
    """The videos of a folder with their RE10K pose files (see the module docstring).

    Args:
        root: folder of videos and pose files; each video is a scene keyed by its file stem.
        num_frames: frames per scene, at equal intervals over the posed frames; a video with
            fewer frames (or fewer posed frames) raises ``InputError``. None keeps every posed frame.
    """

    def __init__(self, root: str | Path, num_frames: int | None = 49) -> None:
        self.root = Path(root).expanduser()
        if not self.root.is_dir():
            raise FileNotFoundError(f'video folder {self.root} does not exist')
        paths = sorted((p for p in self.root.iterdir() if p.suffix.lower() in VIDEO_SUFFIXES),
                       key=lambda p: natural_key(p.name))
        if not paths:
            raise FileNotFoundError(f'{self.root} holds no videos ({", ".join(VIDEO_SUFFIXES)})')
        self.videos: dict[str, _PosedVideo] = {}
        for path in paths:
            if path.stem in self.videos:
                raise InputError(self.root, f"two videos have the stem '{path.stem}'")
            self.videos[path.stem] = self._posed_video(path, num_frames)

    @staticmethod
    def _posed_video(path: Path, num_frames: int | None) -> _PosedVideo:
        poses = read_pose_file(path.with_suffix('.txt'))
        reader = _open(path)
        count, fps = len(reader), float(reader.get_avg_fps())
        if num_frames is not None and count < num_frames:
            raise InputError(path, f'has {count} frames, fewer than the {num_frames} frames asked for')
        pose_path = path.with_suffix('.txt')
        video_frames = (poses.timestamps.double() * fps / 1e6).round().long()
        outside = (video_frames < 0) | (video_frames >= count)
        if bool(outside.any()):
            first = int(outside.nonzero()[0])
            raise InputError(pose_path, f'the pose at {int(poses.timestamps[first])} us is frame '
                                        f'{int(video_frames[first])} at {fps:g} fps, outside the {count} frames of {path}')
        repeated = (video_frames[1:] == video_frames[:-1]).nonzero().flatten()  # sorted by time: neighbours
        if len(repeated):
            first = int(repeated[0])
            times = poses.timestamps[first:first + 2].tolist()
            raise InputError(pose_path, f'{len(video_frames)} posed lines fall on only {len(set(video_frames.tolist()))} '
                                        f'video frames of {path}: the timestamps {times[0]} and {times[1]} us are both '
                                        f'frame {int(video_frames[first])} at {fps:g} fps; every posed frame needs its '
                                        'own timestamp (repeated timestamps would repeat the frame)')
        rows = (list(range(len(video_frames))) if num_frames is None
                else equally_spaced(len(video_frames), num_frames, f'{path} with poses {path.with_suffix(".txt")}'))
        return _PosedVideo(path, poses.url, video_frames[rows].tolist(), poses.timestamps[rows],
                           poses.extrinsics[rows], poses.intrinsics[rows])

    @property
    def keys(self) -> list[str]:
        return list(self.videos)

    def cameras(self, key: str) -> tuple[Tensor, Tensor]:
        return self.videos[key].extrinsics, self.videos[key].intrinsics

    def images(self, key: str, frames: Sequence[int]) -> list[Tensor]:
        video = self.videos[key]
        return list(read_video_frames(video.path, [video.frames[frame] for frame in frames]))

    def describe(self, key: str, frame: int) -> str:
        video = self.videos[key]
        return f'frame {frame} of scene \'{key}\' (video frame {video.frames[frame]} of {video.path})'

    def timestamps(self, key: str) -> Tensor:
        return self.videos[key].timestamps

    def url(self, key: str) -> str:
        return self.videos[key].url or self.videos[key].path.resolve().as_uri()


@DATASETS.register_module()
class VideoDataset(SceneDataset):
    """Videos with poses as sample dicts (contract and bad input: ``base``).

    Args:
        root: folder of videos and their RE10K pose files (see the module docstring).
        view_sampler: a view sampler or its config, over the ``num_frames`` frames of each
            scene (e.g. ``dict(type='fixed', context=[0, 48], target=list(range(49)))``: the whole
            clip as a 49-frame video). Videos have no evaluation index of their own.
        num_frames: frames per scene at equal intervals (see :class:`VideoSource`).
        image_shape, near, far, flip_probability, min_baseline: see :class:`SceneDataset`.
    """

    def __init__(self, root: str | Path, view_sampler: dict | ViewSampler, num_frames: int | None = 49,
                 image_shape: tuple[int, int] | None = None, near: float = 1.0, far: float = 100.0,
                 flip_probability: float = 0.0, min_baseline: float | None = 0.0) -> None:
        super().__init__(VideoSource(root, num_frames), view_sampler, image_shape=image_shape, near=near, far=far,
                         flip_probability=flip_probability, min_baseline=min_baseline)
