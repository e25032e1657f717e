"""Datasets: scene sources in the sample-dict convention (see ``base``), and the view samplers
registered in ``videoscene.registry.VIEW_SAMPLERS``."""
from . import view_samplers  # noqa: F401  (registers the view samplers)
from .base import SceneDataset, SceneSource
from .colmap import COLMAPDataset
from .image_pair import ImagePairDataset
from .re10k import ACIDDataset, RE10KDataset
from .synthetic import SyntheticScenes
from .transforms_json import TransformsJSONDataset
from .video import VideoDataset

__all__ = ['SceneDataset', 'SceneSource', 'RE10KDataset', 'ACIDDataset', 'SyntheticScenes', 'TransformsJSONDataset',
           'COLMAPDataset', 'VideoDataset', 'ImagePairDataset']
