"""Trainable models the Runner builds (``MODELS``): one per training stage."""
from .reconstruction import GaussianReconstruction

__all__ = ['GaussianReconstruction']
