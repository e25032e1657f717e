"""Hooks of leap-flow distillation: the EMA target, the policy's training window, videos."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapperDict

from videoscene.registry import HOOKS

from .optim import POLICY_GROUP

__all__ = ['TargetEMAHook', 'PolicyScheduleHook', 'DistillationVisualizationHook']


def _model(runner):
    return runner.model.module if is_model_wrapper(runner.model) else runner.model


@HOOKS.register_module()
class TargetEMAHook(Hook):
    """After every optimizer step, ``target = decay * target + (1 - decay) * student``.

    Args:
        decay: a constant (LCM: 0.95), or ``[(iteration, decay), ...]`` breakpoints of a
            piecewise-constant schedule (the last breakpoint at or before the iteration applies;
            the first must be at iteration 0).

    The target is the model's own buffers of the trained tensors (MMEngine's ``EMAHook`` copies the
    whole model and swaps it in only for validation, so it cannot be the training-time target).
    """

    priority = 'ABOVE_NORMAL'   # before checkpointing, so a checkpoint holds the updated target

    def __init__(self, decay: float | Sequence[Sequence[float]] = 0.95) -> None:
        schedule = [(0, float(decay))] if isinstance(decay, (int, float)) else \
            [(int(i), float(d)) for i, d in decay]
        if not schedule or schedule[0][0] != 0 or any(
                a[0] >= b[0] for a, b in zip(schedule, schedule[1:])):
            raise ValueError(f'decay breakpoints must start at iteration 0 and increase, got {decay}')
        if not all(0 <= d <= 1 for _, d in schedule):
            raise ValueError(f'decay must be in [0, 1], got {decay}')
        self.schedule = schedule

    def decay(self, iteration: int) -> float:
        return [d for i, d in self.schedule if i <= iteration][-1]

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        _model(runner).update_target(self.decay(runner.iter))


@HOOKS.register_module()
class PolicyScheduleHook(Hook):
    """The policy trains during the first ``train_iters`` iterations (paper: 4000), then is frozen:
    it keeps drawing leaps from its now fixed distribution for the student, without gradient, and
    its optimizer no longer steps (with one optimizer for student and policy, DeepSpeed's, the
    policy's param group gets learning rate 0 before every step).  Decided from the iteration
    before each step, so a resumed run freezes at the same iteration."""

    def __init__(self, train_iters: int = 4000) -> None:
        if train_iters < 0:
            raise ValueError(f'train_iters must be >= 0, got {train_iters}')
        self.train_iters = train_iters

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        model = _model(runner)
        frozen = runner.iter >= self.train_iters
        if frozen and not model.policy_frozen:
            runner.logger.info(f'PolicyScheduleHook: the policy is frozen from iteration '
                               f'{runner.iter + 1} on (trained for {self.train_iters})')
        model.policy_frozen = frozen
        if frozen and not isinstance(runner.optim_wrapper, OptimWrapperDict):
            for group in runner.optim_wrapper.optimizer.param_groups:
                if group.get('name') == POLICY_GROUP:
                    group['lr'] = 0.0


@HOOKS.register_module()
class DistillationVisualizationHook(Hook):
    """Every ``interval`` iterations, write ``work_dir/vis/iter_N.mp4``: render | one-step student
    | ground truth, side by side, for the first sample of the batch (fixed leap noise)."""

    def __init__(self, interval: int = 500, fps: float = 8.0, seed: int = 0) -> None:
        self.interval, self.fps, self.seed = interval, fps, seed

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.every_n_train_iters(runner, self.interval) or data_batch is None:
            return
        from videoscene.pipelines import VideoScenePipeline
        from videoscene.visualization import save_video
        model = _model(runner)
        data = model.data_preprocessor(data_batch, False)
        first = {part: {k: v[:1] for k, v in data[part].items()} for part in ('context', 'target')}
        was_training = model.training
        try:
            output = VideoScenePipeline.from_model(model)(
                first['context'], first['target'],
                generator=torch.Generator().manual_seed(self.seed))
        finally:
            model.train(was_training)
        frames = torch.cat([output.render[0], output.video[0], output.ground_truth[0]], dim=-1)
        path = Path(runner.work_dir) / 'vis' / f'iter_{runner.iter + 1}.mp4'
        save_video(path, frames.cpu(), fps=self.fps)
        runner.logger.info(f'render | one-step (t={output.t[0].item()}) | ground truth: {path}')
