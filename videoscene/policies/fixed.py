"""The official release's choice: one hard-coded leap timestep for every sample."""
from __future__ import annotations

import torch

from videoscene.registry import TIMESTEP_POLICIES

from .base import Decision, TimestepPolicy


@TIMESTEP_POLICIES.register_module(name='fixed')
class FixedTimestep(TimestepPolicy):
    """Always ``t`` (549 for RE10K and 459 for the demo in the official code)."""

    def __init__(self, scheduler, latent_channels: int, t: int = 549) -> None:
        super().__init__(scheduler, latent_channels)
        if not 0 <= t < self.num_train_timesteps:
            raise ValueError(f'fixed timestep must be in [0, {self.num_train_timesteps - 1}], '
                             f'got {t}')
        self.t = t

    def select(self, latents: torch.Tensor) -> Decision:
        batch = latents.shape[0]
        zeros = torch.zeros(batch, device=latents.device)
        return Decision(torch.full((batch,), self.t, dtype=torch.long, device=latents.device),
                        zeros, zeros)
