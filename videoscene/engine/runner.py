"""The Runners used by ``tools/train.py`` and ``tools/test.py``: MMEngine's ``Runner``, and its
``FlexibleRunner`` for configs with a ``strategy`` (FSDP2, DeepSpeed); both with the same resume
rules."""
from __future__ import annotations

import os.path as osp

import torch
import torch.distributed as torch_dist
from mmengine.dist import is_distributed, master_only
from mmengine.fileio import LocalBackend, get_file_backend
from mmengine.runner import FlexibleRunner, Runner

from videoscene.errors import CheckpointError
from videoscene.registry import RUNNERS, STRATEGIES

from .checkpoint import commit_partial, find_resume_checkpoint, partial_name, trusted_local_checkpoints

_MAX_MISMATCH_CHARS = 2000  # how much of a key-mismatch report an error message quotes


class _ResumeFromCompleteCheckpoints:
    """``--resume`` without a file continues from
    :func:`~videoscene.engine.checkpoint.find_resume_checkpoint`: ``last_checkpoint`` when it names
    a complete checkpoint, else the newest complete ``iter_N.pth``; it refuses to restart from
    iteration 0 over unreadable checkpoints unless the config sets ``restart_if_unreadable=True``.
    Resuming unpickles the named local file fully (see :mod:`videoscene.engine.checkpoint`)."""

    def load_or_resume(self) -> None:
        if not self._has_loaded and self._resume and self._load_from is None:
            found, note = find_resume_checkpoint(
                self.work_dir, bool(self.cfg.get('restart_if_unreadable', False)))
            if note:
                self.logger.warning(note)
            if found is not None:
                self.logger.info(f'Resuming from {found}.')
                self.resume(found)
                self._has_loaded = True
            return
        super().load_or_resume()

    def resume(self, filename: str, resume_optimizer: bool = True,
               resume_param_scheduler: bool = True, map_location='default') -> None:
        with trusted_local_checkpoints(resuming=True):
            super().resume(filename, resume_optimizer, resume_param_scheduler, map_location)


@RUNNERS.register_module()
class VideoSceneFlexibleRunner(_ResumeFromCompleteCheckpoints, FlexibleRunner):
    """MMEngine's ``FlexibleRunner`` (a ``strategy`` builds, wraps and checkpoints the model) with
    the resume rules of :class:`VideoSceneRunner`; ``tools/train.py`` uses it when the config has
    a ``strategy``.  Checkpoint writes are the strategy's (``FSDP2Strategy``: atomic folders).
    Strategy types resolve in the videoscene scope (ours, then MMEngine's)."""

    def build_strategy(self, strategy=None, *args, **kwargs):
        if isinstance(strategy, dict) and isinstance(strategy.get('type'), str):
            strategy = dict(strategy, type=STRATEGIES.get(strategy['type']))
        return super().build_strategy(strategy, *args, **kwargs)


@RUNNERS.register_module()
class VideoSceneRunner(_ResumeFromCompleteCheckpoints, Runner):
    """MMEngine's :class:`~mmengine.runner.Runner` whose checkpoints survive kills and load on
    torch >= 2.6.

    * ``save_checkpoint`` writes a local checkpoint under a hidden temporary name in the same
      folder and renames it into place after an ``fsync`` (object stores put whole objects and
      keep MMEngine's writer);
    * resuming without a named file (``resume=True``, ``load_from=None``) continues from
      :func:`~videoscene.engine.checkpoint.find_resume_checkpoint`: ``last_checkpoint`` when it
      names a complete file, else the newest complete ``iter_N.pth``; it refuses to restart from
      iteration 0 over unreadable checkpoints unless the config sets ``restart_if_unreadable=True``;
    * resuming and :meth:`load_weights` unpickle the named local file fully (see
      :mod:`videoscene.engine.checkpoint`); ``load_from`` keeps torch's ``weights_only`` loader;
    * a distributed launch on a machine without CUDA runs on gloo: MMEngine's ``pytorch``
      launcher calls ``torch.cuda.set_device`` and gives DDP a device id, so on the CPU the
      process group is started here and the model wrappers get no device ids.
    """

    def setup_env(self, env_cfg: dict) -> None:
        if self.distributed and not is_distributed() and not torch.cuda.is_available():
            if self.launcher != 'pytorch':
                raise RuntimeError(f"launcher '{self.launcher}' without CUDA: only 'pytorch' "
                                   '(torchrun) starts a CPU (gloo) process group')
            torch_dist.init_process_group('gloo')
        super().setup_env(env_cfg)

    def wrap_model(self, model_wrapper_cfg: dict | None, model):
        if self.distributed and not torch.cuda.is_available():
            model_wrapper_cfg = dict(model_wrapper_cfg or dict(type='MMDistributedDataParallel',
                                                               broadcast_buffers=False),
                                     device_ids=None)
        return super().wrap_model(model_wrapper_cfg, model)

    @master_only
    def save_checkpoint(self, out_dir: str, filename: str, file_client_args: dict | None = None,
                        save_optimizer: bool = True, save_param_scheduler: bool = True,
                        meta: dict | None = None, by_epoch: bool = True,
                        backend_args: dict | None = None) -> None:
        arguments = dict(file_client_args=file_client_args, save_optimizer=save_optimizer,
                         save_param_scheduler=save_param_scheduler, meta=meta, by_epoch=by_epoch,
                         backend_args=backend_args)
        if file_client_args is not None or not isinstance(
                get_file_backend(out_dir, backend_args=backend_args), LocalBackend):
            super().save_checkpoint(out_dir, filename, **arguments)
            return
        temporary = partial_name(filename)
        super().save_checkpoint(out_dir, temporary, **arguments)
        commit_partial(osp.join(out_dir, temporary), osp.join(out_dir, filename))

    def load_weights(self, filename: str) -> None:
        """Load model weights to evaluate from a local file the user named, strictly.

        ``filename``: a checkpoint ``tools/train.py`` wrote, a bare state dict (``.pth``) or a
        ``.safetensors`` file, with the keys of this config's model.

        Raises:
            CheckpointError: the file is missing, unreadable, or its keys or shapes differ from
                the model's.
        """
        with trusted_local_checkpoints():
            try:
                self.load_checkpoint(filename, map_location='cpu', strict=True)
            except RuntimeError as error:  # MMEngine's strict load lists the mismatched keys
                report = str(error)
                if len(report) > _MAX_MISMATCH_CHARS:
                    report = report[:_MAX_MISMATCH_CHARS] + ' ...'
                raise CheckpointError(filename, f'does not fit the model of this config: '
                                                f'{report}') from error
