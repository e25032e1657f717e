"""MMEngine's ``DeepSpeedStrategy`` with the two changes videoscene's models need.

* Without CUDA, DeepSpeed's process group is started on gloo (DeepSpeed's CPU accelerator), so the
  strategy runs in two CPU processes in the tests; MMEngine's launcher would select a CUDA device.
* MMEngine 0.10.7 registers DeepSpeed's optimizers from ``deepspeed.runtime.fp16.onebit``, which
  deepspeed 0.19 removed (with its 1-bit optimizers): the strategy registers the ones that exist
  (``DeepSpeedCPUAdam``, ``FusedAdam``, ``FusedLamb``) instead while MMEngine's ``__init__`` runs.
* ZeRO stage 3 is refused: it partitions every parameter and gathers a module's weights in
  DeepSpeed's forward hooks only, while the backbones call their VAE through ``encode`` /
  ``decode`` (not ``forward``) and distillation runs the teacher and target by swapping the
  trained tensors (:meth:`VideoBackbone.predict`).  Shard weights with ``FSDP2Strategy``; ZeRO-1/2
  shard gradients and optimizer states and keep whole weights on every rank.

``deepspeed`` is an optional dependency (``pip install -e '.[deepspeed]'``, see the Makefile),
imported only by MMEngine's strategy module.  Distillation under DeepSpeed steps ONE optimizer on
the summed losses: give ``DistillationOptimWrapperConstructor`` ``type='DeepSpeedOptimWrapper'``
(one optimizer, the policy as its own param group); gradient clipping is DeepSpeed's
``gradient_clipping`` (over student and policy gradients together).  Checkpoints are DeepSpeed's
folders (``iter_N.pth/``), written without the frozen parameters
(``exclude_frozen_parameters=True``).
"""
from __future__ import annotations

from unittest import mock

import mmengine._strategy.deepspeed as mmengine_deepspeed
import torch
from mmengine.dist import is_distributed
from mmengine.registry import OPTIMIZERS

from videoscene.registry import STRATEGIES

__all__ = ['DeepSpeedStrategy']


def _register_deepspeed_optimizers() -> list[str]:
    """DeepSpeed 0.19's optimizers in MMEngine's ``OPTIMIZERS`` (what MMEngine's own function does
    for the optimizers that still exist)."""
    from deepspeed.ops.adam import DeepSpeedCPUAdam, FusedAdam
    from deepspeed.ops.lamb import FusedLamb
    names = []
    for optimizer in (DeepSpeedCPUAdam, FusedAdam, FusedLamb):
        if optimizer.__name__ not in OPTIMIZERS.module_dict:
            OPTIMIZERS.register_module(module=optimizer)
        names.append(optimizer.__name__)
    return names


@STRATEGIES.register_module(name='DeepSpeedStrategy')
class DeepSpeedStrategy(mmengine_deepspeed.DeepSpeedStrategy):
    """MMEngine's ``DeepSpeedStrategy`` (same arguments), registered under its name in the
    videoscene scope; see the module docstring."""

    def __init__(self, **kwargs) -> None:
        try:
            import deepspeed  # noqa: F401
        except ImportError as error:
            raise ImportError("DeepSpeedStrategy needs deepspeed: pip install -e '.[deepspeed]' "
                              '(or use FSDP2Strategy, which needs nothing else)') from error
        stage = (kwargs.get('zero_optimization') or {}).get('stage', 0)
        if stage >= 3:
            raise ValueError('DeepSpeed ZeRO-3 is not supported by videoscene models: it gathers '
                             "partitioned weights in forward hooks only, and the VAE's encode/"
                             'decode and the teacher/target weight swap of distillation run '
                             'outside them. Use FSDP2Strategy to shard weights, or ZeRO-2.')
        kwargs.setdefault('exclude_frozen_parameters', True)
        with mock.patch.object(mmengine_deepspeed, 'register_deepspeed_optimizers',
                               _register_deepspeed_optimizers):
            super().__init__(**kwargs)

    def _setup_distributed(self, launcher: str | None = None, backend: str = 'nccl',
                           **kwargs) -> None:
        if is_distributed():
            return
        if not torch.cuda.is_available():
            import deepspeed
            deepspeed.init_distributed(dist_backend='gloo')
            return
        super()._setup_distributed(launcher, backend, **kwargs)
