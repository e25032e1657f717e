"""Map-style datasets over RealEstate10K / ACID chunks (see ``chunks`` for the format)."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from torch import Tensor

from videoscene.registry import DATASETS
from .base import SceneDataset, SceneSource
from .chunks import CorruptChunkError, check_scene, decode_cameras, decode_depth, decode_image, load_chunk, load_index
from .view_samplers import ViewSampler

__all__ = ['ChunkSource', 'RE10KDataset', 'ACIDDataset']


class ChunkSource(SceneSource):
    """The scenes of ``{root}/{stage}`` in the chunk format, loaded lazily through ``index.json``.

    The chunk in use stays cached, so reading scenes in index order loads each chunk once; the
    cache is dropped when the source is pickled (e.g. into DataLoader workers). A chunk that does
    not load, a scene its chunk lacks or a scene dict without cameras and images raises
    :class:`~videoscene.datasets.chunks.CorruptChunkError` (the dataset skips it); a chunk that
    failed once is not read again.
    """

    def __init__(self, root: str | Path, stage: str) -> None:
        self.root = Path(root).expanduser()
        self.stage = stage
        self.chunk_paths = load_index(self.root, stage)
        self._chunk_path: Path | None = None
        self._chunk: dict[str, dict] = {}
        self._bad_chunks: dict[Path, CorruptChunkError] = {}

    def __getstate__(self) -> dict:
        return {**self.__dict__, '_chunk_path': None, '_chunk': {}}

    @property
    def keys(self) -> list[str]:
        return list(self.chunk_paths)

    def load_scene(self, key: str) -> dict:
        """The raw scene dict of ``key`` (see ``chunks``), from the cached chunk when possible."""
        path = self.chunk_paths[key]
        if path in self._bad_chunks:
            raise self._bad_chunks[path]
        if path != self._chunk_path:
            if not path.is_file():
                raise FileNotFoundError(f"chunk {path} of scene '{key}' (listed in "
                                        f'{self.root / self.stage / "index.json"}) does not exist')
            try:
                self._chunk = {example['key']: example for example in load_chunk(path)}
            except CorruptChunkError as error:
                self._bad_chunks[path] = error
                raise
            self._chunk_path = path
        if key not in self._chunk:
            raise CorruptChunkError(f"scene '{key}' (listed in {self.root / self.stage / 'index.json'})",
                                    f'missing from its chunk {path}', path)
        scene = self._chunk[key]
        check_scene(scene, f"scene '{key}' in {path}", path)
        return scene

    def cameras(self, key: str) -> tuple[Tensor, Tensor]:
        return decode_cameras(self.load_scene(key)['cameras'])

    def images(self, key: str, frames: Sequence[int]) -> list[Tensor]:
        scene = self.load_scene(key)
        return [decode_image(scene['images'][frame], self.describe(key, frame), self.chunk_paths[key])
                for frame in frames]

    def depths(self, key: str, frames: Sequence[int]) -> list[Tensor] | None:
        scene = self.load_scene(key)
        if 'depths' not in scene:
            return None
        return [decode_depth(scene['depths'][frame], f'depth of {self.describe(key, frame)}', self.chunk_paths[key])
                for frame in frames]

    def describe(self, key: str, frame: int) -> str:
        return f"frame {frame} of scene '{key}' in {self.chunk_paths[key]}"

    def encoded_images(self, key: str, jpeg_quality: int = 95) -> list[Tensor]:
        return list(self.load_scene(key)['images'])

    def timestamps(self, key: str) -> Tensor | None:
        return self.load_scene(key)['timestamps']

    def url(self, key: str) -> str:
        return self.load_scene(key)['url']


@DATASETS.register_module()
class RE10KDataset(SceneDataset):
    """Scenes of a RE10K-format root as sample dicts (contract and bad input: ``base``).

    Args:
        root: dataset root (holding ``{stage}/`` and ``evaluation_index_{stage}.json``).
        stage: sub-folder to read, e.g. ``'train'`` or ``'test'``.
        view_sampler: a :class:`ViewSampler` or its config dict (``type`` in
            ``videoscene.registry.VIEW_SAMPLERS``); samplers that take an ``index_path`` default
            to ``{root}/evaluation_index_{stage}.json``; None = ``dict(type='evaluation')``.
        image_shape, near, far, flip_probability, min_baseline: see :class:`SceneDataset`.
    """

    def __init__(self, root: str | Path, stage: str = 'test', view_sampler: dict | ViewSampler | None = None,
                 image_shape: tuple[int, int] | None = None, near: float = 1.0, far: float = 100.0,
                 flip_probability: float = 0.0, min_baseline: float | None = 0.0) -> None:
        self.root = Path(root).expanduser()
        self.stage = stage
        view_sampler = dict(type='evaluation') if view_sampler is None else view_sampler
        super().__init__(ChunkSource(self.root, stage), view_sampler,
                         image_shape=image_shape, near=near, far=far, flip_probability=flip_probability,
                         min_baseline=min_baseline, default_index=self.root / f'evaluation_index_{stage}.json')

    @property
    def metainfo(self) -> dict:
        return {**super().metainfo, 'root': str(self.root), 'stage': self.stage}


@DATASETS.register_module()
class ACIDDataset(RE10KDataset):
    """ACID (Aerial Coastline Imagery Dataset) in the same chunk format as RealEstate10K.

    pixelSplat's ACID conversion writes the chunk format unchanged (360 x 640 frames, camera rows
    with normalised intrinsics and world-to-camera matrices), and MVSplat evaluates it with the
    RealEstate10K settings (near 1, far 100); only the root differs by default. Put pixelSplat's
    ``evaluation_index_acid.json`` at ``{root}/evaluation_index_test.json`` to evaluate on its index.
    """

    def __init__(self, root: str | Path = 'data/acid', stage: str = 'test', **kwargs) -> None:
        super().__init__(root, stage, **kwargs)
