"""Trainable models the Runner builds (``MODELS``): one per training stage."""
from .reconstruction import GaussianReconstruction
from .teacher import InterpolationTeacher

__all__ = ['GaussianReconstruction', 'InterpolationTeacher']
