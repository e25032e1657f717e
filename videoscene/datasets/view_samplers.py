"""View samplers: which frames of a scene become the context pair and which the targets.

A view sampler decides the scenes a dataset serves (``scenes``) and, per item, the frame indices
(``sample``). Two are provided:

* ``EvaluationViewSampler``: fixed context pairs and targets read from an evaluation index JSON
  ``{scene: {"context": [a, b], "target": [...]} | null}`` (pixelSplat's format; null = skip);
* ``BoundedViewSampler``: a random context pair whose gap lies in ``[min_gap, max_gap]`` frames and
  ``num_targets`` frames strictly between them. Its randomness comes from torch's global generator,
  which the training engine seeds per iteration (``IterationSeedHook``) in the main process and per
  worker in DataLoader workers, so runs, and resumed runs, are reproducible while every visit of
  a scene draws new views.

Build one from a config dict with :func:`build_view_sampler` (``type`` is a key of ``VIEW_SAMPLERS``).
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = ['ViewSampler', 'EvaluationViewSampler', 'BoundedViewSampler', 'VIEW_SAMPLERS',
           'build_view_sampler', 'evenly_spaced_between']


def evenly_spaced_between(first: int, last: int, count: int) -> list[int]:
    """``count`` distinct frame indices strictly between ``first`` and ``last`` at (near-)equal intervals."""
    if last - first < count + 1:
        raise ValueError(f'cannot place {count} frames strictly between {first} and {last}: '
                         f'the gap must be at least {count + 1} frames')
    return [first + round((last - first) * k / (count + 1)) for k in range(1, count + 1)]


class ViewSampler(ABC):
    """Chooses context and target frames of a scene."""

    @abstractmethod
    def scenes(self, available: Sequence[str]) -> list[str]:
        """The scenes to serve, in order, among the ``available`` ones."""

    @abstractmethod
    def sample(self, scene: str, num_frames: int, index: int) -> tuple[Tensor, Tensor]:
        """Context ``[2]`` and target ``[N]`` frame indices (int64) of ``scene`` (``num_frames`` long)
        for dataset item ``index``."""


class EvaluationViewSampler(ViewSampler):
    """Context pairs and targets from an evaluation index JSON (see the module docstring)."""

    def __init__(self, index_path: str | Path) -> None:
        self.index_path = Path(index_path).expanduser()
        if not self.index_path.is_file():
            raise FileNotFoundError(f'evaluation index {self.index_path} does not exist')
        with self.index_path.open() as file:
            raw = json.load(file)
        self.entries = {key: entry for key, entry in raw.items() if entry is not None}

    def scenes(self, available: Sequence[str]) -> list[str]:
        present = set(available)
        missing = [key for key in self.entries if key not in present]
        if missing:
            raise KeyError(f'{len(missing)} scenes of the evaluation index {self.index_path} are not in the '
                           f'dataset, e.g. {missing[:3]}')
        return list(self.entries)

    def sample(self, scene: str, num_frames: int, index: int) -> tuple[Tensor, Tensor]:
        entry = self.entries[scene]
        context, target = entry['context'], entry['target']
        if len(context) != 2 or not target or not all(0 <= i < num_frames for i in [*context, *target]):
            raise ValueError(f"evaluation index entry of '{scene}' ({entry}) needs a context pair and targets "
                             f'within its {num_frames} frames')
        return torch.tensor(context, dtype=torch.long), torch.tensor(target, dtype=torch.long)


class BoundedViewSampler(ViewSampler):
    """Random context pairs ``(a, a + gap)``, ``min_gap <= gap <= max_gap``, and ``num_targets``
    targets strictly between them.

    Args:
        num_targets: targets per item.
        min_gap, max_gap: bounds of the context gap in frames (``max_gap`` is capped by the
            scene length); ``min_gap`` must leave room for the targets: ``min_gap >= num_targets + 1``.
        target_spacing: ``'uniform'``: targets at (near-)equal intervals, in order (a video
            between the context frames); ``'random'``: distinct random frames, sorted.
        seed: mixed with a draw from torch's global generator and the item index into the numpy
            generator of each item (see the module docstring).
    """

    def __init__(self, num_targets: int, min_gap: int, max_gap: int, target_spacing: str = 'uniform',
                 seed: int = 0) -> None:
        if num_targets < 1 or min_gap < num_targets + 1 or max_gap < min_gap:
            raise ValueError(f'need num_targets >= 1, min_gap >= num_targets + 1 and max_gap >= min_gap; '
                             f'got num_targets={num_targets}, min_gap={min_gap}, max_gap={max_gap}')
        if target_spacing not in ('uniform', 'random'):
            raise ValueError(f"target_spacing must be 'uniform' or 'random', got '{target_spacing}'")
        self.num_targets, self.min_gap, self.max_gap = num_targets, min_gap, max_gap
        self.target_spacing, self.seed = target_spacing, seed

    def scenes(self, available: Sequence[str]) -> list[str]:
        return list(available)

    def sample(self, scene: str, num_frames: int, index: int) -> tuple[Tensor, Tensor]:
        max_gap = min(self.max_gap, num_frames - 1)
        if max_gap < self.min_gap:
            raise ValueError(f"scene '{scene}' has {num_frames} frames, too few for a context gap of at least "
                             f'{self.min_gap} frames')
        rng = np.random.default_rng([self.seed, index, int(torch.randint(2 ** 62, ()))])
        gap = int(rng.integers(self.min_gap, max_gap + 1))
        first = int(rng.integers(0, num_frames - gap))
        last = first + gap
        if self.target_spacing == 'uniform':
            target = evenly_spaced_between(first, last, self.num_targets)
        else:
            target = np.sort(rng.choice(np.arange(first + 1, last), size=self.num_targets, replace=False)).tolist()
        return torch.tensor([first, last]), torch.tensor(target, dtype=torch.long)


VIEW_SAMPLERS: dict[str, type[ViewSampler]] = {
    'evaluation': EvaluationViewSampler,
    'bounded': BoundedViewSampler,
}


def build_view_sampler(config: dict | ViewSampler) -> ViewSampler:
    """A view sampler from ``dict(type=<key of VIEW_SAMPLERS>, **arguments)`` (instances pass through)."""
    if isinstance(config, ViewSampler):
        return config
    config = dict(config)
    kind = config.pop('type', None)
    if kind not in VIEW_SAMPLERS:
        raise KeyError(f"view sampler type '{kind}' is unknown; valid types: {', '.join(VIEW_SAMPLERS)}")
    return VIEW_SAMPLERS[kind](**config)
