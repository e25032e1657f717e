"""Metrics (``METRICS``): novel-view PSNR and LPIPS, structure matching; FVD and consistency planned."""
from .image_metrics import NovelViewPSNR, psnr, ssim
from .lpips import LPIPS, NovelViewLPIPS
from .structure_matching import StructureMatching

__all__ = ['LPIPS', 'NovelViewLPIPS', 'NovelViewPSNR', 'StructureMatching', 'psnr', 'ssim']
