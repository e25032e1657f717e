"""Write the procedural synthetic scene dataset in the RE10K chunk format.

Example::

    python tools/make_synthetic.py --out data/synthetic --num-scenes 4 --frames 120 --height 256 --width 256 --stage train

writes ``{out}/{stage}/*.torch`` + ``index.json``, ``{out}/evaluation_index_{stage}.json`` and
``{out}/synthetic_spec_{stage}.json``.
"""
from __future__ import annotations

import argparse
import time

import torch

from videoscene.datasets.synthetic import SyntheticSpec, write_synthetic_dataset
from videoscene.engine.cli import run_tool


def parse_args() -> argparse.Namespace:
    defaults = SyntheticSpec()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', required=True, help='dataset root folder')
    parser.add_argument('--num-scenes', type=int, default=defaults.num_scenes)
    parser.add_argument('--frames', type=int, default=defaults.frames, help='frames per scene')
    parser.add_argument('--height', type=int, default=defaults.height)
    parser.add_argument('--width', type=int, default=defaults.width)
    parser.add_argument('--fov', type=float, default=defaults.fov_deg, help='horizontal field of view in degrees')
    parser.add_argument('--seed', type=int, default=defaults.seed)
    parser.add_argument('--stage', default=defaults.stage, help="stage folder, e.g. 'train' or 'test'")
    parser.add_argument('--num-eval-targets', type=int, default=defaults.num_eval_targets,
                        help='targets per scene in the evaluation index (default: 49, or frames - 2 if fewer)')
    parser.add_argument('--jpeg-quality', type=int, default=defaults.jpeg_quality)
    parser.add_argument('--overwrite', action='store_true', help='replace an existing stage folder')
    parser.add_argument('--threads', type=int, default=None,
                        help="torch CPU threads (default: torch's choice); 1 is much faster on a busy machine")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    spec = SyntheticSpec(num_scenes=args.num_scenes, frames=args.frames, height=args.height, width=args.width,
                         fov_deg=args.fov, seed=args.seed, stage=args.stage, num_eval_targets=args.num_eval_targets,
                         jpeg_quality=args.jpeg_quality)
    start, cpu_start = time.perf_counter(), time.process_time()
    stage = write_synthetic_dataset(args.out, spec, overwrite=args.overwrite)
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    frames = spec.num_scenes * spec.frames
    print(f'wrote {spec.num_scenes} scenes x {spec.frames} frames at {spec.height}x{spec.width} to {stage}')
    print(f'evaluation index: {stage.parent / f"evaluation_index_{spec.stage}.json"}')
    print(f'time: {wall:.2f} s wall, {cpu:.2f} s CPU ({1000 * wall / frames:.1f} ms per frame, '
          f'{torch.get_num_threads()} torch threads)')


if __name__ == '__main__':
    run_tool(main)
