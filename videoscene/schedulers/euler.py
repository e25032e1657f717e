"""Euler / EDM noise scheduler (Stable Video Diffusion's), in the closed form of :mod:`.ddim`.

EDM writes a noisy sample as ``x_sigma = x0 + sigma * noise`` and feeds the network
``c_in * x_sigma`` with ``c_in = 1 / sqrt(sigma^2 + 1)``.  That scaled input is exactly the
variance-preserving ``x_t = sqrt(ab) x0 + sqrt(1 - ab) noise`` with ``ab = 1 / (1 + sigma^2)``, and
with v-prediction EDM's ``x0 = c_skip x_sigma + c_out v`` (``c_skip = 1 / (sigma^2 + 1)``,
``c_out = -sigma / sqrt(sigma^2 + 1)``) is ``sqrt(ab) x_t - sqrt(1 - ab) v``.  A deterministic
Euler step in ``sigma`` equals a DDIM step in ``x_t``.  So this scheduler is
:class:`~.ddim.DDIMScheduler` over a table of sigmas, working on ``x_t = c_in * x_sigma``; what
changes is the table and :meth:`EulerScheduler.noise_condition`, the network's timestep input.
"""
from __future__ import annotations

import torch

from videoscene.registry import NOISE_SCHEDULERS
from .ddim import DDIMScheduler


def karras_sigmas(sigma_min: float, sigma_max: float, n: int, rho: float = 7.0) -> torch.Tensor:
    """``n`` sigmas from ``sigma_max`` down to ``sigma_min`` spaced as in Karras et al. (2022)."""
    ramp = torch.linspace(0, 1, n, dtype=torch.float64)
    lo, hi = sigma_min ** (1 / rho), sigma_max ** (1 / rho)
    return (hi + ramp * (lo - hi)) ** rho


@NOISE_SCHEDULERS.register_module(name='Euler')
class EulerScheduler(DDIMScheduler):
    """Matches diffusers' ``EulerDiscreteScheduler`` (deterministic, ``final_sigmas_type='zero'``).

    Timestep ``t`` is an index ``0 .. T-1`` into an ascending table of sigmas; ``x_t`` is the
    network input ``c_in * x_sigma`` (see the module docstring), so every method of
    :class:`~.ddim.DDIMScheduler` applies unchanged.

    Args:
        num_train_timesteps, beta_start, beta_end, beta_schedule, prediction_type: as in DDIM.
        use_karras_sigmas: ``True``: the table is ``T`` Karras sigmas between ``sigma_min`` and
            ``sigma_max`` (SVD); ``False``: the sigmas of the beta schedule,
            ``sqrt((1 - ab) / ab)``.
        sigma_min, sigma_max, rho: the Karras table (required with ``use_karras_sigmas``).
        timestep_type: ``'continuous'``: the network's timestep input is ``0.25 log sigma``
            (SVD; needs v-prediction, as in diffusers); ``'discrete'``: it is the index ``t``
            (beta sigmas only).
        timestep_spacing: inference grid of the beta-sigma table (``'trailing'``/``'leading'``);
            the Karras table's grid is always evenly spaced indices from ``T - 1`` to 0.

    With a Karras table, :meth:`timesteps` ``(n)`` reproduces diffusers' ``set_timesteps(n)`` sigmas
    exactly when ``n - 1`` divides ``T - 1`` (e.g. ``n`` = 10 or 28 for ``T`` = 1000) and to the
    nearest table entry otherwise.
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                 beta_end: float = 0.012, beta_schedule: str = 'scaled_linear',
                 prediction_type: str = 'v_prediction', use_karras_sigmas: bool = True,
                 sigma_min: float | None = 0.002, sigma_max: float | None = 700.0, rho: float = 7.0,
                 timestep_type: str = 'continuous', timestep_spacing: str = 'trailing',
                 steps_offset: int = 0) -> None:
        super().__init__(num_train_timesteps, beta_start, beta_end, beta_schedule, prediction_type,
                         rescale_betas_zero_snr=False, snr_shift_scale=1.0,
                         timestep_spacing=timestep_spacing, set_alpha_to_one=True,
                         steps_offset=steps_offset)
        if timestep_type not in ('continuous', 'discrete'):
            raise ValueError(f"timestep_type '{timestep_type}' is not 'continuous' or 'discrete'")
        if timestep_type == 'continuous' and prediction_type != 'v_prediction':
            raise ValueError("timestep_type='continuous' needs prediction_type='v_prediction' "
                             '(diffusers uses discrete timesteps otherwise)')
        if use_karras_sigmas:
            if sigma_min is None or sigma_max is None:
                raise ValueError('use_karras_sigmas=True needs sigma_min and sigma_max')
            if timestep_type == 'discrete':
                raise ValueError("use_karras_sigmas=True needs timestep_type='continuous': a Karras "
                                 'sigma has no integer training timestep')
            sigmas = karras_sigmas(sigma_min, sigma_max, num_train_timesteps, rho).flip(0)
            self.alphas_cumprod = 1 / (1 + sigmas ** 2)
        self.sigmas = ((1 - self.alphas_cumprod) / self.alphas_cumprod).sqrt()
        self.use_karras_sigmas = use_karras_sigmas
        self.timestep_type = timestep_type

    def sigma(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """EDM ``sigma_t`` shaped to broadcast against ``like`` ``[B, ...]`` (0 for ``t < 0``)."""
        ab = self.alpha_bar(t, like)
        return ((1 - ab) / ab).sqrt()

    def noise_condition(self, t: torch.Tensor | int) -> torch.Tensor:
        """The network's timestep input for ``t`` ``[B]``: ``0.25 log sigma_t`` or ``t`` itself."""
        t = torch.as_tensor(t, device=self.sigmas.device).long().reshape(-1)
        if ((t < 0) | (t >= self.num_train_timesteps)).any():
            raise ValueError(f'timesteps must be in [0, {self.num_train_timesteps - 1}], got {t.tolist()}')
        if self.timestep_type == 'continuous':
            return 0.25 * self.sigmas[t].log().float()
        return t.float()

    def timesteps(self, num_inference_steps: int) -> torch.Tensor:
        if not self.use_karras_sigmas:
            return super().timesteps(num_inference_steps)
        n, T = num_inference_steps, self.num_train_timesteps
        if not 1 <= n <= T:
            raise ValueError(f'num_inference_steps must be in [1, {T}], got {n}')
        return torch.linspace(T - 1, 0, n, dtype=torch.float64).round().long()
