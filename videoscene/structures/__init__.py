from .gaussians import Gaussians

__all__ = ['Gaussians']
