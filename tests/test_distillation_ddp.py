"""Two-process DDP (gloo, CPU) distillation equals a one-process run with the same global batch."""
from __future__ import annotations

import pytest
import torch
from _distributed import assert_equal_to_replay, replay_train_steps, train_tiny


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    return train_tiny(tmp_path_factory.mktemp('ddp'),
                      "default_hooks = dict(checkpoint=dict(interval=4))\n")


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
    config, ranks, _ = run
    model, _ = replay_train_steps(config, ranks, monkeypatch)
    final = ranks[0]['final']
    assert_equal_to_replay(model.state_dict(), final)
    changed = [k for k in final if not torch.equal(final[k], ranks[0]['initial'][k])]
    assert any(k.startswith('backbone.') for k in changed)
    assert any(k.startswith('target.') for k in changed)
