"""Visualisation helpers: videos, contact sheets, PNGs and depth colouring (no windows)."""
from .camera_path import plot_path, top_down_axes
from .depth import colorize_depth
from .images import contact_sheet, save_png, to_uint8
from .video import save_video

__all__ = ['plot_path', 'top_down_axes', 'colorize_depth', 'contact_sheet', 'save_png', 'to_uint8', 'save_video']
