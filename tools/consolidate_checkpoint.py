"""Consolidate a sharded checkpoint folder (FSDP2Strategy, DeepSpeedStrategy) into one file.

    python tools/consolidate_checkpoint.py work_dirs/RUN/iter_N.pth --out iter_N_full.pth [--weights-only]

The file has the layout ``tools/train.py`` writes without a strategy (full tensors; the optimizer
states by index, as ``OptimWrapperDict`` saves them), so ``tools/infer.py``, ``tools/test.py`` and a
one-process ``tools/train.py --resume FILE`` read it (a DeepSpeed folder gives the weights and
``meta`` only: its ZeRO-partitioned optimizer states stay in the folder).  ``--weights-only``: keep
the model's tensors (``state_dict``) and ``meta`` only.  Runs in one process on the CPU and needs
the memory of the trained tensors (and of their AdamW states unless ``--weights-only``).  The tools
also read the folder itself, consolidating it in memory each time.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from videoscene.engine.checkpoint import commit_partial, partial_name  # noqa: E402
from videoscene.engine.cli import run_tool  # noqa: E402
from videoscene.engine.sharded_checkpoint import consolidate, sharded_problem  # noqa: E402
from videoscene.errors import CheckpointError, InputError  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('folder', help='a sharded checkpoint folder (iter_N.pth/ of a FSDP2 or '
                        'DeepSpeed run)')
    parser.add_argument('--out', required=True, help='the single-process checkpoint file to write')
    parser.add_argument('--weights-only', action='store_true',
                        help='keep state_dict and meta only (no optimizer, scheduler, logs)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing --out')
    args = parser.parse_args(argv)
    if not osp.isdir(args.folder):
        raise CheckpointError(args.folder, 'is not a folder: expected a sharded checkpoint folder')
    problem = sharded_problem(args.folder)
    if problem is not None:
        raise CheckpointError(args.folder, problem)
    if osp.exists(args.out) and not args.overwrite:
        raise InputError('--out', f'{args.out} exists (pass --overwrite to replace it)')
    checkpoint = consolidate(args.folder)
    if args.weights_only:
        checkpoint = {key: checkpoint[key] for key in ('state_dict', 'meta')}
    out = osp.abspath(args.out)
    temporary = osp.join(osp.dirname(out), partial_name(osp.basename(out)))
    torch.save(checkpoint, temporary)
    commit_partial(temporary, out)
    tensors = sum(v.numel() for v in checkpoint['state_dict'].values())
    print(f'{args.folder} -> {out}: {len(checkpoint["state_dict"])} tensors '
          f'({tensors:,} values), iteration {checkpoint["meta"].get("iter")}'
          + (', optimizer and scheduler states kept' if 'optimizer' in checkpoint else
             ', weights only'))


if __name__ == '__main__':
    run_tool(main)
