from .atomic_checkpoint import AtomicCheckpointHook
from .iteration_seed import IterationSeedHook

__all__ = ['AtomicCheckpointHook', 'IterationSeedHook']
