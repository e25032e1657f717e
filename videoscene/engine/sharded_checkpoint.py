"""Checkpoints of sharded runs: one folder per checkpoint, written by every rank.

Two layouts: ``FSDP2Strategy``'s (below) and MMEngine's ``DeepSpeedStrategy``'s
(``mp_rank_00_model_states.pt`` with the whole model's state dict under ``module`` and the
Runner's entries, plus ``*_optim_states.pt`` per rank with the ZeRO partitions of the optimizer);
both are checked and consolidated here, DeepSpeed's to weights and ``meta`` only (its
partitioned optimizer states stay DeepSpeed's, read back by ``--resume`` under the strategy).

A sharded checkpoint is a folder named like MMEngine's files (``iter_N.pth``, as MMEngine's
DeepSpeed strategy also names its folders) holding

* a ``torch.distributed.checkpoint`` (DCP) save: ``.metadata`` and ``__R_0.distcp`` files, each
  rank writing its own shards, with two entries:

  - ``state_dict``: the model's state dict as a single-process run writes it (the distillation
    model's trained tensors, EMA target, policy, reward baseline; frozen tensors are not saved),
    sharded tensors as ``DTensor`` shards, replicated ones once;
  - ``optimizer``: ``{optimizer name: {parameter name: {state key: tensor}}}`` (AdamW's moments
    sharded like their parameters, ``step`` replicated);

* ``extra.pth`` (rank 0): ``meta``, ``message_hub``, ``param_schedulers`` and, per optimizer, its
  ``param_groups`` and the parameter name of each index, so the optimizer states can be put back
  in torch's index-keyed layout.

DCP re-shards on load, so a run may resume on another number of processes.  The folder is written
under a hidden ``.partial`` name and renamed into place by rank 0 after every rank finished, so
an interrupted write never leaves a folder that looks complete (:func:`sharded_problem`).
:func:`consolidate` turns a folder into the single-process checkpoint dict ``tools/train.py``
writes without a strategy (full tensors, index-keyed optimizer states), which ``tools/infer.py``,
``tools/test.py`` and a one-process ``--resume`` read.
"""
from __future__ import annotations

import os
import os.path as osp
import shutil
import warnings
import zipfile
from collections.abc import Mapping

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from mmengine.model import is_model_wrapper
from mmengine.runner.checkpoint import get_state_dict
from torch import nn
from torch.distributed.tensor import DTensor, distribute_tensor

__all__ = ['EXTRA', 'consolidate', 'is_sharded_checkpoint', 'load_full_state_dict', 'load_sharded',
           'parameter_names', 'save_sharded', 'sharded_problem']

EXTRA = 'extra.pth'
_METADATA = '.metadata'   # written by DCP's coordinator after every rank wrote its shards
DEEPSPEED_MODEL = 'mp_rank_00_model_states.pt'


def is_sharded_checkpoint(path: str) -> bool:
    """A folder in ``FSDP2Strategy``'s layout (not DeepSpeed's)."""
    return osp.isdir(path) and not osp.isfile(osp.join(path, DEEPSPEED_MODEL))


def sharded_problem(path: str) -> str | None:
    """Why the folder ``path`` is not a complete sharded checkpoint, or None."""
    if osp.isfile(osp.join(path, DEEPSPEED_MODEL)):
        for name in sorted(os.listdir(path)):
            if name.endswith('.pt') and not zipfile.is_zipfile(osp.join(path, name)):
                return f'holds {name}, a truncated DeepSpeed checkpoint file (an interrupted write)'
        return None
    missing = [name for name in (_METADATA, EXTRA) if not osp.isfile(osp.join(path, name))]
    if missing:
        return (f'is a folder without {" and ".join(missing)}: not a complete sharded checkpoint '
                '(an interrupted write, or not written by FSDP2Strategy)')
    return None


def parameter_names(module: nn.Module, prefix: str = '') -> dict[int, str]:
    """``id(parameter) -> name`` as in the unwrapped model's state dict (model wrappers such as a
    DDP-wrapped policy add no ``module.`` to the names)."""
    if is_model_wrapper(module):
        return parameter_names(module.module, prefix)
    names = {id(p): prefix + name for name, p in module.named_parameters(recurse=False)}
    for child_name, child in module.named_children():
        names.update(parameter_names(child, f'{prefix}{child_name}.'))
    return names


def _wrappers(optim_wrapper) -> dict:
    """An ``OptimWrapperDict``'s wrappers by name; one ``OptimWrapper`` as ``'optimizer'``."""
    if hasattr(optim_wrapper, 'items'):
        return dict(optim_wrapper.items())
    return {'optimizer': optim_wrapper}


def _optimizer_layout(model: nn.Module, optim_wrapper) -> tuple[dict, dict]:
    """``(tensors, layout)`` of each optimizer of ``optim_wrapper`` (an ``OptimWrapperDict`` or
    one ``OptimWrapper``, saved under ``'optimizer'``): state tensors by parameter name, and the
    rest (param groups, index -> name, non-tensor state values)."""
    names = parameter_names(model)
    tensors, layout = {}, {}
    for key, wrapper in _wrappers(optim_wrapper).items():
        optimizer = wrapper.optimizer
        order = [names[id(p)] for group in optimizer.param_groups for p in group['params']]
        saved = optimizer.state_dict()
        tensors[key] = {order[index]: {k: v for k, v in state.items() if torch.is_tensor(v)}
                        for index, state in saved['state'].items()}
        layout[key] = dict(param_groups=saved['param_groups'], names=order,
                           other={index: {k: v for k, v in state.items() if not torch.is_tensor(v)}
                                  for index, state in saved['state'].items()})
    return tensors, layout


def _index_keyed(tensors: Mapping, layout: Mapping) -> dict:
    """One optimizer's ``state_dict()`` back from :func:`_optimizer_layout`'s parts."""
    state = {}
    for index, name in enumerate(layout['names']):
        if name in tensors:
            state[index] = dict(layout['other'].get(index, {}), **tensors[name])
    return dict(state=state, param_groups=layout['param_groups'])


def save_sharded(path: str, model: nn.Module, optim_wrapper=None,
                 extra: dict | None = None) -> None:
    """Write the folder ``path`` (collective: every rank calls it); see the module docstring."""
    state = {'state_dict': get_state_dict(model)}
    extra = dict(extra or {})
    if optim_wrapper is not None:
        state['optimizer'], extra['optimizer_layout'] = _optimizer_layout(model, optim_wrapper)
    from .checkpoint import partial_name     # (that module reads sharded checkpoints with ours)
    folder, name = osp.split(osp.abspath(path))
    token = [partial_name(name)] if dist.get_rank() == 0 else [None]
    dist.broadcast_object_list(token, src=0)
    partial = osp.join(folder, token[0])
    dcp.save(state, checkpoint_id=partial)
    if dist.get_rank() == 0:
        with open(osp.join(partial, EXTRA), 'wb') as file:
            torch.save(extra, file)
            file.flush()
            os.fsync(file.fileno())
        if osp.isdir(path):
            shutil.rmtree(path)
        os.replace(partial, path)
    dist.barrier()


def load_sharded(path: str, model: nn.Module, optim_wrapper=None) -> dict:
    """Load the folder ``path`` into the (sharded) ``model`` and, when given, the optimizers;
    returns ``extra.pth``'s dict (``meta``, ``message_hub``, ``param_schedulers`` ...).

    Collective.  Model tensors load in place, re-sharded to this run's layout; tensors the model
    has but the checkpoint lacks raise (the frozen tensors are never in the state dict)."""
    problem = sharded_problem(path)
    if problem is not None:
        raise FileNotFoundError(f'{path} {problem}')
    if not is_sharded_checkpoint(path):
        raise ValueError(f'{path} was written by DeepSpeedStrategy: resume it under that strategy, '
                         'or start a FSDP2 run from its weights with load_from')
    extra = torch.load(osp.join(path, EXTRA), map_location='cpu', weights_only=False)
    state = {'state_dict': get_state_dict(model)}
    layout = extra.pop('optimizer_layout', None)
    if optim_wrapper is not None:
        if layout is None:
            raise KeyError(f'{path} holds no optimizer states (saved without them)')
        by_id = {id(p): p for p in model.parameters()}
        params = {name: by_id[p_id] for p_id, name in parameter_names(model).items()}
        keys = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
        state['optimizer'] = {}
        for key, parts in layout.items():
            state['optimizer'][key] = {}
            for name in parts['names']:
                prefix = f'optimizer.{key}.{name}.'
                for entry in (k[len(prefix):] for k in keys if k.startswith(prefix)):
                    shape = keys[prefix + entry].size
                    like = params[name] if tuple(shape) == tuple(params[name].shape) else \
                        torch.empty(tuple(shape))
                    state['optimizer'][key].setdefault(name, {})[entry] = \
                        torch.zeros_like(like, dtype=keys[prefix + entry].properties.dtype)
    dcp.load(state, checkpoint_id=path)   # in place: the state dict's tensors are the model's
    if optim_wrapper is not None:
        for key, wrapper in _wrappers(optim_wrapper).items():
            wrapper.load_state_dict(_index_keyed(state['optimizer'][key], layout[key]))
    return extra


def consolidate(path: str) -> dict:
    """The single-process checkpoint dict of the sharded checkpoint folder ``path`` (one process,
    no process group): ``state_dict`` with full tensors, ``optimizer`` in ``OptimWrapperDict``'s
    layout, and ``extra.pth``'s entries (a DeepSpeed folder: ``state_dict`` and ``meta``)."""
    problem = sharded_problem(path)
    if problem is not None:
        raise FileNotFoundError(f'{path} {problem}')
    if osp.isfile(osp.join(path, DEEPSPEED_MODEL)):
        saved = torch.load(osp.join(path, DEEPSPEED_MODEL), map_location='cpu', weights_only=False)
        return dict(state_dict=saved['module'], meta=saved['meta'])
    extra = torch.load(osp.join(path, EXTRA), map_location='cpu', weights_only=False)
    entries = dcp.FileSystemReader(path).read_metadata().state_dict_metadata
    flat = {key: torch.empty(tuple(entry.size), dtype=entry.properties.dtype)
            for key, entry in entries.items()}            # DCP's flattened keys, full shapes
    with warnings.catch_warnings():     # DCP warns that it loads in one process: that is the point
        warnings.filterwarnings('ignore', 'torch.distributed is disabled')
        dcp.load(flat, checkpoint_id=path, no_dist=True)
    checkpoint = dict(extra, state_dict={key[len('state_dict.'):]: value for key, value in
                                         flat.items() if key.startswith('state_dict.')})
    layout = checkpoint.pop('optimizer_layout', None)
    if layout is not None:
        states: dict = {}
        for key, value in flat.items():
            if key.startswith('optimizer.'):
                wrapper, rest = key[len('optimizer.'):].split('.', 1)
                name, entry = rest.rsplit('.', 1)
                states.setdefault(wrapper, {}).setdefault(name, {})[entry] = value
        optimizer = {key: _index_keyed(states.get(key, {}), parts) for key, parts in layout.items()}
        single = set(optimizer) == {'optimizer'}     # one OptimWrapper, not a dict of them
        checkpoint['optimizer'] = optimizer['optimizer'] if single else optimizer
    return checkpoint


def load_full_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Copy full tensors (a single-process checkpoint's ``state_dict``) into a sharded model,
    each ``DTensor`` receiving its own shard; returns the model keys the dict lacks."""
    own = get_state_dict(model)
    missing = [key for key in own if key not in state_dict]
    with torch.no_grad():
        for key, tensor in own.items():
            if key not in state_dict:
                continue
            value = state_dict[key].to(device=tensor.device, dtype=tensor.dtype)
            if isinstance(tensor, DTensor):
                value = distribute_tensor(value, tensor.device_mesh, tensor.placements)
            tensor.copy_(value)
    return missing
