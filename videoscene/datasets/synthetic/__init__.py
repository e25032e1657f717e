"""The procedural synthetic scene dataset: exact ray-cast rooms with RE10K-like camera walks."""
from .dataset import SyntheticScenes
from .generate import (GENERATOR_VERSION, SceneRecording, SyntheticSpec, cached_synthetic_dataset, draw_scene,
                       render_scene, synthetic_examples, write_synthetic_dataset)
from .scene import SyntheticScene, sample_scene

__all__ = ['SyntheticScenes', 'GENERATOR_VERSION', 'SceneRecording', 'SyntheticSpec', 'cached_synthetic_dataset',
           'draw_scene', 'render_scene', 'synthetic_examples', 'write_synthetic_dataset', 'SyntheticScene', 'sample_scene']
