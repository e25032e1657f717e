"""What learned feed-forward reconstructors share: official-checkpoint loading, the forward
contract and the validation of their context views.

Validation at the reconstructor boundary (:func:`check_views`, used by every reconstructor) refuses,
with :class:`~videoscene.errors.InputError` naming the tensor (``context['key']``) and the batch
item and view: an empty batch, wrong shapes, a dtype other than the model's, non-finite values,
images outside [0, 1] (e.g. 8-bit values as floats), cameras that break the conventions
(:class:`~videoscene.errors.CameraError` from ``geometry.camera_validation``: non-rigid extrinsics,
non-positive or pixel-unit focal lengths, bad near/far) and, for multi-view reconstructors, two
context cameras at one position (zero baseline: no parallax to reconstruct from).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

from ..errors import InputError
from ..geometry.camera_validation import check_camera_tensors
from ..structures import Gaussians
from .official_checkpoint import load_checkpoint

CONTEXT_KEYS = ('image', 'extrinsics', 'intrinsics', 'near', 'far')
MIN_BASELINE = 1e-6
"""Context cameras whose centres are at most this far apart, relative to their near bound, count as
one viewpoint."""


def check_views(context: Mapping[str, torch.Tensor], owner: str, dtype: torch.dtype,
                keys: Sequence[str] = CONTEXT_KEYS, distinct: bool = True, min_views: int = 1,
                max_views: int | None = None) -> None:
    """Validate batched context views (rules in the module docstring).

    Args:
        context: ``image [B, V, 3, H, W]`` and the other ``keys`` (cameras ``[B, V, ...]``,
            ``depth [B, V, H, W]``).
        owner: the model, for messages.
        dtype: the dtype every tensor must have (the model's parameters').
        keys: the keys the model needs.
        distinct: refuse two views of one batch item at one camera position.
        min_views, max_views: how many views ``V`` the model takes (``max_views`` None: no limit).
    """
    missing = [key for key in keys if key not in context]
    if missing:
        raise KeyError(f'context lacks {missing}; {owner} needs {list(keys)}')
    images = context['image']
    if not isinstance(images, torch.Tensor) or images.ndim != 5 or images.shape[2] != 3:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise InputError("context['image']", f'must be [B, V, 3, H, W], got {shape}')
    b, v, _, h, w = images.shape
    if b == 0:
        raise InputError("context['image']", f'the batch is empty (B = 0, images {tuple(images.shape)})')
    if max_views == min_views and v != min_views:
        raise InputError("context['image']", f'{owner} takes exactly {min_views} context views, got {v}')
    if not min_views <= v <= (max_views or v):
        raise InputError("context['image']", f'{owner} needs at least {min_views} context views'
                                              + (f' and at most {max_views}' if max_views else '') + f', got {v}')
    expected = {'extrinsics': (b, v, 4, 4), 'intrinsics': (b, v, 3, 3), 'near': (b, v), 'far': (b, v),
                'depth': (b, v, h, w)}
    for key in keys:
        value = context[key]
        if key in expected and tuple(value.shape) != expected[key]:
            raise InputError(f"context['{key}']", f'must have shape {list(expected[key])} for images '
                                                  f'{tuple(images.shape)}, got {tuple(value.shape)}')
        if value.dtype != dtype:
            raise InputError(f"context['{key}']", f"dtype {value.dtype} differs from {owner}'s parameters ({dtype}); "
                                                  f'cast the batch with .to({dtype})')
        if not torch.isfinite(value).all():
            raise InputError(f"context['{key}']", 'contains non-finite values (NaN or inf)')
    low, high = float(images.min()), float(images.max())
    if low < 0 or high > 1:
        raise InputError("context['image']", f'values must lie in [0, 1], got [{low:.4g}, {high:.4g}]'
                                             + (' (divide 8-bit images by 255)' if high > 1 else ''))
    if 'depth' in keys and not bool((context['depth'] > 0).all()):
        raise InputError("context['depth']", 'must be positive at every pixel (camera z-depth)')
    check_camera_tensors({key: context[key] for key in ('extrinsics', 'intrinsics', 'near', 'far') if key in keys},
                         'context')
    if distinct and v > 1:
        centres = context['extrinsics'][..., :3, 3].double()
        distances = torch.cdist(centres, centres)  # [B, V, V]
        scale = context['near'].double().amin(-1) if 'near' in keys else torch.ones(b, dtype=torch.float64)
        close = (distances <= MIN_BASELINE * scale[:, None, None]) & ~torch.eye(v, dtype=torch.bool)
        if bool(close.any()):
            item, first, second = close.nonzero()[0].tolist()
            raise InputError(f"context['extrinsics'] (batch item {item})",
                             f'views {first} and {second} have camera centres {float(distances[item, first, second]):.3g} '
                             f'apart: {owner} needs distinct viewpoints (a baseline) to reconstruct from')


class FeedForwardReconstructor(nn.Module):
    """Base of reconstructors that re-implement an official network.

    Subclasses implement :meth:`predict` (Gaussians plus what else the network estimates, e.g.
    depth), have a ``name`` used in error messages and a ``size_multiple`` that image height and
    width must be multiples of (so callers can check a size before running the network).
    """

    name: str
    size_multiple: int

    def load_official(self, source: str | Path | Mapping[str, torch.Tensor],
                      allow_pickle: bool = False) -> FeedForwardReconstructor:
        """Load official weights unchanged and strictly.

        Args:
            source: the official ``.ckpt`` (weights in ``['state_dict']`` with the prefix
                ``encoder.``), such a checkpoint or state dict already loaded, or a ``.safetensors``
                file from ``tools/convert_checkpoint.py`` (project keys).
            allow_pickle: allow full unpickling of a trusted ``.ckpt``.

        Raises:
            CheckpointMismatchError: listing missing, unexpected and mis-shaped keys.
        """
        load_checkpoint(self, source, allow_pickle)
        return self

    def forward(self, context: Mapping[str, torch.Tensor]) -> Gaussians:
        """Context views -> ``Gaussians`` (see :meth:`predict`)."""
        return self.predict(context).gaussians

    def predict(self, context: Mapping[str, torch.Tensor]):
        raise NotImplementedError

    def check_context(self, context: Mapping[str, torch.Tensor], size_multiple: int,
                      size_reason: str, min_views: int = 2,
                      max_views: int | None = None) -> tuple[torch.Tensor, ...]:
        """Validate the context (see :func:`check_views`), its number of views and image size.

        Returns ``image, extrinsics, intrinsics, near, far``.  ``size_reason`` says why H and W
        must be multiples of ``size_multiple``.
        """
        check_views(context, self.name, next(self.parameters()).dtype, min_views=min_views, max_views=max_views)
        h, w = context['image'].shape[-2:]
        if h % size_multiple or w % size_multiple:
            raise InputError("context['image']", f'image height and width must be multiples of {size_multiple} '
                                                  f'({size_reason}), got H={h}, W={w}; crop or resize the context '
                                                  'images')
        return tuple(context[key] for key in CONTEXT_KEYS)
