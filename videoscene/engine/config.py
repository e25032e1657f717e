"""Loading configs for the command-line tools, with errors a person can act on."""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import warnings

from mmengine.config import Config, DictAction

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


class CfgOptionsAction(DictAction):
    """``--cfg-options key=value ...`` that rejects items without ``=`` or with an empty key."""

    def __call__(self, parser, namespace, values, option_string=None):
        for item in values:
            key, sep, _ = item.partition('=')
            if not sep or not key.strip():
                parser.error(f"{option_string}: '{item}' is not of the form key=value "
                             "(e.g. train_cfg.max_iters=100 or model.policy.t=549)")
        super().__call__(parser, namespace, values, option_string)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument('config', help='config file (Python, with optional _base_ inheritance)')
    parser.add_argument('--work-dir', help='where logs and checkpoints go '
                        '(default: work_dirs/<config name>)')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={},
                        metavar='KEY=VALUE', help='override config entries, e.g. '
                        'train_cfg.max_iters=100 train_dataloader.batch_size=2')
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'],
                        default='none', help='job launcher for distributed runs')
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0,
                        help=argparse.SUPPRESS)


MISSING = object()   # what ``config_entry`` returns for an absent entry


def config_entry(cfg: dict, path: list[str]):
    """The entry of a config dict at ``path`` (dict keys, and list indices as digit strings), or
    ``MISSING``."""
    node = cfg
    for part in path:
        if isinstance(node, (list, tuple)) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        elif isinstance(node, dict) and part in node:
            node = node[part]
        else:
            return MISSING
    return node


def _has_key(cfg: Config, dotted: str) -> bool:
    return config_entry(cfg.to_dict(), dotted.split('.')) is not MISSING


def load_config(args: argparse.Namespace) -> Config:
    """Read ``args.config``, apply ``--cfg-options`` and set the work dir and launcher.

    The repository root goes on ``sys.path`` first so ``custom_imports=dict(imports=
    ['projects.<name>'])`` works from any working directory.
    """
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'Config file not found: {args.config} '
                                f'(configs live under {osp.join(REPO_ROOT, "configs")})')
    cfg = Config.fromfile(args.config)
    for key in args.cfg_options:
        if not _has_key(cfg, key):
            warnings.warn(f"--cfg-options adds '{key}', which the config did not have: check "
                          'the spelling if you meant to override an entry.', stacklevel=2)
    cfg.merge_from_dict(args.cfg_options)
    cfg.launcher = args.launcher
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('work_dirs', osp.splitext(osp.basename(args.config))[0])
    return cfg
