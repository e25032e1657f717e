"""Metrics (``METRICS``): novel-view PSNR, SSIM and LPIPS, structure matching; FVD and consistency planned."""
from .image_metrics import NovelViewPSNR, NovelViewSSIM, psnr, ssim
from .lpips import LPIPS, NovelViewLPIPS
from .structure_matching import StructureMatching

__all__ = ['LPIPS', 'NovelViewLPIPS', 'NovelViewPSNR', 'NovelViewSSIM', 'StructureMatching', 'psnr', 'ssim']
