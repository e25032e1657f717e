"""Reading the weights a ``tools/train.py`` checkpoint holds, for a component of a later stage."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from videoscene.engine.checkpoint import load_from_trusted_local
from videoscene.errors import CheckpointError
from videoscene.reconstructors.official_checkpoint import load_state_dict_strict

__all__ = ['read_training_state_dict', 'load_training_checkpoint']


def read_training_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The ``state_dict`` of a ``tools/train.py`` checkpoint (a trusted local file, unpickled in
    full as ``--resume`` does: MMEngine pickles more than tensors)."""
    checkpoint = load_from_trusted_local(str(path), map_location='cpu')
    state_dict = checkpoint.get('state_dict') if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise CheckpointError(path, "has no 'state_dict': expected a tools/train.py checkpoint")
    return state_dict


def load_training_checkpoint(module: nn.Module, path: str | Path, prefix: str) -> None:
    """Load ``module`` strictly from the tensors under ``prefix`` in a ``tools/train.py``
    checkpoint (e.g. a stage-1 reconstructor, ``prefix='reconstructor.'``)."""
    state_dict = read_training_state_dict(path)
    tensors = {key[len(prefix):]: value for key, value in state_dict.items()
               if key.startswith(prefix)}
    if not tensors:
        raise CheckpointError(path, f"holds no tensor under '{prefix}' (keys start with "
                              f'{sorted({k.split(".")[0] for k in state_dict})})')
    load_state_dict_strict(module, tensors, str(path))
