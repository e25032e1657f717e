from .base import Decision, GridPolicy, TimestepPolicy
from .ddpnet import DDPNet
from .fixed import FixedTimestep
from .random import RandomTimestep

__all__ = ['DDPNet', 'Decision', 'FixedTimestep', 'GridPolicy', 'RandomTimestep', 'TimestepPolicy']
