"""Train a videoscene model from a config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--restart-if-unreadable]
                                 [--amp] [--cfg-options k=v ...] [--launcher none|pytorch|slurm|mpi]

``--resume`` without a path continues from the work dir's ``last_checkpoint``, or, when that is
missing, empty or names an incomplete file, from the newest complete ``iter_N.pth`` there; in a
work dir without checkpoints it starts from scratch (and says so). When the work dir holds
checkpoints but none can be read it stops with an error naming them, unless
``--restart-if-unreadable`` is given.

A config with a ``strategy`` (e.g. ``FSDP2Strategy``) runs under MMEngine's ``FlexibleRunner``
(``VideoSceneFlexibleRunner``), the others under its ``Runner``; both with ``--launcher
pytorch|slurm|mpi`` unchanged.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.engine import VideoSceneFlexibleRunner, VideoSceneRunner  # noqa: E402
from videoscene.engine.checkpoint import checkpoint_problem  # noqa: E402
from videoscene.engine.config import add_common_arguments, load_config  # noqa: E402
from videoscene.errors import CheckpointError, InputError  # noqa: E402
from videoscene.engine.cli import run_tool  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('--resume', nargs='?', const='auto', default=None, metavar='CKPT',
                        help='resume training: from CKPT, or from the latest complete checkpoint '
                        'in the work dir when no path is given')
    parser.add_argument('--restart-if-unreadable', action='store_true',
                        help='with --resume (no path): when the work dir holds checkpoints but '
                        'none can be read, train from iteration 0 instead of stopping')
    parser.add_argument('--amp', action='store_true',
                        help='mixed precision (AmpOptimWrapper; needs a CUDA device)')
    args = parser.parse_args(argv)
    if args.restart_if_unreadable and args.resume != 'auto':
        parser.error('--restart-if-unreadable only applies to --resume without a checkpoint path')
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    cfg = load_config(args)
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
        if args.restart_if_unreadable:
            cfg.restart_if_unreadable = True
    elif args.resume is not None:
        problem = checkpoint_problem(args.resume)
        if problem is not None:
            raise CheckpointError(args.resume, f'--resume: the checkpoint {problem}')
        cfg.resume, cfg.load_from = True, args.resume
    if args.amp:
        if cfg.get('strategy'):
            raise InputError('--amp', 'this config has a strategy: set mixed precision there '
                             "(FSDP2Strategy: mixed_precision=dict(param_dtype='bfloat16'))")
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.setdefault('loss_scale', 'dynamic')
    runner_type = VideoSceneFlexibleRunner if cfg.get('strategy') else VideoSceneRunner
    runner = runner_type.from_cfg(cfg)
    runner.train()


if __name__ == '__main__':
    run_tool(main)
