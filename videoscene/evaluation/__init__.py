"""Metrics (``METRICS``): novel-view PSNR and LPIPS, FVD, VBench subject / background consistency
and aesthetic quality; structure matching planned."""
from .fvd import FVD, frechet_distance
from .image_metrics import NovelViewPSNR, psnr, ssim
from .lpips import LPIPS, NovelViewLPIPS
from .vbench import AestheticQuality, BackgroundConsistency, SubjectConsistency, consistency_scores
from .vbench_encoders import ClipImageEncoder, DinoViTEncoder, load_aesthetic_head

__all__ = ['FVD', 'LPIPS', 'NovelViewLPIPS', 'NovelViewPSNR', 'frechet_distance', 'psnr', 'ssim',
           'AestheticQuality', 'BackgroundConsistency', 'SubjectConsistency',
           'consistency_scores', 'ClipImageEncoder', 'DinoViTEncoder', 'load_aesthetic_head']
