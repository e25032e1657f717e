"""Two optimizers for distillation: the student's trained tensors and the policy's parameters."""
from __future__ import annotations

from mmengine.optim import OptimWrapperDict
from torch import nn

from videoscene.registry import OPTIM_WRAPPERS, OPTIMIZERS, OPTIM_WRAPPER_CONSTRUCTORS

__all__ = ['DistillationOptimWrapperConstructor']


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class DistillationOptimWrapperConstructor:
    """Builds ``OptimWrapperDict(student=..., policy=...)`` for :class:`LeapFlowDistillation`.

    Config::

        optim_wrapper = dict(
            constructor='DistillationOptimWrapperConstructor',
            student=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-5)),
            policy=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-4)))

    The student's optimizer holds only the backbone's trained tensors (no state for frozen
    weights); the policy's is built only when the policy has parameters (DDPNet, not
    ``fixed``/``random``), and ``policy`` may then be omitted.
    """

    def __init__(self, optim_wrapper_cfg: dict, paramwise_cfg: dict | None = None) -> None:
        if paramwise_cfg:
            raise ValueError('DistillationOptimWrapperConstructor takes no paramwise_cfg')
        unknown = set(optim_wrapper_cfg) - {'student', 'policy'}
        if unknown or 'student' not in optim_wrapper_cfg:
            raise ValueError("optim_wrapper for distillation needs 'student' (and 'policy' for a "
                             f"learned policy) entries, got {sorted(optim_wrapper_cfg)}")
        self.cfg = optim_wrapper_cfg

    def _build(self, name: str, params: list[nn.Parameter]):
        cfg = dict(self.cfg[name])
        optimizer = OPTIMIZERS.build(dict(cfg.pop('optimizer'), params=params))
        return OPTIM_WRAPPERS.build(dict(cfg, optimizer=optimizer))

    def __call__(self, model: nn.Module) -> OptimWrapperDict:
        model = getattr(model, 'module', model)
        wrappers = {'student': self._build('student', list(model.shell.trained_tensors().values()))}
        policy = [p for p in model.policy_module.parameters() if p.requires_grad]
        if policy:
            if 'policy' not in self.cfg:
                raise ValueError(f'the policy {type(model.policy_module).__name__} has parameters: '
                                 "give optim_wrapper a 'policy' entry")
            wrappers['policy'] = self._build('policy', policy)
        return OptimWrapperDict(**wrappers)
