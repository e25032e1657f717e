"""Wan 2.1 first-last-frame-to-video plugin: the ``FlowMatchEuler`` noise scheduler and the
``WanFLF2V`` backbone, registered on import (``custom_imports=dict(imports=['projects.wan_flf2v'])``)."""
from .backbone import WanFLF2V
from .flow_match import FlowMatchEulerScheduler

__all__ = ['FlowMatchEulerScheduler', 'WanFLF2V']
