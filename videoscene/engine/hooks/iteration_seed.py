"""Per-iteration reseeding: every training iteration's randomness depends only on
(seed, rank, iteration), never on what ran before it."""
from __future__ import annotations

import random
from collections.abc import Iterator

import numpy as np
import torch
from mmengine.dist import get_rank
from mmengine.hooks import Hook

from videoscene.registry import HOOKS


def seed_everything(*entropy: int) -> None:
    """Seed Python's, numpy's and torch's (CPU and CUDA) global generators from ``entropy``."""
    low, high = np.random.SeedSequence(list(entropy)).generate_state(2)
    random.seed(int(low))
    np.random.seed(int(low))
    torch.manual_seed(int(high) << 31 | int(low) >> 1)


class _ReseedingIterator:
    """Wraps the train loop's batch iterator and reseeds before drawing batch ``i``."""

    def __init__(self, inner: Iterator, seed: int, rank: int) -> None:
        self.inner, self.seed, self.rank = inner, seed, rank
        self.index = 0

    def __iter__(self) -> _ReseedingIterator:
        return self

    def __next__(self):
        seed_everything(self.seed, self.rank, self.index)
        self.index += 1
        return next(self.inner)


@HOOKS.register_module()
class IterationSeedHook(Hook):
    """Makes resumed iteration-based training bit-exact and gives DDP ranks distinct noise.

    MMEngine resumes an ``IterBasedTrainLoop`` by re-drawing the batches already trained on, and
    the global generators then hold a different state than the interrupted run had: any random
    draw afterwards (view sampling in the main process, diffusion noise, timestep sampling)
    diverges.  This hook reseeds the global generators from ``(seed, rank, i)`` right before batch
    ``i`` is drawn, so everything iteration ``i`` does, from loading its batch in the main process
    to the model's draws, is the same whether or not the run was interrupted.  Data-loader
    workers keep MMEngine's own per-worker seeding, which the skip replays exactly.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        loop = runner.train_loop
        if not hasattr(loop, 'dataloader_iterator'):
            raise TypeError(f'IterationSeedHook needs an iteration-based train loop, got '
                            f'{type(loop).__name__}')
        seed = runner.seed if runner.seed is not None else 0
        loop.dataloader_iterator = _ReseedingIterator(loop.dataloader_iterator, seed, get_rank())
