"""The VideoScene pipeline: two views in, a 3D-consistent video (and its Gaussians) out.

``VideoScenePipeline.__call__`` reads as the method does:

1. reconstruct Gaussians from the two context views (MVSplat, pixelSplat, ...);
2. choose the cameras: the sample's own frames when ``target`` is given (bracketed by the context
   pair, the benchmark setting), else ``num_frames`` cameras of the camera path (interpolated
   between the context cameras);
3. render the 3D-prior video along them (tensors straight to the VAE, no video file between);
4. encode it, and the first and last context images as the conditions (once);
5. the timestep policy picks the leap timestep ``t`` from the render latents;
6. noise the render latents to ``t`` (or start from pure noise with ``from_noise``);
7. denoise: one step from the leap start, ``steps`` DDIM/Euler steps from it, or the plain
   ``steps``-step sampler from pure noise;
8. decode.

Shapes follow the project conventions: images ``[B, V, 3, H, W]`` and videos ``[B, F, 3, H, W]``
in ``[0, 1]``, cameras ``[B, F, 4, 4]`` (OpenCV camera-to-world) and ``[B, F, 3, 3]``
(normalised intrinsics).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field

import torch
from torch import Tensor

from videoscene.backbones import VideoBackbone
from videoscene.camera_paths.base import CAMERA_KEYS, CameraPath
from videoscene.models.views import scene_views
from videoscene.policies import TimestepPolicy
from videoscene.structures import Gaussians

from .sampling import Guidance, denoise

__all__ = ['PipelineOutput', 'VideoScenePipeline']


@dataclass
class PipelineOutput:
    """What one call returns (batched, on the pipeline's device, float32).

    Attributes:
        video: the generated video ``[B, F, 3, H, W]``.
        render: the rendered 3D prior ``[B, F, 3, H, W]``.
        cameras: ``extrinsics [B, F, 4, 4]``, ``intrinsics [B, F, 3, 3]``, ``near``, ``far [B, F]``.
        t: the leap timestep per sample ``[B]`` (``T - 1`` when sampling from pure noise).
        gaussians: the reconstruction.
        ground_truth: the sample's true frames ``[B, F, 3, H, W]`` when ``target`` was given.
        timings: seconds per stage (reconstruct, render, encode, policy, denoise, decode).
    """

    video: Tensor
    render: Tensor
    cameras: dict[str, Tensor]
    t: Tensor
    gaussians: Gaussians
    ground_truth: Tensor | None = None
    timings: dict[str, float] = field(default_factory=dict)


class VideoScenePipeline:
    """Reconstructor + renderer + camera path + backbone + policy, run as in the module docstring.

    Args:
        reconstructor, renderer, camera_path, backbone, policy: the built components.
        params: the backbone weights to generate with (:meth:`VideoBackbone.predict`); None: its
            own (the student after distillation).
        consistency: apply the consistency boundary scalings (a distilled student or target);
            False for the teacher.
        guidance_scale, guidance_rescale: classifier-free guidance (1: none).
    """

    def __init__(self, reconstructor: torch.nn.Module, renderer, camera_path: CameraPath,
                 backbone: VideoBackbone, policy: TimestepPolicy,
                 params: dict[str, Tensor] | None = None, consistency: bool = True,
                 guidance_scale: float = 1.0, guidance_rescale: float = 0.0) -> None:
        self.reconstructor = reconstructor.eval()
        self.renderer = renderer
        self.camera_path = camera_path
        self.backbone = backbone.eval()
        self.scheduler = backbone.build_scheduler()
        self.policy = policy.eval()
        self.params = params
        self.consistency = consistency
        self.guidance_scale, self.guidance_rescale = guidance_scale, guidance_rescale

    @classmethod
    def from_model(cls, model, weights: str = 'student', camera_path: CameraPath | None = None,
                   renderer=None) -> VideoScenePipeline:
        """The pipeline of a :class:`~videoscene.distillation.LeapFlowDistillation` model, sharing
        its modules.  ``weights``: ``'student'``, ``'target'`` (EMA) or ``'teacher'`` (no
        consistency scalings, its guidance)."""
        from videoscene.registry import CAMERA_PATHS
        teacher = weights == 'teacher'
        return cls(model.reconstructor, renderer or model.renderer,
                   camera_path or CAMERA_PATHS.build(dict(type='interpolated')), model.shell,
                   model.policy_module, params=model.role_params(weights),
                   consistency=not teacher,
                   guidance_scale=model.guidance_scale if teacher else 1.0,
                   guidance_rescale=model.guidance_rescale)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    @torch.no_grad()
    def __call__(self, context: dict[str, Tensor], target: dict[str, Tensor] | None = None,
                 num_frames: int | None = None, steps: int = 1, from_noise: bool = False,
                 generator: torch.Generator | None = None,
                 progress: bool = False) -> PipelineOutput:
        """Generate one video per sample of the batch.

        Args:
            context: batched context views (``image [B, 2, 3, H, W]``, cameras, ``near``, ``far``).
            target: the sample's target views (cameras, and ``image``/``index`` for the ground
                truth); None: ``num_frames`` cameras from the camera path.
            steps: denoising steps (1: the one-step leap).
            from_noise: ignore the render and sample ``steps`` steps from pure noise (baseline).
            generator: draws the leap noise (CPU generator; None: torch's global one).
        """
        timings: dict[str, float] = {}
        context = {key: value.to(self.device) for key, value in context.items()
                   if isinstance(value, Tensor)}
        with self._timed(timings, 'reconstruct'):                                      # 1
            gaussians = self.reconstructor(context)
        ground_truth = None
        if target is not None:                                                         # 2
            views = scene_views(context, {k: v.to(self.device) for k, v in target.items()
                                          if isinstance(v, Tensor)})
            cameras = {key: views[key] for key in CAMERA_KEYS}
            ground_truth = views.get('image')
        else:
            if num_frames is None:
                raise ValueError('give target views or num_frames')
            cameras = self.camera_path(context, None, num_frames)
        frames = cameras['extrinsics'].shape[1]
        shape = tuple(context['image'].shape[-2:])
        self.backbone.latent_frames(frames)            # a frame count the VAE cannot take fails here
        with self._timed(timings, 'render'):                                           # 3
            render = self.renderer.render(gaussians, cameras['extrinsics'], cameras['intrinsics'],
                                          shape, cameras['near'], cameras['far']).color.clamp(0, 1)
        with self._timed(timings, 'encode'):                                           # 4
            latents = self.backbone.encode(render)
            images = context['image']
            conditioning = self.backbone.condition(images[:, 0], images[:, -1], frames)
        guidance = (Guidance(self.guidance_scale, self.backbone.unconditional(conditioning),
                             self.guidance_rescale) if self.guidance_scale != 1 else None)
        batch, T = len(latents), self.scheduler.num_train_timesteps
        with self._timed(timings, 'policy'):                                           # 5
            t = (torch.full((batch,), T - 1, dtype=torch.long, device=self.device) if from_noise
                 else self.policy(latents).t)
        noise = torch.randn(latents.shape, generator=generator).to(latents)            # 6
        if from_noise:
            x, grid = noise, self.scheduler.timesteps(steps)
        else:
            scale = self.backbone.clean_scale(t).to(latents).reshape(-1, 1, 1, 1, 1)
            x = self.scheduler.add_noise(latents * scale, noise, t)
            grid = torch.stack([self.scheduler.leap_timesteps(int(start), steps) for start in t])
        with self._timed(timings, 'denoise'):                                          # 7
            clean = denoise(self.backbone, self.scheduler, x, grid, conditioning,
                            params=self.params, guidance=guidance, consistency=self.consistency,
                            progress=progress)
        with self._timed(timings, 'decode'):                                           # 8
            video = self.backbone.decode(clean)
        return PipelineOutput(video=video, render=render, cameras=cameras, t=t,
                              gaussians=gaussians, ground_truth=ground_truth, timings=timings)

    @contextmanager
    def _timed(self, timings: dict[str, float], name: str):
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        start = time.perf_counter()
        yield
        if self.device.type == 'cuda':
            torch.cuda.synchronize(self.device)
        timings[name] = timings.get(name, 0.0) + time.perf_counter() - start
