"""videoscene: trainable VideoScene (one-step 3D-consistent scene video from two views) on MMEngine.

MMEngine 0.10.7 imports ``deepspeed`` whenever it is installed (the optional extra of
``DeepSpeedStrategy``), and DeepSpeed then warns on stdout, at every import on a machine without
CUDA, that it falls back to its CPU accelerator.  That notice is dropped here, before MMEngine is
imported, so tools' stdout stays theirs; DeepSpeed's other messages are kept.
"""
import logging


class _DropDeepSpeedCpuNotice(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith('Setting accelerator to CPU')


logging.getLogger('DeepSpeed').addFilter(_DropDeepSpeedCpuNotice())
