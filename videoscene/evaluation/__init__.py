"""Metrics (``METRICS``): novel-view PSNR and LPIPS, FVD; consistency and matching planned."""
from .fvd import FVD, frechet_distance
from .image_metrics import NovelViewPSNR, psnr, ssim
from .lpips import LPIPS, NovelViewLPIPS

__all__ = ['FVD', 'LPIPS', 'NovelViewLPIPS', 'NovelViewPSNR', 'frechet_distance', 'psnr', 'ssim']
