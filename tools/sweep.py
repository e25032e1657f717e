"""Ablation sweep: train and/or evaluate every cell of a grid, then tabulate and plot.

    python tools/sweep.py SPEC [--out DIR] [--launcher none|pytorch|slurm] [--gpus N]
                               [--srun-args ARGS]

SPEC is a Python config (format: videoscene/sweep/spec.py): a base config, ``axes`` (trained) and
``test_axes`` (inference-time: overrides and ``steps``, tools/test.py --steps) of overrides or
registry swaps, ``test_metrics`` (tools/test.py --metrics), the table's ``metrics`` (column ->
``'ROW:KEY'`` of the report, e.g. ``{'PSNR 1-step': '1-step:novel_view/psnr'}``) and the output
folder. The spec is checked completely before anything runs. Locally the cells run one after
another through tools/train.py and ``tools/test.py CONFIG CHECKPOINT --out CELL_DIR``, whose
``CELL_DIR/metrics.json`` the table is read from; a rerun skips finished cells and resumes an
interrupted training from its checkpoint. ``--launcher pytorch|slurm`` writes the commands to
OUT/commands.sh and prints them instead (trainings distributed, evaluations one process); rerun
without it afterwards to collect the results. Output in OUT: results.md, results.csv,
results.png, sweep.json, and train/ and cells/ (one folder per hash of the resolved overrides).
"""
from __future__ import annotations

import argparse
import os.path as osp
import signal
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.engine.cli import run_tool  # noqa: E402
from videoscene.sweep import LAUNCHERS, load_spec, run_sweep, write_report  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('spec', help='sweep spec (Python config)')
    parser.add_argument('--out', help="output folder (default: the spec's `out`)")
    parser.add_argument('--launcher', choices=LAUNCHERS, default='none',
                        help='none: run the cells here; pytorch / slurm: print their commands')
    parser.add_argument('--gpus', type=int, default=1, help='--launcher pytorch: processes per cell')
    parser.add_argument('--srun-args', default='--ntasks=1 --gres=gpu:1',
                        help='--launcher slurm: srun options of every command')
    return parser.parse_args(argv)


def _stop(signum, frame):
    raise SystemExit(f'stopped by signal {signum}; rerun to resume')  # ends the running tool too


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    spec = load_spec(args.spec, out=osp.abspath(args.out) if args.out else None)
    if args.launcher == 'none':
        signal.signal(signal.SIGTERM, _stop)
    results = run_sweep(spec, launcher=args.launcher, gpus=args.gpus, srun_args=args.srun_args)
    if args.launcher != 'none':   # the commands are printed; a later run collects the results
        return
    paths = write_report(spec, results)
    with open(paths['md']) as file:
        print(file.read(), end='')
    print('written: ' + ', '.join(paths.values()))


if __name__ == '__main__':
    run_tool(main)
