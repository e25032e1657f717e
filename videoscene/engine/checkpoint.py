"""The Runner's checkpoint files: written atomically, checked before use, found again on resume.

Writing: :func:`commit_partial` moves a fully written temporary file (same folder) over its final
name after an ``fsync``, and :func:`write_last_checkpoint` does the same for the work dir's
``last_checkpoint`` pointer, so a kill at any moment leaves either the previous file or the new
one, never a torn one.

Reading: torch's ``weights_only=True`` default rejects what MMEngine 0.10.7 pickles into its
checkpoints (``HistoryBuffer`` objects whose bound statistics methods pickle through
``builtins.getattr``, numpy arrays and scalars). Allow-listing ``getattr`` would make the safe
loader unsafe, so resuming and evaluating unpickle fully, but only a local file the user names (or
the work directory's last checkpoint) and only inside :func:`trusted_local_checkpoints`.
``.safetensors`` files (plain model weights) load with the safetensors reader.

Finding: :func:`find_resume_checkpoint` is what ``--resume`` without a path continues from.
"""
from __future__ import annotations

import errno
import os
import os.path as osp
import pickle
import re
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader
from safetensors.torch import load_file

from videoscene.errors import CheckpointError

from .sharded_checkpoint import consolidate, sharded_problem

__all__ = ['LAST_CHECKPOINT', 'PARTIAL_SUFFIX', 'checkpoint_problem', 'commit_partial',
           'find_resume_checkpoint', 'load_from_trusted_local', 'partial_name',
           'trusted_local_checkpoints', 'write_last_checkpoint']

LAST_CHECKPOINT = 'last_checkpoint'  # MMEngine's pointer file in the work dir
PARTIAL_SUFFIX = '.partial'
_ITERATION_CHECKPOINT = re.compile(r'iter_(\d+)\.pth')


def partial_name(filename: str) -> str:
    """The hidden temporary name a file is written under before :func:`commit_partial`."""
    return f'.{filename}.{os.getpid()}{PARTIAL_SUFFIX}'


def _fsync_folder(folder: str) -> None:
    """Make a rename in ``folder`` durable (power loss); some file systems cannot sync folders,
    and the rename itself is atomic there all the same."""
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    except OSError as error:
        if error.errno not in (errno.EINVAL, errno.ENOTSUP):
            raise
    finally:
        os.close(descriptor)


def commit_partial(temporary: str, path: str) -> None:
    """Flush ``temporary`` to disk and rename it to ``path`` (same folder) in one atomic step."""
    with open(temporary, 'rb+') as file:
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_folder(osp.dirname(osp.abspath(path)))


def write_last_checkpoint(work_dir: str, checkpoint: str) -> None:
    """Point ``work_dir/last_checkpoint`` at ``checkpoint``, atomically."""
    temporary = osp.join(work_dir, partial_name(LAST_CHECKPOINT))
    with open(temporary, 'w') as file:
        file.write(checkpoint)
    commit_partial(temporary, osp.join(work_dir, LAST_CHECKPOINT))


def checkpoint_problem(path: str) -> str | None:
    """Why ``path`` cannot be a complete checkpoint, or None when it looks complete.

    A ``.pth``/``.pt`` file must be a torch zip archive whose central directory (written last) is
    there: this catches the 0-byte and truncated files an interrupted non-atomic write leaves,
    without reading the whole file.  A folder must be a complete sharded checkpoint
    (:func:`~videoscene.engine.sharded_checkpoint.sharded_problem`).
    """
    if osp.isdir(path):
        return sharded_problem(path)
    if not osp.isfile(path):
        return 'does not exist'
    if osp.getsize(path) == 0:
        return 'is empty (0 bytes): its write was interrupted'
    if path.endswith('.safetensors'):
        return None
    try:
        with zipfile.ZipFile(path):
            return None
    except (zipfile.BadZipFile, OSError) as error:
        return (f'is truncated or not a torch checkpoint ({osp.getsize(path)} bytes, no complete '
                f'zip archive: {error})')


def load_from_trusted_local(filename: str, map_location=None, resuming: bool = False) -> dict:
    """Load a local checkpoint the user named, unpickling fully (``.safetensors``: tensors only;
    a sharded checkpoint folder: consolidated to the single-process checkpoint in memory).

    ``resuming``: the file must hold the Runner's training state (``meta`` and ``state_dict``).

    Raises:
        CheckpointError: the file is missing, empty, truncated or does not unpickle.
    """
    filename = osp.expanduser(filename)
    problem = checkpoint_problem(filename)
    if problem is not None:
        raise CheckpointError(filename, problem)
    print_log(f'Loading trusted local checkpoint {filename}.', logger='current')
    try:
        if osp.isdir(filename):
            checkpoint = consolidate(filename)
        elif filename.endswith('.safetensors'):
            device = map_location if isinstance(map_location, (str, torch.device)) else 'cpu'
            checkpoint = load_file(filename, device=str(device))
        else:
            checkpoint = torch.load(filename, map_location=map_location, weights_only=False)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError, zipfile.BadZipFile,
            AttributeError, ModuleNotFoundError) as error:
        raise CheckpointError(filename, f'cannot be read as a checkpoint ({type(error).__name__}: '
                                        f'{error})') from error
    if resuming and not (isinstance(checkpoint, dict) and {'meta', 'state_dict'} <= checkpoint.keys()):
        raise CheckpointError(filename, 'holds no training state (meta, optimizer, schedulers), only '
                                        'weights: it cannot be resumed; evaluate it with tools/test.py '
                                        'or start a new run from it with load_from')
    return checkpoint


def _load_to_resume(filename: str, map_location=None) -> dict:
    return load_from_trusted_local(filename, map_location, resuming=True)


@contextmanager
def trusted_local_checkpoints(resuming: bool = False) -> Iterator[None]:
    """Within the block, MMEngine loads local checkpoint files with :func:`load_from_trusted_local`
    (``resuming``: files must hold training state).

    Remote schemes (``http://``, ``s3://`` ...) keep their own loaders. Leaving the block restores
    MMEngine's local loader, so ``load_from`` and later loads stay on torch's safe default.
    """
    schemes = CheckpointLoader._schemes
    previous = schemes['']
    schemes[''] = _load_to_resume if resuming else load_from_trusted_local
    try:
        yield
    finally:
        schemes[''] = previous


def _iteration_checkpoints(work_dir: str) -> list[str]:
    """``work_dir/iter_N.pth`` files, newest (largest N) first."""
    found = []
    for name in os.listdir(work_dir) if osp.isdir(work_dir) else []:
        match = _ITERATION_CHECKPOINT.fullmatch(name)
        if match:
            found.append((int(match.group(1)), osp.join(work_dir, name)))
    return [path for _, path in sorted(found, reverse=True)]


def find_resume_checkpoint(work_dir: str, restart_if_unreadable: bool = False) -> tuple[str | None, str]:
    """The checkpoint ``--resume`` (without a path) continues from, and what to tell the user.

    Returns ``(path, note)``. ``path``: the file ``last_checkpoint`` names when that is complete;
    otherwise (pointer missing, empty, or naming a missing or incomplete file) the newest complete
    ``iter_N.pth`` in ``work_dir``; None (start from iteration 0) when ``work_dir`` holds no
    checkpoint. ``note``: empty when ``last_checkpoint`` was used, else what was skipped and why,
    or that training starts from scratch.

    Raises:
        CheckpointError: ``work_dir`` holds checkpoints but none is complete, unless
            ``restart_if_unreadable`` (then None, and the note says so).
    """
    skipped = []
    pointer = osp.join(work_dir, LAST_CHECKPOINT)
    if osp.isfile(pointer):
        with open(pointer, errors='replace') as file:
            named = file.read().strip()
        problem = checkpoint_problem(named) if named else None
        if named and problem is None:
            return named, ''
        skipped.append(f'{pointer} is empty' if not named else f'{pointer} names {named}, which {problem}')
    for path in _iteration_checkpoints(work_dir):
        problem = checkpoint_problem(path)
        if problem is None:
            return path, '; '.join(skipped + [f'resuming from {path}, the newest complete checkpoint'])
        skipped.append(f'{path} {problem}')
    if not skipped:
        return None, (f'--resume: {work_dir} holds no checkpoint (no {LAST_CHECKPOINT}, no '
                      'iter_N.pth): starting from scratch.')
    if restart_if_unreadable:
        return None, '; '.join(skipped) + ('. No checkpoint can be resumed from: starting from '
                                           'iteration 0 as asked (restart_if_unreadable).')
    raise CheckpointError(work_dir, 'holds checkpoints but none can be resumed from: '
                          + '; '.join(skipped) + '. Refusing to start again from iteration 0 over '
                          'them: resume from a named file (--resume FILE), move the files away, or '
                          'pass --restart-if-unreadable to train from iteration 0 anyway.')
