"""Evaluate a trained videoscene model on its config's test split and write a report.

    python tools/test.py CONFIG CHECKPOINT [--metrics psnr ssim lpips structure_matching ...]
                         [--steps N] [--out DIR] [--work-dir DIR] [--cfg-options k=v ...]

CHECKPOINT is a local file: one ``tools/train.py`` wrote (``work_dir/iter_N.pth``, unpickled in
full: only name files you trust), a bare model state dict (``.pth``) or ``.safetensors`` weights.
Its keys must match the config's model exactly.

The scenes of ``test_dataloader`` (the split's evaluation index) go through the model's
``predict``; every output the model has is scored (rows: ``render`` for stage 1, ``teacher`` for
stage 2, ``render``, ``1-step`` and with ``--steps`` ``N-step`` and ``teacher`` for a
distillation model; see ``videoscene/evaluation/report.py``). ``--metrics`` takes short names
(``psnr ssim lpips structure_matching fvd subject_consistency background_consistency
aesthetic_quality``) or ``METRICS`` types; default: the config's ``test_evaluator`` types.
Metric arguments (weight files) come from the config's ``test_evaluator`` entries and from
``metric_options = {TYPE: {...}}``, e.g. ``--cfg-options
metric_options.NovelViewLPIPS.vgg_checkpoint=/weights/vgg16-397923af.pth``. A metric whose weights
are not configured or found is reported unavailable (with the reason), not a crash.

Writes ``metrics.json`` (overall and per-scene scores) and ``metrics.md`` (rows = outputs,
columns = scores) into ``--out`` (default ``WORK_DIR/test_<checkpoint stem>``). One process (no
distributed evaluation).
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.model import is_model_wrapper  # noqa: E402

from videoscene.engine import VideoSceneRunner  # noqa: E402
from videoscene.engine.checkpoint import checkpoint_problem  # noqa: E402
from videoscene.engine.config import add_common_arguments, load_config  # noqa: E402
from videoscene.errors import CheckpointError, InputError  # noqa: E402
from videoscene.evaluation.report import (METRIC_ALIASES, STEPPED_MODELS,  # noqa: E402
                                          build_metrics, evaluate, metric_type, write_report)
from videoscene.engine.cli import run_tool  # noqa: E402


def _evaluator_entries(cfg) -> list[dict]:
    evaluator = cfg.get('test_evaluator')
    if evaluator is None:
        return []
    entries = evaluator if isinstance(evaluator, (list, tuple)) else [evaluator]
    return [dict(entry) for entry in entries if 'type' in entry]


def _metric_names(cfg, requested: list[str] | None) -> list[str]:
    if requested:
        return requested
    types = [entry['type'] for entry in _evaluator_entries(cfg)]
    by_type = {kind: name for name, kind in METRIC_ALIASES.items()}
    return [by_type.get(kind, kind) for kind in types] or ['psnr']


def _metric_options(cfg) -> dict[str, dict]:
    """Keyword arguments per METRICS type: the config's test_evaluator entries, then
    ``metric_options`` over them."""
    options = {}
    for entry in _evaluator_entries(cfg):
        kind = entry.pop('type')
        options[kind] = entry
    for kind, values in (cfg.get('metric_options') or {}).items():
        options[kind] = {**options.get(kind, {}), **dict(values)}
    return options


def _split(dataset_cfg) -> str:
    parts = [str(dataset_cfg.get('type'))]
    parts += [f'{key}={dataset_cfg[key]}' for key in ('stage', 'root', 'num_scenes')
              if dataset_cfg.get(key) is not None]
    return ' '.join(parts)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_common_arguments(parser)
    parser.add_argument('checkpoint', help='checkpoint or weights file to evaluate')
    parser.add_argument('--metrics', nargs='+', help='metric names (default: the config\'s '
                        f'test_evaluator); short names: {", ".join(METRIC_ALIASES)}')
    parser.add_argument('--steps', type=int, help='denoising steps N of the N-step and teacher '
                        'outputs (the model\'s sample_steps)')
    parser.add_argument('--out', help='report folder (default: WORK_DIR/test_<checkpoint stem>)')
    args = parser.parse_args(argv)
    cfg = load_config(args)
    problem = checkpoint_problem(args.checkpoint)
    if problem is not None:
        raise CheckpointError(args.checkpoint, problem)
    if cfg.get('test_dataloader') is None:
        raise InputError(args.config, 'has no test_dataloader: tools/test.py evaluates the split '
                         'it names (a dataset with stage=\'test\' and its evaluation index)')
    model_type = cfg.model.get('type')
    if args.steps is not None:
        if model_type not in STEPPED_MODELS:
            raise InputError('--steps', f'{model_type} has no denoising steps (only '
                             f'{", ".join(STEPPED_MODELS)})')
        if args.steps < 1:
            raise InputError('--steps', f'must be a positive integer, got {args.steps}')
        cfg.model.sample_steps = args.steps
    names = _metric_names(cfg, args.metrics)
    for name in names:
        metric_type(name)                       # unknown names fail before anything runs
    out = Path(args.out or osp.join(cfg.work_dir, f'test_{Path(args.checkpoint).stem}'))

    dataloader_cfg = cfg.test_dataloader
    cfg.resume, cfg.load_from = False, None
    for key in ('test_dataloader', 'test_cfg', 'test_evaluator'):
        cfg[key] = None                          # the tool runs its own loop
    runner = VideoSceneRunner.from_cfg(cfg)
    runner.load_weights(args.checkpoint)
    model = runner.model.module if is_model_wrapper(runner.model) else runner.model
    metrics, unavailable = build_metrics(names, _metric_options(cfg))
    seed = (cfg.get('randomness') or {}).get('seed') or 0
    dataloader = runner.build_dataloader(dataloader_cfg, seed=seed)
    result = evaluate(model, dataloader, metrics, num_scenes=len(dataloader.dataset), seed=seed)
    report = dict(config=str(args.config), checkpoint=str(args.checkpoint), model=model_type,
                  split=_split(dataloader_cfg.dataset), steps=getattr(model, 'sample_steps', None),
                  metrics=names, unavailable=unavailable, **result)
    json_path, md_path = write_report(report, out)
    for row, scores in report['overall'].items():
        runner.logger.info(f'{row}: ' + ', '.join(f'{k}: {v:.4f}' for k, v in scores.items()
                                                  if isinstance(v, float)))
    runner.logger.info(f'Wrote {json_path} and {md_path}')
    if unavailable:
        runner.logger.warning('Unavailable metrics (not computed): ' + '; '.join(
            f'{name} ({reason})' for name, reason in unavailable.items()))
    return report


if __name__ == '__main__':
    run_tool(main)
