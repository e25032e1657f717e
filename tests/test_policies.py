import math

import pytest
import torch
from mmengine import Config

from videoscene.registry import TIMESTEP_POLICIES
from videoscene.schedulers import DDIMScheduler

LATENTS = torch.zeros(64, 3, 4, 2, 2)


def build(cfg: dict, scheduler=None, channels: int = 4):
    return TIMESTEP_POLICIES.build(cfg, default_args=dict(scheduler=scheduler or DDIMScheduler(),
                                                          latent_channels=channels))


def test_fixed_policy_returns_its_timestep():
    t, log_prob, entropy = build(dict(type='fixed', t=459))(LATENTS)
    assert t.dtype == torch.long and t.tolist() == [459] * 64
    assert torch.equal(log_prob, torch.zeros(64)) and torch.equal(entropy, torch.zeros(64))


def test_grid_comes_from_the_scheduler_and_its_T():
    policy = build(dict(type='random', solver_steps=10, max_timestep=500))
    assert policy.candidates.tolist() == [99, 199, 299, 399, 499]
    short = build(dict(type='random', solver_steps=4), DDIMScheduler(num_train_timesteps=100))
    assert short.candidates.tolist() == [24, 49, 74, 99]
    with pytest.raises(ValueError, match=r'\[0, 99\]'):
        build(dict(type='fixed', t=549), DDIMScheduler(num_train_timesteps=100))
    with pytest.raises(ValueError, match='max_timestep'):
        build(dict(type='DDPNet', solver_steps=10, max_timestep=50))


def test_random_policy_is_uniform_over_the_grid_in_train_and_eval():
    torch.manual_seed(0)
    policy = build(dict(type='random', solver_steps=10, max_timestep=399)).eval()
    t, log_prob, entropy = policy(torch.zeros(4000, 1, 4, 1, 1))
    assert set(t.tolist()) == {99, 199, 299, 399}
    counts = torch.bincount(t // 100).float() / 4000
    assert (counts - 0.25).abs().max() < 0.04
    torch.testing.assert_close(log_prob, torch.full((4000,), -math.log(4)))
    torch.testing.assert_close(entropy, torch.full((4000,), math.log(4)))


def test_ddpnet_is_four_normalised_convolutions_and_a_categorical_head():
    policy = build(dict(type='DDPNet', solver_steps=50, max_timestep=600, channels=(8, 8, 8, 16),
                        groups=4), channels=16)
    convs = [m for m in policy.modules() if isinstance(m, torch.nn.Conv2d)]
    norms = [m for m in policy.modules() if isinstance(m, torch.nn.GroupNorm)]
    assert len(convs) == len(norms) == 4 and convs[0].in_channels == 16
    assert policy.candidates.max() <= 600 and len(policy.candidates) == 30
    latents = torch.randn(3, 5, 16, 8, 8)
    # untrained: uniform, exact discrete log-prob, entropy log K
    t, log_prob, entropy = policy.train()(latents)
    torch.testing.assert_close(log_prob, torch.full((3,), -math.log(30)))
    torch.testing.assert_close(entropy, torch.full((3,), math.log(30)))


def states(degraded: torch.Tensor) -> torch.Tensor:
    """Latents ``[B, 2, 2, 8, 8]``: blocky (upsampled, like a blurred render) where ``degraded``,
    fine-grained elsewhere; same value distribution, so only the structure tells them apart."""
    fine = torch.randn(len(degraded), 2, 2, 8, 8)
    blocky = torch.randn(len(degraded), 2, 2, 2, 2).repeat_interleave(4, -1).repeat_interleave(4, -2)
    return torch.where(degraded.reshape(-1, 1, 1, 1, 1), blocky, fine)


def test_ddpnet_learns_by_reinforce_and_is_greedy_in_eval():
    """A contextual bandit: the best leap is large for degraded latents and small for clean ones;
    REINFORCE with a mean baseline must learn both."""
    torch.manual_seed(0)
    policy = build(dict(type='DDPNet', solver_steps=10, channels=(8, 8, 8, 8), groups=4),
                   channels=2)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    for _ in range(300):
        degraded = torch.rand(16) < 0.5
        t, log_prob, _ = policy.train()(states(degraded))
        reward = -(t - torch.where(degraded, 899, 99)).abs().float() / 1000
        loss = -((reward - reward.mean()) * log_prob).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    policy.eval()
    with torch.no_grad():
        clean = policy(states(torch.zeros(64, dtype=torch.bool))).t
        torch.manual_seed(1)
        degraded = policy(states(torch.ones(64, dtype=torch.bool))).t
        torch.manual_seed(1)
        again = policy(states(torch.ones(64, dtype=torch.bool))).t
    assert (degraded > 600).float().mean() > 0.9 and (clean < 400).float().mean() > 0.9
    assert torch.equal(degraded, again)       # argmax: no sampling in eval


def test_policies_reject_bad_arguments_and_shapes():
    with pytest.raises(ValueError, match=r'\[B, f, C, h, w\]'):
        build(dict(type='fixed'))(torch.zeros(2, 4, 8, 8))
    with pytest.raises(ValueError, match='groups'):
        build(dict(type='DDPNet', channels=(8, 8, 8, 12), groups=8))
    with pytest.raises(ValueError, match='latent channels'):
        build(dict(type='DDPNet'), channels=4)(torch.zeros(1, 2, 3, 8, 8))


def test_example_project_policy_builds_from_its_config(repo_root):
    cfg = Config.fromfile(f'{repo_root}/projects/example_policy/configs/truncated_normal_policy.py')
    policy = build(cfg.policy)
    assert type(policy).__module__.startswith('projects.example_policy')
    torch.manual_seed(0)
    t, log_prob, _ = policy(torch.zeros(20000, 1, 1, 1, 1))
    assert t.min() >= 400 and t.max() <= 700
    assert abs(t.float().mean().item() - 549) < 2 and abs(t.float().std().item() - 50) < 2
    # log_prob is the exact probability mass of the integer action: it sums to one over the
    # support and matches the empirical frequency of the mode.
    normal = torch.distributions.Normal(549.0, 50.0)
    support = torch.arange(400, 701).double()
    mass = (normal.cdf(support + 0.5) - normal.cdf(support - 0.5)).double()
    probs = mass / mass.sum()
    torch.testing.assert_close(log_prob, probs.log()[t - 400].float())
    assert abs(probs.sum().item() - 1) < 1e-9
    assert abs((t == 549).float().mean().item() - probs[149].item()) < 0.004
