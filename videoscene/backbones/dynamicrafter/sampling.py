"""DynamiCrafter's multi-step sampler, as its official inference script runs it.

DDIM over the trailing grid (``999, 979, ..., 19`` for 50 steps) with ``eta = 1``, the last step
landing on ``alpha_bar[0]`` (``set_alpha_to_one=False``); classifier-free guidance from two UNet
calls (conditional, then unconditional) with guidance rescale (Lin et al. 2023, sec. 3.4, on the v
prediction); and DynamiCrafter's dynamic rescale of every ``x0`` estimate but the last by
``scale_arr[t_prev] / scale_arr[t]``.  The update itself is
:meth:`videoscene.schedulers.DDIMScheduler.ddim_update`.
"""
from __future__ import annotations

import torch
from tqdm import tqdm

from videoscene.schedulers import DDIMScheduler
from ..base import Conditioning
from .backbone import DynamiCrafter

__all__ = ['rescale_guidance', 'sample', 'interpolate']


def rescale_guidance(guided: torch.Tensor, conditional: torch.Tensor,
                     factor: float) -> torch.Tensor:
    """Blend ``guided`` with itself rescaled to the per-sample std of ``conditional`` (unbiased std
    over every non-batch axis): ``factor * guided * std_c / std_g + (1 - factor) * guided``."""
    dims = list(range(1, guided.ndim))
    ratio = conditional.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return factor * guided * ratio + (1 - factor) * guided


@torch.no_grad()
def sample(backbone: DynamiCrafter, conditioning: Conditioning,
           unconditional: Conditioning | None = None, num_steps: int = 50, eta: float = 1.0,
           guidance_scale: float = 7.5, guidance_rescale: float = 0.7,
           scheduler: DDIMScheduler | None = None, generator: torch.Generator | None = None,
           x_T: torch.Tensor | None = None, step_noise: torch.Tensor | None = None,
           progress: bool = True) -> torch.Tensor:
    """Latents ``[B, F, C, h, w]`` sampled from pure noise under ``conditioning``.

    Args:
        unconditional: the guidance counterpart (None: ``backbone.unconditional(conditioning)``
            when ``guidance_scale != 1``).
        scheduler: None builds ``backbone.build_scheduler()``.
        generator: draws ``x_T`` and the per-step noise that are not given.
        x_T: the starting noise ``[B, F, C, h, w]``.
        step_noise: ``[num_steps, B, F, C, h, w]``, the noise of each ``eta > 0`` step in order.
    """
    scheduler = scheduler or backbone.build_scheduler()
    shape = tuple(conditioning['concat'].shape)
    if x_T is not None and tuple(x_T.shape) != shape:
        raise ValueError(f'x_T must be {shape}, got {tuple(x_T.shape)}')
    if step_noise is not None and tuple(step_noise.shape) != (num_steps, *shape):
        raise ValueError(f'step_noise must be {(num_steps, *shape)}, got {tuple(step_noise.shape)}')
    guided = guidance_scale != 1.0
    if guided and unconditional is None:
        unconditional = backbone.unconditional(conditioning)
    x = x_T.float() if x_T is not None else torch.randn(shape, generator=generator)
    x = x.to(backbone.device)
    grid = scheduler.timesteps(num_steps).tolist()
    for i, t in enumerate(tqdm(grid, desc='DynamiCrafter DDIM', disable=not progress)):
        t_prev = grid[i + 1] if i + 1 < len(grid) else -1
        t_batch = torch.full((shape[0],), t, dtype=torch.long)
        output = backbone.predict(x, t_batch, conditioning)
        if guided:
            unguided = backbone.predict(x, t_batch, unconditional)
            guided_output = unguided + guidance_scale * (output - unguided)
            output = (rescale_guidance(guided_output, output, guidance_rescale)
                      if guidance_rescale > 0 else guided_output)
        x0 = scheduler.to_x0(output, x, t_batch)
        eps = scheduler.to_eps(output, x, t_batch)
        if t_prev >= 0:
            x0 = x0 * (backbone.dynamic_rescale(t_prev) / backbone.dynamic_rescale(t)).to(x0)
        noise = None
        if eta > 0:
            noise = (step_noise[i] if step_noise is not None
                     else torch.randn(shape, generator=generator)).to(x)
        x = scheduler.ddim_update(x0, eps, t_batch, t_prev, eta, noise)
    return x


@torch.no_grad()
def interpolate(backbone: DynamiCrafter, first: torch.Tensor, last: torch.Tensor,
                num_frames: int = 16, prompt_tokens: torch.Tensor | None = None,
                generator: torch.Generator | None = None, **kwargs) -> torch.Tensor:
    """Video ``[B, F, 3, H, W]`` in ``[0, 1]`` from its ``first`` and ``last`` frames
    ``[B, 3, H, W]`` in ``[0, 1]`` (the official Interp recipe; ``kwargs`` go to :func:`sample`).

    The condition latents are posterior samples drawn from ``generator``, as the official run draws
    them.
    """
    h, w = backbone.latent_size(*first.shape[-2:])
    noise = torch.randn(first.shape[0], 2, backbone.latent_channels, h, w, generator=generator)
    conditioning = backbone.condition(first, last, num_frames, prompt_tokens=prompt_tokens,
                                      latent_noise=noise)
    return backbone.decode(sample(backbone, conditioning, generator=generator, **kwargs))
