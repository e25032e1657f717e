"""``SyntheticScenes``: the project's embedded default dataset, generated on first use."""
from __future__ import annotations

from pathlib import Path

from videoscene.registry import DATASETS
from ..re10k import RE10KDataset
from ..view_samplers import ViewSampler
from .generate import SyntheticSpec, cached_synthetic_dataset

__all__ = ['SyntheticScenes']


@DATASETS.register_module()
class SyntheticScenes(RE10KDataset):
    """Procedural rooms (see ``synthetic.scene``) generated into a cache in the RE10K chunk
    format on first use, then read exactly like RE10K (:class:`RE10KDataset`), ground-truth
    depth included.

    The cache folder is ``{cache_dir}/synthetic/{hash of the generation parameters}``, with
    ``cache_dir`` defaulting to ``$VIDEOSCENE_CACHE`` or ``~/.cache/videoscene``.

    Args:
        num_scenes, frames, height, width, fov_deg, seed, stage, mean_step, speed_variation,
            num_eval_targets, jpeg_quality: generation parameters (:class:`SyntheticSpec`).
        cache_dir: cache root, see above.
        view_sampler, image_shape, near, far, flip_probability, min_baseline: as in
            :class:`RE10KDataset`. The default bounds (0.5, 20) enclose every depth of the
            generated rooms (at most 10 x 10 x 3.2 units).
    """

    def __init__(self, num_scenes: int = 8, frames: int = 120, height: int = 256, width: int = 256,
                 fov_deg: float = 60.0, seed: int = 0, stage: str = 'train', mean_step: float = 0.015,
                 speed_variation: float = 0.6, num_eval_targets: int | None = None, jpeg_quality: int = 95,
                 cache_dir: str | Path | None = None, view_sampler: dict | ViewSampler | None = None,
                 image_shape: tuple[int, int] | None = None, near: float = 0.5, far: float = 20.0,
                 flip_probability: float = 0.0, min_baseline: float | None = 0.0) -> None:
        self.spec = SyntheticSpec(num_scenes=num_scenes, frames=frames, height=height, width=width,
                                  fov_deg=fov_deg, seed=seed, stage=stage, mean_step=mean_step,
                                  speed_variation=speed_variation, num_eval_targets=num_eval_targets,
                                  jpeg_quality=jpeg_quality)
        root = cached_synthetic_dataset(self.spec, cache_dir)
        super().__init__(root, stage=stage, view_sampler=view_sampler, image_shape=image_shape, near=near, far=far,
                         flip_probability=flip_probability, min_baseline=min_baseline)
