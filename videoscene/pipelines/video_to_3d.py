"""Video to 3D: fit Gaussians to a generated video on the cameras it was generated along.

The generated video is 3D-consistent only approximately; fitting one set of Gaussians to all of
its frames turns it into a scene that any viewer can render. The fit starts from the
reconstructor's Gaussians (``gaussians.ply`` of ``tools/infer.py``) and optimises, with Adam, every
Gaussian's mean, spherical-harmonic colour, opacity (as a logit) and covariance (as log scales and
a rotation quaternion, ``Sigma = R diag(s^2) R^T``) against the frames through the project's
differentiable renderers (``torch``, with its hand-written backward, on the CPU; ``gsplat`` on
CUDA). The loss is the L1 distance between render and frame.

Every ``k``-th frame (frames ``k, 2k, ...``, but never the first or last frame, which are the input
views) is held out of the fit: PSNR and SSIM on the held-out frames (``videoscene.evaluation``),
before and after the fit, say how well the scene explains views it was not fitted to.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tqdm import tqdm

from videoscene.evaluation import psnr, ssim
from videoscene.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix
from videoscene.structures import Gaussians

__all__ = ['GaussianParameters', 'FitResult', 'held_out_frames', 'render_frames', 'image_metrics',
           'fit_gaussians', 'LEARNING_RATES']

LEARNING_RATES = {'means': 1.6e-3, 'harmonics': 5e-3, 'opacity_logits': 5e-2, 'log_scales': 5e-3,
                  'rotations': 1e-3}
"""Adam learning rates per parameter group: 3D Gaussian splatting's, with the means' (scaled by
the extent of the camera centres) and the colours' raised for fits of a few hundred steps."""

_OPACITY_EPS = 1e-4


class GaussianParameters(nn.Module):
    """The trainable parameterisation of one scene's Gaussians (batch element ``batch_index``).

    Attributes (parameters, ``G`` Gaussians): ``means [G, 3]``, ``harmonics [G, 3, (d+1)^2]``,
    ``opacity_logits [G]``, ``log_scales [G, 3]`` (log standard deviations along the principal
    axes), ``rotations [G, 4]`` (wxyz quaternions of the principal axes, normalised when used).
    """

    def __init__(self, gaussians: Gaussians, batch_index: int = 0) -> None:
        super().__init__()
        gaussians.check_shapes()
        covariances = gaussians.covariances[batch_index].detach().double()
        variances, axes = torch.linalg.eigh(0.5 * (covariances + covariances.transpose(-1, -2)))
        handedness = torch.linalg.det(axes).sign()
        axes = torch.cat([axes[..., :2], axes[..., 2:] * handedness[:, None, None]], dim=-1)
        dtype = gaussians.means.dtype
        self.means = nn.Parameter(gaussians.means[batch_index].detach().clone())
        self.harmonics = nn.Parameter(gaussians.harmonics[batch_index].detach().clone())
        opacities = gaussians.opacities[batch_index].detach().clamp(_OPACITY_EPS, 1 - _OPACITY_EPS)
        self.opacity_logits = nn.Parameter(torch.logit(opacities))
        self.log_scales = nn.Parameter((0.5 * variances.clamp_min(1e-20).log()).to(dtype))
        self.rotations = nn.Parameter(matrix_to_quaternion(axes).to(dtype))

    def forward(self) -> Gaussians:
        """The Gaussians (batch of one), differentiable in every parameter."""
        rotation = quaternion_to_matrix(self.rotations)
        covariances = rotation @ torch.diag_embed(torch.exp(2 * self.log_scales)) @ rotation.transpose(-1, -2)
        return Gaussians(means=self.means[None], covariances=covariances[None],
                         harmonics=self.harmonics[None], opacities=torch.sigmoid(self.opacity_logits)[None])

    def parameter_groups(self, learning_rates: Mapping[str, float], extent: float) -> list[dict]:
        """Adam groups: one per parameter, the means' rate times ``extent``."""
        groups = []
        for name, parameter in self.named_parameters():
            rate = learning_rates[name] * (extent if name == 'means' else 1.0)
            groups.append({'params': [parameter], 'lr': rate, 'name': name})
        return groups


def held_out_frames(num_frames: int, every: int) -> list[int]:
    """Frames ``every, 2 every, ...`` short of the last frame (the first and last are the inputs)."""
    if every < 2:
        raise ValueError(f'hold out every k-th frame with k >= 2, got {every}')
    return list(range(every, num_frames - 1, every))


def render_frames(renderer, gaussians: Gaussians, cameras: Mapping[str, Tensor], indices: list[int],
                  image_shape: tuple[int, int]) -> Tensor:
    """Colour renders ``[len(indices), 3, H, W]`` (clamped to [0, 1]) at the cameras ``indices`` of
    ``cameras`` (``extrinsics [F, 4, 4]``, ``intrinsics [F, 3, 3]``, ``near``, ``far [F]``)."""
    pick = torch.as_tensor(indices, dtype=torch.long)
    out = renderer.render(gaussians, cameras['extrinsics'][pick][None], cameras['intrinsics'][pick][None],
                          image_shape, cameras['near'][pick][None], cameras['far'][pick][None])
    return out.color[0].clamp(0, 1)


def image_metrics(prediction: Tensor, target: Tensor,
                  lpips: Callable[[Tensor, Tensor], Tensor] | None = None) -> dict[str, float]:
    """Mean PSNR, SSIM (and LPIPS when given) of images ``[N, 3, H, W]``."""
    metrics = {'psnr': float(psnr(prediction, target).mean()), 'ssim': float(ssim(prediction, target).mean())}
    if lpips is not None:
        with torch.no_grad():
            metrics['lpips'] = float(lpips(prediction.float(), target.float()).mean())
    return metrics


@dataclass
class FitResult:
    """What :func:`fit_gaussians` returns.

    Attributes:
        gaussians: the fitted Gaussians (batch of one, detached).
        train, held_out: the frame indices fitted to and held out.
        before, after: held-out metrics of the initial and the fitted Gaussians.
        held_out_renders: ``[len(held_out), 3, H, W]`` renders of the fitted Gaussians.
        losses: the L1 loss of every iteration.
    """

    gaussians: Gaussians
    train: list[int]
    held_out: list[int]
    before: dict[str, float]
    after: dict[str, float]
    held_out_renders: Tensor
    losses: list[float] = field(default_factory=list)


def fit_gaussians(initial: Gaussians, frames: Tensor, cameras: Mapping[str, Tensor], renderer, *,
                  held_out_every: int = 4, iterations: int = 300, views_per_step: int = 2,
                  learning_rates: Mapping[str, float] | None = None, seed: int = 0,
                  lpips: Callable[[Tensor, Tensor], Tensor] | None = None,
                  progress: bool = False) -> FitResult:
    """Fit ``initial`` Gaussians to ``frames [F, 3, H, W]`` seen from ``cameras`` (module docstring).

    Args:
        initial: the starting Gaussians (batch of one), e.g. the reconstructor's.
        frames: the video, float in [0, 1], on the device to fit on.
        cameras: ``extrinsics [F, 4, 4]``, ``intrinsics [F, 3, 3]`` (normalised), ``near``, ``far [F]``.
        renderer: a differentiable ``RENDERERS`` entry (``torch`` or ``gsplat``).
        held_out_every: ``k``: frames ``k, 2k, ...`` (not the last) are held out.
        iterations: Adam steps; each renders ``views_per_step`` training frames drawn in turn from
            a shuffled order.
        learning_rates: per-group rates, defaults :data:`LEARNING_RATES`.
        seed: seeds the order of the training frames.
        lpips: an LPIPS module for the held-out metrics (None: PSNR and SSIM only).
    """
    if frames.dim() != 4 or frames.shape[1] != 3:
        raise ValueError(f'frames must be [F, 3, H, W], got {list(frames.shape)}')
    count, shape = len(frames), tuple(frames.shape[-2:])
    if any(len(cameras[key]) != count for key in ('extrinsics', 'intrinsics', 'near', 'far')):
        raise ValueError(f'need one camera per frame ({count}), got '
                         f'{ {key: len(value) for key, value in cameras.items()} }')
    held_out = held_out_frames(count, held_out_every)
    train = [i for i in range(count) if i not in held_out]
    if not held_out:
        raise ValueError(f'{count} frames leave nothing to hold out with held_out_every={held_out_every}')
    device = frames.device
    cameras = {key: cameras[key].to(device) for key in ('extrinsics', 'intrinsics', 'near', 'far')}
    parameters = GaussianParameters(initial.to(device))
    with torch.no_grad():
        before = image_metrics(render_frames(renderer, parameters(), cameras, held_out, shape),
                               frames[held_out], lpips)
    centres = cameras['extrinsics'][:, :3, 3]
    extent = max(float((centres - centres.mean(0)).norm(dim=-1).max()), 1e-2)
    rates = {**LEARNING_RATES, **(learning_rates or {})}
    optimizer = torch.optim.Adam(parameters.parameter_groups(rates, extent), eps=1e-15)
    generator = torch.Generator().manual_seed(seed)
    order: list[int] = []
    losses = []
    for _ in tqdm(range(iterations), desc='fitting Gaussians', disable=not progress):
        while len(order) < views_per_step:
            order += [train[i] for i in torch.randperm(len(train), generator=generator).tolist()]
        batch, order = order[:views_per_step], order[views_per_step:]
        render = render_frames(renderer, parameters(), cameras, batch, shape)
        loss = F.l1_loss(render, frames[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    with torch.no_grad():
        fitted = parameters()
        fitted = Gaussians(**{name: getattr(fitted, name).detach() for name in
                              ('means', 'covariances', 'harmonics', 'opacities')})
        renders = render_frames(renderer, fitted, cameras, held_out, shape)
    return FitResult(gaussians=fitted, train=train, held_out=held_out, before=before,
                     after=image_metrics(renders, frames[held_out], lpips), held_out_renders=renders,
                     losses=losses)
