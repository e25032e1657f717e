"""Top-down plots of camera paths (matplotlib's Agg canvas: no window, no global backend switch)."""
from __future__ import annotations

from pathlib import Path

import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

__all__ = ['top_down_axes', 'plot_path']


def top_down_axes(extrinsics: Tensor) -> tuple[Tensor, Tensor]:
    """Horizontal plot axes ``(right [3], forward [3])`` for cameras ``[N, 4, 4]`` (OpenCV camera-to-world).

    "Up" is the mean of the cameras' up vectors (their -y axes), so the plot is top-down whatever
    the world's own up axis; ``forward`` is the mean viewing direction made horizontal (it points up
    the plot) and ``right = forward x up``.
    """
    rotations = extrinsics[:, :3, :3].double()
    up = torch.nn.functional.normalize(-rotations[:, :, 1].mean(0), dim=0)
    forward = rotations[:, :, 2].mean(0)
    forward = forward - (forward @ up) * up
    if float(forward.norm()) < 1e-6:  # looking straight down or up: any horizontal direction will do
        forward = torch.linalg.svd(up[None]).Vh[1]
    forward = torch.nn.functional.normalize(forward, dim=0)
    return torch.linalg.cross(forward, up), forward


def plot_path(path: str | Path, target: dict, interpolated: dict, context: dict) -> Path:
    """Plot camera centres and context viewing directions, seen from above, as a PNG.

    Args:
        path: output PNG; missing parent folders are created.
        target: camera dict (``extrinsics [F, 4, 4]``) of the ground-truth path.
        interpolated: camera dict of the interpolated path (``extrinsics [n, 4, 4]``).
        context: camera dict of the two context views (``extrinsics [2, 4, 4]``).

    Returns:
        The path written.
    """
    cameras = {'ground-truth path': target['extrinsics'].detach().cpu(),
               'interpolated path': interpolated['extrinsics'].detach().cpu()}
    context_extrinsics = context['extrinsics'].detach().cpu()
    right, forward = top_down_axes(torch.cat([*cameras.values(), context_extrinsics]))

    def plane(points: Tensor) -> tuple[list[float], list[float]]:
        return (points.double() @ right).tolist(), (points.double() @ forward).tolist()

    figure = Figure(figsize=(5, 5))
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    for (label, extrinsics), style in zip(cameras.items(), ('o-', '.--')):
        axes.plot(*plane(extrinsics[:, :3, 3]), style, ms=3, label=label)
    centres = context_extrinsics[:, :3, 3]
    span = float((centres[0] - centres[1]).norm()) or 1.0
    views = zip(*plane(centres), *plane(context_extrinsics[:, :3, 2]))
    for i, (x, y, dx, dy) in enumerate(views):
        axes.arrow(x, y, 0.3 * span * dx, 0.3 * span * dy, head_width=0.05 * span, color='k')
        axes.annotate(f'context {i}', (x, y), textcoords='offset points', xytext=(5, 5))
    axes.set_xlabel('right'), axes.set_ylabel('forward (mean view direction)'), axes.set_aspect('equal')
    axes.legend(loc='best')
    axes.set_title('camera path, top-down')
    figure.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    return path
