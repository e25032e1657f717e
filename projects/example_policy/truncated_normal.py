"""Leap timesteps drawn from a normal distribution, rounded and truncated to ``[low, high]``."""
from __future__ import annotations

import torch

from videoscene.policies import Decision, TimestepPolicy
from videoscene.registry import TIMESTEP_POLICIES


@TIMESTEP_POLICIES.register_module(name='truncated_normal')
class TruncatedNormalTimestep(TimestepPolicy):
    """``t = round(s)`` with ``s ~ N(mean, std)`` truncated to ``[low - 0.5, high + 0.5)``.

    A stochastic, non-learned policy centred on a known good leap (e.g. 549 on RE10K): an ablation
    between ``fixed`` and ``random``.  The action is the integer ``t``, so ``log_prob`` is the log
    of its probability mass, ``P(t) = (Phi(t + 0.5) - Phi(t - 0.5)) / Z`` with the normal CDF
    ``Phi`` and the truncation mass ``Z`` (a density of the continuous ``s`` would not be a valid
    REINFORCE log-probability).  ``scheduler`` and ``latent_channels`` come from whoever builds the
    policy (see :mod:`videoscene.policies.base`).
    """

    def __init__(self, scheduler, latent_channels: int, mean: float = 549.0, std: float = 50.0,
                 low: int = 0, high: int = 999) -> None:
        super().__init__(scheduler, latent_channels)
        if std <= 0:
            raise ValueError(f'std must be > 0, got {std}')
        if not 0 <= low < high < self.num_train_timesteps:
            raise ValueError(f'need 0 <= low < high < {self.num_train_timesteps}, got low={low}, '
                             f'high={high}')
        self.mean, self.std, self.low, self.high = mean, std, low, high

    def select(self, latents: torch.Tensor) -> Decision:
        normal = torch.distributions.Normal(torch.tensor(float(self.mean), dtype=torch.float64),
                                            torch.tensor(float(self.std), dtype=torch.float64))
        values = torch.arange(self.low, self.high + 1, dtype=torch.float64)
        mass = normal.cdf(values + 0.5) - normal.cdf(values - 0.5)   # P(round(s) = t), untruncated
        probs = mass / mass.sum()
        index = torch.multinomial(probs.float(), latents.shape[0], replacement=True)
        log_prob = probs.log()[index].float()
        entropy = -(probs * probs.log()).sum().float().expand(latents.shape[0])
        return Decision((index + self.low).to(latents.device), log_prob.to(latents.device),
                        entropy.to(latents.device))
