"""Uniformly random leap timesteps: the no-policy baseline for DDPNet ablations."""
from __future__ import annotations

import math

import torch

from videoscene.registry import TIMESTEP_POLICIES

from .base import TimestepPolicy


@TIMESTEP_POLICIES.register_module(name='random')
class RandomTimestep(TimestepPolicy):
    """``t ~ U{low, ..., high}`` independently per sample (both ends included)."""

    def __init__(self, low: int = 0, high: int = 999) -> None:
        super().__init__()
        if not 0 <= low <= high:
            raise ValueError(f'need 0 <= low <= high, got low={low}, high={high}')
        self.low, self.high = low, high

    def select(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = latents.shape[0]
        t = torch.randint(self.low, self.high + 1, (batch,), device=latents.device)
        log_prob = torch.full((batch,), -math.log(self.high - self.low + 1), device=latents.device)
        return t, log_prob
