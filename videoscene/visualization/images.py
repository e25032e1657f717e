"""Still images: contact sheets and PNG files."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor

__all__ = ['to_uint8', 'contact_sheet', 'save_png']


def to_uint8(images: Tensor) -> np.ndarray:
    """Float images ``[..., 3, H, W]`` in [0, 1] -> uint8 arrays ``[..., H, W, 3]`` (values clipped)."""
    if images.dim() < 3 or images.shape[-3] != 3:
        raise ValueError(f'expected images [..., 3, H, W], got {list(images.shape)}')
    pixels = (images.detach().float().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8)
    return pixels.movedim(-3, -1).cpu().numpy()


def contact_sheet(images: Tensor, ncols: int, labels: Sequence[str] | None = None, pad: int = 2) -> np.ndarray:
    """Tile images on a white sheet, row by row.

    Args:
        images: ``[N, 3, H, W]`` in [0, 1].
        ncols: tiles per row.
        labels: optional N captions, drawn in black on a white strip above each tile.
        pad: white pixels between (and around) tiles.

    Returns:
        The sheet, uint8 ``[H_sheet, W_sheet, 3]`` (RGB).
    """
    if images.dim() != 4 or images.shape[1] != 3 or len(images) == 0:
        raise ValueError(f'expected a non-empty batch of images [N, 3, H, W], got {list(images.shape)}')
    if ncols < 1:
        raise ValueError(f'ncols must be >= 1, got {ncols}')
    if labels is not None and len(labels) != len(images):
        raise ValueError(f'got {len(labels)} labels for {len(images)} images')
    tiles = to_uint8(images)
    count, height, width = len(tiles), tiles.shape[1], tiles.shape[2]
    label_height = 0 if labels is None else max(12, height // 8)
    cell_h, cell_w = label_height + height, width
    nrows = -(-count // ncols)
    sheet = np.full((pad + nrows * (cell_h + pad), pad + min(ncols, count) * (cell_w + pad), 3), 255, np.uint8)
    font_scale = label_height / 30.0
    for i, tile in enumerate(tiles):
        top, left = pad + (i // ncols) * (cell_h + pad), pad + (i % ncols) * (cell_w + pad)
        sheet[top + label_height:top + cell_h, left:left + cell_w] = tile
        if labels is not None:
            cv2.putText(sheet, str(labels[i]), (left + 1, top + label_height - max(2, label_height // 5)),
                        cv2.FONT_HERSHEY_SIMPLEX, font_scale, (0, 0, 0), 1, cv2.LINE_AA)
    return sheet


def save_png(path: str | Path, image: np.ndarray | Tensor) -> Path:
    """Write an image as PNG: a uint8 ``[H, W, 3]`` RGB array (e.g. a contact sheet) or a float
    tensor ``[3, H, W]`` in [0, 1]. Creates missing parent folders; returns the path."""
    if isinstance(image, Tensor):
        image = to_uint8(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f'expected a uint8 array [H, W, 3] or a float tensor [3, H, W], got {image.dtype} '
                         f'{list(image.shape)}')
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):
        raise OSError(f'OpenCV could not write {path}')
    return path
