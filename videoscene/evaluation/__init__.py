"""Metrics (``METRICS``): novel-view PSNR and LPIPS; FVD, consistency and matching planned."""
from .image_metrics import NovelViewPSNR, psnr, ssim
from .lpips import LPIPS, NovelViewLPIPS

__all__ = ['LPIPS', 'NovelViewLPIPS', 'NovelViewPSNR', 'psnr', 'ssim']
