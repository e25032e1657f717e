"""Checkpoint bookkeeping that a kill at any moment cannot break."""
from __future__ import annotations

import os
import os.path as osp
import re
import shutil

from mmengine.dist import is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from videoscene.registry import HOOKS

from ..checkpoint import PARTIAL_SUFFIX, write_last_checkpoint

_PARTIAL = re.compile(rf'\..+\.\d+{re.escape(PARTIAL_SUFFIX)}')


@HOOKS.register_module(name='CheckpointHook')
class AtomicCheckpointHook(CheckpointHook):
    """MMEngine's ``CheckpointHook`` (same arguments), registered under its name in the videoscene
    scope so every config's ``type='CheckpointHook'`` gets it, with crash-safe ordering:

    1. the new checkpoint is written atomically (``VideoSceneRunner.save_checkpoint``);
    2. then ``last_checkpoint`` is pointed at it, atomically;
    3. only then do checkpoints beyond ``max_keep_ckpts`` get deleted (MMEngine deletes the oldest
       *before* writing the new one, so with ``max_keep_ckpts=1`` a kill mid-write left nothing).

    A kill between two steps leaves an extra complete file, never a missing or torn one.
    ``before_train`` removes the hidden ``.*.partial`` files (and sharded checkpoint folders) an
    interrupted write left behind.
    """

    def before_train(self, runner) -> None:
        super().before_train(runner)
        if not is_main_process():
            return
        folders = {runner.work_dir}
        if isinstance(self.file_backend, LocalBackend):
            folders.add(self.out_dir)
        for folder in sorted(folders):
            for name in sorted(os.listdir(folder)) if osp.isdir(folder) else []:
                if _PARTIAL.fullmatch(name):
                    path = osp.join(folder, name)
                    shutil.rmtree(path) if osp.isdir(path) else os.remove(path)
                    runner.logger.warning(f'Removed {osp.join(folder, name)}, left by an '
                                          'interrupted checkpoint write.')

    def _save_checkpoint_with_step(self, runner, step, meta) -> None:
        outdated = self._book(runner, step)
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = self.file_backend.join_path(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)
        runner.save_checkpoint(self.out_dir, filename, self.file_client_args,
                               save_optimizer=self.save_optimizer,
                               save_param_scheduler=self.save_param_scheduler, meta=meta,
                               by_epoch=self.by_epoch, backend_args=self.backend_args, **self.args)
        if not is_main_process():
            return
        write_last_checkpoint(runner.work_dir, self.last_ckpt)
        for path in outdated:
            if self.file_backend.isfile(path):
                self.file_backend.remove(path)
            elif self.file_backend.isdir(path):  # DeepSpeed checkpoints are folders
                self.file_backend.rmtree(path)

    def _book(self, runner, step: int) -> list[str]:
        """Record ``step`` among the kept checkpoints (saved in the checkpoint's message hub);
        return the paths that fall out, to delete once the new checkpoint is safe."""
        if self.max_keep_ckpts <= 0 or (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            return []
        outdated = []
        if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
            outdated.append(self.file_backend.join_path(
                self.out_dir, self.filename_tmpl.format(self.keep_ckpt_ids.popleft())))
        self.keep_ckpt_ids.append(step)
        runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        return outdated
