"""Writing videos as H.264 mp4 through imageio-ffmpeg."""
from __future__ import annotations

from pathlib import Path

import imageio_ffmpeg
import numpy as np
from torch import Tensor

from .images import to_uint8

__all__ = ['save_video']


def save_video(path: str | Path, frames: Tensor, fps: float = 30.0, quality: float = 8.0) -> Path:
    """Write frames ``[F, 3, H, W]`` (float, [0, 1]) as an H.264 (yuv420p) mp4.

    H.264 with 4:2:0 chroma needs even sizes: an odd height or width is padded by repeating the
    last row or column (the video is then one pixel larger); nothing is resized.

    Args:
        path: output ``.mp4`` path; missing parent folders are created.
        frames: ``[F, 3, H, W]`` in [0, 1].
        fps: frames per second.
        quality: imageio-ffmpeg quality in [1, 10] (10 = best; 8 is visually lossless).

    Returns:
        The path written.
    """
    if frames.dim() != 4 or frames.shape[1] != 3 or len(frames) == 0:
        raise ValueError(f'expected frames [F, 3, H, W] with F >= 1, got {list(frames.shape)}')
    pixels = to_uint8(frames)
    height, width = pixels.shape[1:3]
    pixels = np.pad(pixels, ((0, 0), (0, height % 2), (0, width % 2), (0, 0)), mode='edge')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = imageio_ffmpeg.write_frames(str(path), (pixels.shape[2], pixels.shape[1]), fps=fps, codec='libx264',
                                         pix_fmt_out='yuv420p', quality=quality, macro_block_size=1)
    writer.send(None)  # start ffmpeg
    try:
        for frame in pixels:
            writer.send(np.ascontiguousarray(frame))
    finally:
        writer.close()
    return path
