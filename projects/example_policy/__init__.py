"""Example plugin: a timestep policy registered from outside ``videoscene/``."""
from .truncated_normal import TruncatedNormalTimestep

__all__ = ['TruncatedNormalTimestep']
