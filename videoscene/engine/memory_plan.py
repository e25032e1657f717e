"""Per-device memory of training a config's model, planned without loading a weight.

The model is built from its config with every tensor on the meta device
(:func:`build_on_meta`: diffusers / transformers ``from_pretrained`` read only ``config.json``,
prompt embeddings are read by shape, checkpoints are not loaded), so a 5B-parameter backbone is
planned from its architecture files alone (``configs/_base_/models/cogvideox5b_i2v/``).

Items, in bytes per device (``W`` = world size, ``s(x)`` = bytes per element):

* frozen shell (VAE, condition encoders, prompt embeddings), frozen denoiser weights,
  reconstructor, policy: ``numel x s(storage dtype)``;
* student trained weights ``P x s``; teacher copy and EMA target copy of them (distillation
  only): ``P x s`` each; gradients ``P x s``; optimizer states ``k x 4`` bytes per trained scalar
  (AdamW / Adam ``k = 2``, SGD with momentum 1, without 0); with AMP autocast, the cached 16-bit
  copies of the trained weights ``P x 2``; under DDP the gradient buckets ``P x s`` (unless
  ``gradient_as_bucket_view``);
* activations of one training step, for a transformer denoiser of ``L`` blocks of width ``D`` on
  ``N = B x (f x h/p x w/p + text tokens)`` tokens in compute dtype ``e`` bytes::

      no checkpointing:  A = alpha x N x D x L x e
      checkpointing:     A = N x D x L x e  (block inputs)  +  alpha x N x D x e  (one block)

  ``alpha`` (elements kept per token x width x layer, backward temporaries included) is a
  property of the block architecture, measured once (``ALPHA``).  With the CPU renderer the
  no-gradient render / encode stage, which runs before the student's forward, replaces ``A``
  when larger (``PIXEL_STAGE_BYTES`` per video pixel), and the process's runtime working memory
  is an item of its own (``CPU_RUNTIME_BYTES``); both matter only for toy models.

Sharding (``strategy`` in the config; none or DDP: everything replicated):

* ``FSDP2Strategy`` (``LeapFlowDistillation.shard``): denoiser weights (frozen and trained),
  gradients, optimizer states and the teacher / target copies divided by ``W``; shell,
  reconstructor and policy replicated; frozen tensors and the teacher copy in the backbone's
  dtype; with ``mixed_precision.param_dtype`` the trained tensors, their gradients and the target
  in float32 (master weights); plus one all-gathered block (the largest) in ``param_dtype`` as a
  transient item;
* ``DeepSpeedStrategy``: ZeRO stage 1 shards optimizer states, 2 also gradients (stage 3 is
  refused by the strategy); ``bf16`` / ``fp16`` enabled stores parameters in 16 bits with a
  float32 master copy of the trained ones in the optimizer states; ``config.torch_autocast``
  keeps the weights as built and computes in its dtype.
Activation checkpointing is the model's ``gradient_checkpointing``.

Calibration (float32, one CPU process, :func:`measure_peak`: ``VmHWM`` increase over three real
steps, the batch ready and the modules imported): ``CPU_RUNTIME_BYTES`` and ``PIXEL_STAGE_BYTES``
from the tiny config with ``DepthUnprojection`` at batch 1 and 4 (76.8 and 158.5 MiB over the
static tensors, the transformer's share < 1.5 MiB); ``ALPHA`` from the medium configuration at
batch 2 (578.8 MiB over the static tensors). Checked with ``tools/plan_memory.py --measure``
(predicted / measured): tiny config 0.98, medium 1.04, medium with checkpointing 1.08; figures
in ``benchmarks/results/plan_memory.md``.  The render/encode stage and the runtime term are
counted only for configs with the CPU renderer (``renderer=dict(type='torch')``): with gsplat
and a tiled VAE on a GPU that stage is not modelled.
"""
from __future__ import annotations

import contextlib
import gc
import multiprocessing
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.config import Config
from torch import nn

from videoscene.errors import InputError

__all__ = ['MemoryItem', 'MemoryPlan', 'Sharding', 'build_on_meta', 'plan_memory',
           'measure_peak', 'parse_bytes', 'format_size']

GiB = 2 ** 30
# measured on this CPU (module docstring): elements kept per token x width x layer; bytes per
# video pixel of the no-gradient render / encode stage with the CPU renderer; the process's
# runtime working memory (autograd, allocator, oneDNN) on top of the tensors
ALPHA = 23.0
PIXEL_STAGE_BYTES = 3100
CPU_RUNTIME_BYTES = 50 * 2 ** 20
OPTIMIZER_STATES = {'Adam': 2, 'AdamW': 2, 'SGD': None}   # SGD: 1 with momentum, else 0
JOINT_TEXT_DENOISERS = ('CogVideoXTransformer3DModel',)   # text tokens join the video sequence
DEFAULT_TEXT_TOKENS = 226   # CogVideoX's T5 length, for a prompt embedding file not at hand


def parse_bytes(text: str) -> int:
    """``'80GB'``, ``'80GiB'``, ``'80G'`` (all binary: GiB, as GPUs report it), ``'512MiB'``."""
    units = {'k': 2 ** 10, 'm': 2 ** 20, 'g': 2 ** 30, 't': 2 ** 40, '': 1}
    lowered = text.strip().lower().removesuffix('b').removesuffix('i')
    number = lowered.rstrip('kmgt')
    try:
        value = float(number)
    except ValueError:
        raise InputError('--gpu-memory', f"expected a size such as '80GB', got {text!r}") from None
    if value <= 0:
        raise InputError('--gpu-memory', f'must be positive, got {text!r}')
    return int(value * units[lowered[len(number):]])


# ----------------------------------------------------------------------------- building on meta
def _prompt_embedding_on_meta(path: str | Path, dim: int, length: int | None = None) -> torch.Tensor:
    """``[1, L, dim]`` on meta: ``L`` from the file's header if it exists, else ``length`` or
    :data:`DEFAULT_TEXT_TOKENS`."""
    path = Path(path).expanduser()
    if path.suffix == '.safetensors' and path.is_file():
        from safetensors import safe_open
        with safe_open(str(path), 'pt') as handle:
            length = handle.get_slice('prompt_embeds').get_shape()[1]
    return torch.empty(1, length or DEFAULT_TEXT_TOKENS, dim, device='meta')


@contextlib.contextmanager
def _loaders_on_meta() -> Iterator[None]:
    """Within: diffusers and transformers ``from_pretrained`` build from ``config.json`` only,
    model folders need no weight file, prompt embeddings are read by shape (all on meta)."""
    import diffusers
    import transformers

    from videoscene.backbones import loading

    def diffusers_from_config(cls, path, subfolder=None, **_):
        with torch.device('meta'):
            return cls.from_config(cls.load_config(path, subfolder=subfolder))

    def transformers_from_config(cls, path, subfolder='', **_):
        with torch.device('meta'):
            return cls._from_config(cls.config_class.from_pretrained(path, subfolder=subfolder))

    original_embedding = loading.load_prompt_embedding
    patches = [(diffusers.ModelMixin, 'from_pretrained', classmethod(diffusers_from_config)),
               (transformers.PreTrainedModel, 'from_pretrained',
                classmethod(transformers_from_config)),
               (loading, '_has_weight', lambda folder, name: True)]
    patches += [(module, name, _prompt_embedding_on_meta) for module in list(sys.modules.values())
                for name, value in list(vars(module).items()) if value is original_embedding]
    saved = [(owner, name, owner.__dict__[name]) for owner, name, _ in patches]
    try:
        for owner, name, value in patches:
            setattr(owner, name, value)
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def build_on_meta(model_cfg: dict) -> nn.Module:
    """The ``MODELS`` config's model, its backbone's networks and prompt embeddings on the meta
    device (no weight is read); the small parts (reconstructor, policy) are built on the CPU with
    their initial weights, their ``checkpoint`` and ``reconstructor_checkpoint`` dropped."""
    from videoscene.registry import MODELS
    cfg = dict(model_cfg)
    cfg.pop('reconstructor_checkpoint', None)
    if isinstance(cfg.get('reconstructor'), dict):
        cfg['reconstructor'] = {k: v for k, v in cfg['reconstructor'].items() if k != 'checkpoint'}
    cfg.pop('data_preprocessor', None)
    import videoscene.backbones  # noqa: F401  (the loaders to patch are imported first)
    with _loaders_on_meta():
        return MODELS.build(cfg)


# ----------------------------------------------------------------------------- sharding
@dataclass(frozen=True)
class Sharding:
    """How the config's ``strategy`` places tensors (see the module docstring)."""

    kind: str = 'replicated'                   # 'replicated' | 'fsdp' | 'zero'
    world_size: int = 1
    zero_stage: int = 0
    param_dtype: torch.dtype | None = None     # 16-bit storage (ZeRO bf16/fp16), gather (FSDP2)
    compute_dtype: torch.dtype | None = None   # autocast (ZeRO torch_autocast); None: as stored
    checkpointing: bool = False
    bucket_view: bool = False                  # DDP gradient_as_bucket_view

    @classmethod
    def from_config(cls, cfg: Config, world_size: int) -> Sharding:
        from videoscene.backbones.base import resolve_dtype
        if world_size < 1:
            raise InputError('--world-size', f'must be at least 1, got {world_size}')
        strategy = dict(cfg.get('strategy') or {})
        model = cfg.model
        checkpointing = bool(model.get('gradient_checkpointing'))
        kind = strategy.get('type', 'DDPStrategy')
        wrapper = dict(cfg.get('model_wrapper_cfg') or {})
        if kind in ('DDPStrategy', 'SingleDeviceStrategy'):
            return cls('replicated', world_size, checkpointing=checkpointing,
                       bucket_view=bool(wrapper.get('gradient_as_bucket_view')))
        if kind == 'FSDP2Strategy':
            param = (strategy.get('mixed_precision') or {}).get('param_dtype')
            return cls('fsdp', world_size, param_dtype=resolve_dtype(param) if param else None,
                       checkpointing=checkpointing)
        if kind == 'DeepSpeedStrategy':
            stage = int((strategy.get('zero_optimization') or {}).get('stage', 0))
            if stage not in (0, 1, 2):
                raise InputError('strategy.zero_optimization.stage', f'expected 0-2 (ZeRO-3 is '
                                 f'refused by DeepSpeedStrategy), got {stage}')
            half = next((dtype for key, dtype in (('bf16', torch.bfloat16), ('fp16', torch.float16))
                         if (strategy.get(key) or {}).get('enabled')), None)
            autocast = ((strategy.get('config') or {}).get('torch_autocast') or {})
            compute = resolve_dtype(autocast.get('dtype', 'bfloat16')) \
                if autocast.get('enabled') else None
            return cls('zero', world_size, zero_stage=stage, param_dtype=half,
                       compute_dtype=compute, checkpointing=checkpointing)
        raise InputError('strategy.type', f"{kind!r} is not planned (known: DDPStrategy, "
                         'FSDP2Strategy, DeepSpeedStrategy)')

    def describe(self) -> str:
        if self.kind == 'fsdp':
            what = f'FSDP2 (gathered in {self.param_dtype or "the stored dtype"})'
        elif self.kind == 'zero':
            dtype = self.param_dtype or self.compute_dtype
            what = f'DeepSpeed ZeRO-{self.zero_stage}' + (f' {dtype}' if dtype else '')
        else:
            what = 'replicated (DDP)' if self.world_size > 1 else 'one device'
        return (f'{what}, world size {self.world_size}, activation checkpointing '
                f'{"on" if self.checkpointing else "off"}')


# ----------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class MemoryItem:
    name: str
    bytes: float          # per device
    detail: str = ''


@dataclass
class MemoryPlan:
    """Per-device items and parameter counts (scalars by group)."""

    items: list[MemoryItem]
    counts: dict[str, int]
    sharding: Sharding
    workload: str

    @property
    def total(self) -> float:
        return sum(item.bytes for item in self.items)

    def item(self, name: str) -> MemoryItem:
        return next(item for item in self.items if item.name == name)

    def verdict(self, capacity: float) -> str:
        total = self.total
        if total <= capacity:
            return (f'fits in {capacity / GiB:.0f} GiB with {(capacity - total) / GiB:.1f} GiB '
                    'spare')
        biggest = max(self.items, key=lambda item: item.bytes)
        return (f'does NOT fit in {capacity / GiB:.0f} GiB: needs {total / GiB:.1f} GiB, the '
                f'biggest item is {biggest.name} ({biggest.bytes / GiB:.1f} GiB)')

    def render(self, capacity: float) -> str:
        width = max(len(item.name) for item in self.items)
        lines = [f'workload: {self.workload}', f'placement: {self.sharding.describe()}',
                 'parameters: ' + ', '.join(f'{name} {count:,}' for name, count in
                                            self.counts.items()),
                 '', f'{"per device":<{width}}  {"size":>10}  detail']
        lines += [f'{item.name:<{width}}  {format_size(item.bytes):>10}  {item.detail}'
                  for item in self.items]
        lines += [f'{"total":<{width}}  {format_size(self.total):>10}', '', self.verdict(capacity)]
        return '\n'.join(lines)


def format_size(nbytes: float) -> str:
    """``1.23 GiB`` / ``4.56 MiB`` / ``7.89 KiB`` / ``12 B``."""
    for unit, scale in (('GiB', GiB), ('MiB', 2 ** 20), ('KiB', 2 ** 10)):
        if nbytes >= scale:
            return f'{nbytes / scale:.2f} {unit}'
    return f'{nbytes:.0f} B'


def _bytes(tensors: Iterable[torch.Tensor], dtype: torch.dtype | None = None) -> int:
    return sum(t.numel() * (dtype.itemsize if dtype is not None and t.is_floating_point()
                            else t.element_size()) for t in tensors)


def _numel(tensors: Iterable[torch.Tensor]) -> int:
    return sum(t.numel() for t in tensors)


def _tensors(module: nn.Module | None) -> list[torch.Tensor]:
    if module is None:
        return []
    return [*module.parameters(), *module.buffers()]


def _blocks(denoiser: nn.Module) -> nn.ModuleList:
    """The denoiser's repeated blocks: its largest ``ModuleList`` child."""
    lists = [m for m in denoiser.children() if isinstance(m, nn.ModuleList) and len(m)]
    if not lists:
        raise InputError(type(denoiser).__name__, 'has no list of blocks: the activation '
                         'estimate covers transformer denoisers')
    return max(lists, key=lambda m: _numel(m.parameters()))


def _block_width(block: nn.Module) -> int:
    attention = getattr(block, 'attn1', None)
    linear = getattr(attention, 'to_q', None)
    if not isinstance(linear, nn.Linear):
        raise InputError(type(block).__name__, 'has no attn1.to_q: cannot read the block width '
                         'for the activation estimate')
    return linear.in_features


def sample_shape(cfg: Config) -> tuple[int, int, int]:
    """``(frames, height, width)`` of one training video from ``train_dataloader.dataset``."""
    dataset = cfg.get('train_dataloader', {}).get('dataset', {})
    sampler = dataset.get('view_sampler', {})
    kind = sampler.get('type')
    if kind == 'bounded':
        frames = sampler['num_targets'] + 2
    elif kind == 'video':
        frames = sampler.get('num_frames', 49)
    elif kind == 'fixed':
        frames = len(set(sampler['context']) | set(sampler['target']))
    else:
        raise InputError('train_dataloader.dataset.view_sampler', f'type {kind!r}: give the '
                         'training video size with --frames and --size H W')
    shape = dataset.get('image_shape') or (dataset.get('height'), dataset.get('width'))
    if None in shape:
        raise InputError('train_dataloader.dataset', 'has neither image_shape nor height/width: '
                         'give the training video size with --size H W')
    return frames, int(shape[0]), int(shape[1])


def _optimizer_states(optimizer_cfg: dict, what: str) -> int:
    kind = optimizer_cfg.get('type')
    if kind not in OPTIMIZER_STATES:
        raise InputError(what, f'optimizer {kind!r} is not planned (known: '
                         f'{", ".join(OPTIMIZER_STATES)})')
    states = OPTIMIZER_STATES[kind]
    return states if states is not None else int(bool(optimizer_cfg.get('momentum', 0)))


def plan_memory(cfg: Config, world_size: int = 1, batch: int | None = None,
                video: tuple[int, int, int] | None = None) -> MemoryPlan:
    """The per-device plan of training ``cfg.model`` (``LeapFlowDistillation`` or
    ``InterpolationTeacher``) with the config's optimizers and strategy on ``world_size``
    devices, ``batch`` samples per device (default: the config's) of ``video = (frames, height,
    width)`` (default: :func:`sample_shape`)."""
    from videoscene.backbones import VideoBackbone
    from videoscene.backbones.base import resolve_dtype
    sharding = Sharding.from_config(cfg, world_size)
    W = world_size
    model = build_on_meta(cfg.model.to_dict())
    backbone = getattr(model, 'backbone', None)
    if not isinstance(backbone, VideoBackbone):
        raise InputError(cfg.model.get('type'), 'has no video backbone: plan_memory covers '
                         'LeapFlowDistillation and InterpolationTeacher models')
    distillation = hasattr(model, 'teacher') and hasattr(model, 'target')
    denoiser = backbone.denoiser()
    trained = list(backbone.trained_tensors().values())
    trained_ids = {id(t) for t in trained}
    denoiser_ids = {id(t) for t in _tensors(denoiser)}
    shell = [t for t in _tensors(backbone) if id(t) not in denoiser_ids]
    frozen_denoiser = [t for t in _tensors(denoiser) if id(t) not in trained_ids]
    reconstructor = _tensors(getattr(model, 'reconstructor', None))
    policy_module = getattr(model, 'policy', None)
    policy = _tensors(policy_module)
    policy_trained = [p for p in (policy_module.parameters() if policy_module else [])
                      if p.requires_grad]
    copies = _tensors(model.teacher) + _tensors(model.target) if distillation else []
    known = {id(t) for t in [*_tensors(backbone), *reconstructor, *policy, *copies]}
    other = [t for t in _tensors(model) if id(t) not in known]

    # storage dtypes and divisors by placement
    frozen_dtype = None
    masters = sharding.kind == 'fsdp' and sharding.param_dtype is not None
    trained_dtype = torch.float32 if masters else None
    if sharding.kind == 'zero' and sharding.param_dtype is not None:
        frozen_dtype = trained_dtype = sharding.param_dtype
    fsdp = sharding.kind == 'fsdp'
    weights_div = W if fsdp else 1
    grads_div = W if fsdp or (sharding.kind == 'zero' and sharding.zero_stage >= 2) else 1
    states_div = W if fsdp or (sharding.kind == 'zero' and sharding.zero_stage >= 1) else 1

    def params_only(tensors, dtype, divisor=1):
        return _bytes(tensors, dtype) / divisor

    trained_scalars = _numel(trained)
    trained_bytes = _bytes(trained, trained_dtype)
    grad_dtype = torch.float32 if sharding.kind == 'zero' and sharding.param_dtype else trained_dtype
    items = [
        MemoryItem('frozen shell (VAE, encoders, prompt)', params_only(shell, frozen_dtype),
                   f'{_numel(shell):,} scalars, replicated'),
        MemoryItem('frozen denoiser weights', params_only(frozen_denoiser, frozen_dtype, weights_div),
                   f'{_numel(frozen_denoiser):,} scalars' + (f' / {W}' if fsdp else '')),
        MemoryItem('reconstructor (frozen)', params_only(reconstructor, frozen_dtype),
                   f'{_numel(reconstructor):,} scalars, replicated'),
        MemoryItem('student trained weights', params_only(trained, trained_dtype, weights_div),
                   f'{trained_scalars:,} scalars' + (f' / {W}' if fsdp else '')),
    ]
    if distillation:
        copy_div = W if fsdp else 1
        for name, role, dtype in (('teacher copy', model.teacher, None),
                                  ('EMA target copy', model.target, trained_dtype)):
            tensors = _tensors(role)
            items.append(MemoryItem(name, _bytes(tensors, dtype) / copy_div,
                                    'buffers of the trained tensors' +
                                    (f' / {W}' if fsdp else '')))
    items.append(MemoryItem('student gradients', _bytes(trained, grad_dtype) / grads_div,
                            f'{trained_scalars:,} scalars' + (f' / {W}' if grads_div > 1 else '')))
    optim = cfg.optim_wrapper
    student_optim = optim.get('student', optim)
    states = _optimizer_states(student_optim['optimizer'], 'optim_wrapper')
    master = 1 if sharding.kind == 'zero' and sharding.param_dtype is not None else 0
    items.append(MemoryItem(
        'optimizer states', (states + master) * 4 * trained_scalars / states_div,
        f'{student_optim["optimizer"]["type"]}: {states + master} x fp32 per trained scalar'
        + (f' / {W}' if states_div > 1 else '')))
    policy_bytes = _bytes(policy)
    if policy_trained:
        # one optimizer (optim_wrapper type=...): the policy is a group of the student's optimizer
        policy_optimizer = optim.get('policy', {}).get('optimizer') or student_optim['optimizer']
        policy_states = _optimizer_states(policy_optimizer, 'optim_wrapper.policy')
        policy_bytes += (1 + policy_states) * _bytes(policy_trained)
    items.append(MemoryItem('policy (weights, grads, optimizer)', policy_bytes,
                            f'{_numel(policy):,} scalars, replicated'))
    if other:
        items.append(MemoryItem('other buffers', _bytes(other), f'{_numel(other):,} scalars'))
    amp = student_optim.get('type') == 'AmpOptimWrapper'
    if amp and not fsdp and sharding.param_dtype is None:
        items.append(MemoryItem('autocast copies of trained weights', 2 * trained_scalars,
                                'cached 16-bit casts during the step'))
    if sharding.kind == 'replicated' and W > 1 and not sharding.bucket_view:
        items.append(MemoryItem('DDP gradient buckets', _bytes(trained, trained_dtype),
                                'gradient_as_bucket_view=False'))
    blocks = _blocks(denoiser)
    if fsdp:
        gathered = max(_numel(_tensors(block)) for block in blocks)
        dtype = sharding.param_dtype or torch.float32
        items.append(MemoryItem('all-gathered block (transient)', gathered * dtype.itemsize,
                                f'{gathered:,} scalars in {dtype}'))

    # activations
    batch = batch or cfg.train_dataloader.batch_size
    frames, height, width = video or sample_shape(cfg)
    f, _, h, w = backbone.latent_shape(frames, height, width)
    patch = getattr(getattr(denoiser, 'config', None), 'patch_size', 1) or 1
    pt, ph, pw = (1, patch, patch) if isinstance(patch, int) else tuple(patch)
    video_tokens = (f // pt) * (h // ph) * (w // pw)
    text = getattr(backbone, 'prompt_embeds', None)
    text_tokens = text.shape[1] if text is not None and \
        type(denoiser).__name__ in JOINT_TEXT_DENOISERS else 0
    tokens = batch * (video_tokens + text_tokens)
    D, L = _block_width(blocks[0]), len(blocks)
    if sharding.param_dtype is not None or sharding.compute_dtype is not None:
        compute = sharding.param_dtype or sharding.compute_dtype
    elif amp:
        compute = resolve_dtype(student_optim.get('dtype', 'float16'))
    else:
        compute = backbone.dtype
    e = compute.itemsize
    pixels = batch * frames * height * width
    cpu_renderer = (cfg.model.get('renderer') or {}).get('type') == 'torch'
    if sharding.checkpointing:
        activations = tokens * D * L * e + ALPHA * tokens * D * e
        formula = f'N x D x L x {e} + {ALPHA:g} x N x D x {e}'
    else:
        activations = ALPHA * tokens * D * L * e
        formula = f'{ALPHA:g} x N x D x L x {e}'
    detail = f'{formula}, N = {batch} x ({video_tokens} + {text_tokens}) tokens, D = {D}, L = {L}'
    if cpu_renderer:   # the render / encode stage runs before the student's forward: max, not sum
        stage = PIXEL_STAGE_BYTES * pixels
        detail += f'; or the render/encode stage {PIXEL_STAGE_BYTES} B x {pixels:,} px if larger'
        activations = max(activations, stage)
    items.append(MemoryItem('activations (one step)', activations, detail))
    if cpu_renderer:
        items.append(MemoryItem('CPU runtime working memory', CPU_RUNTIME_BYTES,
                                'measured; configs with the torch renderer run on the CPU'))
    counts = {name: _numel(module.parameters()) for name, module in
              (('backbone', backbone), ('denoiser', denoiser),
               ('reconstructor', getattr(model, 'reconstructor', None) or nn.Module()),
               ('policy', policy_module or nn.Module()))}
    counts['trained'] = trained_scalars
    workload = (f'{cfg.model.type} of {type(backbone).__name__}, batch {batch} x {frames} '
                f'frames of {height} x {width} per device')
    return MemoryPlan(items, counts, sharding, workload)


# ----------------------------------------------------------------------------- measuring
def _status_bytes(key: str) -> int:
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith(key + ':'):
            return int(line.split()[1]) * 1024
    raise InputError('--measure', 'reads /proc/self/status (Linux only)')


def _measure_worker(config: str, options: dict, steps: int, batch: int | None) -> dict:
    """In a fresh process: a few real training steps of the config on the CPU; the increase of
    the peak resident memory (``VmHWM``) over the resident memory once the batch is ready."""
    from mmengine.dataset import default_collate
    from mmengine.optim import build_optim_wrapper
    from mmengine.registry import DefaultScope

    from videoscene.registry import DATASETS, MODELS
    cfg = Config.fromfile(config)
    cfg.merge_from_dict(options)
    DefaultScope.get_instance('plan_memory', scope_name='videoscene')
    if 'custom_imports' in cfg:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    size = batch or cfg.train_dataloader.batch_size
    dataset = DATASETS.build(cfg.train_dataloader.dataset)
    data = default_collate([dataset[i % len(dataset)] for i in range(size)])
    build_on_meta(cfg.model.to_dict())          # imports every module the model needs
    gc.collect()
    Path('/proc/self/clear_refs').write_text('5')   # VmHWM := VmRSS
    before = _status_bytes('VmRSS')
    model = MODELS.build(cfg.model.to_dict())
    model.train()
    optim = build_optim_wrapper(model, cfg.optim_wrapper.to_dict())
    ema = next((hook.get('decay', 0.95) for hook in cfg.get('custom_hooks', [])
                if hook.get('type') == 'TargetEMAHook'), None)
    for step in range(steps):
        torch.manual_seed(step)
        model.train_step(data, optim)
        if ema is not None:
            model.update_target(ema)
    return dict(peak=_status_bytes('VmHWM') - before, batch=size)


def measure_peak(config: str, options: dict | None = None, steps: int = 3,
                 batch: int | None = None) -> dict:
    """Run :func:`_measure_worker` in a spawned process: ``{'peak': bytes, 'batch': B}``."""
    for key in ('strategy',):
        if key in Config.fromfile(config):
            raise InputError('--measure', f'runs on one CPU process; the config sets {key}')
    with multiprocessing.get_context('spawn').Pool(1) as pool:
        return pool.apply(_measure_worker, (config, dict(options or {}), steps, batch))
