"""torch's FSDP2 (``fully_shard``) as an MMEngine strategy for ``FlexibleRunner``.

MMEngine 0.10.7's ``FSDPStrategy`` wraps the whole model in one FSDP1 unit, which would shard the
VAE and the reconstructor with the denoiser and hide the parameters from the weight sharing of
distillation.  This strategy keeps MMEngine's ``DDPStrategy`` for everything else (process group,
model and optimiser building, schedulers, logging) and only changes three things:

* wrapping: the model shards itself through its ``shard(mesh, mp_policy, reshard_after_forward)``
  method (:meth:`~videoscene.distillation.LeapFlowDistillation.shard`), since only the model
  knows which of its parts train and which are frozen;
* checkpoints: every rank writes its shards into one folder
  (:mod:`videoscene.engine.sharded_checkpoint`), renamed into place when complete;
* on a machine without CUDA the process group is gloo (tests run two CPU processes);
* parameter schedulers of several optimizers (student and policy) build (MMEngine 0.10.7's
  strategies share one ``default_args`` dict between them and empty it on the first).

Config::

    strategy = dict(type='FSDP2Strategy',
                    mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'))
    runner_type = 'FlexibleRunner'   # tools/train.py picks it when a config has a strategy
"""
from __future__ import annotations

import os.path as osp
import time

import mmengine
import torch
import torch.distributed as torch_dist
from mmengine._strategy import DDPStrategy
from mmengine.device import get_device
from mmengine.dist import is_distributed
from mmengine.runner.checkpoint import _load_checkpoint
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy

from videoscene.backbones.base import resolve_dtype
from videoscene.errors import CheckpointError
from videoscene.registry import STRATEGIES

from ..sharded_checkpoint import (consolidate, is_sharded_checkpoint, load_full_state_dict,
                                  load_sharded, save_sharded)

__all__ = ['FSDP2Strategy']


@STRATEGIES.register_module()
class FSDP2Strategy(DDPStrategy):
    """Fully sharded data parallel training with torch's FSDP2.

    Args:
        mixed_precision: ``MixedPrecisionPolicy`` arguments: ``param_dtype`` (the dtype weights
            are gathered and computed in), ``reduce_dtype`` (gradient reduce-scatter), e.g.
            ``dict(param_dtype='bfloat16', reduce_dtype='float32')``; None: no casting.
        reshard_after_forward: free each block's gathered weights after its forward (gather
            again for the backward): less memory, more communication.
        **kwargs: :class:`mmengine._strategy.DDPStrategy`'s arguments.
    """

    def __init__(self, *, mixed_precision: dict | None = None,
                 reshard_after_forward: bool = True, **kwargs) -> None:
        super().__init__(**kwargs)
        policy = {key: resolve_dtype(value) if key.endswith('_dtype') and value is not None
                  else value for key, value in (mixed_precision or {}).items()}
        self.mp_policy = MixedPrecisionPolicy(**policy)
        self.reshard_after_forward = reshard_after_forward

    def _setup_distributed(self, launcher: str = 'pytorch', backend: str = 'nccl',
                           **kwargs) -> None:
        if is_distributed():
            return
        if not torch.cuda.is_available():
            if launcher != 'pytorch':
                raise RuntimeError(f"launcher '{launcher}' without CUDA: only 'pytorch' "
                                   '(torchrun) starts a CPU (gloo) process group')
            torch_dist.init_process_group('gloo')
            return
        super()._setup_distributed(launcher, backend, **kwargs)

    def _wrap_model(self, model: torch.nn.Module) -> torch.nn.Module:
        shard = getattr(model, 'shard', None)
        if not callable(shard):
            raise TypeError(f'FSDP2Strategy shards a model through its shard(mesh, mp_policy, '
                            f'reshard_after_forward) method, which {type(model).__name__} lacks')
        device = get_device()
        model = model.to(device)
        mesh = init_device_mesh(device, (self.world_size,))
        shard(mesh, self.mp_policy, self.reshard_after_forward)
        return model

    def _build_param_scheduler(self, scheduler, optim_wrapper, default_args: dict):
        # MMEngine 0.10.7 pops max_iters / max_epochs from the dict it shares between the
        # optimizers of an OptimWrapperDict, so the second one's schedulers failed to build
        return super()._build_param_scheduler(scheduler, optim_wrapper, dict(default_args))

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self, filename: str, *, save_optimizer: bool = True,
                        save_param_scheduler: bool = True, extra_ckpt: dict | None = None,
                        callback=None) -> None:
        """Write the sharded checkpoint folder ``filename`` (every rank)."""
        extra = dict(extra_ckpt or {})
        extra.setdefault('meta', {}).update(
            seed=self.seed, time=time.strftime('%Y%m%d_%H%M%S', time.localtime()),
            mmengine=mmengine.__version__)
        if save_param_scheduler and hasattr(self, 'param_schedulers'):
            extra['param_schedulers'] = self.scheduler_state_dict()
        if callback is not None:
            callback(extra)
        optim_wrapper = self.optim_wrapper if save_optimizer and hasattr(self, 'optim_wrapper') \
            else None
        save_sharded(filename, self.model, optim_wrapper, extra)

    def load_checkpoint(self, filename: str, *, map_location='cpu', strict: bool = False,
                        revise_keys: list = [(r'^module.', '')], callback=None) -> dict:
        """``load_from``: the weights of a sharded folder, of a DeepSpeed folder or of a
        single-process checkpoint (full tensors, each rank keeping its shards); every tensor the
        model saves must be there."""
        if is_sharded_checkpoint(filename):
            checkpoint = load_sharded(filename, self.model)
        else:
            checkpoint = consolidate(filename) if osp.isdir(filename) else \
                _load_checkpoint(filename, map_location='cpu')
            state_dict = checkpoint.pop('state_dict', checkpoint)
            missing = load_full_state_dict(self.model, state_dict)
            if missing:
                raise CheckpointError(filename, f'lacks {len(missing)} tensor(s) of the model, '
                                      f'e.g. {missing[:3]}')
        if callback is not None:
            callback(checkpoint)
        return checkpoint

    def resume(self, filename: str, *, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True, map_location='default', callback=None) -> dict:
        """Continue a sharded run from its checkpoint folder (on any number of processes)."""
        if not is_sharded_checkpoint(filename):
            raise CheckpointError(filename, 'is not a FSDP2Strategy checkpoint folder (a single-'
                                  'process file or a DeepSpeed folder): FSDP2Strategy resumes from '
                                  'the folders it writes; start a sharded run from its weights '
                                  'with load_from')
        optim_wrapper = self.optim_wrapper if resume_optimizer else None
        checkpoint = load_sharded(filename, self.model, optim_wrapper)
        if callback is not None:
            callback(checkpoint)
        if resume_param_scheduler and hasattr(self, 'param_schedulers'):
            self.load_scheduler_state_dict(checkpoint.pop('param_schedulers'))
        seed = checkpoint['meta'].get('seed')
        if seed is not None and seed != self._randomness.get('seed'):
            self.logger.warning(f'resuming with the checkpoint\'s seed {seed} instead of '
                                f'{self._randomness.get("seed")}')
            self._randomness.update(seed=seed)
            self._set_randomness(**self._randomness)
        return checkpoint
