"""Evaluate a trained videoscene model.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out-json PATH] [--cfg-options k=v ...]

CHECKPOINT is a local file: one ``tools/train.py`` wrote (``work_dir/iter_N.pth``, unpickled in
full: only name files you trust), a bare model state dict (``.pth``) or ``.safetensors`` weights.
Its keys must match the config's model exactly. ``--out-json`` writes the metrics (the dict
``runner.test()`` returns) to PATH; tools/sweep.py reads each cell's results from it.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.engine import VideoSceneRunner  # noqa: E402
from videoscene.engine.checkpoint import checkpoint_problem  # noqa: E402
from videoscene.engine.config import add_common_arguments, load_config  # noqa: E402
from videoscene.errors import CheckpointError  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('checkpoint', help='checkpoint or weights file to evaluate')
    parser.add_argument('--out-json', metavar='PATH', help='write the metrics to this JSON file')
    args = parser.parse_args(argv)
    cfg = load_config(args)
    problem = checkpoint_problem(args.checkpoint)
    if problem is not None:
        raise CheckpointError(args.checkpoint, problem)
    cfg.resume, cfg.load_from = False, None
    runner = VideoSceneRunner.from_cfg(cfg)
    runner.load_weights(args.checkpoint)
    metrics = runner.test()
    if args.out_json:
        write_metrics_json(metrics, args.out_json)
    return metrics


def write_metrics_json(metrics: dict, path: str) -> None:
    """``metrics`` as JSON at ``path``, written whole or not at all (tensors and numpy values as
    numbers or lists)."""
    folder = osp.dirname(osp.abspath(path))
    os.makedirs(folder, exist_ok=True)
    temporary = osp.join(folder, f'.{osp.basename(path)}.{os.getpid()}.partial')
    with open(temporary, 'w') as file:
        json.dump(metrics, file, indent=2, default=lambda value: value.tolist())
    os.replace(temporary, path)


if __name__ == '__main__':
    main()
