from .deepspeed import DeepSpeedStrategy
from .fsdp2 import FSDP2Strategy

__all__ = ['DeepSpeedStrategy', 'FSDP2Strategy']
