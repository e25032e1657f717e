"""Loading a frozen component from a training checkpoint of an earlier stage."""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from videoscene.errors import CheckpointError
from videoscene.reconstructors.official_checkpoint import load_state_dict_strict

__all__ = ['load_training_checkpoint']


def load_training_checkpoint(module: nn.Module, path: str | Path, prefix: str) -> None:
    """Load ``module`` strictly from the tensors under ``prefix`` in a ``tools/train.py`` checkpoint.

    MMEngine's checkpoints pickle more than tensors (its message hub), so the file is unpickled in
    full: a trusted local file the config names, as ``--resume`` treats its checkpoint.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise CheckpointError(path, 'training checkpoint not found')
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=False)
    except Exception as error:   # truncated file, not a torch file
        raise CheckpointError(path, f'cannot be read as a torch checkpoint ({error})') from error
    state_dict = checkpoint.get('state_dict') if isinstance(checkpoint, dict) else None
    if not isinstance(state_dict, dict):
        raise CheckpointError(path, "has no 'state_dict': expected a tools/train.py checkpoint")
    tensors = {key[len(prefix):]: value for key, value in state_dict.items()
               if key.startswith(prefix)}
    if not tensors:
        raise CheckpointError(path, f"holds no tensor under '{prefix}' (keys start with "
                              f'{sorted({k.split(".")[0] for k in state_dict})})')
    load_state_dict_strict(module, tensors, str(path))
