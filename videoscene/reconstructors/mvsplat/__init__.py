"""MVSplat (cost-volume Gaussian reconstructor), loading the official checkpoints unchanged."""
from .model import MVSplat, MVSplatOutput

__all__ = ['MVSplat', 'MVSplatOutput']
