"""The Runner used by ``tools/train.py`` and ``tools/test.py``."""
from __future__ import annotations

from mmengine.runner import Runner

from videoscene.registry import RUNNERS

from .checkpoint import trusted_local_checkpoints


@RUNNERS.register_module()
class VideoSceneRunner(Runner):
    """MMEngine's :class:`~mmengine.runner.Runner` whose ``resume`` works on torch >= 2.6.

    Only resuming trusts the checkpoint file (see :mod:`videoscene.engine.checkpoint`); loading
    weights with ``load_from`` keeps torch's ``weights_only`` loader.
    """

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True, map_location='default') -> None:
        with trusted_local_checkpoints():
            super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)
