from .checkpoint import find_resume_checkpoint, trusted_local_checkpoints
from .hooks import AtomicCheckpointHook, IterationSeedHook
from .runner import VideoSceneRunner

__all__ = ['AtomicCheckpointHook', 'IterationSeedHook', 'VideoSceneRunner',
           'find_resume_checkpoint', 'trusted_local_checkpoints']
