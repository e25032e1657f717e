from .checkpoint import find_resume_checkpoint, trusted_local_checkpoints
from .hooks import AtomicCheckpointHook, IterationSeedHook
from .runner import VideoSceneFlexibleRunner, VideoSceneRunner
from .strategies import FSDP2Strategy

__all__ = ['AtomicCheckpointHook', 'FSDP2Strategy', 'IterationSeedHook', 'VideoSceneFlexibleRunner',
           'VideoSceneRunner', 'find_resume_checkpoint', 'trusted_local_checkpoints']
