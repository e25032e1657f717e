"""Visualisation helpers: videos, contact sheets, PNGs and depth colouring (no windows)."""
from .depth import colorize_depth
from .images import contact_sheet, save_png, to_uint8
from .video import save_video

__all__ = ['colorize_depth', 'contact_sheet', 'save_png', 'to_uint8', 'save_video']
