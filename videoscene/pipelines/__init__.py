"""Inference: the one sampling loop (:mod:`.sampling`) and the VideoScene pipeline."""
from .sampling import Guidance, denoise, estimate
from .videoscene import PipelineOutput, VideoScenePipeline

__all__ = ['Guidance', 'PipelineOutput', 'VideoScenePipeline', 'denoise', 'estimate']
