"""One rank of the two-process strategy tests (run by torchrun from test_distillation_fsdp.py
and test_distillation_deepspeed.py).

Trains the test's config under ``VideoSceneFlexibleRunner`` with the config's strategy
(``FSDP2Strategy`` or ``DeepSpeedStrategy``, on gloo), records what this rank drew (batches, leap
noise, the policy's timesteps), the full weights the model had just before the strategy wrapped
it and the type and dtype of every tensor after, so the test can replay the same global batch in
one process.  ``resume``: continue from a checkpoint folder.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mmengine.config import Config  # noqa: E402
from mmengine.runner.checkpoint import get_state_dict  # noqa: E402

from videoscene.distillation import LeapFlowDistillation  # noqa: E402
from videoscene.engine import DeepSpeedStrategy, FSDP2Strategy, VideoSceneFlexibleRunner  # noqa: E402
from videoscene.policies import GridPolicy  # noqa: E402


def main(config: str, out: str, work_dir: str, resume: str = '') -> None:
    record = {'batches': [], 'noise': [], 't': [], 'initial': None, 'sharded': {}}
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
            record['sharded'] = {name: (type(t).__name__, t.dtype) for name, t in
                                 list(model.named_parameters()) + list(model.named_buffers())}
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
    runner = VideoSceneFlexibleRunner.from_cfg(cfg)
    runner.train()
    rank = dist.get_rank()
    torch.save(record, Path(out) / f'rank{rank}.pt')
    dist.destroy_process_group()


if __name__ == '__main__':
    main(*sys.argv[1:])
