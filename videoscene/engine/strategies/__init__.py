from .fsdp2 import FSDP2Strategy

__all__ = ['FSDP2Strategy']
