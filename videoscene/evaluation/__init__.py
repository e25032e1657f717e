"""Metrics (``METRICS``): novel-view PSNR and LPIPS, VBench subject / background consistency and
aesthetic quality; FVD and matching planned."""
from .image_metrics import NovelViewPSNR, psnr, ssim
from .lpips import LPIPS, NovelViewLPIPS
from .vbench import AestheticQuality, BackgroundConsistency, SubjectConsistency, consistency_scores
from .vbench_encoders import ClipImageEncoder, DinoViTEncoder, load_aesthetic_head

__all__ = ['LPIPS', 'NovelViewLPIPS', 'NovelViewPSNR', 'psnr', 'ssim', 'AestheticQuality',
           'BackgroundConsistency', 'SubjectConsistency', 'consistency_scores', 'ClipImageEncoder',
           'DinoViTEncoder', 'load_aesthetic_head']
