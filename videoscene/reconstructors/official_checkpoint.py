"""Loading official reconstructor checkpoints (and their safetensors conversions) strictly.

The official MVSplat and pixelSplat releases are PyTorch Lightning checkpoints: the weights live in
``ckpt['state_dict']`` with the prefix ``encoder.`` (their decoders have no parameters). The
project's modules use the same names without the prefix, so a converted ``.safetensors`` file
holds the official tensors under the project's keys, unchanged.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

__all__ = ['OFFICIAL_PREFIX', 'CheckpointMismatchError', 'read_official_state_dict',
           'strip_prefix', 'load_state_dict_strict', 'load_checkpoint', 'save_safetensors']

OFFICIAL_PREFIX = 'encoder.'


class CheckpointMismatchError(RuntimeError):
    """A checkpoint's keys or shapes differ from the module's.

    Attributes:
        missing: keys the module has and the checkpoint lacks.
        unexpected: keys the checkpoint has and the module lacks.
        mismatched: ``(key, checkpoint shape, module shape)`` for keys present in both.
    """

    def __init__(self, source: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple, tuple]]) -> None:
        self.missing, self.unexpected, self.mismatched = missing, unexpected, mismatched
        lines = [f'checkpoint {source} does not match the module:']
        if missing:
            lines.append(f'  missing keys ({len(missing)}): {", ".join(missing)}')
        if unexpected:
            lines.append(f'  unexpected keys ({len(unexpected)}): {", ".join(unexpected)}')
        for key, got, expected in mismatched:
            lines.append(f'  shape mismatch for {key}: checkpoint {got}, module {expected}')
        super().__init__('\n'.join(lines))


def read_official_state_dict(source: str | Path | Mapping[str, torch.Tensor],
                             allow_pickle: bool = False) -> dict[str, torch.Tensor]:
    """The raw (prefixed) state dict of an official checkpoint.

    Args:
        source: a ``.ckpt``/``.pt`` path, a loaded checkpoint ``{'state_dict': ...}``, or a state
            dict itself.
        allow_pickle: load the file with full unpickling (``weights_only=False``). Only for files
            you trust; needed when a Lightning checkpoint stores objects other than tensors and
            plain containers.
    """
    if isinstance(source, (str, Path)):
        path = Path(source)
        if not path.is_file():
            raise FileNotFoundError(f'checkpoint file not found: {path}')
        try:
            source = torch.load(path, map_location='cpu', weights_only=not allow_pickle)
        except Exception as error:  # torch raises UnpicklingError or RuntimeError here
            if allow_pickle:
                raise
            raise ValueError(
                f'{path} could not be read with weights_only=True ({error}). If you trust the '
                'file, pass allow_pickle=True (tools/convert_checkpoint.py: --allow-pickle).'
            ) from error
    if not isinstance(source, Mapping):
        raise TypeError(f'expected a checkpoint path or mapping, got {type(source).__name__}')
    state_dict = source.get('state_dict', source)
    if not isinstance(state_dict, Mapping):
        raise TypeError(f"checkpoint['state_dict'] must be a mapping, got {type(state_dict).__name__}")
    return dict(state_dict)


def strip_prefix(state_dict: Mapping[str, torch.Tensor],
                 prefix: str = OFFICIAL_PREFIX) -> dict[str, torch.Tensor]:
    """Remove ``prefix`` from every key; keys without it are kept verbatim (and will be reported as
    unexpected by :func:`load_state_dict_strict`)."""
    return {(key[len(prefix):] if key.startswith(prefix) else key): value
            for key, value in state_dict.items()}


def load_state_dict_strict(module: nn.Module, state_dict: Mapping[str, torch.Tensor],
                           source: str) -> None:
    """Load with every key and shape matching, else raise :class:`CheckpointMismatchError`."""
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(expected))
    mismatched = [(key, tuple(state_dict[key].shape), tuple(expected[key].shape))
                  for key in expected if key in state_dict
                  and tuple(state_dict[key].shape) != tuple(expected[key].shape)]
    if missing or unexpected or mismatched:
        raise CheckpointMismatchError(source, missing, unexpected, mismatched)
    module.load_state_dict(state_dict, strict=True)


def load_checkpoint(module: nn.Module, source: str | Path | Mapping[str, torch.Tensor],
                    allow_pickle: bool = False) -> None:
    """Load an official checkpoint (prefixed keys) or a converted ``.safetensors`` file (project
    keys) into ``module``, strictly."""
    if isinstance(source, (str, Path)) and Path(source).suffix == '.safetensors':
        if not Path(source).is_file():
            raise FileNotFoundError(f'checkpoint file not found: {source}')
        load_state_dict_strict(module, load_file(str(source)), str(source))
        return
    name = str(source) if isinstance(source, (str, Path)) else 'state dict'
    state_dict = strip_prefix(read_official_state_dict(source, allow_pickle))
    load_state_dict_strict(module, state_dict, name)


def save_safetensors(module: nn.Module, path: str | Path, metadata: dict[str, str]) -> None:
    """Write ``module``'s state dict (project keys) to ``path``."""
    tensors = {key: value.detach().contiguous() for key, value in module.state_dict().items()}
    save_file(tensors, str(path), metadata=metadata)
