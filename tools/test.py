"""Evaluate a trained videoscene model.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options k=v ...]
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.engine import VideoSceneRunner  # noqa: E402
from videoscene.engine.config import add_common_arguments, load_config  # noqa: E402


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('checkpoint', help='checkpoint file to evaluate')
    args = parser.parse_args(argv)
    cfg = load_config(args)
    if not osp.isfile(args.checkpoint):
        raise FileNotFoundError(f'Checkpoint not found: {args.checkpoint}')
    cfg.load_from = args.checkpoint
    runner = VideoSceneRunner.from_cfg(cfg)
    return runner.test()


if __name__ == '__main__':
    main()
