"""Scene sources and the map-style dataset every source is served through.

A :class:`SceneSource` is a set of scenes made of posed frames (RE10K chunks, a ``transforms.json``
scene, a COLMAP model, videos with poses, image pairs). A :class:`SceneDataset` turns a source
into the sample contract::

    {'context': views, 'target': views, 'scene': key}

where ``views`` holds ``image`` float32 ``[V, 3, H, W]`` in [0, 1], ``extrinsics`` float32
``[V, 4, 4]`` (camera-to-world, OpenCV), ``intrinsics`` float32 ``[V, 3, 3]`` (normalised),
``near`` and ``far`` float32 ``[V]``, ``index`` int64 ``[V]`` (frame numbers), and ``depth``
float32 ``[V, H, W]`` (z-depth) when the source knows depths. V = 2 context views.

Bad input:

* stored data that does not decode (:class:`~videoscene.errors.CorruptInputError`: a corrupt,
  truncated or empty image, a chunk file that does not load or lacks a scene's cameras) skips the
  example: the first time a file fails, a warning names it and what is wrong; every skip is
  counted (``skipped``, per process: each DataLoader worker counts its own) and logged with
  MMEngine's ``print_log``, and the next item (``index + 1``, wrapping round) is served instead,
  so an epoch never stops on it; only when every item fails does it raise;
* cameras that break the conventions (``geometry.camera_validation``: non-finite, not rigid,
  non-positive or pixel-unit focal lengths) raise :class:`~videoscene.errors.CameraError`; context
  cameras closer than ``min_baseline`` (identical cameras: zero baseline), views of different
  sizes without ``image_shape``, images whose size disagrees with their camera and bad arguments
  raise :class:`~videoscene.errors.InputError`; missing files raise ``FileNotFoundError``. Every
  message names the scene and the frame or file, or the argument.
"""
from __future__ import annotations

import inspect
import logging
import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import torch
from mmengine.logging import print_log
from torch import Tensor
from torch.utils.data import Dataset

from videoscene.errors import CorruptInputError, InputError
from videoscene.geometry.camera_validation import check_extrinsics, check_intrinsics
from videoscene.registry import VIEW_SAMPLERS
from .chunks import encode_image
from .crop import resize_and_center_crop
from .flip import flip_views
from .view_samplers import ViewSampler

__all__ = ['SceneSource', 'SceneDataset', 'build_view_sampler']


class SceneSource(ABC):
    """Scenes made of posed frames.

    Frames of a scene are numbered ``0 .. N-1`` in capture order. Sources load lazily: cameras
    may be held in memory, images are read when asked for.
    """

    @property
    @abstractmethod
    def keys(self) -> list[str]:
        """Scene keys, in order."""

    @abstractmethod
    def cameras(self, key: str) -> tuple[Tensor, Tensor]:
        """Camera-to-world extrinsics ``[N, 4, 4]`` (OpenCV) and normalised intrinsics ``[N, 3, 3]``
        (float32) of every frame of scene ``key``."""

    @abstractmethod
    def images(self, key: str, frames: Sequence[int]) -> list[Tensor]:
        """Images ``[3, H, W]`` (float32 in [0, 1]) of ``frames`` of scene ``key``, undistorted.

        Raises:
            CorruptInputError: image data that does not decode.
        """

    def depths(self, key: str, frames: Sequence[int]) -> list[Tensor] | None:
        """Z-depths ``[H, W]`` of ``frames``, or None when the source has no depth."""
        return None

    def describe(self, key: str, frame: int) -> str:
        """How error messages name a frame (file sources name the file)."""
        return f"frame {frame} of scene '{key}'"

    def encoded_images(self, key: str, jpeg_quality: int = 95) -> list[Tensor]:
        """JPEG bytes (uint8 1-D tensors) of every frame of ``key``, for writing chunks; sources
        whose files are already JPEGs that need no change pass them through."""
        count, step = len(self.cameras(key)[0]), 16  # decode a few frames at a time: sources read in batches
        return [encode_image(image, jpeg_quality) for start in range(0, count, step)
                for image in self.images(key, range(start, min(start + step, count)))]

    def timestamps(self, key: str) -> Tensor | None:
        """Frame times in microseconds (int64 ``[N]``), or None when unknown."""
        return None

    def url(self, key: str) -> str:
        """Where the scene came from."""
        return ''


def build_view_sampler(config: dict | ViewSampler, default_index: Path | None = None,
                       owner: str = 'the dataset') -> ViewSampler:
    """A view sampler from its config (instances pass through).

    A config without ``index_path`` for a sampler that takes one gets ``default_index`` (the
    dataset's own evaluation index); ``owner`` names the dataset in the error when it has none.
    """
    if isinstance(config, ViewSampler):
        return config
    config = dict(config)
    kind = config.get('type')
    if kind is None:
        raise InputError('view_sampler', f"a view sampler config needs a 'type' (one of {VIEW_SAMPLERS.valid_names()}), "
                                         f'got {config}')
    sampler_class = kind if isinstance(kind, type) else VIEW_SAMPLERS.get(kind)
    if 'index_path' not in config and 'index_path' in inspect.signature(sampler_class).parameters:
        if default_index is None:
            raise InputError('view_sampler', f"view sampler '{kind}' needs an index_path: {owner} has no evaluation "
                                             'index of its own')
        config['index_path'] = default_index
    return VIEW_SAMPLERS.build(config)


class SceneDataset(Dataset):
    """The samples of a :class:`SceneSource` (contract and bad-input handling in the module docstring).

    Args:
        source: the scenes.
        view_sampler: a :class:`ViewSampler` or its config (``type`` in ``VIEW_SAMPLERS``).
        image_shape: output ``(height, width)``: views are resized and centre-cropped to it with
            the matching intrinsics update (``crop.resize_and_center_crop``); None keeps the
            stored size (then all views of a sample must have one size).
        near, far: depth bounds given to every view, in scene units; both None only in datasets
            that derive them per scene (they override :meth:`bounds`).
        flip_probability: chance that a sample is flipped left-right with its cameras (see
            ``flip``), drawn from torch's global generator like the training view sampler.
        min_baseline: context cameras whose centres are at most this far apart raise an error
            (the default 0 refuses identical context cameras); None disables the check.
        default_index: the source's own evaluation index, given to samplers that take an
            ``index_path`` and were configured without one.
    """

    def __init__(self, source: SceneSource, view_sampler: dict | ViewSampler, *,
                 image_shape: tuple[int, int] | None = None, near: float | None = 1.0, far: float | None = 100.0,
                 flip_probability: float = 0.0, min_baseline: float | None = 0.0,
                 default_index: Path | None = None) -> None:
        if not (near is None and far is None or near is not None and far is not None and 0.0 < near < far < math.inf):
            raise InputError('near/far', f'need 0 < near < far (or both None where a dataset derives them per scene), '
                                         f'got near={near}, far={far}')
        if not 0.0 <= flip_probability <= 1.0:
            raise InputError('flip_probability', f'must lie in [0, 1], got {flip_probability}')
        if image_shape is not None and not (len(image_shape) == 2 and all(
                isinstance(size, int) and not isinstance(size, bool) and size > 0 for size in image_shape)):
            raise InputError('image_shape', f'must be two positive integers (height, width), got {image_shape}')
        if min_baseline is not None and not min_baseline >= 0:
            raise InputError('min_baseline', f'must be at least 0 (or None to allow any baseline), got {min_baseline}')
        self.source = source
        self.view_sampler = build_view_sampler(view_sampler, default_index, type(self).__name__)
        self.scenes = self.view_sampler.scenes(source.keys)
        self.image_shape = None if image_shape is None else tuple(image_shape)
        self.near, self.far = near, far
        self.flip_probability = float(flip_probability)
        self.min_baseline = min_baseline
        self.skipped = 0
        self._warned: set[str] = set()

    @property
    def metainfo(self) -> dict:
        return {'dataset_type': type(self).__name__, 'num_scenes': len(self.scenes), 'image_shape': self.image_shape,
                'near': self.near, 'far': self.far, 'flip_probability': self.flip_probability}

    def __len__(self) -> int:
        return len(self.scenes)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f'{type(self).__name__} has {len(self)} items, asked for item {index}')
        for attempt in range(len(self)):
            item = (index + attempt) % len(self)
            try:
                return self.get_sample(item)
            except CorruptInputError as error:
                self.skipped += 1
                first = error.path not in self._warned
                self._warned.add(error.path)
                print_log(f"{type(self).__name__}: skipped item {item} (scene '{self.scenes[item]}'): {error}. "
                          f'{self.skipped} examples skipped so far in this process'
                          + ('.' if first else f' (further skips of {error.path} are logged at INFO level).'),
                          logger='current', level=logging.WARNING if first else logging.INFO)
        raise RuntimeError(f'{type(self).__name__}: all {len(self)} items have corrupt data '
                           f'(see the warnings above)')

    def bounds(self, key: str) -> tuple[float, float]:
        """``(near, far)`` of scene ``key``."""
        if self.near is None:
            raise NotImplementedError(f'{type(self).__name__} was given no near and far and derives none per scene')
        return self.near, self.far

    def get_sample(self, index: int) -> dict:
        """Item ``index`` without skipping: corrupt data raises :class:`~videoscene.errors.CorruptInputError`."""
        key = self.scenes[index]
        extrinsics, intrinsics = self.source.cameras(key)
        context, target = self.view_sampler.sample(key, len(extrinsics), index)
        frames = sorted(set(context.tolist()) | set(target.tolist()))
        self._check_cameras(key, frames, extrinsics, intrinsics)
        self._check_baseline(key, context, extrinsics)
        images, intrinsics_out, depths = self._load(key, frames, intrinsics)
        near, far = self.bounds(key)
        sample = {}
        for part, indices in (('context', context), ('target', target)):
            rows = [frames.index(i) for i in indices.tolist()]
            views = {
                'image': images[rows],
                'extrinsics': extrinsics[indices],
                'intrinsics': intrinsics_out[rows],
                'near': torch.full((len(indices),), near),
                'far': torch.full((len(indices),), far),
                'index': indices,
            }
            if depths is not None:
                views['depth'] = depths[rows]
            sample[part] = views
        if self.flip_probability > 0.0 and float(torch.rand(())) < self.flip_probability:
            sample = {part: flip_views(sample[part]) for part in ('context', 'target')}
        sample['scene'] = key
        return sample

    def _load(self, key: str, frames: list[int], intrinsics: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """Images ``[F, 3, H, W]``, intrinsics ``[F, 3, 3]`` and depths ``[F, H, W]`` (or None) of ``frames``,
        resized and cropped to ``image_shape``."""
        images = self.source.images(key, frames)
        depths = self.source.depths(key, frames)
        if self.image_shape is None:
            shapes = {tuple(image.shape[-2:]) for image in images}
            if len(shapes) != 1:
                raise InputError(f"scene '{key}'", f'frames {frames} have different sizes {sorted(shapes)}; '
                                                   'set image_shape to resize them to one size')
            return torch.stack(images), intrinsics[frames], None if depths is None else torch.stack(depths)
        out_images, out_intrinsics, out_depths = [], [], []
        for i, frame in enumerate(frames):
            image, frame_intrinsics, depth = resize_and_center_crop(
                images[i][None], intrinsics[frame][None], self.image_shape, None if depths is None else depths[i][None])
            out_images.append(image[0])
            out_intrinsics.append(frame_intrinsics[0])
            if depth is not None:
                out_depths.append(depth[0])
        return torch.stack(out_images), torch.stack(out_intrinsics), torch.stack(out_depths) if out_depths else None

    def _check_cameras(self, key: str, frames: list[int], extrinsics: Tensor, intrinsics: Tensor) -> None:
        def name(index: tuple[int, ...]) -> str:
            return self.source.describe(key, frames[index[0]]) if index else f"scene '{key}'"

        check_extrinsics(extrinsics[frames], name)
        check_intrinsics(intrinsics[frames], name)

    def _check_baseline(self, key: str, context: Tensor, extrinsics: Tensor) -> None:
        if self.min_baseline is None:
            return
        first, second = context.tolist()
        baseline = float(torch.linalg.vector_norm(extrinsics[first, :3, 3] - extrinsics[second, :3, 3]))
        if baseline <= self.min_baseline:
            raise InputError(f"scene '{key}'", f'context frames {first} and {second} have camera centres '
                                               f'{baseline:.3g} apart (at most min_baseline={self.min_baseline}); a '
                                               'reconstructor needs two distinct viewpoints (set min_baseline=None to '
                                               'allow it)')
