"""The VideoScene pipeline: two views in, a 3D-consistent video (and its Gaussians) out.

``VideoScenePipeline.__call__`` reads as the method does:

0. check the frame count and image size against the backbone and the reconstructor, before any
   network runs;
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

:meth:`VideoScenePipeline.from_config` builds it from a distillation config
(``configs/distillation/``) and a ``tools/train.py`` checkpoint; :meth:`~VideoScenePipeline.from_model`
from a model already in memory (training-time visualisation, ``mode='predict'``).

Shapes follow the project conventions: images ``[B, V, 3, H, W]`` and videos ``[B, F, 3, H, W]``
in ``[0, 1]``, cameras ``[B, F, 4, 4]`` (OpenCV camera-to-world) and ``[B, F, 3, 3]``
(normalised intrinsics).
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
from mmengine.config import Config
from torch import Tensor

from videoscene.backbones import VideoBackbone
from videoscene.backbones.base import resolve_dtype
from videoscene.camera_paths.base import CAMERA_KEYS, CameraPath
from videoscene.errors import CheckpointError, InputError
from videoscene.models.views import scene_views
from videoscene.policies import TimestepPolicy
from videoscene.structures import Gaussians

from .sampling import Guidance, denoise

__all__ = ['PipelineOutput', 'VideoScenePipeline', 'load_distillation_checkpoint']

WEIGHTS = ('student', 'target', 'teacher')


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
                   renderer=None, policy: TimestepPolicy | None = None) -> VideoScenePipeline:
        """The pipeline of a :class:`~videoscene.distillation.LeapFlowDistillation` model, sharing
        its modules.  ``weights``: ``'student'``, ``'target'`` (EMA) or ``'teacher'`` (no
        consistency scalings, its guidance); ``policy`` replaces the model's."""
        from videoscene.registry import CAMERA_PATHS
        teacher = weights == 'teacher'
        return cls(model.reconstructor, renderer or model.renderer,
                   camera_path or CAMERA_PATHS.build(dict(type='interpolated')), model.shell,
                   policy or model.policy_module, params=model.role_params(weights),
                   consistency=not teacher,
                   guidance_scale=model.guidance_scale if teacher else 1.0,
                   guidance_rescale=model.guidance_rescale)

    @classmethod
    def from_config(cls, config: str | Path | Config, checkpoint: str | Path | None = None,
                    weights: str | None = None, policy: dict | None = None,
                    policy_checkpoint: str | Path | None = None,
                    camera_path: CameraPath | dict | None = None,
                    renderer: str | dict | None = None, device: str | torch.device | None = None,
                    dtype: str | torch.dtype | None = None, vae_tiling: bool = False,
                    vae_slicing: bool = False) -> VideoScenePipeline:
        """Build the ``LeapFlowDistillation`` of a distillation config and its pipeline.

        Args:
            config: a ``configs/distillation/`` file or a loaded :class:`Config`; its ``model``
                names the frozen sources (backbone folder, reconstructor checkpoint).
            checkpoint: a ``tools/train.py`` checkpoint of that config (student, EMA target,
                policy; a trusted local file, unpickled in full). None: the teacher before
                distillation.
            weights: ``'student'``, ``'target'`` (EMA) or ``'teacher'``; None: ``'student'`` with
                a checkpoint, ``'teacher'`` without (student and target need a checkpoint).
            policy: a ``TIMESTEP_POLICIES`` config replacing the config's, e.g.
                ``dict(type='fixed', t=549)`` or ``dict(type='random')``; built with the
                backbone's scheduler. A learned policy (DDPNet) needs its weights from
                ``checkpoint`` or ``policy_checkpoint``: an untrained one is refused.
            policy_checkpoint: a ``tools/train.py`` distillation checkpoint to take only the
                policy's weights from (keys ``policy.*``).
            camera_path: ``CAMERA_PATHS`` config or instance for calls without ``target``
                (default: ``interpolated``).
            renderer: ``RENDERERS`` type or config; None: ``'gsplat'`` on CUDA, ``'torch'``
                elsewhere.
            device: default ``cuda`` when available, else ``cpu``.
            dtype: the backbone's dtype; default ``bfloat16`` on CUDA, ``float32`` elsewhere
                (half precision is refused on the CPU).
            vae_tiling, vae_slicing: the backbone's VAE memory savers.

        Raises:
            InputError: a bad argument, naming it; CheckpointError: an unreadable checkpoint or
                one written for another model.
        """
        from videoscene.distillation import load_training_checkpoint
        from videoscene.registry import CAMERA_PATHS, MODELS, RENDERERS, TIMESTEP_POLICIES
        source = str(config) if not isinstance(config, Config) else (config.filename or 'config')
        if not isinstance(config, Config):
            if not Path(config).is_file():
                raise InputError(config, 'config file not found: expected a configs/distillation/ file')
            config = Config.fromfile(str(config))
        model_cfg = config.get('model')
        if model_cfg is None or model_cfg.get('type') != 'LeapFlowDistillation':
            raise InputError(source, 'expected a distillation config (model type '
                             f"LeapFlowDistillation), got model type {model_cfg and model_cfg.get('type')!r}")
        weights = weights or ('student' if checkpoint is not None else 'teacher')
        if weights not in WEIGHTS:
            raise InputError('weights', f'must be one of {WEIGHTS}, got {weights!r}')
        if weights != 'teacher' and checkpoint is None:
            raise InputError('weights', f"'{weights}' needs a distillation checkpoint; without one "
                             "the model is the teacher (use weights='teacher')")
        device = torch.device(device or ('cuda' if torch.cuda.is_available() else 'cpu'))
        dtype = resolve_dtype(dtype or ('bfloat16' if device.type == 'cuda' else 'float32'))
        if dtype != torch.float32 and device.type != 'cuda':
            raise InputError('dtype', f'{dtype} runs on CUDA only; use float32 on {device}')
        model_cfg = model_cfg.to_dict()
        model_cfg['backbone'] = dict(model_cfg['backbone'], vae_tiling=vae_tiling,
                                     vae_slicing=vae_slicing)
        model = MODELS.build(model_cfg)
        if checkpoint is not None:
            load_distillation_checkpoint(model, checkpoint)
        chosen = model.policy_module
        if policy is not None:
            chosen = TIMESTEP_POLICIES.build(policy, default_args=dict(
                scheduler=model.scheduler, latent_channels=model.shell.latent_channels))
        if policy_checkpoint is not None:
            load_training_checkpoint(chosen, policy_checkpoint, 'policy.')
        learned = any(True for _ in chosen.parameters())
        trained = policy_checkpoint is not None or (policy is None and checkpoint is not None)
        if learned and not trained:
            raise InputError('policy', f'{type(chosen).__name__} is a learned policy and no checkpoint '
                             'gives its weights: give a distillation checkpoint or policy_checkpoint, '
                             "or a policy without weights, e.g. dict(type='fixed', t=549)")
        renderer = renderer or ('gsplat' if device.type == 'cuda' else 'torch')
        renderer = RENDERERS.build(dict(type=renderer) if isinstance(renderer, str) else renderer)
        if renderer.needs_cuda and device.type != 'cuda':
            raise InputError('renderer', f'{type(renderer).__name__} renders on CUDA only; on '
                             f'{device} use the "torch" renderer')
        if isinstance(camera_path, dict):
            camera_path = CAMERA_PATHS.build(camera_path)
        model.to(device).eval()
        chosen.to(device)
        if dtype != torch.float32:
            model.shell.set_dtype(dtype)
            model.teacher.to(dtype=dtype)
            model.target.to(dtype=dtype)
        return cls.from_model(model, weights, camera_path, renderer, chosen)

    @property
    def device(self) -> torch.device:
        return self.backbone.device

    def check_inputs(self, image_shape: tuple[int, int], num_frames: int) -> None:
        """Raise :class:`InputError` unless the backbone's VAE takes ``num_frames`` frames and the
        backbone and reconstructor take ``image_shape = (H, W)`` frames."""
        try:
            self.backbone.latent_frames(num_frames)
        except ValueError as error:
            raise InputError('num_frames', str(error)) from None
        height, width = image_shape
        try:
            self.backbone.latent_size(height, width)
        except ValueError as error:
            raise InputError('image size', str(error)) from None
        multiple = getattr(self.reconstructor, 'size_multiple', 1)
        if height % multiple or width % multiple:
            raise InputError('image size', f'{type(self.reconstructor).__name__} needs height and width '
                             f'divisible by {multiple}, got {height} x {width}')

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

        Raises:
            InputError: a frame count or image size the models cannot take (step 0).
        """
        timings: dict[str, float] = {}
        context = {key: value.to(self.device) for key, value in context.items()
                   if isinstance(value, Tensor)}
        views = None
        if target is not None:
            views = scene_views(context, {k: v.to(self.device) for k, v in target.items()
                                          if isinstance(v, Tensor)})
            frames = views['extrinsics'].shape[1]
        elif num_frames is None:
            raise ValueError('give target views or num_frames')
        else:
            frames = num_frames
        shape = tuple(context['image'].shape[-2:])
        self.check_inputs(shape, frames)                                               # 0
        with self._timed(timings, 'reconstruct'):                                      # 1
            gaussians = self.reconstructor(context)
        ground_truth = None
        if views is not None:                                                          # 2
            cameras = {key: views[key] for key in CAMERA_KEYS}
            ground_truth = views.get('image')
        else:
            cameras = self.camera_path(context, None, frames)
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


def load_distillation_checkpoint(model, path: str | Path) -> None:
    """Load a ``tools/train.py`` checkpoint of a ``LeapFlowDistillation`` config into ``model``
    with ``strict=True``: the keys it may lack are exactly the frozen ones (their sources are the
    config's). MMEngine checkpoints pickle more than tensors, so the trusted local file is
    unpickled in full, as ``--resume`` does."""
    from videoscene.distillation import read_training_state_dict
    state_dict = read_training_state_dict(path)
    try:
        model.load_state_dict(state_dict, strict=True)
    except CheckpointError as error:
        raise CheckpointError(path, error.problem) from None
    except RuntimeError as error:
        raise CheckpointError(path, f'does not fit this config: {error}') from None
