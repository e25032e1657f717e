"""Two-process DeepSpeed ZeRO-2 (gloo, DeepSpeed's CPU accelerator) distillation through MMEngine's
DeepSpeedStrategy: one optimizer steps the summed losses, the result equals a one-process run with
the same global batch and optimizer arrangement, and resuming its checkpoint continues exactly."""
from __future__ import annotations

import re
import shutil

import pytest
import torch
from _distributed import assert_resumes_exactly, global_batch, replay_draws, train_tiny
from mmengine.config import Config

from videoscene.engine.checkpoint import checkpoint_problem
from videoscene.engine.sharded_checkpoint import consolidate
from videoscene.registry import MODELS

pytest.importorskip('deepspeed', reason="DeepSpeedStrategy's optional dependency "
                    "(pip install --no-build-isolation -e '.[deepspeed]', as make install does)")

STUDENT_LR, POLICY_LR, WEIGHT_DECAY, CLIP = 2e-4, 1e-3, 1e-4, 1.0


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('deepspeed')
    config, ranks, log = train_tiny(folder, f"""
strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=2),
                gradient_clipping={CLIP})
model_wrapper_cfg = None
optim_wrapper = dict(_delete_=True, constructor='DistillationOptimWrapperConstructor',
                     type='DeepSpeedOptimWrapper',
                     student=dict(optimizer=dict(type='AdamW', lr={STUDENT_LR},
                                                 weight_decay={WEIGHT_DECAY})),
                     policy=dict(lr={POLICY_LR}, weight_decay=0.0))
""")
    return folder, config, ranks, log


def test_checkpoints_are_deepspeed_folders_without_frozen_weights(run, tmp_path):
    folder, _, _, log = run
    assert 'policy is frozen from iteration 3' in log
    assert re.search(r'loss_consistency: [\d.]+ +reward: -[\d.]+ .*leap_t: \d+', log)  # logged
    path = folder / 'work' / 'iter_4.pth'
    assert checkpoint_problem(str(path)) is None
    assert len(list(path.glob('zero_pp_rank_*_optim_states.pt'))) == 2    # ZeRO-2 partitions
    state = consolidate(str(path))['state_dict']
    assert not any(key.startswith(('backbone.vae.', 'reconstructor.', 'teacher.')) for key in state)
    assert any(key.startswith('target.') for key in state)
    torn = shutil.copytree(path, tmp_path / 'iter_4.pth')
    (torn / 'zero_pp_rank_1_mp_rank_00_optim_states.pt').write_bytes(b'torn')
    assert 'truncated' in checkpoint_problem(str(torn))


def test_two_ranks_equal_one_process_with_the_same_global_batch(run, monkeypatch):
    folder, config, ranks, _ = run
    final = consolidate(str(folder / 'work' / 'iter_2.pth'))['state_dict']
    model = MODELS.build(Config.fromfile(config).model)
    model.load_state_dict(ranks[0]['initial'])
    student = list(model.shell.trained_tensors().values())
    policy = list(model.policy.parameters())
    optimizer = torch.optim.AdamW([dict(params=student, lr=STUDENT_LR, weight_decay=WEIGHT_DECAY),
                                   dict(params=policy, lr=POLICY_LR, weight_decay=0.0)])
    replay = replay_draws(monkeypatch)
    for it in range(2):      # the first checkpoint: the policy trained in both iterations
        batch, replay['noise'], replay['t'] = global_batch(ranks, it)
        losses, _ = model.losses(batch['context'], batch['target'])
        sum(losses.values()).backward()          # what MMDeepSpeedEngineWrapper steps on
        torch.nn.utils.clip_grad_norm_(student + policy, CLIP)
        optimizer.step()
        optimizer.zero_grad()
        model.update_target(0.9)
    for key, value in model.state_dict().items():
        atol = 1e-4 if key.startswith('policy.') else 1e-5
        torch.testing.assert_close(value, final[key], atol=atol, rtol=1e-4, msg=key)
    moved = {k.split('.')[0] for k in final if not torch.equal(final[k], ranks[0]['initial'][k])}
    assert {'backbone', 'target', 'policy'} <= moved


def test_the_policy_stops_moving_once_frozen(run):
    folder, _, _, _ = run
    at_freeze = consolidate(str(folder / 'work' / 'iter_2.pth'))['state_dict']
    final = consolidate(str(folder / 'work' / 'iter_4.pth'))['state_dict']
    policy = [k for k in final if k.startswith('policy.')]
    assert policy and all(torch.equal(final[k], at_freeze[k]) for k in policy)
    assert not torch.equal(final['backbone.transformer.proj_out.weight'],
                           at_freeze['backbone.transformer.proj_out.weight'])


def test_resuming_continues_exactly(run, tmp_path):
    folder, config, _, _ = run
    assert_resumes_exactly(folder, config, tmp_path)


def test_zero3_is_refused_with_the_reason():
    from videoscene.engine import DeepSpeedStrategy
    with pytest.raises(ValueError, match='ZeRO-3 is not supported.*FSDP2Strategy'):
        DeepSpeedStrategy(zero_optimization=dict(stage=3))
