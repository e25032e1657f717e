"""Loading MMEngine's own training checkpoints under torch >= 2.6.

torch's ``weights_only=True`` default rejects what MMEngine 0.10.7 pickles into its checkpoints
(``HistoryBuffer`` objects whose bound statistics methods pickle through ``builtins.getattr``,
numpy arrays and scalars).  Allow-listing ``getattr`` would make the safe loader unsafe, so resuming
instead unpickles fully, but only for a local file the user names (or the work directory's last
checkpoint) and only while resuming: :func:`trusted_local_checkpoints` scopes that.
"""
from __future__ import annotations

import os.path as osp
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from mmengine.logging import print_log
from mmengine.runner.checkpoint import CheckpointLoader


def load_from_trusted_local(filename: str, map_location=None) -> dict:
    filename = osp.expanduser(filename)
    if not osp.isfile(filename):
        raise FileNotFoundError(f'Checkpoint to resume from not found: {filename}')
    print_log(f'Resuming from trusted local checkpoint {filename} (full unpickling).',
              logger='current')
    return torch.load(filename, map_location=map_location, weights_only=False)


@contextmanager
def trusted_local_checkpoints() -> Iterator[None]:
    """Within the block, MMEngine loads local checkpoint files with ``weights_only=False``.

    Remote schemes (``http://``, ``s3://`` ...) keep their own loaders.  Leaving the block restores
    MMEngine's local loader, so ``load_from`` and later loads stay on torch's safe default.
    """
    schemes = CheckpointLoader._schemes
    previous = schemes['']
    schemes[''] = load_from_trusted_local
    try:
        yield
    finally:
        schemes[''] = previous
