"""View samplers: which frames of a scene become the context pair and which the targets.

A view sampler decides the scenes a dataset serves (``scenes``) and, per item, the frame indices
(``sample``). They are entries of ``videoscene.registry.VIEW_SAMPLERS``, built from a config dict
with ``VIEW_SAMPLERS.build(dict(type=..., **arguments))``, so a plugin can register its own:

* ``'evaluation'`` (:class:`EvaluationViewSampler`): fixed context pairs and targets read from an
  evaluation index JSON ``{scene: {"context": [a, b], "target": [...]} | null}`` (pixelSplat's
  format; null = skip);
* ``'video'`` (:class:`VideoViewSampler`): the context pairs of an evaluation index and
  ``num_frames`` targets at equal intervals from ``a`` to ``b``, both included (VideoScene's
  video index: 49 frames, e.g. ``a, a + 2, ..., a + 96``);
* ``'bounded'`` (:class:`BoundedViewSampler`): a random context pair whose gap lies in
  ``[min_gap, max_gap]`` frames and ``num_targets`` frames strictly between them. Its randomness
  comes from torch's global generator, which the training engine seeds per iteration
  (``IterationSeedHook``) in the main process and per worker in DataLoader workers, so runs, and
  resumed runs, are reproducible while every visit of a scene draws new views;
* ``'fixed'`` (:class:`FixedViewSampler`): the same context and target frames for every scene.

Samplers that take an ``index_path`` get the dataset's own evaluation index when their config
leaves it out and the dataset has one (see ``base.SceneDataset``).
"""
from __future__ import annotations

import json
from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from videoscene.errors import InputError
from videoscene.registry import VIEW_SAMPLERS

__all__ = ['ViewSampler', 'EvaluationViewSampler', 'VideoViewSampler', 'BoundedViewSampler', 'FixedViewSampler',
           'evenly_spaced_between', 'evenly_spaced_from_to', 'load_evaluation_index']


def evenly_spaced_between(first: int, last: int, count: int) -> list[int]:
    """``count`` distinct frame indices strictly between ``first`` and ``last`` at (near-)equal intervals."""
    if last - first < count + 1:
        raise ValueError(f'cannot place {count} frames strictly between {first} and {last}: '
                         f'the gap must be at least {count + 1} frames')
    return [first + round((last - first) * k / (count + 1)) for k in range(1, count + 1)]


def evenly_spaced_from_to(first: int, last: int, count: int) -> list[int]:
    """``count`` distinct frame indices from ``first`` to ``last`` (both included, ``count >= 2``) at
    (near-)equal intervals: exact steps of ``(last - first) / (count - 1)`` when that is whole."""
    if count < 2 or last - first < count - 1:
        raise ValueError(f'cannot place {count} distinct frames from {first} to {last}: need count >= 2 and '
                         f'a gap of at least {count - 1} frames')
    return [first + round((last - first) * k / (count - 1)) for k in range(count)]


def _frame_list(value: object) -> bool:
    """Whether ``value`` is a list of non-negative integer frame numbers (bools excluded)."""
    return isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in value)


def load_evaluation_index(path: str | Path) -> dict[str, dict[str, list[int]]]:
    """The entries of an evaluation index JSON (null entries dropped), each checked for a context
    pair and targets that are lists of non-negative integer frame numbers.

    Raises:
        FileNotFoundError: no such file.
        InputError: invalid JSON or a malformed entry; names the file and the scene.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'evaluation index {path} does not exist')
    source = f'evaluation index {path}'
    try:
        raw = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(source, f'not valid JSON ({error})') from None
    if not isinstance(raw, dict):
        raise InputError(source, f'must hold a JSON object {{scene: entry}}, got {type(raw).__name__}')
    entries = {key: entry for key, entry in raw.items() if entry is not None}
    for key, entry in entries.items():
        if not isinstance(entry, dict) or not isinstance(entry.get('context'), list) or len(entry['context']) != 2:
            raise InputError(source, f"entry of '{key}' must be {{\"context\": [a, b], \"target\": [...]}}, got "
                                     f'{entry!r:.200}')
        for part in ('context', 'target'):
            if part in entry and not _frame_list(entry[part]):
                bad = entry[part] if not isinstance(entry[part], list) else next(
                    v for v in entry[part] if not _frame_list([v]))
                raise InputError(source, f"entry of '{key}': frames must be non-negative integers, got {bad!r} "
                                         f'in its {part} {entry[part]!r:.200}')
    return entries


class ViewSampler(ABC):
    """Chooses context and target frames of a scene."""

    @abstractmethod
    def scenes(self, available: Sequence[str]) -> list[str]:
        """The scenes to serve, in order, among the ``available`` ones."""

    @abstractmethod
    def sample(self, scene: str, num_frames: int, index: int) -> tuple[Tensor, Tensor]:
        """Context ``[2]`` and target ``[N]`` frame indices (int64) of ``scene`` (``num_frames`` long)
        for dataset item ``index``."""


def _indexed_scenes(entries: dict, available: Sequence[str], index_path: Path) -> list[str]:
    present = set(available)
    missing = [key for key in entries if key not in present]
    if missing:
        raise InputError(f'evaluation index {index_path}', f'{len(missing)} of its scenes are not in the dataset, '
                                                           f'e.g. {missing[:3]}')
    return list(entries)


def _check_frames(scene: str, frames: Sequence[int], num_frames: int, source: str) -> None:
    """Frames of ``scene`` must lie in ``[0, num_frames)``; errors name ``source`` (where they came from)."""
    if not all(0 <= i < num_frames for i in frames):
        raise InputError(source, f"scene '{scene}' has {num_frames} frames; frames {list(frames)} reach outside them")


@VIEW_SAMPLERS.register_module(name='evaluation')
class EvaluationViewSampler(ViewSampler):
    """Context pairs and targets from an evaluation index JSON (see the module docstring)."""

    def __init__(self, index_path: str | Path) -> None:
        self.index_path = Path(index_path).expanduser()
        self.entries = load_evaluation_index(self.index_path)

    def scenes(self, available: Sequence[str]) -> list[str]:
        return _indexed_scenes(self.entries, available, self.index_path)

    def sample(self, scene: str, num_frames: int, index: int) -> tuple[Tensor, Tensor]:
        entry = self.entries[scene]
        context, target = entry['context'], entry.get('target')
        if not target:
            raise InputError(f'evaluation index {self.index_path}', f"entry of '{scene}' has no targets: {entry}")
        _check_frames(scene, [*context, *target], num_frames, f'evaluation index {self.index_path}')
        return torch.tensor(context, dtype=torch.long), torch.tensor(target, dtype=torch.long)


@VIEW_SAMPLERS.register_module(name='video')
class VideoViewSampler(ViewSampler):
    """The context pairs ``[a, b]`` of an evaluation index and ``num_frames`` targets at equal
    intervals from ``a`` to ``b`` (see :func:`evenly_spaced_from_to`).

    Args:
        index_path: evaluation index JSON; only its context pairs are used.
        num_frames: frames of the video, 49 for CogVideoX (``b - a`` must be at least
            ``num_frames - 1``; with ``b - a = 2 (num_frames - 1)`` every second frame is taken).
        include_context: True (VideoScene's layout): the targets start at ``a`` and end at ``b``;
            False: ``num_frames`` targets strictly between them (``b - a >= num_frames + 1``).
    """

    def __init__(self, index_path: str | Path, num_frames: int = 49, include_context: bool = True) -> None:
        if num_frames < (2 if include_context else 1):
            raise InputError('num_frames', f'must be at least {2 if include_context else 1} '
                                           f'(include_context={include_context}), got {num_frames}')
        self.index_path = Path(index_path).expanduser()
        self.entries = load_evaluation_index(self.index_path)
        self.num_frames, self.include_context = num_frames, include_context

    def scenes(self, available: Sequence[str]) -> list[str]:
        return _indexed_scenes(self.entries, available, self.index_path)

    def sample(self, scene: str, num_frames: int, index: int) -> tuple[Tensor, Tensor]:
        first, last = self.entries[scene]['context']
        _check_frames(scene, [first, last], num_frames, f'evaluation index {self.index_path} (context pair)')
        try:
            if self.include_context:
                target = evenly_spaced_from_to(first, last, self.num_frames)
            else:
                target = evenly_spaced_between(first, last, self.num_frames)
        except ValueError as error:
            raise InputError(f'evaluation index {self.index_path}', f"scene '{scene}': {error}") from None
        return torch.tensor([first, last]), torch.tensor(target, dtype=torch.long)


@VIEW_SAMPLERS.register_module(name='bounded')
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
            raise InputError('num_targets/min_gap/max_gap', f'need num_targets >= 1, min_gap >= num_targets + 1 and '
                                                            f'max_gap >= min_gap; got num_targets={num_targets}, '
                                                            f'min_gap={min_gap}, max_gap={max_gap}')
        if target_spacing not in ('uniform', 'random'):
            raise InputError('target_spacing', f"must be 'uniform' or 'random', got '{target_spacing}'")
        self.num_targets, self.min_gap, self.max_gap = num_targets, min_gap, max_gap
        self.target_spacing, self.seed = target_spacing, seed

    def scenes(self, available: Sequence[str]) -> list[str]:
        return list(available)

    def sample(self, scene: str, num_frames: int, index: int) -> tuple[Tensor, Tensor]:
        max_gap = min(self.max_gap, num_frames - 1)
        if max_gap < self.min_gap:
            raise InputError(f"scene '{scene}'", f'has {num_frames} frames, too few for a context gap of at least '
                                                 f'{self.min_gap} frames (bounded view sampler)')
        rng = np.random.default_rng([self.seed, index, int(torch.randint(2 ** 62, ()))])
        gap = int(rng.integers(self.min_gap, max_gap + 1))
        first = int(rng.integers(0, num_frames - gap))
        last = first + gap
        if self.target_spacing == 'uniform':
            target = evenly_spaced_between(first, last, self.num_targets)
        else:
            target = np.sort(rng.choice(np.arange(first + 1, last), size=self.num_targets, replace=False)).tolist()
        return torch.tensor([first, last]), torch.tensor(target, dtype=torch.long)


@VIEW_SAMPLERS.register_module(name='fixed')
class FixedViewSampler(ViewSampler):
    """The same ``context`` pair and ``target`` frames for every scene (e.g. an image pair: context
    ``[0, 1]`` and targets ``[0, 1]``)."""

    def __init__(self, context: Sequence[int], target: Sequence[int]) -> None:
        if len(context) != 2 or len(target) < 1 or not _frame_list([*context, *target]):
            raise InputError('fixed view sampler', f'needs a context pair and at least one target, all non-negative '
                                                   f'integer frames, got context={list(context)}, target={list(target)}')
        self.context, self.target = [int(i) for i in context], [int(i) for i in target]

    def scenes(self, available: Sequence[str]) -> list[str]:
        return list(available)

    def sample(self, scene: str, num_frames: int, index: int) -> tuple[Tensor, Tensor]:
        _check_frames(scene, [*self.context, *self.target], num_frames, 'fixed view sampler')
        return torch.tensor(self.context), torch.tensor(self.target)
