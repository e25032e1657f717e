"""One rank of the two-process training tests (run by ``torchrun`` from ``tests/_distributed.py``).

Trains the config: under MMEngine's ``Runner`` (DDP through ``model_wrapper_cfg``) or, when it has
a ``strategy`` (``FSDP2Strategy``, ``DeepSpeedStrategy``), its ``FlexibleRunner``; on gloo.
Records what this rank drew (batches, leap noise, the policy's timesteps), the full weights before
the model was wrapped, the type and dtype of every tensor after, and the final (full) weights.
``resume``: continue from that checkpoint.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
from torch.distributed.tensor import DTensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import Config  # noqa: E402
from mmengine.runner.checkpoint import get_state_dict  # noqa: E402

from videoscene.distillation import LeapFlowDistillation  # noqa: E402
from videoscene.engine import (DeepSpeedStrategy, FSDP2Strategy,  # noqa: E402
                               VideoSceneFlexibleRunner, VideoSceneRunner)
from videoscene.policies import GridPolicy  # noqa: E402


def tensors(model) -> dict:
    return {name: (type(t).__name__, t.dtype) for name, t in
            list(model.named_parameters()) + list(model.named_buffers())}


def main(config: str, out: str, work_dir: str, resume: str = '') -> None:
    record = {'batches': [], 'noise': [], 't': []}
    losses, select, randn_like = LeapFlowDistillation.losses, GridPolicy.select, torch.randn_like

    def recording_losses(self, context, target):
        record['batches'].append({'context': {k: v.clone() for k, v in context.items()},
                                  'target': {k: v.clone() for k, v in target.items()}})
        return losses(self, context, target)

    def recording_select(self, latents):
        decision = select(self, latents)
        record['t'].append(decision.t.clone())
        return decision

    def recording_randn_like(tensor, *args, **kwargs):
        noise = randn_like(tensor, *args, **kwargs)
        record['noise'].append(noise.clone())
        return noise

    def recording_wrap(wrap):
        def wrapped(self, model):
            record['initial'] = {k: v.clone() for k, v in get_state_dict(model).items()}
            result = wrap(self, model)
            record['tensors'] = tensors(model)
            return result
        return wrapped

    LeapFlowDistillation.losses = recording_losses
    GridPolicy.select = recording_select
    torch.randn_like = recording_randn_like
    for strategy in (FSDP2Strategy, DeepSpeedStrategy):
        strategy._wrap_model = recording_wrap(strategy._wrap_model)

    cfg = Config.fromfile(config)
    cfg.work_dir = work_dir
    cfg.launcher = 'pytorch'
    if resume:
        cfg.resume, cfg.load_from = True, resume
    if cfg.get('strategy'):
        runner = VideoSceneFlexibleRunner.from_cfg(cfg)
        runner.train()
        model = runner.model.module if hasattr(runner.model, 'module') else runner.model
        record['final'] = {key: value.full_tensor() if isinstance(value, DTensor) else value
                           for key, value in get_state_dict(model).items()}
    else:
        runner = VideoSceneRunner.from_cfg(cfg)     # starts the gloo process group on the CPU
        model = runner.model.module
        record['initial'] = {k: v.clone() for k, v in get_state_dict(model).items()}
        runner.train()
        record['final'] = get_state_dict(model)              # DDP prefixes dropped
        record['wrapped'] = {name: type(child).__name__ for name, child in model.named_children()}
    torch.save(record, Path(out) / f'rank{dist.get_rank()}.pt')
    dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
