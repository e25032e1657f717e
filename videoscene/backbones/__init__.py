"""Video diffusion backbones (CogVideoX, SVD, DynamiCrafter) register in ``VIDEO_BACKBONES`` here."""
from .base import Conditioning, TrainableSelection, VideoBackbone
from .cogvideox import CogVideoX
from .dynamicrafter import DynamiCrafter
from .svd import SVD

__all__ = ['CogVideoX', 'Conditioning', 'SVD', 'TrainableSelection', 'VideoBackbone']
