"""The teacher and the EMA target as copies of the trained tensors only.

Distillation plays three roles with one backbone: the student is the backbone's own trained
parameters; the teacher and the target are :class:`TrainedCopy` buffers of the same tensors, handed
to :meth:`VideoBackbone.predict` as ``params``.  The frozen tensors (VAE, encoders, every
untrained denoiser weight) exist once.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

__all__ = ['TrainedCopy']


class TrainedCopy(nn.Module):
    """Buffers holding a copy of ``tensors`` (name -> tensor, names as in the backbone).

    Buffer names replace ``.`` by ``:`` (a buffer name cannot contain a dot), so the state-dict keys
    read like the backbone's, e.g. ``target.transformer:transformer_blocks:0:attn1:to_q:weight``.
    ``dtype``: store the copy in this dtype (default: the tensors' own).  Copies of FSDP2-sharded
    parameters are ``DTensor`` shards laid out like them.
    """

    def __init__(self, tensors: Mapping[str, torch.Tensor],
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.names = list(tensors)
        for name, tensor in tensors.items():
            self.register_buffer(name.replace('.', ':'), tensor.detach().to(dtype, copy=True))

    def as_params(self) -> dict[str, torch.Tensor]:
        """``{backbone name: tensor}`` for :meth:`VideoBackbone.predict`."""
        return {name: self._buffers[name.replace('.', ':')] for name in self.names}

    @torch.no_grad()
    def ema_(self, source: Mapping[str, torch.Tensor], decay: float) -> None:
        """``copy = decay * copy + (1 - decay) * source``, in place."""
        for name, tensor in self.as_params().items():
            tensor.lerp_(source[name].detach().to(tensor.dtype), 1.0 - decay)
