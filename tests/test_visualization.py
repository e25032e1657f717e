"""Visualisation helpers: mp4 writing, contact sheets, PNGs, depth colouring."""
from __future__ import annotations

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from videoscene.visualization import colorize_depth, contact_sheet, save_png, save_video


def smooth_frames(count: int, height: int, width: int) -> torch.Tensor:
    """Smooth colour ramps that move from frame to frame (easy on the codec)."""
    y = torch.linspace(0, 1, height).view(1, height, 1)
    x = torch.linspace(0, 1, width).view(1, 1, width)
    frames = [torch.cat([(0.5 + 0.4 * torch.sin(6.28 * (x + 0.15 * i))).expand(1, height, width),
                         y.expand(1, height, width), torch.full((1, height, width), 0.3)]) for i in range(count)]
    return torch.stack(frames)


def read_video(path) -> tuple[np.ndarray, tuple[int, int]]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    width, height = meta['size']
    frames = np.stack([np.frombuffer(frame, np.uint8).reshape(height, width, 3) for frame in reader])
    return frames, (height, width)


@pytest.mark.parametrize('height, width', [(32, 48), (17, 23)])
def test_save_video_round_trip(tmp_path, height, width):
    frames = smooth_frames(6, height, width)
    path = save_video(tmp_path / 'sub' / 'clip.mp4', frames, fps=10)
    decoded, size = read_video(path)
    assert size == (height + height % 2, width + width % 2)  # odd sizes padded to even
    assert len(decoded) == 6
    original = frames.permute(0, 2, 3, 1).numpy() * 255.0
    errors = np.abs(decoded[:, :height, :width].astype(np.float64) - original).mean(axis=(1, 2, 3))
    assert errors.max() < 8.0  # 4:2:0 chroma subsampling costs a few levels on tiny frames
    assert np.abs(decoded[1:, :height, :width].astype(np.float64) - original[:-1]).mean() > 2 * errors.mean()


def test_save_video_rejects_bad_shapes(tmp_path):
    with pytest.raises(ValueError, match=r'\[F, 3, H, W\]'):
        save_video(tmp_path / 'x.mp4', torch.rand(4, 16, 16))


def test_contact_sheet_places_tiles_row_by_row():
    images = torch.stack([torch.full((3, 8, 10), value) for value in (0.0, 0.25, 0.5, 0.75, 1.0)])
    sheet = contact_sheet(images, ncols=2, pad=1)
    assert sheet.dtype == np.uint8 and sheet.shape == (1 + 3 * 9, 1 + 2 * 11, 3)
    for index, value in enumerate((0, 64, 128, 191, 255)):
        top, left = 1 + (index // 2) * 9, 1 + (index % 2) * 11
        assert (sheet[top:top + 8, left:left + 10] == value).all()
    assert (sheet[0] == 255).all() and (sheet[:, 11] == 255).all()  # padding stays white


def test_contact_sheet_draws_labels_above_tiles():
    images = torch.ones(2, 3, 40, 60)
    sheet = contact_sheet(images, ncols=2, labels=['a', 'b'], pad=0)
    label_height = sheet.shape[0] - 40
    assert label_height > 0
    assert (sheet[:label_height] < 128).any() and (sheet[label_height:] == 255).all()
    with pytest.raises(ValueError, match='labels'):
        contact_sheet(images, ncols=2, labels=['only one'])


def test_save_png_round_trip(tmp_path):
    image = torch.rand(3, 9, 13)
    path = save_png(tmp_path / 'deep' / 'image.png', image)
    back = cv2.imread(str(path))[..., ::-1]
    assert np.array_equal(back, (image.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))


def test_colorize_depth_is_bright_near_and_black_where_empty():
    depth = torch.linspace(1.0, 10.0, 50).view(1, 1, 50).repeat(2, 4, 1)
    depth[1, 0, :5] = 0.0
    depth[1, 1, :5] = float('inf')
    depth[1, 2, :5] = float('nan')
    colours = colorize_depth(depth)
    assert colours.shape == (2, 3, 4, 50) and colours.dtype == torch.float32
    assert torch.isfinite(colours).all() and 0.0 <= colours.min() and colours.max() <= 1.0
    luminance = (colours * torch.tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)).sum(1)
    assert (torch.diff(luminance[0, 3]) <= 1e-6).all() and luminance[0, 3, 0] > luminance[0, 3, -1] + 0.5
    assert colours[0, 0, 3, 0] > colours[0, 2, 3, 0]  # near is warm: more red than blue
    assert (colours[1, :, :3, :5] == 0).all()
    assert torch.equal(colorize_depth(torch.zeros(3, 5, 5)), torch.zeros(3, 3, 5, 5))


def test_colorize_depth_uses_the_given_range():
    depth = torch.tensor([[2.0, 4.0, 8.0]])
    colours = colorize_depth(depth, near=2.0, far=8.0)
    far_colour = colorize_depth(torch.tensor([[8.0, 100.0, 8.0]]), near=2.0, far=8.0)[:, 0, 1]
    assert torch.allclose(colours[:, 0, 2], far_colour)  # clamped beyond far
    assert colours[:, 0, 0].sum() > colours[:, 0, 1].sum() > colours[:, 0, 2].sum()
    with pytest.raises(ValueError, match='near'):
        colorize_depth(depth, near=5.0, far=3.0)
