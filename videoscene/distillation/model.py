"""3D-aware leap flow distillation with DDPNet (paper Sec. 3.3-3.4), as an MMEngine model.

One training step (:meth:`LeapFlowDistillation.train_step`):

1. render the 3D prior: the frozen reconstructor's Gaussians from the two context views, rendered
   at the cameras of the sample's frames (the ground-truth path, so the render and the true video
   are frame-aligned); a sample may carry these renders precomputed (a render cache);
2. encode the render and the true video once, without gradient; condition on the true first and
   last frames;
3. the policy picks the leap timestep ``t`` from the render latents (with its log-probability);
4. ``x_t = add_noise(render latents, noise, t)`` (``leap_flow=False``: the true latents, the
   "w/o 3D-aware leap flow" ablation, standard consistency distillation);
5. the student's clean estimate at ``t`` with the consistency boundary scalings;
6. the teacher's DDIM step ``t -> t - k`` (``k = T / solver_steps``), optionally guided;
7. the target's (EMA of the student) clean estimate at ``t - k``;
8. the consistency loss (Huber ``sqrt(d^2 + c^2) - c`` or L2) trains the student only;
9. the policy loss: REINFORCE with reward ``-MSE(student x0 (detached), true latents)`` and a
   running-mean baseline averaged across ranks, optional entropy bonus; no gradient reaches the
   student;
10. after the optimizer steps, :class:`~videoscene.distillation.hooks.TargetEMAHook` moves the
    target towards the student.

Weight sharing: the student is the backbone's trained parameters; the teacher's frozen copy and
the target are :class:`~videoscene.distillation.roles.TrainedCopy` buffers of those tensors only.

Checkpoints hold what trains (student, target, policy, reward baseline; the Runner adds optimizer
and scheduler states) and not the frozen weights, which come from the sources the config names
(the backbone's model folder, the reconstructor's checkpoint); loading checks that the keys a
checkpoint lacks are exactly those frozen ones.

FSDP2 (``strategy=dict(type='FSDP2Strategy', ...)``, :meth:`LeapFlowDistillation.shard`): the
denoiser's blocks and the denoiser are sharded with ``fully_shard`` (frozen and trained weights
alike; gradients and AdamW states follow the trained shards); the teacher and target copies become
shards laid out like the trained tensors; the VAE, encoders and reconstructor stay whole on every
rank; a learned policy is wrapped in DDP.  With a bfloat16 backbone the trained tensors are kept
in float32 (master weights, gathered in the policy's ``param_dtype``) and the teacher's copy in
bfloat16.

DDP: use ``model_wrapper_cfg=dict(type='MMSeparateDistributedDataParallel')``.  It wraps the
backbone and a learned policy each in DDP and calls this model's :meth:`train_step` with the
``OptimWrapperDict``; the student's gradient-carrying evaluation goes through the wrapped
backbone's ``forward`` (so its gradients are all-reduced), the teacher and target evaluations run
without gradient on the unwrapped backbone, and a frozen policy is evaluated without gradient, so
DDP never waits for its parameters.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from mmengine.dist import all_reduce
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.optim import OptimWrapperDict
from torch import Tensor, nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.fsdp import MixedPrecisionPolicy
from torch.nn.parallel import DistributedDataParallel

from videoscene.backbones import VideoBackbone
from videoscene.errors import CheckpointError
from videoscene.models.views import scene_views
from videoscene.pipelines.sampling import Guidance, estimate, step
from videoscene.policies import TimestepPolicy
from videoscene.registry import (MODELS, RECONSTRUCTORS, RENDERERS, TIMESTEP_POLICIES,
                                 VIDEO_BACKBONES)

from .frozen import load_training_checkpoint
from .roles import TrainedCopy

__all__ = ['LeapFlowDistillation']


@MODELS.register_module()
class LeapFlowDistillation(BaseModel):
    """Distils a fine-tuned video backbone (the teacher) into a one-step student from the render.

    Args:
        backbone: ``VIDEO_BACKBONES`` config of the fine-tuned teacher (stage 2's exported
            folder); the student starts from the same weights.
        reconstructor: ``RECONSTRUCTORS`` config (frozen), e.g. ``dict(type='MVSplat',
            checkpoint=<official .ckpt>)``.
        reconstructor_checkpoint: a stage-1 training checkpoint (``tools/train.py`` output) to load
            the reconstructor from (keys ``reconstructor.*``); a trusted local file.
        renderer: ``RENDERERS`` config.
        policy: ``TIMESTEP_POLICIES`` config (DDPNet, fixed, random, plugins), built with the
            backbone's scheduler and latent channels.
        trainable: the student's trained tensors (:meth:`VideoBackbone.select_trainable`).
        solver_steps: ``N`` of the teacher's solver grid; the teacher jumps ``k = T / N``.
        leap_flow: False is the "w/o 3D-aware leap flow" ablation: noise the true latents at a
            policy timestep (use ``policy=dict(type='random')`` over the whole grid) and sample
            from pure noise at inference.
        loss: ``'huber'`` (``sqrt(d^2 + c^2) - c``, ``c = huber_c``) or ``'l2'``.
        guidance_scale, guidance_rescale: classifier-free guidance of the teacher step.
        baseline_momentum: the running-mean reward baseline's momentum.
        entropy_weight: weight of the policy's entropy bonus.
        augment_conditions: noise-augment the condition images (the backbone's recipe).
        sample_steps: ``N``: ``mode='predict'`` also returns the student's ``N``-step video from
            the leap (``n_step``) and the teacher's ``N``-step video from pure noise
            (``teacher``); None: the one-step video and the render only.
        gradient_checkpointing: recompute the denoiser's activations in the backward pass.
        data_preprocessor: MMEngine data preprocessor config.
    """

    # tools/test.py: report row -> the predict sample key holding that video
    evaluation_outputs = {'render': 'render', '1-step': 'pred', 'N-step': 'n_step',
                          'teacher': 'teacher'}

    def __init__(self, backbone: dict, reconstructor: dict, renderer: dict = dict(type='torch'),
                 policy: dict = dict(type='DDPNet'), reconstructor_checkpoint: str | None = None,
                 trainable: str = 'attention', solver_steps: int = 50, leap_flow: bool = True,
                 loss: str = 'huber', huber_c: float = 0.001, guidance_scale: float = 1.0,
                 guidance_rescale: float = 0.0, baseline_momentum: float = 0.9,
                 entropy_weight: float = 0.0, augment_conditions: bool = False,
                 sample_steps: int | None = None, gradient_checkpointing: bool = False,
                 data_preprocessor: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        if loss not in ('huber', 'l2'):
            raise ValueError(f"loss must be 'huber' or 'l2', got {loss!r}")
        self.backbone: VideoBackbone = VIDEO_BACKBONES.build(backbone)
        self.scheduler = self.backbone.build_scheduler()
        self.selection = self.backbone.select_trainable(trainable)
        self.backbone.enable_gradient_checkpointing(gradient_checkpointing)
        self.reconstructor = RECONSTRUCTORS.build(reconstructor)
        if reconstructor_checkpoint is not None:
            load_training_checkpoint(self.reconstructor, reconstructor_checkpoint, 'reconstructor.')
        self.reconstructor.requires_grad_(False).eval()
        self.renderer = RENDERERS.build(renderer)
        self.policy: TimestepPolicy = TIMESTEP_POLICIES.build(policy, default_args=dict(
            scheduler=self.scheduler, latent_channels=self.backbone.latent_channels))
        trained = self.backbone.trained_tensors()
        self.teacher = TrainedCopy(trained)
        self.target = TrainedCopy(trained)
        self.register_buffer('reward_baseline', torch.tensor(float('nan')))
        self.solver_steps = solver_steps
        self.skip = self.scheduler.num_train_timesteps // solver_steps
        self.leap_flow = leap_flow
        self.loss = loss
        self.huber_c = huber_c
        self.guidance_scale, self.guidance_rescale = guidance_scale, guidance_rescale
        self.baseline_momentum = baseline_momentum
        self.entropy_weight = entropy_weight
        self.augment_conditions = augment_conditions
        if sample_steps is not None and sample_steps < 1:
            raise ValueError(f'sample_steps must be a positive integer or None, got {sample_steps}')
        self.sample_steps = sample_steps
        self.policy_learns = any(p.requires_grad for p in self.policy.parameters())
        self.policy_frozen = False     # set by PolicyScheduleHook
        self.frozen_keys = self._frozen_state_keys()
        self._register_state_dict_hook(_drop_frozen)
        self.register_load_state_dict_post_hook(_check_missing_are_frozen)

    # ------------------------------------------------------------------ roles and sharing
    @property
    def shell(self) -> VideoBackbone:
        """The backbone itself, also when DDP wraps it."""
        return self.backbone.module if is_model_wrapper(self.backbone) else self.backbone

    @property
    def policy_module(self) -> TimestepPolicy:
        return self.policy.module if is_model_wrapper(self.policy) else self.policy

    def role_params(self, role: str) -> dict[str, Tensor] | None:
        """``params`` for :meth:`VideoBackbone.predict`: None for the student (its own weights),
        the frozen copy for ``'teacher'``, the EMA buffers for ``'target'``."""
        if role == 'student':
            return None
        if role in ('teacher', 'target'):
            return getattr(self, role).as_params()
        raise ValueError(f"role must be 'student', 'teacher' or 'target', got {role!r}")

    @torch.no_grad()
    def update_target(self, decay: float) -> None:
        """Step 10: ``target = decay * target + (1 - decay) * student``."""
        self.target.ema_(self.shell.trained_tensors(), decay)

    def _frozen_state_keys(self) -> frozenset[str]:
        trained = {f'backbone.{name}' for name in self.shell.trained_tensors()}
        keys = set(nn.Module.state_dict(self))
        return frozenset(key for key in keys if key.startswith(('backbone.', 'reconstructor.',
                                                                'teacher.'))
                         and key not in trained)

    def shard(self, mesh: DeviceMesh, mp_policy: MixedPrecisionPolicy,
              reshard_after_forward: bool = True) -> None:
        """Shard for FSDP2 over ``mesh`` (called once by ``FSDP2Strategy`` before the optimizers
        are built; see the module docstring)."""
        shell = self.shell
        shell.shard(mesh, mp_policy, reshard_after_forward)
        trained = shell.trained_tensors()
        self.teacher = TrainedCopy(trained, dtype=shell.dtype)
        self.target = TrainedCopy(trained)
        if self.policy_learns:
            device_ids = [torch.cuda.current_device()] if mesh.device_type == 'cuda' else None
            self.policy = DistributedDataParallel(self.policy, device_ids=device_ids)

    # ------------------------------------------------------------------ training
    def train_step(self, data: dict, optim_wrapper: OptimWrapperDict) -> dict[str, Tensor]:
        data = self.data_preprocessor(data, True)
        student = optim_wrapper['student']
        with student.optim_context(self.backbone):
            losses, log = self.losses(data['context'], data['target'])
        student.update_params(losses['loss_consistency'])
        if 'loss_policy' in losses:
            optim_wrapper['policy'].update_params(losses['loss_policy'])
        return log

    def losses(self, context: dict, target: dict) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Steps 1-9 on one collated batch: ``(losses, values to log)``."""
        shell = self.shell
        views = scene_views(context, target)
        video = views['image']
        with torch.no_grad():
            render = self.render(context, views)                                       # 1
            render_latents, true_latents = shell.encode(render), shell.encode(video)  # 2
            conditioning = shell.condition(video[:, 0], video[:, -1], video.shape[1],
                                           augment=self.augment_conditions)
            guidance = self.guidance(conditioning)
        trains_policy = self.policy_learns and not self.policy_frozen and self.training
        with torch.set_grad_enabled(trains_policy):
            decision = self.policy(render_latents)                                     # 3
        t = decision.t
        t_prev = (t - self.skip).clamp(min=0)
        clean = render_latents if self.leap_flow else true_latents
        scale = shell.clean_scale(t).to(clean).reshape(-1, 1, 1, 1, 1)
        x_t = self.scheduler.add_noise(clean * scale, torch.randn_like(clean), t)      # 4
        student_x0, _ = estimate(shell, self.scheduler, x_t, t, conditioning,          # 5
                                 network=self.backbone, consistency=True)
        with torch.no_grad():
            teacher_x0, teacher_eps = estimate(shell, self.scheduler, x_t, t, conditioning,  # 6
                                               params=self.role_params('teacher'),
                                               guidance=guidance)
            x_prev = step(shell, self.scheduler, teacher_x0, teacher_eps, t, t_prev)
            target_x0, _ = estimate(shell, self.scheduler, x_prev, t_prev, conditioning,  # 7
                                    params=self.role_params('target'), consistency=True)
        losses = {'loss_consistency': self.consistency_loss(student_x0, target_x0)}     # 8
        reward = -(student_x0.detach() - true_latents).pow(2).flatten(1).mean(1)        # 9
        baseline = self.update_baseline(reward)
        log = {'loss_consistency': losses['loss_consistency'].detach(),
               'reward': reward.mean(), 'reward_baseline': baseline,
               'leap_t': t.float().mean(), 'policy_entropy': decision.entropy.mean().detach()}
        if trains_policy:
            advantage = reward - baseline
            losses['loss_policy'] = (-(advantage * decision.log_prob).mean()
                                     - self.entropy_weight * decision.entropy.mean())
            log['loss_policy'] = losses['loss_policy'].detach()
        return losses, log

    def render(self, context: dict, views: dict) -> Tensor:
        """Step 1: ``[B, F, 3, H, W]`` renders of the frozen reconstruction at the frames' cameras.

        Views that carry ``'render'`` (``context['render']`` and ``target['render']``, made
        beforehand with this frozen reconstructor and renderer) are used as they are."""
        if 'render' in views:
            return views['render']
        gaussians = self.reconstructor(context)
        return self.renderer.render(gaussians, views['extrinsics'], views['intrinsics'],
                                    tuple(views['image'].shape[-2:]), views['near'],
                                    views['far']).color.clamp(0, 1)

    def guidance(self, conditioning: dict) -> Guidance | None:
        if self.guidance_scale == 1.0:
            return None
        return Guidance(self.guidance_scale, self.shell.unconditional(conditioning),
                        self.guidance_rescale)

    def consistency_loss(self, prediction: Tensor, target: Tensor) -> Tensor:
        if self.loss == 'l2':
            return F.mse_loss(prediction.float(), target.float())
        difference = (prediction.float() - target.float()).pow(2)
        return (difference + self.huber_c ** 2).sqrt().mean() - self.huber_c

    @torch.no_grad()
    def update_baseline(self, reward: Tensor) -> Tensor:
        """The baseline for this batch (the running mean before it; the batch mean at the first
        step), then the running mean moves towards this batch's mean over all ranks."""
        batch_mean = reward.mean().clone()
        all_reduce(batch_mean, op='mean')
        if torch.isnan(self.reward_baseline):
            self.reward_baseline.copy_(batch_mean)
            return batch_mean
        baseline = self.reward_baseline.clone()
        self.reward_baseline.lerp_(batch_mean, 1 - self.baseline_momentum)
        return baseline

    # ------------------------------------------------------------------ inference
    def forward(self, context: dict, target: dict, scene=None, mode: str = 'predict'):
        """``mode='loss'``: the losses of :meth:`losses` and the values it logs (keys without
        ``loss``: ``parse_losses`` logs them, sums only the losses).  ``'predict'``: one dict per
        sample with the one-step video ``pred`` (from the leap; from pure noise when
        ``leap_flow=False``), the true frames ``gt``, the ``render`` and the leap ``t``
        (``[F, 3, H, W]`` in ``[0, 1]``), generated by :class:`VideoScenePipeline`; with
        ``sample_steps`` also ``n_step`` and ``teacher`` (see the class arguments)."""
        if mode == 'loss':   # engines that sum the 'loss' keys and log the rest (DeepSpeed)
            losses, log = self.losses(context, target)
            return {**log, **losses}
        if mode != 'predict':
            raise ValueError(f"mode must be 'loss' or 'predict', got {mode!r}")
        from videoscene.pipelines.videoscene import VideoScenePipeline
        out = VideoScenePipeline.from_model(self)(context, target, from_noise=not self.leap_flow)
        names = scene if scene is not None else [None] * len(out.video)
        samples = [dict(pred=v, gt=g, render=r, t=t, scene=n) for v, g, r, t, n in
                   zip(out.video, out.ground_truth, out.render, out.t, names)]
        if self.sample_steps is not None:
            steps = self.sample_steps
            student = VideoScenePipeline.from_model(self)(context, target, steps=steps,
                                                          from_noise=not self.leap_flow)
            teacher = VideoScenePipeline.from_model(self, 'teacher')(context, target, steps=steps,
                                                                     from_noise=True)
            for sample, n_step, baseline in zip(samples, student.video, teacher.video):
                sample.update(n_step=n_step, teacher=baseline)
        return samples


def _drop_frozen(module: LeapFlowDistillation, state_dict: dict, prefix: str,
                 local_metadata: dict) -> None:
    for key in module.frozen_keys:
        state_dict.pop(prefix + key, None)


def _check_missing_are_frozen(module: LeapFlowDistillation, incompatible) -> None:
    """A checkpoint may lack the frozen tensors (they come from their sources), nothing else."""
    not_frozen = [key for key in incompatible.missing_keys if key not in module.frozen_keys]
    if not_frozen:
        raise CheckpointError('distillation checkpoint', f'lacks {len(not_frozen)} trained '
                              f'tensor(s), e.g. {not_frozen[:3]}: it was written for another '
                              'backbone, trainable selection or policy')
    frozen = [key for key in incompatible.missing_keys if key in module.frozen_keys]
    for key in frozen:
        incompatible.missing_keys.remove(key)
