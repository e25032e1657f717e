from .base import TimestepPolicy
from .fixed import FixedTimestep
from .random import RandomTimestep

__all__ = ['TimestepPolicy', 'FixedTimestep', 'RandomTimestep']
