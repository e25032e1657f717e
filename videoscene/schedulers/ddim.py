"""DDIM noise scheduler in closed form: any ``t -> t_prev`` jump, any prediction type.

Matches diffusers' ``DDIMScheduler`` / ``CogVideoXDDIMScheduler`` (betas, SNR shift, zero terminal
SNR rescaling, trailing spacing, deterministic and eta > 0 steps) but is stateless, which is what
consistency distillation needs: the teacher jumps ``t -> t - k`` from arbitrary timesteps.
"""
from __future__ import annotations

import torch

from videoscene.registry import NOISE_SCHEDULERS

PREDICTION_TYPES = ('epsilon', 'v_prediction', 'sample')


def rescale_zero_terminal_snr(alphas_cumprod: torch.Tensor) -> torch.Tensor:
    """Shift and scale ``sqrt(alpha_bar)`` so the last step has zero SNR (Lin et al. 2023, alg. 1)."""
    root = alphas_cumprod.sqrt()
    first, last = root[0].clone(), root[-1].clone()
    root = (root - last) * first / (first - last)
    return root ** 2


@NOISE_SCHEDULERS.register_module(name='DDIM')
class DDIMScheduler:
    """Deterministic DDIM over ``num_train_timesteps`` discrete steps.

    Args:
        num_train_timesteps: T; timesteps are integers in ``[0, T - 1]``.
        beta_start, beta_end, beta_schedule: ``'linear'`` or ``'scaled_linear'`` betas.
        prediction_type: what the network predicts: ``'epsilon'``, ``'v_prediction'`` or ``'sample'``.
        rescale_betas_zero_snr: rescale so ``alpha_bar[T-1] = 0`` (pure noise at the last step).
        snr_shift_scale: CogVideoX's SNR shift ``ab / (s + (1 - s) ab)`` (1.0 = none; 3.0 for 2B).
        timestep_spacing: ``'trailing'`` or ``'leading'`` inference grid.
        set_alpha_to_one: ``alpha_bar`` used past step 0: 1 (clean) or ``alpha_bar[0]``.
        steps_offset: added to the ``'leading'`` grid.

    The defaults are CogVideoX-5B's: v-prediction, zero terminal SNR, trailing spacing.  The
    schedule is computed in float64 (as CogVideoX's scheduler does) and cast to the data's dtype.
    Tensors ``x`` are ``[B, ...]``; timesteps ``t`` are ``[B]`` integers (or a Python int).
    """

    def __init__(self, num_train_timesteps: int = 1000, beta_start: float = 0.00085,
                 beta_end: float = 0.012, beta_schedule: str = 'scaled_linear',
                 prediction_type: str = 'v_prediction', rescale_betas_zero_snr: bool = True,
                 snr_shift_scale: float = 1.0, timestep_spacing: str = 'trailing',
                 set_alpha_to_one: bool = True, steps_offset: int = 0) -> None:
        if prediction_type not in PREDICTION_TYPES:
            raise ValueError(f"prediction_type '{prediction_type}' is not one of {PREDICTION_TYPES}")
        if rescale_betas_zero_snr and prediction_type == 'epsilon':
            raise ValueError('Zero terminal SNR makes an epsilon prediction carry no signal at '
                             "t = T - 1; use prediction_type='v_prediction' or 'sample'.")
        if timestep_spacing not in ('trailing', 'leading'):
            raise ValueError(f"timestep_spacing '{timestep_spacing}' is not 'trailing' or 'leading'")
        if beta_schedule == 'linear':
            betas = torch.linspace(beta_start, beta_end, num_train_timesteps, dtype=torch.float64)
        elif beta_schedule == 'scaled_linear':
            betas = torch.linspace(beta_start ** 0.5, beta_end ** 0.5, num_train_timesteps,
                                   dtype=torch.float64) ** 2
        else:
            raise ValueError(f"beta_schedule '{beta_schedule}' is not 'linear' or 'scaled_linear'")
        alphas_cumprod = torch.cumprod(1.0 - betas, dim=0)
        alphas_cumprod = alphas_cumprod / (snr_shift_scale + (1 - snr_shift_scale) * alphas_cumprod)
        if rescale_betas_zero_snr:
            alphas_cumprod = rescale_zero_terminal_snr(alphas_cumprod)
        self.alphas_cumprod = alphas_cumprod
        self.final_alpha_cumprod = torch.tensor(1.0) if set_alpha_to_one else alphas_cumprod[0]
        self.num_train_timesteps = num_train_timesteps
        self.prediction_type = prediction_type
        self.timestep_spacing = timestep_spacing
        self.steps_offset = steps_offset

    def alpha_bar(self, t: torch.Tensor | int, like: torch.Tensor) -> torch.Tensor:
        """``alpha_bar_t`` shaped to broadcast against ``like`` ``[B, ...]``; ``t < 0`` is clean."""
        t = torch.as_tensor(t, device=self.alphas_cumprod.device).long().reshape(-1)
        if (t >= self.num_train_timesteps).any():
            raise ValueError(f'timesteps must be < {self.num_train_timesteps}, got {t.tolist()}')
        table = torch.cat([self.alphas_cumprod, self.final_alpha_cumprod.reshape(1)])
        ab = table[torch.where(t < 0, self.num_train_timesteps, t)]  # t < 0 -> final entry
        return ab.to(like).reshape(-1, *([1] * (like.ndim - 1)))

    def add_noise(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) noise``."""
        ab = self.alpha_bar(t, x0)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * noise

    def velocity(self, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The v-prediction target ``sqrt(ab_t) noise - sqrt(1 - ab_t) x0``."""
        ab = self.alpha_bar(t, x0)
        return ab.sqrt() * noise - (1 - ab).sqrt() * x0

    def training_target(self, x0: torch.Tensor, noise: torch.Tensor,
                        t: torch.Tensor | int) -> torch.Tensor:
        """What the network should output at ``x_t`` for this scheduler's prediction type."""
        if self.prediction_type == 'epsilon':
            return noise
        if self.prediction_type == 'sample':
            return x0
        return self.velocity(x0, noise, t)

    def to_x0(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The clean-sample estimate implied by the network ``output`` at ``(x_t, t)``."""
        ab = self.alpha_bar(t, x_t)
        if self.prediction_type == 'v_prediction':
            return ab.sqrt() * x_t - (1 - ab).sqrt() * output
        if self.prediction_type == 'sample':
            return output
        return (x_t - (1 - ab).sqrt() * output) / ab.sqrt()

    def to_eps(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int) -> torch.Tensor:
        """The noise estimate implied by the network ``output`` at ``(x_t, t)``."""
        ab = self.alpha_bar(t, x_t)
        if self.prediction_type == 'v_prediction':
            return ab.sqrt() * output + (1 - ab).sqrt() * x_t
        if self.prediction_type == 'epsilon':
            return output
        return (x_t - ab.sqrt() * output) / (1 - ab).sqrt()

    def ddim_step(self, output: torch.Tensor, x_t: torch.Tensor, t: torch.Tensor | int,
                  t_prev: torch.Tensor | int, eta: float = 0.0,
                  noise: torch.Tensor | None = None) -> torch.Tensor:
        """DDIM jump ``x_t -> x_{t_prev}`` (``t_prev < 0`` lands on the clean sample); deterministic
        with ``eta = 0``, else see :meth:`ddim_update`."""
        return self.ddim_update(self.to_x0(output, x_t, t), self.to_eps(output, x_t, t), t, t_prev,
                                eta, noise)

    def ddim_update(self, x0: torch.Tensor, eps: torch.Tensor, t: torch.Tensor | int,
                    t_prev: torch.Tensor | int, eta: float = 0.0,
                    noise: torch.Tensor | None = None) -> torch.Tensor:
        """The DDIM update from clean and noise estimates ``x0``, ``eps`` made at ``t``.

        ``x_{t_prev} = sqrt(ab_prev) x0 + sqrt(1 - ab_prev - sigma^2) eps + sigma noise`` with
        ``sigma = eta sqrt((1 - ab_prev) / (1 - ab_t) (1 - ab_t / ab_prev))`` (Song et al. 2021,
        eq. 16): ``eta = 0`` is deterministic DDIM, ``eta = 1`` DDPM-like ancestral sampling, which
        needs ``noise`` (standard normal, shaped like ``x0``).  Taking the estimates rather than the
        network output lets a sampler adjust them first (DynamiCrafter rescales ``x0``).
        """
        ab_prev = self.alpha_bar(t_prev, x0)
        if eta == 0:
            return ab_prev.sqrt() * x0 + (1 - ab_prev).sqrt() * eps
        if noise is None or noise.shape != x0.shape:
            raise ValueError(f'eta={eta} needs standard normal noise shaped like x0 '
                             f'{tuple(x0.shape)}, got '
                             f'{None if noise is None else tuple(noise.shape)}')
        ab_t = self.alpha_bar(t, x0)
        variance = eta ** 2 * (1 - ab_prev) / (1 - ab_t) * (1 - ab_t / ab_prev)
        direction = (1 - ab_prev - variance).clamp(min=0).sqrt()
        return ab_prev.sqrt() * x0 + direction * eps + variance.sqrt() * noise.to(x0)

    def consistency_scalings(self, t: torch.Tensor | int, like: torch.Tensor,
                             timestep_scaling: float = 10.0,
                             sigma_data: float = 0.5) -> tuple[torch.Tensor, torch.Tensor]:
        """Boundary scalings ``(c_skip, c_out)`` of a consistency model at ``t``, shaped like
        :meth:`alpha_bar`: with ``s = timestep_scaling * t``, ``c_skip = sd^2 / (s^2 + sd^2)`` and
        ``c_out = s / sqrt(s^2 + sd^2)``, so ``c_skip x_t + c_out x0`` is ``x_t`` at ``t = 0``
        (the LCM recipe: ``sigma_data = 0.5``, scaling 10)."""
        t = torch.as_tensor(t, device=like.device).reshape(-1).to(like.dtype)
        s = timestep_scaling * t.clamp(min=0)
        c_skip = sigma_data ** 2 / (s ** 2 + sigma_data ** 2)
        c_out = s / (s ** 2 + sigma_data ** 2).sqrt()
        shape = (-1, *([1] * (like.ndim - 1)))
        return c_skip.reshape(shape), c_out.reshape(shape)

    def solver_timesteps(self, num_steps: int) -> torch.Tensor:
        """The ascending solver grid of consistency distillation, ``k-1, 2k-1, ..., T-1`` with
        skip ``k = T / num_steps`` (``round(i k) - 1`` for ``i = 1..num_steps``, as LCM's DDIM
        solver): a teacher step from a grid point ``t`` lands on ``t - k``."""
        n, T = num_steps, self.num_train_timesteps
        if not 1 <= n <= T:
            raise ValueError(f'solver steps must be in [1, {T}], got {n}')
        return (torch.arange(1, n + 1, dtype=torch.float64) * (T / n)).round().long() - 1

    def leap_timesteps(self, start: int, num_steps: int) -> torch.Tensor:
        """``num_steps`` descending timesteps from the leap start ``start`` towards 0, evenly
        spaced (``start`` first; the sampler's last step lands on the clean sample)."""
        T = self.num_train_timesteps
        if not 0 <= start < T:
            raise ValueError(f'leap start must be in [0, {T - 1}], got {start}')
        if not 1 <= num_steps <= start + 1:
            raise ValueError(f'steps from t={start} must be in [1, {start + 1}], got {num_steps}')
        return torch.linspace(start, 0, num_steps + 1, dtype=torch.float64)[:-1].round().long()

    def timesteps(self, num_inference_steps: int) -> torch.Tensor:
        """The descending inference grid of ``num_inference_steps`` integer timesteps."""
        n, T = num_inference_steps, self.num_train_timesteps
        if not 1 <= n <= T:
            raise ValueError(f'num_inference_steps must be in [1, {T}], got {n}')
        if self.timestep_spacing == 'trailing':
            grid = torch.round(torch.arange(T, 0, -T / n, dtype=torch.float64)).long() - 1
        else:
            grid = (torch.arange(n - 1, -1, -1, dtype=torch.long) * (T // n)) + self.steps_offset
        return grid
