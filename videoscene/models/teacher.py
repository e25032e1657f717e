"""Stage 2: fine-tune a video backbone into a first+last-frame interpolation teacher.

Each scene sample becomes one video: its context and target views in frame order (the context
pair must be the first and last of them; a context frame that is also a target appears once).
The video is VAE-encoded without gradient, noised at a uniformly drawn timestep, and the backbone
predicts its training target (v for CogVideoX and SVD) conditioned on the first and last frames;
the loss is the mean squared error.  Only :meth:`VideoBackbone.select_trainable`'s selection
(by default the attention layers of the denoiser's blocks) is updated.
"""
from __future__ import annotations

import torch
from mmengine.model import BaseModel
from torch import Tensor
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy

from videoscene.backbones import VideoBackbone
from videoscene.pipelines.sampling import Guidance, denoise
from videoscene.registry import MODELS, VIDEO_BACKBONES
from .views import scene_views


@MODELS.register_module()
class InterpolationTeacher(BaseModel):
    """A video backbone trained for first+last-frame interpolation (MMEngine model).

    Args:
        backbone: ``VIDEO_BACKBONES`` config (or a built backbone).
        trainable: parameter selection for :meth:`VideoBackbone.select_trainable`.
        gradient_checkpointing: recompute the denoiser's activations in the backward pass.
        augment_conditions: noise-augment the condition images (the backbone's training
            augmentation, e.g. CogVideoX's ``log sigma ~ N(-3, 0.5)``).
        timestep_range: training timesteps are drawn uniformly from ``[low, high)``.
        sample_steps: DDIM steps from pure noise in ``mode='predict'``.
        guidance_scale: classifier-free guidance in ``mode='predict'`` (1: none; needs the
            backbone's :meth:`~VideoBackbone.unconditional`).
        data_preprocessor: MMEngine data preprocessor config (moves the batch to the device).
    """

    # tools/test.py: report row -> the predict sample key holding that video
    evaluation_outputs = {'teacher': 'pred'}

    def __init__(self, backbone: dict | VideoBackbone, trainable: str = 'attention',
                 gradient_checkpointing: bool = False, augment_conditions: bool = True,
                 timestep_range: tuple[int, int] | None = None, sample_steps: int = 50,
                 guidance_scale: float = 1.0, data_preprocessor: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.backbone = backbone if isinstance(backbone, VideoBackbone) else VIDEO_BACKBONES.build(backbone)
        self.scheduler = self.backbone.build_scheduler()
        self.selection = self.backbone.select_trainable(trainable)
        self.backbone.enable_gradient_checkpointing(gradient_checkpointing)
        self.augment_conditions = augment_conditions
        T = self.scheduler.num_train_timesteps
        low, high = timestep_range or (0, T)
        if not 0 <= low < high <= T:
            raise ValueError(f'timestep_range must satisfy 0 <= low < high <= {T}, got {(low, high)}')
        self.timestep_range = (low, high)
        self.sample_steps = sample_steps
        self.guidance_scale = guidance_scale

    def shard(self, mesh: DeviceMesh, mp_policy: MixedPrecisionPolicy,
              reshard_after_forward: bool = True) -> None:
        """FSDP2 (``FSDP2Strategy``): the backbone's denoiser sharded (:meth:`VideoBackbone.shard`)."""
        self.backbone.shard(mesh, mp_policy, reshard_after_forward)

    def forward(self, context: dict[str, Tensor], target: dict[str, Tensor], scene=None,
                mode: str = 'loss') -> dict[str, Tensor] | list[dict]:
        """``mode='loss'``: ``{'loss': v-MSE}``; ``'predict'``: one dict per sample with the
        :meth:`sample` video ``pred`` (``sample_steps`` from noise), the true frames ``gt``
        (``[F, 3, H, W]``, context and targets in frame order) and ``scene``; ``'tensor'``:
        ``(output, training target)`` latents ``[B, f, C, h, w]``."""
        video = scene_views(context, target)['image']
        if mode == 'predict':
            generated = self.sample(video[:, 0], video[:, -1], video.shape[1])
            names = scene if scene is not None else [None] * len(video)
            return [dict(pred=g, gt=v, scene=n) for g, v, n in zip(generated, video, names)]
        if mode not in ('loss', 'tensor'):
            raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got '{mode}'")
        output, wanted = self.denoising_pair(video)
        if mode == 'tensor':
            return output, wanted
        return {'loss': torch.nn.functional.mse_loss(output, wanted)}

    def denoising_pair(self, video: Tensor) -> tuple[Tensor, Tensor]:
        """The backbone's output on a noised ``video [B, F, 3, H, W]`` and its training target."""
        num_frames = video.shape[1]
        with torch.no_grad():
            x0 = self.backbone.encode(video)
            conditioning = self.backbone.condition(video[:, 0], video[:, -1], num_frames,
                                                   augment=self.augment_conditions and self.training)
        noise = torch.randn_like(x0)
        t = torch.randint(*self.timestep_range, (len(x0),), device=x0.device)
        x0 = x0 * self.backbone.clean_scale(t).to(x0).reshape(-1, 1, 1, 1, 1)
        x_t = self.scheduler.add_noise(x0, noise, t)
        output = self.backbone(x_t, t, conditioning)
        return output, self.scheduler.training_target(x0, noise, t)

    @torch.no_grad()
    def sample(self, first: Tensor, last: Tensor, num_frames: int, steps: int | None = None,
               generator: torch.Generator | None = None) -> Tensor:
        """A ``[B, F, 3, H, W]`` video from ``first``/``last`` ``[B, 3, H, W]`` by ``steps`` (default
        ``sample_steps``) DDIM steps from pure noise."""
        conditioning = self.backbone.condition(first, last, num_frames)
        guidance = (Guidance(self.guidance_scale, self.backbone.unconditional(conditioning))
                    if self.guidance_scale != 1 else None)
        shape = (len(first), *self.backbone.latent_shape(num_frames, *first.shape[-2:]))
        x = torch.randn(shape, generator=generator).to(first.device)
        grid = self.scheduler.timesteps(steps or self.sample_steps).tolist()
        latents = denoise(self.backbone, self.scheduler, x, grid, conditioning, guidance=guidance,
                          progress=True)
        return self.backbone.decode(latents)
