"""Datasets: scene sources in the sample-dict convention (see ``re10k.RE10KDataset``)."""
from .re10k import RE10KDataset
from .synthetic import SyntheticScenes

__all__ = ['RE10KDataset', 'SyntheticScenes']
