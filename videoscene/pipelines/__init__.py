"""Inference: the one sampling loop (:mod:`.sampling`) and the VideoScene pipeline."""
from .sampling import Guidance, denoise, estimate

__all__ = ['Guidance', 'denoise', 'estimate']
