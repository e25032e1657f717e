"""Leap timesteps drawn from a normal distribution truncated to ``[low, high]``."""
from __future__ import annotations

import torch

from videoscene.policies import TimestepPolicy
from videoscene.registry import TIMESTEP_POLICIES


@TIMESTEP_POLICIES.register_module(name='truncated_normal')
class TruncatedNormalTimestep(TimestepPolicy):
    """``t = round(s)`` with ``s ~ N(mean, std)`` truncated to ``[low, high]``.

    A stochastic, non-learned policy centred on a known good leap (e.g. 549 on RE10K): an ablation
    between ``fixed`` and ``random``.  ``log_prob`` is the density of the continuous draw under the
    truncated normal, ``[B]``.
    """

    def __init__(self, mean: float = 549.0, std: float = 50.0, low: int = 0,
                 high: int = 999) -> None:
        super().__init__()
        if std <= 0:
            raise ValueError(f'std must be > 0, got {std}')
        if not 0 <= low < high:
            raise ValueError(f'need 0 <= low < high, got low={low}, high={high}')
        self.mean, self.std, self.low, self.high = mean, std, low, high

    def select(self, latents: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        normal = torch.distributions.Normal(torch.tensor(float(self.mean)),
                                            torch.tensor(float(self.std)))
        cdf_low, cdf_high = normal.cdf(torch.tensor(self.low - 0.5)), normal.cdf(
            torch.tensor(self.high + 0.5))
        u = torch.rand(latents.shape[0])
        s = normal.icdf(cdf_low + u * (cdf_high - cdf_low))  # inverse-CDF sampling, in range
        log_prob = normal.log_prob(s) - torch.log(cdf_high - cdf_low)
        t = s.round().clamp(self.low, self.high).long()
        return t.to(latents.device), log_prob.to(latents.device)
