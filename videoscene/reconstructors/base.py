"""What learned feed-forward reconstructors share: official-checkpoint loading, the forward
contract and the validation of their context views."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from ..structures import Gaussians
from .official_checkpoint import load_checkpoint

CONTEXT_KEYS = ('image', 'extrinsics', 'intrinsics', 'near', 'far')


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
        """Validate keys, shapes and values of ``context`` (batched views, see the conventions).

        Returns ``image, extrinsics, intrinsics, near, far``.  ``size_reason`` says why H and W
        must be multiples of ``size_multiple``.
        """
        missing = [key for key in CONTEXT_KEYS if key not in context]
        if missing:
            raise KeyError(f'context lacks {missing}; {self.name} needs {list(CONTEXT_KEYS)}')
        images, extrinsics, intrinsics, near, far = (context[key] for key in CONTEXT_KEYS)
        if images.ndim != 5 or images.shape[2] != 3:
            raise ValueError(f"context['image'] must be [B, V, 3, H, W], got {tuple(images.shape)}")
        b, v, _, h, w = images.shape
        if max_views == min_views and v != min_views:
            raise ValueError(f'{self.name} takes exactly {min_views} context views, got {v}')
        if not min_views <= v <= (max_views or v):
            raise ValueError(f'{self.name} needs at least {min_views} context views'
                             + (f' and at most {max_views}' if max_views else '') + f', got {v}')
        if h % size_multiple or w % size_multiple:
            raise ValueError(f'image height and width must be multiples of {size_multiple} '
                             f'({size_reason}), got H={h}, W={w}; crop or resize the context images')
        expected = {'extrinsics': (b, v, 4, 4), 'intrinsics': (b, v, 3, 3), 'near': (b, v),
                    'far': (b, v)}
        for key, shape in expected.items():
            if tuple(context[key].shape) != shape:
                raise ValueError(f"context['{key}'] must have shape {list(shape)} for images "
                                 f'{tuple(images.shape)}, got {tuple(context[key].shape)}')
        for key in CONTEXT_KEYS:
            if not context[key].is_floating_point():
                raise TypeError(f"context['{key}'] must be a floating-point tensor, "
                                f'got {context[key].dtype}')
            if not torch.isfinite(context[key]).all():
                raise ValueError(f"context['{key}'] contains non-finite values (NaN or inf)")
        if not ((near > 0).all() and (far > near).all()):
            raise ValueError(f'need 0 < near < far per view, got near={near.tolist()}, '
                             f'far={far.tolist()}')
        return images, extrinsics, intrinsics, near, far
