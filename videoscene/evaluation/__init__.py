"""Metrics (``METRICS``): novel-view PSNR, SSIM and LPIPS; FVD; VBench subject / background
consistency and aesthetic quality; structure matching.  ``report.py``: ``tools/test.py``'s
reports."""
from .fvd import FVD, frechet_distance
from .image_metrics import NovelViewPSNR, NovelViewSSIM, gradient_magnitude, psnr, sharpness, ssim
from .lpips import LPIPS, NovelViewLPIPS
from .structure_matching import StructureMatching
from .vbench import AestheticQuality, BackgroundConsistency, SubjectConsistency, consistency_scores
from .vbench_encoders import ClipImageEncoder, DinoViTEncoder, load_aesthetic_head

__all__ = ['FVD', 'LPIPS', 'NovelViewLPIPS', 'NovelViewPSNR', 'NovelViewSSIM', 'StructureMatching',
           'frechet_distance', 'gradient_magnitude', 'psnr', 'sharpness', 'ssim', 'AestheticQuality', 'BackgroundConsistency',
           'SubjectConsistency', 'consistency_scores', 'ClipImageEncoder', 'DinoViTEncoder',
           'load_aesthetic_head']
