"""Two-process DDP (gloo, CPU) distillation equals a one-process run with the same global batch."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _distributed import free_port
from mmengine.config import Config

from videoscene.backbones.tiny import save_tiny_cogvideox
from videoscene.policies import Decision, GridPolicy
from videoscene.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS

REPO = Path(__file__).resolve().parents[1]
ITERS, FREEZE = 4, 2


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ddp')
    teacher = save_tiny_cogvideox(folder / 'teacher')
    config = folder / 'ddp_config.py'
    config.write_text(f"""_base_ = [{str(REPO / 'configs/distillation/tiny_cogvideox_synthetic.py')!r}]
model = dict(backbone=dict(pretrained={str(teacher)!r},
                           prompt_embedding={str(teacher / 'prompt_embeds.safetensors')!r}),
             reconstructor=dict(_delete_=True, type='DepthUnprojection'),
             reconstructor_checkpoint=None, policy=dict(channels=(8, 8, 8, 8), groups=4))
train_dataloader = dict(batch_size=2, dataset=dict(num_scenes=4))
param_scheduler = None
train_cfg = dict(max_iters={ITERS})
custom_hooks = [dict(type='IterationSeedHook'), dict(type='TargetEMAHook', decay=0.9),
                dict(type='PolicyScheduleHook', train_iters={FREEZE})]
default_hooks = dict(checkpoint=dict(interval={ITERS}), logger=dict(interval=1))
""")
    env = dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()),
               OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2',
                             '--master-port', env['MASTER_PORT'],
                             str(REPO / 'tests/_ddp_distillation_worker.py'), str(config),
                             str(folder)], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    ranks = [torch.load(folder / f'rank{r}.pt', weights_only=False) for r in (0, 1)]
    return Config.fromfile(config), ranks, result.stdout + result.stderr


def test_ranks_hold_identical_weights_and_the_policy_froze_without_error(run):
    _, ranks, log = run
    assert ranks[0]['wrapped']['backbone'] == ranks[0]['wrapped']['policy'] == \
        'MMDistributedDataParallel'
    assert ranks[0]['wrapped']['reconstructor'] == 'DepthUnprojection'
    assert 'policy is frozen from iteration 3' in log
    a, b = ranks[0]['final'], ranks[1]['final']
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    # the ranks drew different data and noise: they really split the batch
    assert not torch.equal(ranks[0]['record']['noise'][0], ranks[1]['record']['noise'][0])
    # the policy trained, then froze: it moved over the first FREEZE iterations only
    moved = [k for k in a if k.startswith('policy.') and not torch.equal(a[k], ranks[0]['initial'][k])]
    assert moved


def test_two_ranks_equal_one_process_with_the_same_global_batch(run, monkeypatch):
    cfg, ranks, _ = run
    model = MODELS.build(cfg.model)
    model.load_state_dict(ranks[0]['initial'])
    optim = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=cfg.optim_wrapper.constructor,
        optim_wrapper_cfg={k: v for k, v in cfg.optim_wrapper.items() if k != 'constructor'}))(model)
    records = [r['record'] for r in ranks]
    assert all(len(r['noise']) == ITERS for r in records)
    replay = {}

    def select(policy, latents):
        distribution = policy.distribution(latents)
        index = torch.searchsorted(policy.candidates, replay['t'])
        return Decision(replay['t'], distribution.log_prob(index), distribution.entropy())

    monkeypatch.setattr(GridPolicy, 'select', select)
    monkeypatch.setattr(torch, 'randn_like', lambda tensor, *a, **k: replay['noise'])
    for it in range(ITERS):
        batch = {part: {key: torch.cat([r['batches'][it][part][key] for r in records])
                        for key in records[0]['batches'][it][part]} for part in ('context', 'target')}
        replay['noise'] = torch.cat([r['noise'][it] for r in records])
        replay['t'] = torch.cat([r['t'][it] for r in records])
        model.policy_frozen = it >= FREEZE
        model.train_step(batch, optim)
        model.update_target(0.9)
    final = ranks[0]['final']
    for key, value in model.state_dict().items():
        # Summation order differs between the all-reduce and one batch (float32 noise ~1e-7 in the
        # gradients). Adam's update ~ lr * g / sqrt(v) magnifies it where a gradient is near zero,
        # as many of the small policy's are: its tolerance is 1/10 of one lr step (1e-3).
        atol = 1e-4 if key.startswith('policy.') else 1e-5
        torch.testing.assert_close(value, final[key], atol=atol, rtol=1e-4, msg=key)
    changed = [k for k in final if not torch.equal(final[k], ranks[0]['initial'][k])]
    assert any(k.startswith('backbone.') for k in changed)
    assert any(k.startswith('target.') for k in changed)
