"""One rank of the two-process distillation test (run by torchrun from test_distillation_ddp.py).

Trains the test's config under MMEngine's Runner with ``MMSeparateDistributedDataParallel`` on
gloo, records what this rank drew (its batches, its leap noise, its policy's timesteps) so the
test can replay the same global batch in one process, and saves the initial and final weights.
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import Config  # noqa: E402
from mmengine.runner.checkpoint import get_state_dict  # noqa: E402

from videoscene.distillation import LeapFlowDistillation  # noqa: E402
from videoscene.engine import VideoSceneRunner  # noqa: E402
from videoscene.policies import GridPolicy  # noqa: E402


def main(config: str, out: str) -> None:
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

    LeapFlowDistillation.losses = recording_losses
    GridPolicy.select = recording_select
    torch.randn_like = recording_randn_like

    cfg = Config.fromfile(config)
    cfg.work_dir = os.path.join(out, 'work_dir')
    cfg.launcher = 'pytorch'
    runner = VideoSceneRunner.from_cfg(cfg)     # starts the gloo process group on the CPU
    rank = dist.get_rank()
    model = runner.model.module
    initial = {k: v.clone() for k, v in get_state_dict(model).items()}   # DDP prefixes dropped
    runner.train()
    torch.save({'record': record, 'initial': initial, 'final': get_state_dict(model),
                'wrapped': {name: type(child).__name__ for name, child in model.named_children()}},
               os.path.join(out, f'rank{rank}.pt'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:3])
