"""The one sampling loop: every multi- or one-step denoising in the project runs through here.

:func:`estimate` turns one network evaluation into a clean estimate and a noise estimate (with
optional classifier-free guidance, the consistency boundary scalings of a distilled student, and
the backbone's own rescaling of clean estimates); :func:`denoise` chains DDIM/Euler updates over a
descending list of timesteps and returns the clean latents.  The teacher's and the distillation
model's ``mode='predict'``, :class:`~videoscene.pipelines.VideoScenePipeline`, the demo and
``tools/infer.py`` all sample with :func:`denoise`; distillation's training step calls
:func:`estimate` for its student, teacher and target.

Latents are ``[B, f, C, h, w]``; timesteps are integer indices of the backbone's noise scheduler
(``-1`` means the clean sample).
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from tqdm import tqdm

from videoscene.backbones import VideoBackbone
from videoscene.backbones.base import Conditioning

__all__ = ['Guidance', 'rescale_guidance', 'estimate', 'step', 'denoise']


@dataclass
class Guidance:
    """Classifier-free guidance: ``uncond + scale (cond - uncond)``, then optionally rescaled to the
    conditional output's std (``rescale``, Lin et al. 2023 sec. 3.4).  ``unconditional`` is the
    backbone's :meth:`~VideoBackbone.unconditional` conditioning (computed once per batch)."""

    scale: float
    unconditional: Conditioning
    rescale: float = 0.0


def rescale_guidance(guided: torch.Tensor, conditional: torch.Tensor,
                     factor: float) -> torch.Tensor:
    """Blend ``guided`` with itself rescaled to the per-sample std of ``conditional`` (unbiased std
    over every non-batch axis): ``factor * guided * std_c / std_g + (1 - factor) * guided``."""
    dims = list(range(1, guided.ndim))
    ratio = conditional.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return factor * guided * ratio + (1 - factor) * guided


def _per_sample(value: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return value.to(like).reshape(-1, *([1] * (like.ndim - 1)))


def estimate(backbone: VideoBackbone, scheduler, x_t: torch.Tensor, t: torch.Tensor,
             conditioning: Conditioning, *, params: Mapping[str, torch.Tensor] | None = None,
             guidance: Guidance | None = None, consistency: bool = False,
             network: Callable[..., torch.Tensor] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """``(x0, eps)`` from one (or, guided, two) network evaluations at ``(x_t, t [B])``.

    ``x0`` is the clean estimate in the data's scale (divided by
    :meth:`VideoBackbone.clean_scale`); ``consistency=True`` then applies the boundary scalings
    ``c_skip x_t + c_out x0`` of a consistency model (the distilled student and its target).
    ``params`` replaces the backbone's trained tensors (teacher / student / target roles);
    ``network`` computes the output instead of ``backbone.predict`` (distillation passes its
    DDP-wrapped backbone, so the student's gradients are synchronised).
    """
    def predict(cond: Conditioning) -> torch.Tensor:
        if network is not None:
            return network(x_t, t, cond)
        return backbone.predict(x_t, t, cond, params)

    if network is not None and params is not None:
        raise ValueError('give network or params, not both')
    output = predict(conditioning)
    if guidance is not None and guidance.scale != 1.0:
        unguided = predict(guidance.unconditional)
        guided = unguided + guidance.scale * (output - unguided)
        output = (rescale_guidance(guided, output, guidance.rescale) if guidance.rescale > 0
                  else guided)
    x0 = scheduler.to_x0(output, x_t, t) / _per_sample(backbone.clean_scale(t), x_t)
    eps = scheduler.to_eps(output, x_t, t)
    if consistency:
        c_skip, c_out = scheduler.consistency_scalings(t, x_t)
        x0 = c_skip * x_t + c_out * x0
    return x0, eps


def step(backbone: VideoBackbone, scheduler, x0: torch.Tensor, eps: torch.Tensor,
         t: torch.Tensor, t_prev: torch.Tensor | int, eta: float = 0.0,
         noise: torch.Tensor | None = None) -> torch.Tensor:
    """The DDIM/Euler update ``x_t -> x_{t_prev}`` from the estimates made at ``t`` (``x0`` in the
    data's scale, brought to the scale the denoiser sees at ``t_prev``)."""
    t_prev = torch.as_tensor(t_prev, device=x0.device).reshape(-1).expand(len(x0))
    x0 = x0 * _per_sample(backbone.clean_scale(t_prev), x0)
    return scheduler.ddim_update(x0, eps, t, t_prev, eta, noise)


def denoise(backbone: VideoBackbone, scheduler, x: torch.Tensor,
            timesteps: Sequence[int] | torch.Tensor, conditioning: Conditioning, *,
            params: Mapping[str, torch.Tensor] | None = None, guidance: Guidance | None = None,
            consistency: bool = False, eta: float = 0.0, generator: torch.Generator | None = None,
            step_noise: torch.Tensor | None = None, progress: bool = False) -> torch.Tensor:
    """Clean latents from ``x [B, f, C, h, w]`` at the first timestep, one update per timestep.

    Args:
        timesteps: descending integer timesteps ``[S]``, or ``[B, S]`` (one row per sample, e.g.
            each from its own leap start); the last update lands on the clean sample.  ``[t]`` is
            the one-step leap; ``scheduler.leap_timesteps(t, n)`` n steps from a leap start;
            ``scheduler.timesteps(n)`` the n-step sampler from pure noise.
        eta: 0 for deterministic DDIM; > 0 adds ``step_noise[i]`` (or noise drawn from
            ``generator`` on the CPU) at step ``i``.
        step_noise: ``[S, B, f, C, h, w]``, e.g. to replay a recorded run.
    """
    grid = torch.as_tensor(timesteps, dtype=torch.long).cpu()
    grid = grid.expand(len(x), -1) if grid.ndim == 1 else grid
    if grid.ndim != 2 or grid.shape[0] != len(x) or grid.shape[1] == 0 or \
            (grid[:, 1:] >= grid[:, :-1]).any():
        raise ValueError(f'timesteps must be descending, [S] or [{len(x)}, S], got {grid.tolist()}')
    steps = grid.shape[1]
    if step_noise is not None and tuple(step_noise.shape) != (steps, *x.shape):
        raise ValueError(f'step_noise must be {(steps, *x.shape)}, got {tuple(step_noise.shape)}')
    grid = torch.cat([grid, grid.new_full((len(x), 1), -1)], dim=1).to(x.device)
    for i in tqdm(range(steps), desc='denoising', disable=not progress, leave=False):
        t, t_prev = grid[:, i], grid[:, i + 1]
        x0, eps = estimate(backbone, scheduler, x, t, conditioning, params=params,
                           guidance=guidance, consistency=consistency)
        noise = None
        if eta > 0:
            noise = (step_noise[i] if step_noise is not None
                     else torch.randn(x.shape, generator=generator)).to(x)
        x = step(backbone, scheduler, x0, eps, t, t_prev, eta, noise)
    return x
