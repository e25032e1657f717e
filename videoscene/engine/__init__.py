from .checkpoint import find_resume_checkpoint, trusted_local_checkpoints
from .hooks import AtomicCheckpointHook, IterationSeedHook
from .runner import VideoSceneFlexibleRunner, VideoSceneRunner
from .strategies import DeepSpeedStrategy, FSDP2Strategy

__all__ = ['AtomicCheckpointHook', 'DeepSpeedStrategy', 'FSDP2Strategy', 'IterationSeedHook',
           'VideoSceneFlexibleRunner', 'VideoSceneRunner', 'find_resume_checkpoint',
           'trusted_local_checkpoints']
