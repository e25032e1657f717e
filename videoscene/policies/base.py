"""Timestep policies: which leap timestep to noise the rendered latents to."""
from __future__ import annotations

import torch
from torch import nn


class TimestepPolicy(nn.Module):
    """Picks one leap timestep per sample.

    ``select(latents)`` takes rendered-video latents ``[B, F, C, h, w]`` and returns ``(t, log_prob)``:
    integer timesteps ``[B]`` (long) and the log-probability of each choice under the policy ``[B]``
    (zeros for a deterministic policy), which policy-gradient training uses.
    """

    def select(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        raise NotImplementedError

    def forward(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if latents.ndim != 5:
            raise ValueError(f'latents must be [B, F, C, h, w], got shape {tuple(latents.shape)}')
        return self.select(latents)
