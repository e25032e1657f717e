"""The one interface every video diffusion backbone speaks.

A backbone bundles a video VAE, a denoising network and whatever encodes its conditions, and
exposes them in the project's conventions:

* videos ``[B, F, 3, H, W]`` float in ``[0, 1]``;
* latents ``[B, f, C, h, w]`` (CogVideoX's layout), already multiplied by the VAE scaling factor;
  a backbone converts to its network's own layout inside its methods only;
* timesteps ``t`` ``[B]`` long, indices ``0 .. T-1`` of the noise scheduler built from
  :meth:`VideoBackbone.scheduler_config`; ``x_t`` is that scheduler's ``add_noise(x0, noise, t)``;
* the conditioning is a ``dict[str, Tensor]`` whose keys are the backbone's own, every tensor with
  the batch first, so callers can move, index or repeat it without knowing the backbone.

A backbone is a frozen shell (VAE, condition encoders, prompt embeddings) around a denoiser.
``forward(x_t, t, conditioning)`` runs the denoiser with the backbone's own weights;
:meth:`VideoBackbone.predict` can replace the trained tensors (:meth:`VideoBackbone.trained_tensors`)
by another set, ``params``, while every frozen tensor is shared.  That is how one backbone plays
the teacher, the student and the EMA target of distillation with the frozen weights held once.
When the denoiser is sharded with torch's FSDP2 (:meth:`VideoBackbone.shard`), parameters are
``DTensor`` shards gathered by FSDP's hooks, which a ``functional_call`` cannot replace:
``predict`` then copies the ``params`` shards into the parameters' local shards for the call and
restores them after (one local shard set held in between).

Inputs are cast to the backbone's dtype at its boundary and every tensor it returns is float32,
so scheduler arithmetic stays in full precision whatever the network runs in.
"""
from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from mmengine.logging import print_log
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.func import functional_call

Conditioning = dict[str, torch.Tensor]

PREDICTION_TYPES = ('epsilon', 'v_prediction', 'sample')


def resolve_dtype(dtype: str | torch.dtype) -> torch.dtype:
    """``'float16'`` / ``'bf16'`` / ``torch.float32`` ... -> a floating ``torch.dtype``."""
    if isinstance(dtype, str):
        aliases = {'fp32': 'float32', 'fp16': 'float16', 'half': 'float16', 'bf16': 'bfloat16',
                   'fp64': 'float64'}
        resolved = getattr(torch, aliases.get(dtype, dtype), None)
        if not isinstance(resolved, torch.dtype):
            raise ValueError(f"dtype '{dtype}' is not a torch dtype name "
                             "(expected e.g. 'float32', 'bfloat16', 'float16')")
        dtype = resolved
    if not dtype.is_floating_point:
        raise ValueError(f'dtype {dtype} is not a floating-point dtype')
    return dtype


def check_dtype_runs(dtype: torch.dtype, device: torch.device | str) -> None:
    """Raise a clear error if ``device`` cannot run the operations a video backbone needs in ``dtype``.

    Probes tiny instances of each kind of operation (3-D and 2-D convolution, group norm, linear,
    attention) rather than trusting a table, since support differs across torch builds.
    """
    device = torch.device(device)

    def tensor(*shape: int) -> torch.Tensor:
        return torch.randn(*shape).to(device=device, dtype=dtype)

    probes = {
        'conv3d': lambda: nn.functional.conv3d(tensor(1, 2, 3, 4, 4), tensor(2, 2, 3, 3, 3)),
        'conv2d': lambda: nn.functional.conv2d(tensor(1, 2, 4, 4), tensor(2, 2, 3, 3)),
        'group_norm': lambda: nn.functional.group_norm(tensor(1, 4, 4, 4), 2),
        'linear': lambda: nn.functional.linear(tensor(3, 8), tensor(4, 8)),
        'attention': lambda: nn.functional.scaled_dot_product_attention(
            tensor(1, 2, 4, 8), tensor(1, 2, 4, 8), tensor(1, 2, 4, 8)),
    }
    for name, probe in probes.items():
        try:
            probe()
        except (RuntimeError, NotImplementedError, TypeError) as error:
            raise ValueError(
                f'dtype {dtype} cannot run on {device}: {name} failed ({error}). Use a dtype '
                f'this device supports (float32 always works; bfloat16 on CPUs and recent GPUs, '
                f'float16 on GPUs).') from error


@dataclass(frozen=True)
class TrainableSelection:
    """What :meth:`VideoBackbone.select_trainable` marked trainable."""

    spec: str
    trainable: int          # parameters (scalars) with requires_grad
    total: int              # parameters (scalars) of the whole backbone
    tensors: int            # parameter tensors with requires_grad

    def __str__(self) -> str:
        share = 100.0 * self.trainable / max(self.total, 1)
        return (f"trainable '{self.spec}': {self.trainable:,} of {self.total:,} parameters "
                f'({share:.2f}%, {self.tensors} tensors)')


class VideoBackbone(nn.Module, ABC):
    """A video diffusion model seen through the project's conventions (see the module docstring).

    Subclasses set :attr:`prediction_type` (``'epsilon'``, ``'v_prediction'`` or ``'sample'``, the
    names of :mod:`videoscene.schedulers.ddim`), :attr:`latent_channels`, and implement the abstract
    methods.  The VAE and condition encoders are always frozen; :meth:`select_trainable` decides
    which parameters of :meth:`denoiser` train.

    Args:
        dtype: the dtype the networks run in; checked with :func:`check_dtype_runs` on the device.
        vae_tiling: encode/decode in overlapping spatial tiles (less memory at large sizes).
        vae_slicing: encode/decode one video of the batch at a time.
    """

    prediction_type: str
    latent_channels: int

    def __init__(self, dtype: str | torch.dtype = 'float32', vae_tiling: bool = False,
                 vae_slicing: bool = False) -> None:
        super().__init__()
        self.dtype = resolve_dtype(dtype)
        self.vae_tiling = vae_tiling
        self.vae_slicing = vae_slicing

    # ----------------------------------------------------------------------------- abstract
    @abstractmethod
    def latent_frames(self, num_frames: int) -> int:
        """Latent frames ``f`` for ``num_frames`` video frames; raises if the VAE cannot take them."""

    @abstractmethod
    def latent_size(self, height: int, width: int) -> tuple[int, int]:
        """Latent ``(h, w)`` for ``height x width`` frames; raises if the VAE cannot take them."""

    @abstractmethod
    def encode(self, video: torch.Tensor) -> torch.Tensor:
        """``video [B, F, 3, H, W]`` in ``[0, 1]`` -> scaled latents ``[B, f, C, h, w]`` (the VAE's
        posterior mode, deterministic)."""

    @abstractmethod
    def decode(self, latents: torch.Tensor) -> torch.Tensor:
        """Scaled latents ``[B, f, C, h, w]`` -> ``video [B, F, 3, H, W]`` clamped to ``[0, 1]``."""

    @abstractmethod
    def condition(self, first: torch.Tensor, last: torch.Tensor | None, num_frames: int,
                  augment: bool = False) -> Conditioning:
        """Conditioning on the ``first [B, 3, H, W]`` frame and, for interpolation, the ``last``.

        ``last=None`` conditions on the first frame only.  ``augment=True`` draws the training-time
        noise augmentation of the image conditions (use it when training the denoiser).
        """

    @abstractmethod
    def forward(self, x_t: torch.Tensor, t: torch.Tensor, conditioning: Conditioning) -> torch.Tensor:
        """The network output (of :attr:`prediction_type`) for noisy latents ``x_t [B, f, C, h, w]``
        at timesteps ``t [B]``; same layout as ``x_t``.  Use :meth:`predict` to swap weights."""

    @abstractmethod
    def denoiser(self) -> nn.Module:
        """The denoising network (transformer or UNet): what :meth:`select_trainable` trains."""

    @abstractmethod
    def attention_modules(self) -> dict[str, nn.Module]:
        """The attention layers of the denoiser's blocks, by qualified name in :meth:`denoiser`."""

    @abstractmethod
    def scheduler_config(self) -> dict:
        """Config (with ``type``) of the noise scheduler in ``NOISE_SCHEDULERS`` this model was
        trained with, read from the model folder."""

    # ----------------------------------------------------------------------------- shared
    def predict(self, x_t: torch.Tensor, t: torch.Tensor, conditioning: Conditioning,
                params: Mapping[str, torch.Tensor] | None = None) -> torch.Tensor:
        """:meth:`forward`, with ``params`` (names as in :meth:`trained_tensors`) standing in for
        those tensors; every other tensor is the backbone's own, shared, not copied."""
        if params is None:
            return self(x_t, t, conditioning)
        own = self.trained_tensors()
        unknown = set(params) - set(own)
        if unknown:
            raise KeyError(f'params name tensors that are not trained tensors of '
                           f'{type(self).__name__}: {sorted(unknown)[:5]}')
        if not any(isinstance(p, DTensor) for p in own.values()):
            return functional_call(self, dict(params), (x_t, t, conditioning))
        with torch.no_grad():
            # FSDP2: the root keeps its gathered weights after a forward; gather ``params`` afresh
            sharded = [m for m in self.denoiser().modules() if isinstance(m, FSDPModule)]
            for module in sharded:
                module.reshard()
            saved = {name: own[name].to_local().clone() for name in params}
            try:
                for name, value in params.items():
                    own[name].to_local().copy_(value.to_local())
                return self(x_t, t, conditioning)
            finally:
                for module in sharded:
                    module.reshard()
                for name, value in saved.items():
                    own[name].to_local().copy_(value)

    def shard_units(self) -> list[nn.Module]:
        """The denoiser's blocks that FSDP shards (and gathers) one at a time: by default the
        elements of its largest ``nn.ModuleList`` (by parameter count), e.g. CogVideoX's
        ``transformer_blocks``; a backbone whose blocks live elsewhere overrides this."""
        lists = [m for m in self.denoiser().modules() if isinstance(m, nn.ModuleList)]
        if not lists:
            raise ValueError(f'{type(self.denoiser()).__name__} has no nn.ModuleList of blocks: '
                             f'override {type(self).__name__}.shard_units for FSDP')
        largest = max(lists, key=lambda m: sum(p.numel() for p in m.parameters()))
        return list(largest)

    def shard(self, mesh: DeviceMesh, mp_policy: MixedPrecisionPolicy,
              reshard_after_forward: bool = True) -> None:
        """FSDP2: ``fully_shard`` each of :meth:`shard_units`, then the denoiser (frozen and
        trained weights alike); the VAE and condition encoders stay whole.  With a
        ``mp_policy.param_dtype`` the trained tensors become float32 master weights (gathered in
        that dtype), whatever this backbone's dtype."""
        if mp_policy.param_dtype is not None:
            for tensor in self.trained_tensors().values():
                tensor.data = tensor.data.float()
        options = dict(mesh=mesh, mp_policy=mp_policy, reshard_after_forward=reshard_after_forward)
        for block in self.shard_units():
            fully_shard(block, **options)
        fully_shard(self.denoiser(), **options)

    def trained_tensors(self) -> dict[str, nn.Parameter]:
        """The parameters that train (``requires_grad``), by name in the backbone."""
        return {name: p for name, p in self.named_parameters() if p.requires_grad}

    def unconditional(self, conditioning: Conditioning) -> Conditioning:
        """The classifier-free-guidance counterpart of ``conditioning`` (same keys and shapes)."""
        raise NotImplementedError(f'{type(self).__name__} has no unconditional conditioning, so '
                                  'classifier-free guidance is unavailable: use guidance_scale=1')

    def clean_scale(self, t: torch.Tensor | int) -> torch.Tensor:
        """``[B]`` factor on the clean latents the denoiser was trained to see at ``t``: it learnt
        ``x_t = add_noise(clean_scale(t) * x0, noise, t)``; 1 for ``t < 0`` (the clean sample) and
        1 everywhere unless a backbone rescales (DynamiCrafter)."""
        return torch.ones(torch.as_tensor(t).reshape(-1).shape)

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def latent_shape(self, num_frames: int, height: int, width: int) -> tuple[int, int, int, int]:
        """``(f, C, h, w)`` of the latents of a ``num_frames x height x width`` video."""
        return (self.latent_frames(num_frames), self.latent_channels,
                *self.latent_size(height, width))

    def build_scheduler(self):
        """The matching noise scheduler, built through ``NOISE_SCHEDULERS``."""
        from videoscene.registry import NOISE_SCHEDULERS
        return NOISE_SCHEDULERS.build(self.scheduler_config())

    def set_dtype(self, dtype: str | torch.dtype) -> None:
        """Run every network in ``dtype`` after checking that the device can."""
        dtype = resolve_dtype(dtype)
        check_dtype_runs(dtype, self.device)
        self.dtype = dtype
        self.to(dtype=dtype)

    def save_pretrained(self, out: str | Path) -> Path:
        """Write the backbone (trained weights included) as a model folder it loads from again."""
        raise NotImplementedError(f'{type(self).__name__} does not export a model folder')

    def enable_gradient_checkpointing(self, enabled: bool = True) -> None:
        """Recompute the denoiser's block activations in the backward pass (less memory)."""
        network = self.denoiser()
        if enabled:
            network.enable_gradient_checkpointing()
        else:
            network.disable_gradient_checkpointing()

    def select_trainable(self, spec: str = 'attention') -> TrainableSelection:
        """Mark which parameters train; everything else in the backbone is frozen.

        Args:
            spec: ``'attention'`` (the parameters of :meth:`attention_modules`), ``'all'`` (the
                whole denoiser) or a regular expression searched in the denoiser's parameter names.
        """
        network = self.denoiser()
        if spec == 'attention':
            chosen = {id(p) for module in self.attention_modules().values()
                      for p in module.parameters()}
        elif spec == 'all':
            chosen = {id(p) for p in network.parameters()}
        else:
            try:
                pattern = re.compile(spec)
            except re.error as error:
                raise ValueError(f"trainable spec '{spec}' is neither 'attention', 'all' nor a "
                                 f'valid regular expression ({error})') from error
            chosen = {id(p) for name, p in network.named_parameters() if pattern.search(name)}
        if not chosen:
            raise ValueError(f"trainable spec '{spec}' selects no parameter of the "
                             f'{type(network).__name__}')
        for p in self.parameters():
            p.requires_grad_(id(p) in chosen)
        trainable = [p for p in self.parameters() if p.requires_grad]
        selection = TrainableSelection(spec=spec, trainable=sum(p.numel() for p in trainable),
                                       total=sum(p.numel() for p in self.parameters()),
                                       tensors=len(trainable))
        print_log(f'{type(self).__name__}: {selection}', logger='current')
        return selection

    def check_video(self, video: torch.Tensor) -> None:
        """Raise unless ``video`` is ``[B, F, 3, H, W]`` with a frame count and size the VAE takes."""
        if video.ndim != 5 or video.shape[2] != 3:
            raise ValueError(f'video must be [B, F, 3, H, W], got shape {tuple(video.shape)}')
        self.latent_frames(video.shape[1])
        self.latent_size(video.shape[3], video.shape[4])

    def check_latents(self, latents: torch.Tensor) -> None:
        """Raise unless ``latents`` is ``[B, f, C, h, w]`` with this backbone's ``C``."""
        if latents.ndim != 5 or latents.shape[2] != self.latent_channels:
            raise ValueError(f'latents must be [B, f, {self.latent_channels}, h, w], '
                             f'got shape {tuple(latents.shape)}')

    def check_condition_images(self, first: torch.Tensor, last: torch.Tensor | None,
                               num_frames: int) -> tuple[int, int, int]:
        """Raise unless ``first`` (and ``last``) are ``[B, 3, H, W]`` frames of a
        ``num_frames``-frame video the VAE takes (first+last needs >= 2 latent frames).

        Returns the latent ``(f, h, w)``.
        """
        if first.ndim != 4 or first.shape[1] != 3 or (last is not None and last.shape != first.shape):
            raise ValueError(f'first and last must both be [B, 3, H, W], got {tuple(first.shape)}'
                             f' and {None if last is None else tuple(last.shape)}')
        frames = self.latent_frames(num_frames)
        if last is not None and frames < 2:
            raise ValueError(f'first+last conditioning needs at least 2 latent frames, got '
                             f'{frames} for {num_frames} frames')
        return (frames, *self.latent_size(*first.shape[-2:]))

    def check_conditioning_matches(self, name: str, value: torch.Tensor,
                                   x_t: torch.Tensor) -> None:
        """Raise unless the conditioning latents ``value`` have the shape of ``x_t``."""
        self.check_latents(x_t)
        if value.shape != x_t.shape:
            raise ValueError(f'{name} {tuple(value.shape)} does not match x_t {tuple(x_t.shape)}: '
                             'build the conditioning for the same video size')
