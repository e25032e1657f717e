from .checkpoint import trusted_local_checkpoints
from .hooks import IterationSeedHook
from .runner import VideoSceneRunner

__all__ = ['IterationSeedHook', 'VideoSceneRunner', 'trusted_local_checkpoints']
