"""In-memory pools of scene clips for CPU toy runs: decoded once, renders cached beside them.

A training step on a 16 x 16 toy takes a tenth of a second, less than reading and decoding the
JPEG frames of a batch from RE10K chunks, and far less than rendering the frozen reconstruction of
the batch.  A pool draws a fixed set of clips from a dataset once (its view sampler, seeded) and
stores them as stacked tensors; :class:`ClipPool` serves them as ordinary scene samples
(``{'context': {...}, 'target': {...}, 'scene': str}``), and :func:`add_renders` stores the
renders of a frozen reconstructor at every view as ``context['render']`` /
``target['render']`` ``[V, 3, H, W]``, which leap-flow distillation takes instead of rendering.
"""
from __future__ import annotations

from pathlib import Path

import torch
from mmengine.dataset import default_collate
from torch import Tensor
from torch.utils.data import Dataset

from videoscene.errors import InputError
from videoscene.models.views import scene_views
from videoscene.registry import DATASETS

__all__ = ['ClipPool', 'draw_clips', 'add_renders', 'save_pool', 'load_pool']

PARTS = ('context', 'target')


def draw_clips(dataset: Dataset, clips_per_scene: int, seed: int) -> dict:
    """``clips_per_scene`` samples of every scene of ``dataset``, collated: ``{'context': {key:
    [N, V, ...]}, 'target': {...}, 'scene': [N]}`` with ``N = len(dataset) * clips_per_scene``.
    The view sampler draws from torch's global generator, seeded here with ``seed``."""
    torch.manual_seed(seed)
    samples = [dataset[scene] for _ in range(clips_per_scene) for scene in range(len(dataset))]
    pool = default_collate(samples)
    return {'context': dict(pool['context']), 'target': dict(pool['target']),
            'scene': list(pool['scene'])}


@torch.no_grad()
def add_renders(pool: dict, render, batch_size: int) -> dict:
    """``pool`` with ``render`` in both parts: ``render(context, views)`` (e.g.
    ``LeapFlowDistillation.render``) gives ``[B, F, 3, H, W]`` for the frame-ordered views of a
    batch; the first and last frames go to the context pair, the frames between to the targets
    (the pool's targets must lie strictly between its context frames)."""
    context, target = pool['context'], pool['target']
    if not (target['index'] > context['index'].min(1, keepdim=True).values).all() or \
            not (target['index'] < context['index'].max(1, keepdim=True).values).all() or \
            not (context['index'][:, 0] < context['index'][:, 1]).all():
        raise ValueError('add_renders needs context pairs in frame order and every target strictly '
                         'between them')
    renders = []
    for start in range(0, len(pool['scene']), batch_size):
        part = {name: {k: v[start:start + batch_size] for k, v in pool[name].items()}
                for name in PARTS}
        renders.append(render(part['context'], scene_views(part['context'], part['target'])))
    render = torch.cat(renders)
    return {'context': dict(context, render=render[:, [0, -1]]),
            'target': dict(target, render=render[:, 1:-1]), 'scene': pool['scene']}


def save_pool(pool: dict, path: str | Path) -> Path:
    """Write ``pool`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix('.partial')
    torch.save(pool, partial)
    partial.rename(path)
    return path


def load_pool(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise InputError(path, 'clip pool not found (benchmarks/clip_pool.py save_pool writes one)')
    pool = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(pool, dict) or set(pool) != {*PARTS, 'scene'}:
        raise InputError(path, f"expected a clip pool {{'context', 'target', 'scene'}}, got "
                         f'{sorted(pool) if isinstance(pool, dict) else type(pool).__name__}')
    return pool


@DATASETS.register_module()
class ClipPool(Dataset):
    """The clips of a pool file (:func:`save_pool`) as scene samples, one per clip."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.pool = load_pool(path)

    def __len__(self) -> int:
        return len(self.pool['scene'])

    def __getitem__(self, index: int) -> dict:
        sample: dict[str, dict[str, Tensor] | str] = {
            name: {key: value[index] for key, value in self.pool[name].items()} for name in PARTS}
        sample['scene'] = self.pool['scene'][index]
        return sample
