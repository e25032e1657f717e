from .ddim import DDIMScheduler
from .euler import EulerScheduler

__all__ = ['DDIMScheduler', 'EulerScheduler']
