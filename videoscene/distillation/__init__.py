"""3D-aware leap flow distillation with DDPNet: the model, its roles, optimizers and hooks."""
from .frozen import load_training_checkpoint, read_training_state_dict
from .hooks import DistillationVisualizationHook, PolicyScheduleHook, TargetEMAHook
from .model import LeapFlowDistillation
from .optim import DistillationOptimWrapperConstructor
from .roles import TrainedCopy

__all__ = ['DistillationOptimWrapperConstructor', 'DistillationVisualizationHook',
           'LeapFlowDistillation', 'PolicyScheduleHook', 'TargetEMAHook', 'TrainedCopy',
           'load_training_checkpoint', 'read_training_state_dict']
