"""Registries of videoscene.

Two kinds:

* children of MMEngine's root registries (``MODELS``, ``DATASETS``, ``HOOKS`` ...) in the scope
  ``videoscene``: what the Runner builds (models, datasets, hooks, metrics, optimiser wrappers);
* domain registries for the swap points of the method: reconstructors, renderers, camera paths,
  video backbones, noise schedulers and timestep policies.

Every registry knows the module (``locations``) that registers its entries, so building from a
config imports what it needs.  An unknown ``type`` raises :class:`UnknownTypeError`, which lists
the valid entries.  ``python -m videoscene.registry`` prints every registry with its entries.
"""
from __future__ import annotations

from mmengine import registry as mm
from mmengine.registry import Registry

__all__ = [
    'UnknownTypeError', 'VideoSceneRegistry', 'ROOT_REGISTRIES', 'DOMAIN_REGISTRIES',
    'MODELS', 'MODEL_WRAPPERS', 'WEIGHT_INITIALIZERS', 'DATASETS', 'DATA_SAMPLERS', 'TRANSFORMS',
    'HOOKS', 'LOOPS', 'METRICS', 'EVALUATOR', 'OPTIMIZERS', 'OPTIM_WRAPPERS',
    'OPTIM_WRAPPER_CONSTRUCTORS', 'PARAM_SCHEDULERS', 'VISUALIZERS', 'VISBACKENDS',
    'LOG_PROCESSORS', 'FUNCTIONS', 'RUNNERS', 'STRATEGIES', 'RECONSTRUCTORS', 'RENDERERS',
    'CAMERA_PATHS',
    'VIDEO_BACKBONES', 'NOISE_SCHEDULERS', 'TIMESTEP_POLICIES', 'VIEW_SAMPLERS',
]

SCOPE = 'videoscene'


class UnknownTypeError(KeyError):
    """A config names a ``type`` that its registry does not hold."""

    def __str__(self) -> str:  # KeyError would print the message quoted
        return str(self.args[0])


class VideoSceneRegistry(Registry):
    """A :class:`mmengine.registry.Registry` whose failed look-up lists the valid entries."""

    def get(self, key: str):
        obj = super().get(key)
        if obj is None:
            raise UnknownTypeError(
                f"'{key}' is not a registered {self.name} (registry '{self.scope}::{self.name}'). "
                f'Valid entries: {", ".join(self.valid_names()) or "(none)"}. '
                'Entries from a plugin need custom_imports in the config.')
        return obj

    def valid_names(self) -> list[str]:
        """Names ``get`` resolves without a scope prefix: own entries, then the ancestors'."""
        self.import_from_location()
        names = sorted(self._module_dict)
        parent = self.parent
        while parent is not None:
            names += sorted(set(parent._module_dict) - set(names))
            parent = parent.parent
        return names


def _child(parent: Registry, name: str, *locations: str) -> VideoSceneRegistry:
    return VideoSceneRegistry(name, parent=parent, scope=SCOPE, locations=list(locations))


def _domain(name: str, location: str) -> VideoSceneRegistry:
    return VideoSceneRegistry(name, scope=SCOPE, locations=[location])


# Children of MMEngine's roots: what the Runner builds.
MODELS = _child(mm.MODELS, 'model', 'videoscene.models', 'videoscene.distillation')
MODEL_WRAPPERS = _child(mm.MODEL_WRAPPERS, 'model_wrapper')
WEIGHT_INITIALIZERS = _child(mm.WEIGHT_INITIALIZERS, 'weight initializer')
DATASETS = _child(mm.DATASETS, 'dataset', 'videoscene.datasets')
DATA_SAMPLERS = _child(mm.DATA_SAMPLERS, 'data sampler', 'videoscene.datasets')
TRANSFORMS = _child(mm.TRANSFORMS, 'transform', 'videoscene.datasets')
HOOKS = _child(mm.HOOKS, 'hook', 'videoscene.engine', 'videoscene.distillation')
LOOPS = _child(mm.LOOPS, 'loop', 'videoscene.engine')
METRICS = _child(mm.METRICS, 'metric', 'videoscene.evaluation')
EVALUATOR = _child(mm.EVALUATOR, 'evaluator', 'videoscene.evaluation')
OPTIMIZERS = _child(mm.OPTIMIZERS, 'optimizer')
OPTIM_WRAPPERS = _child(mm.OPTIM_WRAPPERS, 'optim_wrapper')
OPTIM_WRAPPER_CONSTRUCTORS = _child(mm.OPTIM_WRAPPER_CONSTRUCTORS, 'optimizer wrapper constructor',
                                    'videoscene.distillation')
PARAM_SCHEDULERS = _child(mm.PARAM_SCHEDULERS, 'parameter scheduler')
VISUALIZERS = _child(mm.VISUALIZERS, 'visualizer', 'videoscene.visualization')
VISBACKENDS = _child(mm.VISBACKENDS, 'vis_backend', 'videoscene.visualization')
LOG_PROCESSORS = _child(mm.LOG_PROCESSORS, 'log_processor')
FUNCTIONS = _child(mm.FUNCTIONS, 'function')
RUNNERS = _child(mm.RUNNERS, 'runner', 'videoscene.engine')
STRATEGIES = _child(mm.STRATEGIES, 'strategy', 'videoscene.engine')

# Domain registries: the swap points of the method.
RECONSTRUCTORS = _domain('reconstructor', 'videoscene.reconstructors')
RENDERERS = _domain('renderer', 'videoscene.renderers')
CAMERA_PATHS = _domain('camera path', 'videoscene.camera_paths')
VIDEO_BACKBONES = _domain('video backbone', 'videoscene.backbones')
NOISE_SCHEDULERS = _domain('noise scheduler', 'videoscene.schedulers')
TIMESTEP_POLICIES = _domain('timestep policy', 'videoscene.policies')
VIEW_SAMPLERS = _domain('view sampler', 'videoscene.datasets')

ROOT_REGISTRIES: dict[str, VideoSceneRegistry] = {
    r.name: r for r in (MODELS, MODEL_WRAPPERS, WEIGHT_INITIALIZERS, DATASETS, DATA_SAMPLERS,
                        TRANSFORMS, HOOKS, LOOPS, METRICS, EVALUATOR, OPTIMIZERS, OPTIM_WRAPPERS,
                        OPTIM_WRAPPER_CONSTRUCTORS, PARAM_SCHEDULERS, VISUALIZERS, VISBACKENDS,
                        LOG_PROCESSORS, FUNCTIONS, RUNNERS, STRATEGIES)}
DOMAIN_REGISTRIES: dict[str, VideoSceneRegistry] = {
    r.name: r for r in (RECONSTRUCTORS, RENDERERS, CAMERA_PATHS, VIDEO_BACKBONES,
                        NOISE_SCHEDULERS, TIMESTEP_POLICIES, VIEW_SAMPLERS)}


def describe() -> str:
    """Every registry of videoscene with its own entries and the module that registers them."""
    lines = []
    for title, group in (('Domain registries (swap points)', DOMAIN_REGISTRIES),
                         ('MMEngine registries, scope videoscene', ROOT_REGISTRIES)):
        lines.append(f'{title}:')
        for name, reg in group.items():
            reg.import_from_location()
            own = ', '.join(sorted(reg.module_dict))
            if reg.parent is not None:
                own = f'{own} + ' * bool(own) + f"MMEngine's {reg.parent.name} entries"
            where = ', '.join(reg._locations) or 'no module of its own'
            lines.append(f'  {name:<30} [{where}] {own or "(no entries yet)"}')
    return '\n'.join(lines)
