"""Rectified-flow noise scheduler (Wan's ``FlowMatchEulerDiscreteScheduler``) in closed form.

Timesteps are integer indices ``t`` in ``0 .. T-1`` as for :class:`~videoscene.schedulers.DDIMScheduler`
(``t < 0`` is the clean sample).  Index ``t`` has the shifted noise level

    ``s = (t + 1) / T``,  ``sigma_t = shift s / (1 + (shift - 1) s)``

(diffusers' training table with ``use_dynamic_shifting=False``), the noisy sample is
``x_t = (1 - sigma_t) x0 + sigma_t eps`` and the network predicts the velocity ``v = eps - x0``
from the timestep input ``sigma_t * T``.  A deterministic Euler step ``x + (sigma_prev - sigma) v``
equals ``(1 - sigma_prev) x0 + sigma_prev eps`` with the estimates implied by ``v``, so the
project's sampler (:func:`videoscene.pipelines.sampling.step`) runs it through :meth:`ddim_update`.
The index-space methods (consistency scalings, solver grid, leap grid) are DDIM's own.
"""
from __future__ import annotations

import torch

from videoscene.registry import NOISE_SCHEDULERS
from videoscene.schedulers import DDIMScheduler


@NOISE_SCHEDULERS.register_module(name='FlowMatchEuler')
class FlowMatchEulerScheduler:
    """Flow-matching Euler scheduler over ``num_train_timesteps`` shifted sigmas.

    Args:
        num_train_timesteps: T; timesteps are integers in ``[0, T - 1]``.
        shift: Wan's sigma shift (``shift = 1``: no shift; 3.0 / 5.0 for Wan 2.1 I2V 480p / 720p).
        prediction_type: only ``'flow'`` (the velocity ``eps - x0``).

    Tensors ``x`` are ``[B, ...]``; ``t`` is ``[B]`` integers or a Python int.  The table is
    computed in float64 and cast to the data's dtype.
    """

    def __init__(self, num_train_timesteps: int = 1000, shift: float = 1.0,
                 prediction_type: str = 'flow') -> None:
        if prediction_type != 'flow':
            raise ValueError(f"FlowMatchEuler predicts the flow velocity; prediction_type must be "
                             f"'flow', got {prediction_type!r}")
        if shift <= 0:
            raise ValueError(f'shift must be positive, got {shift}')
        s = torch.arange(1, num_train_timesteps + 1, dtype=torch.float64) / num_train_timesteps
        self.sigmas = shift * s / (1 + (shift - 1) * s)
        self.num_train_timesteps = num_train_timesteps
        self.shift = shift
        self.prediction_type = prediction_type

    def sigma(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``sigma_t`` shaped to broadcast against ``like`` ``[B, ...]``; 0 for ``t < 0``."""
        t = torch.as_tensor(t).long().reshape(-1).cpu()
        if (t >= self.num_train_timesteps).any():
            raise ValueError(f'timesteps must be < {self.num_train_timesteps}, got {t.tolist()}')
        table = torch.cat([self.sigmas, self.sigmas.new_zeros(1)])
        sigma = table[torch.where(t < 0, self.num_train_timesteps, t)]   # t < 0 -> 0 (clean)
        return sigma.to(like).reshape(-1, *([1] * (like.ndim - 1)))

    def noise_condition(self, t: torch.Tensor | int) -> torch.Tensor:
        """The network's timestep input ``sigma_t * T`` (float ``[B]``), as diffusers feeds Wan."""
        t = torch.as_tensor(t).long().reshape(-1).cpu()
        if ((t < 0) | (t >= self.num_train_timesteps)).any():
            raise ValueError(f'timesteps must be in [0, {self.num_train_timesteps - 1}], '
                             f'got {t.tolist()}')
        return (self.sigmas[t] * self.num_train_timesteps).float()

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``x_t = (1 - sigma_t) x0 + sigma_t noise``."""
        sigma = self.sigma(t, x0)
        return (1 - sigma) * x0 + sigma * noise

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor,
                        t: torch.Tensor | int) -> torch.Tensor:
        """The velocity ``noise - x0`` (independent of ``t``)."""
        return noise - x0

    def to_x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``x0 = x_t - sigma_t v``."""
        return x_t - self.sigma(t, x_t) * output

    def to_eps(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``eps = x_t + (1 - sigma_t) v``."""
        return x_t + (1 - self.sigma(t, x_t)) * output

    def ddim_step(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
                  t_prev: torch.Tensor | int, eta: float = 0.0,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """Euler step ``x_t -> x_{t_prev}``: ``x_t + (sigma_prev - sigma_t) v``."""
        return self.ddim_update(self.to_x0(output, x_t, t), self.to_eps(output, x_t, t), t, t_prev,
                                eta, noise)

    def ddim_update(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int,
                    t_prev: torch.Tensor | int, eta: float = 0.0,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """``(1 - sigma_prev) x0 + sigma_prev eps``, the deterministic Euler step from the
        estimates made at ``t``; only ``eta = 0`` exists for this scheduler."""
        if eta != 0:
            raise ValueError(f'FlowMatchEuler steps are deterministic; eta must be 0, got {eta}')
        sigma_prev = self.sigma(t_prev, x0)
        return (1 - sigma_prev) * x0 + sigma_prev * eps

    # index-space grids and boundary scalings: identical to DDIM's (they depend on T only)
    consistency_scalings = DDIMScheduler.consistency_scalings
    solver_timesteps = DDIMScheduler.solver_timesteps
    leap_timesteps = DDIMScheduler.leap_timesteps

    def timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """The descending ``num_inference_steps`` grid nearest to diffusers' ``set_timesteps(n)``.

        diffusers spaces ``u`` evenly from 1 to ``sigma_min = shift(1 / T)`` and shifts again; index
        ``t`` holds ``shift((t + 1) / T)``, so ``t = round(u T) - 1`` is the table entry nearest to
        each of its sigmas (exact for ``shift = 1`` when ``n - 1`` divides ``T - 1``).
        """
        n, T = num_inference_steps, self.num_train_timesteps
        if not 1 <= n <= T:
            raise ValueError(f'num_inference_steps must be in [1, {T}], got {n}')
        u = torch.linspace(1.0, self.sigmas[0].item(), n, dtype=torch.float64)
        return ((u * T).round().long() - 1).clamp(min=0)
