"""DDPNet, the dynamic denoising policy network (paper Sec. 3.4).

A contextual bandit: the state is the rendered video's latents, the action a leap timestep from
the candidate grid, the reward the negative error of the student's one-step output.  The network
is four 2-D convolutions, each followed by group normalisation and SiLU, applied to every latent
frame; the features are averaged over space and frames and a linear head gives one logit per
candidate.  The head starts at zero, so an untrained DDPNet is uniform over the grid.
"""
from __future__ import annotations

import torch
from torch import nn

from videoscene.registry import TIMESTEP_POLICIES

from .base import GridPolicy


@TIMESTEP_POLICIES.register_module(name='DDPNet')
class DDPNet(GridPolicy):
    """Categorical policy over the candidate grid from render latents ``[B, f, C, h, w]``.

    Args:
        scheduler, latent_channels, solver_steps, max_timestep: see :class:`~.base.GridPolicy`.
        channels: output channels of the four convolutions (the first keeps the resolution, the
            others halve it).
        groups: group-norm groups (must divide every entry of ``channels``).
    """

    def __init__(self, scheduler, latent_channels: int, solver_steps: int = 50,
                 max_timestep: int | None = None, channels: tuple[int, ...] = (32, 64, 64, 128),
                 groups: int = 8) -> None:
        super().__init__(scheduler, latent_channels, solver_steps, max_timestep)
        if len(channels) != 4:
            raise ValueError(f'DDPNet has four convolutions, got channels={channels}')
        if any(c % groups for c in channels):
            raise ValueError(f'groups={groups} must divide every entry of channels={channels}')
        layers, previous = [], latent_channels
        for i, width in enumerate(channels):
            layers += [nn.Conv2d(previous, width, 3, stride=1 if i == 0 else 2, padding=1),
                       nn.GroupNorm(groups, width), nn.SiLU()]
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(previous, len(self.candidates))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def distribution(self, latents: torch.Tensor) -> torch.distributions.Categorical:
        if latents.shape[2] != self.latent_channels:
            raise ValueError(f'DDPNet was built for {self.latent_channels} latent channels, got '
                             f'latents {tuple(latents.shape)}')
        batch, frames = latents.shape[:2]
        features = self.features(latents.flatten(0, 1).to(self.head.weight.dtype))
        pooled = features.mean(dim=(2, 3)).unflatten(0, (batch, frames)).mean(dim=1)
        return torch.distributions.Categorical(logits=self.head(pooled).float())
