"""Two-process DDP (gloo, CPU) distillation equals a one-process run with the same global batch."""
from __future__ import annotations

import pytest
import torch
from _distributed import FREEZE, ITERS, global_batch, replay_draws, tiny_config, torchrun
from mmengine.config import Config

from videoscene.backbones.tiny import save_tiny_cogvideox
from videoscene.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('ddp')
    config = tiny_config(folder, save_tiny_cogvideox(folder / 'teacher'),
                         "default_hooks = dict(checkpoint=dict(interval=4))\n")
    ranks, log = torchrun(folder, config, folder / 'work_dir')
    return Config.fromfile(config), ranks, log


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
    assert not torch.equal(ranks[0]['noise'][0], ranks[1]['noise'][0])
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
    assert all(len(r['noise']) == ITERS for r in ranks)
    replay = replay_draws(monkeypatch)
    for it in range(ITERS):
        batch, replay['noise'], replay['t'] = global_batch(ranks, it)
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
