"""Checks and readers for the local model folders that backbones load with ``from_pretrained``.

diffusers and transformers report a missing folder or weight file with errors that do not say which
component of which model was expected; these checks run first and name it.
"""
from __future__ import annotations

import json
import shutil
from collections.abc import Iterable, Mapping
from pathlib import Path

import torch
from safetensors.torch import load_file
from torch import nn

WEIGHT_FILES = ('diffusion_pytorch_model.safetensors', 'diffusion_pytorch_model.safetensors.index.json',
                'diffusion_pytorch_model.bin', 'diffusion_pytorch_model.bin.index.json',
                'model.safetensors', 'model.safetensors.index.json', 'pytorch_model.bin',
                'pytorch_model.bin.index.json')


def require_folder(root: str | Path, subfolder: str, files: tuple[str, ...], what: str,
                   weights: bool = True) -> Path:
    """``root/subfolder`` after checking it holds every name in ``files`` and, if ``weights``, one of
    :data:`WEIGHT_FILES` (or a ``*.fp16``/variant of it); raises ``FileNotFoundError`` naming ``what``."""
    root = Path(root).expanduser()
    if not root.is_dir():
        raise FileNotFoundError(f'{what}: model folder {root} does not exist')
    folder = root / subfolder
    if not folder.is_dir():
        raise FileNotFoundError(f"{what}: subfolder '{subfolder}/' is missing in {root} "
                                f'(expected {", ".join(files)} and weights there)')
    for name in files:
        if not (folder / name).is_file():
            raise FileNotFoundError(f'{what}: {folder / name} is missing')
    if weights and not any(_has_weight(folder, name) for name in WEIGHT_FILES):
        raise FileNotFoundError(f'{what}: no weight file in {folder} (expected one of '
                                f'{", ".join(WEIGHT_FILES[:3])} ...)')
    return folder


def _has_weight(folder: Path, name: str) -> bool:
    stem, dot, ext = name.partition('.')
    return (folder / name).is_file() or any(folder.glob(f'{stem}.*.{ext}'))


def read_json(path: Path) -> dict:
    with open(path, encoding='utf-8') as handle:
        return json.load(handle)


def load_prompt_embedding(path: str | Path, dim: int, length: int | None = None) -> torch.Tensor:
    """A precomputed prompt embedding ``[1, L, dim]`` from a ``.safetensors`` or ``.pt`` file.

    The file holds the tensor itself (``.pt``) or under the key ``'prompt_embeds'`` (either format);
    ``length``, if given, is the ``L`` the model requires.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f'prompt embedding file {path} does not exist '
                                '(compute one with tools/encode_prompt.py)')
    if path.suffix == '.safetensors':
        content = load_file(path)
    elif path.suffix in ('.pt', '.pth'):
        content = torch.load(path, map_location='cpu', weights_only=True)
    else:
        raise ValueError(f'prompt embedding file {path}: expected a .safetensors or .pt file')
    embedding = content['prompt_embeds'] if isinstance(content, dict) else content
    if not isinstance(embedding, torch.Tensor) or embedding.ndim != 3 or embedding.shape[0] != 1 \
            or embedding.shape[2] != dim:
        shape = tuple(embedding.shape) if isinstance(embedding, torch.Tensor) else type(embedding)
        raise ValueError(f"prompt embedding in {path} must be a tensor [1, L, {dim}] "
                         f"(or a dict with key 'prompt_embeds'), got {shape}")
    if length is not None and embedding.shape[1] != length:
        raise ValueError(f'prompt embedding in {path} has {embedding.shape[1]} tokens; the model '
                         f'expects {length} (max_text_seq_length)')
    return embedding.float()


def modules_of_type(network: nn.Module, kind: type) -> dict[str, nn.Module]:
    """Every submodule of ``network`` that is an instance of ``kind``, by qualified name."""
    return {name: module for name, module in network.named_modules() if isinstance(module, kind)}


def save_model_folder(out: str | Path, networks: Mapping[str, nn.Module],
                      source: str | Path, copied: Iterable[str]) -> Path:
    """Write a ``from_pretrained`` folder: each of ``networks`` (diffusers/transformers models) into
    ``out/<name>/`` with ``save_pretrained``, and the config-only subfolders ``copied`` (scheduler,
    feature extractor) copied from the folder the backbone was loaded from, ``source``."""
    out = Path(out)
    for name, network in networks.items():
        network.save_pretrained(out / name)
    for name in copied:
        shutil.copytree(Path(source) / name, out / name, dirs_exist_ok=True)
    return out
