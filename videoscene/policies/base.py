"""Timestep policies: which leap timestep to noise the rendered latents to.

Timesteps belong to the backbone's noise scheduler: every policy is built with it
(``TIMESTEP_POLICIES.build(cfg, default_args=dict(scheduler=..., latent_channels=...))``, which the
distillation model and the pipeline do), takes ``T`` from it and, for the policies that choose
among candidates, the solver grid ``scheduler.solver_timesteps(solver_steps)`` bounded by
``max_timestep`` (the paper's ``T' < T``).
"""
from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ['Decision', 'TimestepPolicy', 'GridPolicy']


class Decision(NamedTuple):
    """A policy's choice for a batch: timesteps ``t [B]`` (long), the log-probability of each
    choice ``[B]`` (exact, for REINFORCE; 0 for a deterministic choice) and the entropy of the
    policy's distribution ``[B]`` (for an entropy bonus)."""

    t: torch.Tensor
    log_prob: torch.Tensor
    entropy: torch.Tensor


class TimestepPolicy(nn.Module):
    """Picks one leap timestep per sample from rendered-video latents ``[B, f, C, h, w]``.

    Args:
        scheduler: the backbone's noise scheduler (``num_train_timesteps``, solver grid).
        latent_channels: ``C`` of the latents the policy will see (for learned policies).
    """

    def __init__(self, scheduler, latent_channels: int) -> None:
        super().__init__()
        self.num_train_timesteps = int(scheduler.num_train_timesteps)
        self.latent_channels = latent_channels

    def select(self, latents: torch.Tensor) -> Decision:
        raise NotImplementedError

    def forward(self, latents: torch.Tensor) -> Decision:
        if latents.ndim != 5:
            raise ValueError(f'latents must be [B, f, C, h, w], got shape {tuple(latents.shape)}')
        return self.select(latents)


class GridPolicy(TimestepPolicy):
    """A policy over the candidate grid ``candidates [K]``: the scheduler's solver timesteps that
    are ``<= max_timestep`` (ascending).

    Args:
        solver_steps: ``N`` of ``scheduler.solver_timesteps(N)`` (use the distillation's solver).
        max_timestep: ``T'``, the largest leap allowed (None: ``T - 1``).

    In training mode a decision is a draw from :meth:`distribution`; in eval mode it is the most
    likely candidate when :attr:`greedy_in_eval` (a learned policy), else a draw as well.
    """

    greedy_in_eval = True

    def __init__(self, scheduler, latent_channels: int, solver_steps: int = 50,
                 max_timestep: int | None = None) -> None:
        super().__init__(scheduler, latent_channels)
        T = self.num_train_timesteps
        max_timestep = T - 1 if max_timestep is None else max_timestep
        if not 0 <= max_timestep < T:
            raise ValueError(f'max_timestep must be in [0, {T - 1}], got {max_timestep}')
        grid = scheduler.solver_timesteps(solver_steps)
        grid = grid[grid <= max_timestep]
        if not len(grid):
            raise ValueError(f'no solver timestep of {solver_steps} steps is <= max_timestep='
                             f'{max_timestep}; raise max_timestep or solver_steps')
        self.register_buffer('candidates', grid, persistent=False)

    def distribution(self, latents: torch.Tensor) -> torch.distributions.Categorical:
        """The categorical distribution over :attr:`candidates` for each sample."""
        raise NotImplementedError

    def select(self, latents: torch.Tensor) -> Decision:
        distribution = self.distribution(latents)
        greedy = self.greedy_in_eval and not self.training
        index = distribution.probs.argmax(-1) if greedy else distribution.sample()
        return Decision(self.candidates[index], distribution.log_prob(index),
                        distribution.entropy())
