"""More than two views: one clip between each pair of consecutive views, chained into one video.

Clip ``i`` runs the pipeline on views ``i`` and ``i + 1`` along the camera path between them, so
its last frame and clip ``i + 1``'s first frame sit at the same camera (view ``i + 1``): the
chained video keeps that shared frame once, from the earlier clip. ``N`` views and ``F`` frames a
clip give ``(N - 1) (F - 1) + 1`` frames. Each clip is reconstructed from its own pair; the
Gaussians of all clips are returned together (they share the world frame of the cameras).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import fields

import torch
from torch import Tensor
from tqdm import tqdm

from videoscene.structures import Gaussians

from .inputs import Views
from .videoscene import PipelineOutput, VideoScenePipeline

__all__ = ['chain', 'generate_along_views']


def chain(clips: Sequence[Tensor], dim: int = 1) -> Tensor:
    """Concatenate clips along ``dim`` (frames), dropping the first frame of every clip after the
    first (it repeats the previous clip's last camera)."""
    if not clips:
        raise ValueError('chain needs at least one clip')
    rest = [clip.narrow(dim, 1, clip.shape[dim] - 1) for clip in clips[1:]]
    return torch.cat([clips[0], *rest], dim=dim)


def generate_along_views(pipeline: VideoScenePipeline, views: Views, num_frames: int,
                         steps: int = 1, from_noise: bool = False,
                         generator: torch.Generator | None = None,
                         progress: bool = False) -> PipelineOutput:
    """One clip of ``num_frames`` frames between each pair of consecutive views, chained.

    Returns a :class:`PipelineOutput` with batch 1: ``video``, ``render`` ``[1, (N-1)(F-1)+1, 3, H, W]``,
    the chained ``cameras``, ``t [N - 1]`` (one leap timestep per clip), the Gaussians of every clip
    concatenated, timings summed over the clips; no ground truth.
    """
    if len(views) < 2:
        raise ValueError(f'need at least two views, got {len(views)}')
    pipeline.check_inputs(tuple(views.images.shape[-2:]), num_frames)
    outputs = [pipeline(views.pair(i), num_frames=num_frames, steps=steps, from_noise=from_noise,
                        generator=generator, progress=progress)
               for i in tqdm(range(len(views) - 1), desc='clips', disable=not progress or len(views) < 3)]
    timings: dict[str, float] = {}
    for output in outputs:
        for name, seconds in output.timings.items():
            timings[name] = timings.get(name, 0.0) + seconds
    gaussians = Gaussians(**{f.name: torch.cat([getattr(o.gaussians, f.name) for o in outputs], dim=1)
                             for f in fields(Gaussians)})
    return PipelineOutput(
        video=chain([o.video for o in outputs]), render=chain([o.render for o in outputs]),
        cameras={key: chain([o.cameras[key] for o in outputs]) for key in outputs[0].cameras},
        t=torch.cat([o.t for o in outputs]), gaussians=gaussians, timings=timings)
