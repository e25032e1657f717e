"""Uniformly random leap timesteps: the no-policy baseline for DDPNet ablations."""
from __future__ import annotations

import torch

from videoscene.registry import TIMESTEP_POLICIES

from .base import GridPolicy


@TIMESTEP_POLICIES.register_module(name='random')
class RandomTimestep(GridPolicy):
    """``t`` uniform over the candidate grid (see :class:`~.base.GridPolicy`), independently per
    sample, in training and in eval."""

    greedy_in_eval = False

    def distribution(self, latents: torch.Tensor) -> torch.distributions.Categorical:
        return torch.distributions.Categorical(
            logits=latents.new_zeros(latents.shape[0], len(self.candidates)))
