"""Checking a sweep's overrides against the base config and the registries, before anything runs.

An override must name a key the base config has, or an argument of the class its entry builds
(the entry's registry ``type``; top-level keys: MMEngine's ``Runner``; ``*_dataloader``: torch's
``DataLoader``). Every ``type`` an override sets or brings must be registered (looked up in the
registry the entry's key implies, e.g. ``policy`` -> timestep policies, else in every registry)
and must take the entry's keys, so a type swap that keeps the old type's arguments is caught.
``metric_options.<METRICS type>.<argument>`` (the metric arguments ``tools/test.py`` reads, e.g.
weight files) must name a registered metric and one of its arguments.
"""
from __future__ import annotations

import inspect

from videoscene.engine.config import MISSING, config_entry
from videoscene.errors import InputError
from videoscene.registry import (CAMERA_PATHS, DATA_SAMPLERS, DATASETS, DOMAIN_REGISTRIES,
                                 FUNCTIONS, HOOKS, LOOPS, METRICS, MODEL_WRAPPERS, MODELS,
                                 OPTIM_WRAPPERS, OPTIMIZERS, PARAM_SCHEDULERS, RECONSTRUCTORS,
                                 RENDERERS, ROOT_REGISTRIES, TIMESTEP_POLICIES, VIDEO_BACKBONES,
                                 VIEW_SAMPLERS, VISBACKENDS, VISUALIZERS, UnknownTypeError)

__all__ = ['SpecError', 'REGISTRY_OF_KEY', 'check_options', 'is_swap']

# The registry a config entry's ``type`` is looked up in, by the entry's (or its list's) key.
REGISTRY_OF_KEY = {
    'model': MODELS, 'data_preprocessor': MODELS, 'backbone': VIDEO_BACKBONES,
    'reconstructor': RECONSTRUCTORS, 'renderer': RENDERERS, 'policy': TIMESTEP_POLICIES,
    'camera_path': CAMERA_PATHS, 'view_sampler': VIEW_SAMPLERS, 'dataset': DATASETS,
    'sampler': DATA_SAMPLERS, 'collate_fn': FUNCTIONS, 'default_hooks': HOOKS,
    'custom_hooks': HOOKS, 'val_evaluator': METRICS, 'test_evaluator': METRICS,
    'optimizer': OPTIMIZERS, 'optim_wrapper': OPTIM_WRAPPERS, 'param_scheduler': PARAM_SCHEDULERS,
    'train_cfg': LOOPS, 'val_cfg': LOOPS, 'test_cfg': LOOPS, 'visualizer': VISUALIZERS,
    'vis_backends': VISBACKENDS, 'model_wrapper_cfg': MODEL_WRAPPERS,
}
_BUILDER_KEYS = {'type', '_scope_', '_delete_'}  # read by the builder, not the class
_CONTAINERS = ('default_hooks', 'optim_wrapper')   # entries named freely, all of one registry


class SpecError(InputError):
    """A sweep spec that cannot run; the message names the spec file and the problem."""


def is_swap(value) -> bool:
    """Whether an override value replaces its entry: a dict naming a registry ``type``."""
    return isinstance(value, dict) and isinstance(value.get('type'), str)


def _registry_for(path: list[str]):
    """The registry of the entry at ``path``, by its key (a list item: its list's key; an entry
    of ``default_hooks`` / ``optim_wrapper``: that container's); None when the key says nothing."""
    names = [p for p in path if not p.isdigit()]
    if names and names[-1] in REGISTRY_OF_KEY:
        return REGISTRY_OF_KEY[names[-1]]
    if len(names) > 1 and names[-2] in _CONTAINERS:
        return REGISTRY_OF_KEY[names[-2]]
    return None


def _resolve_type(name: str, path: list[str], where: str):
    """The class (or function) ``name`` builds at ``path``; SpecError when no registry has it."""
    registry = _registry_for(path)
    if registry is not None:
        try:
            return registry.get(name)
        except UnknownTypeError as error:
            raise SpecError(where, f"unknown registry type for '{'.'.join(path)}': {error}") from None
    for candidate in (*DOMAIN_REGISTRIES.values(), *ROOT_REGISTRIES.values()):
        try:
            return candidate.get(name)
        except UnknownTypeError:
            continue
    raise SpecError(where, f"unknown registry type '{name}' for '{'.'.join(path)}': no videoscene "
                    'registry holds it (python -m videoscene.registry lists them; plugins need '
                    'custom_imports)')


def _accepts(target, argument: str) -> bool:
    """Whether ``target(...)`` takes a keyword ``argument`` (or any keyword: ``**kwargs``)."""
    try:
        parameters = inspect.signature(target).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind is p.VAR_KEYWORD or p.name == argument and p.kind is not p.POSITIONAL_ONLY
               for p in parameters)


def _check_typed(node: dict, path: list[str], where: str) -> None:
    """``node`` (an entry with a ``type``) names a registered type that takes all its keys;
    typed entries nested in it are checked too."""
    target = _resolve_type(node['type'], path, where)
    for key, value in node.items():
        if key not in _BUILDER_KEYS and not _accepts(target, key):
            raise SpecError(where, f"unknown config key '{'.'.join([*path, key])}': "
                            f"{node['type']} takes no argument '{key}'")
        _check_nested(value, [*path, key], where)


def _check_nested(value, path: list[str], where: str) -> None:
    if is_swap(value):
        _check_typed(value, path, where)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_nested(item, [*path, str(key)], where)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_nested(item, [*path, str(index)], where)


def _implicit_classes() -> dict:
    """What the Runner builds from untyped entries: itself (top-level keys) and DataLoaders."""
    from mmengine.runner import Runner
    from torch.utils.data import DataLoader
    return {'': Runner, 'train_dataloader': DataLoader, 'val_dataloader': DataLoader,
            'test_dataloader': DataLoader}


def _entry_class(node, path: list[str], where: str):
    """(class, name) the entry at ``path`` builds, or (None, None) when unknown."""
    if isinstance(node, dict) and isinstance(node.get('type'), str):
        return _resolve_type(node['type'], path, where), node['type']
    target = _implicit_classes().get('.'.join(path))
    return (target, target.__name__) if target is not None else (None, None)


def check_options(options: dict, base: dict, merged: dict, where: str) -> None:
    """Every override names a key the base config has, or an argument of the class its entry
    builds; every ``type`` it sets or brings is registered and takes the entry's keys."""
    for key, value in options.items():
        path = key.split('.')
        if not all(path):
            raise SpecError(where, f"config key '{key}' has an empty part")
        if path[0] == 'metric_options':
            _check_metric_options(path, value, where)
            continue
        parent = config_entry(merged, path[:-1])
        entry = path[:-1] if path[-1] == 'type' and len(path) > 1 else path  # '<entry>.type'
        if config_entry(base, entry) is MISSING:
            target, name = _entry_class(config_entry(merged, entry[:-1]), entry[:-1], where)
            if target is None or not _accepts(target, entry[-1]):
                owner = f' nor an argument of {name}' if name else ''
                raise SpecError(where, f"unknown config key '{'.'.join(entry)}': not in the base "
                                f'config{owner} (check the spelling)')
        if path[-1] == 'type':
            if not isinstance(value, str):
                raise SpecError(where, f"'{key}' must be a registry name, got {value!r}")
            before = config_entry(base, path[:-1])
            inherited = set(before) - {'type'} if isinstance(before, dict) else set()
            _check_type_swap(dict(parent), path[:-1], inherited, where)
        else:
            _check_nested(value, path, where)


def _check_metric_options(path: list[str], value, where: str) -> None:
    """``metric_options`` / ``metric_options.TYPE`` / ``metric_options.TYPE.ARGUMENT``: each
    TYPE a registered metric taking each ARGUMENT (tools/test.py's metric arguments)."""
    if len(path) > 3:
        raise SpecError(where, f"'{'.'.join(path)}': metric_options takes TYPE.ARGUMENT, e.g. "
                        "'metric_options.NovelViewLPIPS.vgg_checkpoint'")
    nested = {path[1]: {path[2]: value}} if len(path) == 3 else (
        {path[1]: value} if len(path) == 2 else value)
    if not isinstance(nested, dict) or not all(isinstance(v, dict) for v in nested.values()):
        raise SpecError(where, f"'{'.'.join(path)}' must map METRICS types to their arguments, "
                        f'got {value!r}')
    for kind, arguments in nested.items():
        try:
            target = METRICS.get(kind)
        except UnknownTypeError as error:
            raise SpecError(where, f"unknown metric in 'metric_options': {error}") from None
        for argument in arguments:
            if not _accepts(target, argument):
                raise SpecError(where, f"unknown config key 'metric_options.{kind}.{argument}': "
                                f"{kind} takes no argument '{argument}'")


def _check_type_swap(node: dict, path: list[str], inherited: set, where: str) -> None:
    """A ``...type`` override: the entry keeps its other keys; each must fit the new type."""
    target = _resolve_type(node['type'], path, where)
    for key in node:
        if key not in _BUILDER_KEYS and not _accepts(target, key):
            hint = (f" (kept from the base entry: swap the whole entry instead, e.g. "
                    f"{{'{'.'.join(path)}': dict(type='{node['type']}', ...)}})"
                    if key in inherited else '')
            raise SpecError(where, f"unknown config key '{'.'.join([*path, key])}': "
                            f"{node['type']} takes no argument '{key}'{hint}")
