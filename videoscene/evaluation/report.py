"""Evaluation reports (``tools/test.py``): every output of a model scored by chosen metrics.

A model's ``predict`` data samples carry the true frames ``gt`` and one or more generated videos;
the model class says which through ``evaluation_outputs`` (report row -> sample key), e.g.
``GaussianReconstruction``: ``{'render': 'pred'}``; ``InterpolationTeacher``:
``{'teacher': 'pred'}``; ``LeapFlowDistillation``: render, ``1-step``, and with ``sample_steps``
``N-step`` and ``teacher``. Rows whose key a sample lacks are left out.

Every (row, metric) pair gets its own metric instance fed ``{'pred': video, 'gt': gt, 'scene'}``,
so metrics stay the plain ``BaseMetric`` s of ``METRICS``. Per-scene scores are the metric's own
``compute_metrics`` over that scene's results; metrics whose score is a property of a set
(``per_scene = False`` on the class, or listed in ``SET_METRICS``: FVD) only get the overall
score. Numeric scores fill the markdown table; text values (e.g. FVD's variant and its small-N
note) are listed under it.

A metric that cannot be built (weights not configured or missing: ``ValueError``,
``FileNotFoundError``/``OSError``, ``ImportError``) is reported unavailable with its message; an
unknown metric name fails before anything runs (:class:`~videoscene.registry.UnknownTypeError`).
"""
from __future__ import annotations

import copy
import json
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import torch
from mmengine.evaluator import BaseMetric
from tqdm import tqdm

from videoscene.registry import METRICS

__all__ = ['METRIC_ALIASES', 'STEPPED_MODELS', 'build_metrics', 'evaluate', 'metric_type',
           'write_report']

# Command-line names -> METRICS types; any other name is taken as a METRICS type itself.
METRIC_ALIASES = {
    'psnr': 'NovelViewPSNR',
    'ssim': 'NovelViewSSIM',
    'lpips': 'NovelViewLPIPS',
    'structure_matching': 'StructureMatching',
    'fvd': 'FVD',
    'subject_consistency': 'SubjectConsistency',
    'background_consistency': 'BackgroundConsistency',
    'aesthetic_quality': 'AestheticQuality',
}
UNAVAILABLE_ERRORS = (ValueError, OSError, ImportError)
# Models whose denoising steps ``tools/test.py --steps`` sets (their ``sample_steps``).
STEPPED_MODELS = ('InterpolationTeacher', 'LeapFlowDistillation')
# Metrics of a set of videos (no per-scene score) that do not say so with ``per_scene = False``.
SET_METRICS = ('FVD',)


def metric_type(name: str) -> str:
    """The ``METRICS`` type of a command-line metric name (raises for an unknown one)."""
    kind = METRIC_ALIASES.get(name, name)
    METRICS.get(kind)   # UnknownTypeError listing the valid entries
    return kind


def build_metrics(names: Sequence[str], options: Mapping[str, Mapping] | None = None
                  ) -> tuple[dict[str, BaseMetric], dict[str, str]]:
    """Build one metric per name: ``({name: metric}, {name: why unavailable})``.

    ``options``: keyword arguments per ``METRICS`` type (e.g. ``{'NovelViewLPIPS':
    {'vgg_checkpoint': ...}}``)."""
    options = options or {}
    built, unavailable = {}, {}
    for name in dict.fromkeys(names):
        kind = metric_type(name)
        try:
            built[name] = METRICS.build(dict(type=kind, **options.get(kind, {})))
        except UNAVAILABLE_ERRORS as error:
            unavailable[name] = f'{kind}: {type(error).__name__}: {error}'
    return built, unavailable


def _scores(metric: BaseMetric, results: list) -> dict[str, float | str]:
    """``prefix/key -> value``: numbers as floats, other values (notes, variants) as text."""
    values = metric.compute_metrics(results)
    prefix = f'{metric.prefix}/' if metric.prefix else ''
    return {prefix + key: float(value) if isinstance(value, (int, float, torch.Tensor)) else
            str(value) for key, value in values.items()}


def _per_scene(metric: BaseMetric) -> bool:
    return getattr(metric, 'per_scene', type(metric).__name__ not in SET_METRICS)


def _unique(name: object, index: int, seen: set[str]) -> str:
    name = f'scene_{index:05d}' if name is None else str(name)
    if name in seen:
        name = f'{name}#{index}'
    seen.add(name)
    return name


@torch.no_grad()
def evaluate(model: torch.nn.Module, batches: Iterable, metrics: Mapping[str, BaseMetric],
             num_scenes: int | None = None, seed: int = 0) -> dict:
    """Run ``model.test_step`` on every batch and score each output with every metric.

    torch's generator is seeded with ``seed + batch index`` before each batch, so a scene's
    generated videos do not depend on the scenes before it. Returns ``{'outputs': rows,
    'overall': {row: {score: value}}, 'per_scene': {row: {scene: {score: value}}},
    'scenes': count, 'seconds': wall time}``.
    """
    outputs: Mapping[str, str] = getattr(model, 'evaluation_outputs', {'pred': 'pred'})
    instances: dict[str, dict[str, BaseMetric]] = {}
    per_scene: dict[str, dict[str, dict[str, float]]] = {}
    seen: set[str] = set()
    model.eval()
    start = time.perf_counter()
    with tqdm(total=num_scenes, unit='scene', desc='evaluating', dynamic_ncols=True) as bar:
        for index, batch in enumerate(batches):
            torch.manual_seed(seed + index)
            for sample in model.test_step(batch):
                scene = _unique(sample.get('scene'), len(seen), seen)
                for row, key in outputs.items():
                    if key not in sample:
                        continue
                    row_metrics = instances.setdefault(
                        row, {name: copy.deepcopy(metric) for name, metric in metrics.items()})
                    item = dict(pred=sample[key], gt=sample.get('gt'), scene=scene)
                    scores = {}
                    for metric in row_metrics.values():
                        done = len(metric.results)
                        metric.process({}, [item])
                        if _per_scene(metric):
                            scores.update(_scores(metric, metric.results[done:]))
                    per_scene.setdefault(row, {})[scene] = scores
                bar.update(1)
    overall = {row: {k: v for metric in row_metrics.values()
                     for k, v in _scores(metric, metric.results).items()}
               for row, row_metrics in instances.items()}
    return dict(outputs=list(instances), overall=overall, per_scene=per_scene, scenes=len(seen),
                seconds=time.perf_counter() - start)


def _cell(value: float | None) -> str:
    if value is None:
        return ''
    if math.isinf(value) or math.isnan(value):
        return str(value)
    return f'{value:.4f}' if abs(value) < 1000 else f'{value:.1f}'


def markdown_table(report: Mapping) -> str:
    """Rows = outputs, columns = numeric scores (unavailable metrics as ``n/a`` columns)."""
    columns = list(dict.fromkeys(k for row in report['overall'].values() for k, v in row.items()
                                 if isinstance(v, float)))
    columns += list(report['unavailable'])
    lines = ['| output | ' + ' | '.join(columns) + ' |', '|---' * (len(columns) + 1) + '|']
    for row, scores in report['overall'].items():
        cells = [('n/a' if column in report['unavailable'] else _cell(scores.get(column)))
                 for column in columns]
        lines.append(f'| {row} | ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines)


def write_report(report: Mapping, out: str | Path) -> tuple[Path, Path]:
    """Write ``metrics.json`` (all of ``report``) and ``metrics.md`` (header and table) into
    ``out``; return their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    json_path, md_path = out / 'metrics.json', out / 'metrics.md'
    json_path.write_text(json.dumps(report, indent=2) + '\n')
    lines = [f"# Evaluation: {Path(report['checkpoint']).name}", '',
             f"- config: `{report['config']}`", f"- checkpoint: `{report['checkpoint']}`",
             f"- model: {report['model']}; split: {report['split']}; "
             f"{report['scenes']} scenes in {report['seconds']:.1f} s"]
    if report.get('steps') is not None:
        lines.append(f"- N-step and teacher rows: {report['steps']} denoising steps")
    lines += ['', markdown_table(report), '',
              'Per-scene scores: `per_scene` in metrics.json (one entry per output and scene).']
    notes = {f'{row} {key}: {value}' for row, scores in report['overall'].items()
             for key, value in scores.items() if isinstance(value, str)}
    if notes:
        lines += ['', 'Notes:'] + [f'- {note}' for note in sorted(notes)]
    if report['unavailable']:
        lines += ['', 'Unavailable metrics:']
        lines += [f'- {name}: {reason}' for name, reason in report['unavailable'].items()]
    md_path.write_text('\n'.join(lines) + '\n')
    return json_path, md_path
