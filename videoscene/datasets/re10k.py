"""A map-style dataset over RealEstate10K-format chunks (see ``chunks``)."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor
from torch.utils.data import Dataset

from videoscene.registry import DATASETS
from .chunks import decode_cameras, decode_depth, decode_image, load_chunk, load_index
from .crop import resize_and_center_crop
from .view_samplers import ViewSampler, build_view_sampler

__all__ = ['RE10KDataset']


@DATASETS.register_module()
class RE10KDataset(Dataset):
    """Scenes of a RE10K-format root as sample dicts.

    Item ``i`` is ``{'context': views, 'target': views, 'scene': key}`` where ``views`` holds
    ``image`` float32 ``[V, 3, H, W]`` in [0, 1], ``extrinsics`` float32 ``[V, 4, 4]``
    (camera-to-world, OpenCV), ``intrinsics`` float32 ``[V, 3, 3]`` (normalised), ``near`` and
    ``far`` float32 ``[V]``, ``index`` int64 ``[V]`` (frame numbers), and ``depth`` float32
    ``[V, H, W]`` (z-depth) when the chunk stores ``depths``. V = 2 context views.

    Chunks are loaded lazily through ``{stage}/index.json``; the chunk in use stays cached, so
    reading scenes in index order loads each chunk once.

    Args:
        root: dataset root (holding ``{stage}/``).
        stage: sub-folder to read, e.g. ``'train'`` or ``'test'``.
        view_sampler: a :class:`ViewSampler` or its config dict (``type`` in
            ``view_samplers.VIEW_SAMPLERS``); None = the evaluation index
            ``{root}/evaluation_index_{stage}.json``.
        image_shape: output ``(height, width)``: views are resized and centre-cropped to it with
            the matching intrinsics update; None keeps the stored size.
        near, far: depth bounds given to every view, in scene units.
    """

    def __init__(self, root: str | Path, stage: str = 'test', view_sampler: dict | ViewSampler | None = None,
                 image_shape: tuple[int, int] | None = None, near: float = 1.0, far: float = 100.0) -> None:
        if not 0.0 < near < far:
            raise ValueError(f'need 0 < near < far, got near={near}, far={far}')
        self.root = Path(root).expanduser()
        self.stage = stage
        self.chunk_paths = load_index(self.root, stage)
        if view_sampler is None:
            view_sampler = dict(type='evaluation', index_path=self.root / f'evaluation_index_{stage}.json')
        self.view_sampler = build_view_sampler(view_sampler)
        self.scenes = self.view_sampler.scenes(list(self.chunk_paths))
        self.image_shape = None if image_shape is None else (int(image_shape[0]), int(image_shape[1]))
        self.near, self.far = float(near), float(far)
        self._chunk_path: Path | None = None
        self._chunk: dict[str, dict] = {}

    @property
    def metainfo(self) -> dict:
        return {'dataset_type': type(self).__name__, 'root': str(self.root), 'stage': self.stage,
                'num_scenes': len(self.scenes), 'image_shape': self.image_shape, 'near': self.near,
                'far': self.far}

    def __len__(self) -> int:
        return len(self.scenes)

    def __getstate__(self) -> dict:
        """Pickled (e.g. into DataLoader workers) without the cached chunk."""
        return {**self.__dict__, '_chunk_path': None, '_chunk': {}}

    def load_scene(self, key: str) -> dict:
        """The raw scene dict of ``key`` (see ``chunks``), from the cached chunk when possible."""
        path = self.chunk_paths[key]
        if path != self._chunk_path:
            self._chunk = {example['key']: example for example in load_chunk(path)}
            self._chunk_path = path
        if key not in self._chunk:
            raise KeyError(f"scene '{key}' is listed in {self.root / self.stage / 'index.json'} but missing from {path}")
        return self._chunk[key]

    def __getitem__(self, index: int) -> dict:
        key = self.scenes[index]
        scene = self.load_scene(key)
        extrinsics, intrinsics = decode_cameras(scene['cameras'])
        if len(scene['images']) != len(extrinsics):
            raise ValueError(f"scene '{key}' has {len(scene['images'])} images but {len(extrinsics)} cameras")
        context, target = self.view_sampler.sample(key, len(extrinsics), index)
        return {
            'context': self._views(key, scene, context, extrinsics, intrinsics),
            'target': self._views(key, scene, target, extrinsics, intrinsics),
            'scene': key,
        }

    def _views(self, key: str, scene: dict, frames: Tensor, extrinsics: Tensor,
               intrinsics: Tensor) -> dict[str, Tensor]:
        decoded = [decode_image(scene['images'][i]) for i in frames.tolist()]
        if len({image.shape for image in decoded}) != 1:
            raise ValueError(f"scene '{key}': frames {frames.tolist()} decode to different sizes "
                             f'{sorted({tuple(image.shape) for image in decoded})}')
        images = torch.stack(decoded)
        depths = None
        if 'depths' in scene:
            depths = torch.stack([decode_depth(scene['depths'][i]) for i in frames.tolist()])
        views_intrinsics = intrinsics[frames]
        if self.image_shape is not None:
            images, views_intrinsics, depths = resize_and_center_crop(images, views_intrinsics, self.image_shape, depths)
        views = {
            'image': images,
            'extrinsics': extrinsics[frames],
            'intrinsics': views_intrinsics,
            'near': torch.full((len(frames),), self.near),
            'far': torch.full((len(frames),), self.far),
            'index': frames,
        }
        if depths is not None:
            views['depth'] = depths
        return views
