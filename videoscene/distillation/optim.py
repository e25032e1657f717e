"""The optimizers of distillation: the student's trained tensors and the policy's parameters."""
from __future__ import annotations

from mmengine.optim import OptimWrapperDict
from torch import nn

from videoscene.registry import OPTIM_WRAPPERS, OPTIMIZERS, OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['DistillationOptimWrapperConstructor', 'POLICY_GROUP']

POLICY_GROUP = 'policy'   # the ``name`` of the policy's param group in a single optimizer


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DistillationOptimWrapperConstructor:
    """Builds the optimizers of :class:`LeapFlowDistillation`.

    Two optimizers (``LeapFlowDistillation.train_step``; single process, DDP, FSDP2)::

        optim_wrapper = dict(
            constructor='DistillationOptimWrapperConstructor',
            student=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-5)),
            policy=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4)))

    One optimizer with two param groups, for engines that step a single optimizer on the summed
    losses (MMEngine's ``DeepSpeedStrategy``): give ``type`` (the wrapper), the student's
    ``optimizer`` and the policy group's options (same optimizer class)::

        optim_wrapper = dict(
            constructor='DistillationOptimWrapperConstructor', type='DeepSpeedOptimWrapper',
            student=dict(optimizer=dict(type='AdamW', lr=1e-5, weight_decay=1e-4)),
            policy=dict(lr=1e-4, weight_decay=0.0))

    The policy's group is named ``'policy'``; ``PolicyScheduleHook`` sets its learning rate to 0
    when the policy freezes.  The student's optimizer holds only the backbone's trained tensors
    (no state for frozen weights); the policy's optimizer or group exists only when the policy has
    parameters (DDPNet, not ``fixed``/``random``), and ``policy`` may then be omitted.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        if paramwise_cfg:
            raise ValueError('DistillationOptimWrapperConstructor takes no paramwise_cfg')
        cfg = dict(optim_wrapper_cfg)
        self.single = cfg.pop('type', None)
        unknown = set(cfg) - {'student', 'policy'}
        if unknown or 'student' not in cfg:
            raise ValueError("optim_wrapper for distillation needs 'student' (and 'policy' for a "
                             f"learned policy) entries, got {sorted(optim_wrapper_cfg)}")
        self.cfg = cfg

    def _build(self, name: str, params: list[nn.Parameter]):
        cfg = dict(self.cfg[name])
        optimizer = OPTIMIZERS.build(dict(cfg.pop('optimizer'), params=params))
        return OPTIM_WRAPPERS.build(dict(cfg, optimizer=optimizer))

    def __call__(self, model: nn.Module):
        model = getattr(model, 'module', model)
        student = list(model.shell.trained_tensors().values())
        policy = [p for p in model.policy_module.parameters() if p.requires_grad]
        if policy and 'policy' not in self.cfg:
            raise ValueError(f'the policy {type(model.policy_module).__name__} has parameters: '
                             "give optim_wrapper a 'policy' entry")
        if self.single is not None:
            optimizer = dict(self.cfg['student']['optimizer'])
            groups = [dict(params=student)]
            if policy:
                groups.append(dict(self.cfg['policy'], params=policy, name=POLICY_GROUP))
            optimizer = OPTIMIZERS.build(dict(optimizer, params=groups))
            return OPTIM_WRAPPERS.build(dict(type=self.single, optimizer=optimizer))
        wrappers = {'student': self._build('student', student)}
        if policy:
            wrappers['policy'] = self._build('policy', policy)
        return OptimWrapperDict(**wrappers)
