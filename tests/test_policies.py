import math

import pytest
import torch
from mmengine import Config

from videoscene.registry import TIMESTEP_POLICIES

LATENTS = torch.zeros(64, 3, 4, 2, 2)


def test_fixed_policy_returns_its_timestep():
    t, log_prob = TIMESTEP_POLICIES.build(dict(type='fixed', t=459))(LATENTS)
    assert t.dtype == torch.long and t.tolist() == [459] * 64
    assert torch.equal(log_prob, torch.zeros(64))


def test_random_policy_covers_its_range_uniformly():
    torch.manual_seed(0)
    policy = TIMESTEP_POLICIES.build(dict(type='random', low=10, high=13))
    t, log_prob = policy(torch.zeros(4000, 1, 1, 1, 1))
    assert set(t.tolist()) == {10, 11, 12, 13}
    counts = torch.bincount(t - 10).float() / 4000
    assert (counts - 0.25).abs().max() < 0.04
    torch.testing.assert_close(log_prob, torch.full((4000,), -math.log(4)))


def test_policies_reject_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match='low'):
        TIMESTEP_POLICIES.build(dict(type='random', low=5, high=2))
    with pytest.raises(ValueError, match=r'\[B, F, C, h, w\]'):
        TIMESTEP_POLICIES.build(dict(type='fixed'))(torch.zeros(2, 4, 8, 8))


def test_example_project_policy_builds_from_its_config(repo_root):
    cfg = Config.fromfile(f'{repo_root}/projects/example_policy/configs/truncated_normal_policy.py')
    policy = TIMESTEP_POLICIES.build(cfg.policy)
    assert type(policy).__module__.startswith('projects.example_policy')
    torch.manual_seed(0)
    t, log_prob = policy(torch.zeros(5000, 1, 1, 1, 1))
    assert t.min() >= 400 and t.max() <= 700
    assert abs(t.float().mean().item() - 549) < 3 and abs(t.float().std().item() - 50) < 3
    # log_prob is the truncated-normal density: compare at the mode with the closed form.
    normal = torch.distributions.Normal(549.0, 50.0)
    mass = normal.cdf(torch.tensor(700.5)) - normal.cdf(torch.tensor(399.5))
    mode_log_density = -math.log(50 * math.sqrt(2 * math.pi)) - math.log(mass)
    assert log_prob.max().item() <= mode_log_density + 1e-5
    assert log_prob.max().item() > mode_log_density - 1e-3
