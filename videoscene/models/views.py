"""A scene sample's views as one video in frame order."""
from __future__ import annotations

import torch
from torch import Tensor

def scene_views(context: dict[str, Tensor], target: dict[str, Tensor]) -> dict[str, Tensor]:
    """The batch's context and target views in frame order, bracketed by the context pair.

    ``context``/``target`` are collated view dicts (``index [B, V]`` and per-view tensors
    ``[B, V, ...]``: ``image [B, V, 3, H, W]``, ``extrinsics``, ``intrinsics``, ``near``, ``far``,
    ``depth``...).  Returns every key the two share with ``F`` views: ``image [B, F, 3, H, W]`` is
    the video, and its first and last frames are the context pair; a context frame that is also a
    target appears once.
    """
    index = torch.cat([context['index'], target['index']], dim=1)
    order = index.argsort(dim=1, stable=True)
    index = index.gather(1, order)
    keep = torch.ones_like(index, dtype=torch.bool)
    keep[:, 1:] = index[:, 1:] != index[:, :-1]  # a context frame repeated as a target
    counts = keep.sum(dim=1)
    if (counts != counts[0]).any():
        raise ValueError(f'samples of the batch have different frame counts {counts.tolist()} '
                         'once context frames repeated as targets are merged')
    lo, hi = context['index'].min(dim=1).values, context['index'].max(dim=1).values
    if (index[:, 0] != lo).any() or (index[:, -1] != hi).any():
        raise ValueError('target frames must lie between the two context frames (inclusive) so that '
                         f'the context pair brackets the video; got context {context["index"].tolist()}'
                         f' and targets spanning {index[:, 0].tolist()}..{index[:, -1].tolist()}')
    batch, frames = len(index), int(counts[0])
    rows = torch.arange(batch, device=index.device)[:, None]
    views = {}
    for key in context.keys() & target.keys():
        merged = torch.cat([context[key], target[key]], dim=1)[rows, order]
        views[key] = merged[keep].reshape(batch, frames, *merged.shape[2:])
    return views
