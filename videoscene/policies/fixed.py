"""The official release's choice: one hard-coded leap timestep for every sample."""
from __future__ import annotations

import torch

from videoscene.registry import TIMESTEP_POLICIES

from .base import TimestepPolicy


@TIMESTEP_POLICIES.register_module(name='fixed')
class FixedTimestep(TimestepPolicy):
    """Always ``t`` (549 for RE10K and 459 for the demo in the official code)."""

    def __init__(self, t: int = 549) -> None:
        super().__init__()
        if t < 0:
            raise ValueError(f'fixed timestep must be >= 0, got {t}')
        self.t = t

    def select(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        batch = latents.shape[0]
        t = torch.full((batch,), self.t, dtype=torch.long, device=latents.device)
        return t, torch.zeros(batch, device=latents.device)
