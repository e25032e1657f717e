"""Generating synthetic scene datasets in the RE10K chunk format, and caching them.

Scene ``i`` of a spec is drawn from ``numpy.random.default_rng([seed, crc32(stage), i])``, so it
depends on the seed, the stage and its own index only (not on how many scenes are generated),
and train and test scenes differ.
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from mmengine.logging import print_log
from torch import Tensor

from videoscene.errors import InputError
from videoscene.geometry.cameras import intrinsics_from_fov
from ..chunks import encode_example, new_partial_dir, write_dataset
from .scene import SyntheticScene, sample_scene
from .trajectory import Trajectory

__all__ = ['GENERATOR_VERSION', 'SyntheticSpec', 'SceneRecording', 'draw_scene', 'render_scene', 'synthetic_examples',
           'write_synthetic_dataset', 'default_cache_dir', 'cached_synthetic_dataset']

GENERATOR_VERSION = 2  # bump when generated content changes, so caches regenerate


@dataclass(frozen=True)
class SyntheticSpec:
    """Everything that determines a generated dataset.

    Attributes:
        num_scenes: scenes to generate.
        frames: frames per scene.
        height, width: image size in pixels (at least 16 x 16).
        fov_deg: horizontal field of view in degrees (square pixels, centred principal point).
        seed: base seed.
        stage: stage folder name; also part of each scene's seed.
        mean_step: mean camera displacement per frame in scene units (metres).
        speed_variation: relative amplitude of the smooth speed profile, in [0, 1).
        num_eval_targets: targets per scene in ``evaluation_index_{stage}.json`` (context pair =
            first and last frame); needs ``frames >= num_eval_targets + 2``. None (default) means
            49 (the VideoScene benchmark's count) or ``frames - 2`` for shorter scenes.
        jpeg_quality: JPEG quality of the stored frames.
        scenes_per_chunk: scenes per ``.torch`` chunk file.
    """

    num_scenes: int = 8
    frames: int = 120
    height: int = 256
    width: int = 256
    fov_deg: float = 60.0
    seed: int = 0
    stage: str = 'train'
    mean_step: float = 0.015
    speed_variation: float = 0.6
    num_eval_targets: int | None = None
    jpeg_quality: int = 95
    scenes_per_chunk: int = 16

    def __post_init__(self) -> None:
        if self.num_scenes < 1 or self.frames < 2:
            raise InputError('SyntheticSpec', f'need num_scenes >= 1 and frames >= 2, got {self.num_scenes} and '
                                              f'{self.frames}')
        if self.height < 16 or self.width < 16:
            raise InputError('SyntheticSpec', f'image size must be at least 16 x 16, got {self.height} x {self.width}')
        if self.frames < self.eval_targets + 2:
            raise InputError('SyntheticSpec', f'frames ({self.frames}) must be at least num_eval_targets + 2 '
                             f'({self.eval_targets + 2}) to hold the evaluation targets')

    @property
    def eval_targets(self) -> int:
        """Targets per scene in the evaluation index (``num_eval_targets`` resolved)."""
        return min(49, self.frames - 2) if self.num_eval_targets is None else self.num_eval_targets

    def digest(self) -> str:
        """A short hash of the spec and the generator version."""
        content = json.dumps({**asdict(self), 'generator_version': GENERATOR_VERSION}, sort_keys=True)
        return hashlib.sha256(content.encode()).hexdigest()[:16]

    def key(self, index: int) -> str:
        return f'synthetic_{self.stage}_s{self.seed}_{index:06d}'


@dataclass
class SceneRecording:
    """A rendered walk: ``images [F, 3, H, W]`` in [0, 1], z-``depths [F, H, W]``,
    ``extrinsics [F, 4, 4]`` (camera-to-world, OpenCV), normalised ``intrinsics [F, 3, 3]``."""

    key: str
    images: Tensor
    depths: Tensor
    extrinsics: Tensor
    intrinsics: Tensor


def draw_scene(spec: SyntheticSpec, index: int) -> tuple[SyntheticScene, Trajectory]:
    """Scene ``index`` of ``spec`` and its camera walk (geometry only, nothing rendered)."""
    rng = np.random.default_rng([spec.seed, zlib.crc32(spec.stage.encode()), index])
    return sample_scene(rng, spec.frames, mean_step=spec.mean_step, speed_variation=spec.speed_variation)


def render_scene(spec: SyntheticSpec, index: int) -> SceneRecording:
    """Draw scene ``index`` of ``spec`` and ray-cast its walk (no JPEG: exact colours and depths)."""
    scene, trajectory = draw_scene(spec, index)
    intrinsics = intrinsics_from_fov(spec.fov_deg, spec.height, spec.width).expand(spec.frames, 3, 3).clone()
    images, depths = scene.render(trajectory.extrinsics, intrinsics, spec.height, spec.width)
    return SceneRecording(spec.key(index), images, depths, trajectory.extrinsics, intrinsics)


def synthetic_examples(spec: SyntheticSpec) -> Iterator[dict]:
    """Chunk-format scene dicts (with ``depths``) of every scene, generated lazily."""
    for index in range(spec.num_scenes):
        recording = render_scene(spec, index)
        yield encode_example(recording.key, recording.images, recording.extrinsics, recording.intrinsics,
                             depths=recording.depths, jpeg_quality=spec.jpeg_quality,
                             url=f'synthetic://videoscene/v{GENERATOR_VERSION}/{spec.stage}/seed{spec.seed}/{index}')


def write_synthetic_dataset(root: str | Path, spec: SyntheticSpec, overwrite: bool = False) -> Path:
    """Generate ``spec`` into ``{root}/{stage}`` (atomically, see ``chunks.write_dataset``), with
    ``{root}/evaluation_index_{stage}.json`` and the spec as ``{root}/synthetic_spec_{stage}.json``.
    Returns the stage folder."""
    root = Path(root).expanduser()
    stage = write_dataset(root, spec.stage, synthetic_examples(spec), scenes_per_chunk=spec.scenes_per_chunk,
                          num_eval_targets=spec.eval_targets, overwrite=overwrite, total=spec.num_scenes)
    with (root / f'synthetic_spec_{spec.stage}.json').open('w') as file:
        json.dump({**asdict(spec), 'generator_version': GENERATOR_VERSION}, file, indent=1)
    return stage


def default_cache_dir() -> Path:
    """``$VIDEOSCENE_CACHE`` if set, else ``~/.cache/videoscene``."""
    return Path(os.environ.get('VIDEOSCENE_CACHE') or '~/.cache/videoscene').expanduser()


def cached_synthetic_dataset(spec: SyntheticSpec, cache_dir: str | Path | None = None) -> Path:
    """The root of ``spec``'s dataset under ``{cache_dir}/synthetic/{spec.digest()}``, generated on first use.

    Generation writes into a ``{digest}.partial-*`` folder renamed into place when complete, so
    an interrupted run is never mistaken for data (its leftover folder is ignored). When several
    processes generate at once, the first rename wins and the others discard their copy.
    """
    base = (default_cache_dir() if cache_dir is None else Path(cache_dir).expanduser()) / 'synthetic'
    final = base / spec.digest()
    if final.is_dir():
        return final
    base.mkdir(parents=True, exist_ok=True)
    partial = new_partial_dir(base, f'{final.name}.partial-')
    print_log(f'Generating {spec.num_scenes} synthetic scenes x {spec.frames} frames at {spec.height}x{spec.width} '
              f'(stage {spec.stage}, seed {spec.seed}) into {final}', logger='current')
    try:
        write_synthetic_dataset(partial, spec)
        try:
            os.rename(partial, final)
        except OSError:
            if not final.is_dir():
                raise
            shutil.rmtree(partial)  # another process finished first
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final
