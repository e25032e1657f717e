"""Metrics (``METRICS``): novel-view PSNR now; FVD, consistency and structure matching planned."""
from .image_metrics import NovelViewPSNR, psnr

__all__ = ['NovelViewPSNR', 'psnr']
