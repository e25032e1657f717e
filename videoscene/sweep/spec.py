"""Sweep specs: a Python config naming a base config and the axes of an ablation grid.

A spec (read with MMEngine's ``Config.fromfile``; ``.py`` is the documented format)::

    base = 'configs/distillation/tiny_cogvideox_synthetic.py'  # repository root or absolute
    options = {'train_cfg.max_iters': 100}                     # every cell (optional)
    axes = dict(                                               # trained: one training per value
        policy=[
            {'label': 'DDPNet', 'model.policy.type': 'DDPNet'},
            {'label': 'fixed t=549', 'model.policy': dict(type='fixed', t=549)},  # a type swap
            {'label': 'random', 'model.policy': dict(type='random', max_timestep=799)},
        ])
    test_axes = dict(         # inference-time only: applied to tools/test.py on the trained cell
        steps=[{'label': '4 steps', 'steps': 4}, {'label': '8 steps', 'steps': 8}])
    train = True              # False: every cell evaluates ``checkpoint`` (axes act at test time)
    checkpoint = None
    evaluate = True           # run tools/test.py on each cell
    test_metrics = ['psnr', 'ssim']   # tools/test.py --metrics (default: test_evaluator's)
    metrics = {'PSNR 1-step': '1-step:novel_view/psnr',     # column -> 'row:score key' of
               'PSNR N-step': 'N-step:novel_view/psnr'}     # metrics.json's overall
    out = 'work_dirs/sweeps/my_sweep'   # default work_dirs/sweeps/<spec file name>
    custom_imports = dict(imports=['projects.example_policy'])  # plugins (optional)

Each axis value is a dict of ``--cfg-options`` style overrides (dotted keys, list indices as
numbers) plus an optional ``label`` (its name in the table).  A value that is a dict with a
``type`` replaces that config entry whole (a registry swap: no argument of the old type is kept).
An inference-time value (``test_axes``, or any axis when ``train=False``) may also set
``steps``: ``tools/test.py --steps N``, the model's ``sample_steps`` (``N-step`` and ``teacher``
rows; models in ``STEPPED_MODELS`` only).

Each cell is evaluated by ``tools/test.py CONFIG CHECKPOINT --out CELL_DIR [--metrics ...]
[--steps N]``, which writes ``CELL_DIR/metrics.json``. A column of the table is one score of its
``overall``, written ``'ROW:KEY'``: the output row (``render``, ``1-step``, ``N-step``,
``teacher``: the model's ``evaluation_outputs``) and the score key (``novel_view/psnr``).
``metrics`` is a dict column name -> ``'ROW:KEY'``, or a list of ``'ROW:KEY'`` (the column is
named so); left out, every numeric score is a column. Metric arguments (weight files) are
overrides like any other: ``{'metric_options.NovelViewLPIPS.vgg_checkpoint': PATH}``.

:func:`load_spec` checks everything a run could trip over later and raises :class:`SpecError`
naming the problem before anything runs: a missing base config, an empty grid or axis,
duplicate labels, two axes (or an axis and ``options``) setting the same key or one inside the
other (``steps`` counts as ``model.sample_steps``), config keys that neither the base config nor
the built class (``type``) has, ``type`` names no registry holds (after the base config's and the
spec's ``custom_imports``), unknown ``test_metrics``, a ``metrics`` entry that is not
``'ROW:KEY'`` or names a row the cell's model does not output, and ``steps`` on a model without
denoising steps. Score keys are checked when a cell's report is read (a wrong one names the keys
reported).
"""
from __future__ import annotations

import hashlib
import itertools
import json
import os.path as osp
import sys
from dataclasses import dataclass, field

from mmengine.config import Config, ConfigDict
from mmengine.utils import import_modules_from_strings

from videoscene.engine.config import REPO_ROOT
from videoscene.evaluation.report import STEPPED_MODELS, metric_type
from videoscene.registry import MODELS, UnknownTypeError

from .checks import SpecError, check_options, is_swap

__all__ = ['SpecError', 'Cell', 'Spec', 'load_spec', 'split_score']

SPEC_KEYS = {'base', 'options', 'axes', 'test_axes', 'train', 'checkpoint', 'evaluate', 'metrics',
             'test_metrics', 'out', 'custom_imports'}
STEPS_KEY = 'model.sample_steps'   # what an axis value's ``steps`` sets (tools/test.py --steps)


@dataclass
class Cell:
    """One row of the table: the labels of its axis values and its resolved overrides."""

    labels: dict[str, str]          # axis name -> value label (training axes, then test axes)
    train_options: dict             # common + training-axis overrides
    test_options: dict              # inference-time overrides on top of ``train_options``
    train_id: str | None            # hash naming the training work dir (None: no training)
    cell_id: str                    # hash naming the cell's evaluation folder
    steps: int | None = None        # tools/test.py --steps (None: the config's sample_steps)


@dataclass
class Spec:
    path: str
    base: str                       # resolved base config path
    out: str
    train: bool
    evaluate: bool
    checkpoint: str | None
    metrics: dict[str, str] | None  # column name -> 'ROW:KEY'; None: every numeric score
    axes: dict[str, list[dict]]
    test_axes: dict[str, list[dict]]
    cells: list[Cell] = field(default_factory=list)
    custom_imports: dict | None = None
    test_metrics: list[str] | None = None   # tools/test.py --metrics; None: test_evaluator's

    def config(self, options: dict) -> Config:
        """The base config with ``options`` (resolved overrides) merged in."""
        cfg = Config.fromfile(self.base)
        cfg.merge_from_dict(_with_swaps(options))
        if self.custom_imports:   # the spec's plugins go into every cell's config
            imports = list((cfg.get('custom_imports') or {}).get('imports', []))
            imports += [m for m in self.custom_imports.get('imports', []) if m not in imports]
            cfg.custom_imports = dict(imports=imports, allow_failed_imports=False)
        return cfg


def digest(*parts) -> str:
    """A short stable hash of JSON-able ``parts`` (cell folder names)."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=repr).encode()).hexdigest()[:10]


def _plain(value):
    """ConfigDicts as plain dicts, recursively (lists and tuples kept)."""
    if isinstance(value, (dict, ConfigDict)):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain(v) for v in value)
    return value


def _with_swaps(options: dict) -> dict:
    """Overrides for ``Config.merge_from_dict``: a dict value with a ``type`` replaces its entry."""
    return {key: (dict(value, _delete_=True) if is_swap(value) else value)
            for key, value in options.items()}


def _overlap(a: str, b: str) -> bool:
    """Whether setting key ``a`` and key ``b`` touch the same entry (equal or one inside the other)."""
    return a == b or a.startswith(b + '.') or b.startswith(a + '.')


def split_score(name: str) -> tuple[str, str]:
    """``'ROW:KEY'`` -> (output row, score key), split at the first colon."""
    row, _, key = name.partition(':')
    return row, key


def _read_axes(raw, field_name: str, where: str, steps_allowed: bool
               ) -> dict[str, list[dict]]:
    """``axes`` / ``test_axes``: axis name -> [dict(label=..., options={dotted key: value},
    steps=N or None)]."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise SpecError(where, f"'{field_name}' must be a dict: axis name -> list of values")
    name = 'axis' if field_name == 'axes' else 'test axis'
    axes = {}
    for axis, values in raw.items():
        if not isinstance(values, (list, tuple)) or not values:
            raise SpecError(where, f"{name} '{axis}' is empty: give a list of at least one value "
                            "(a dict of overrides, e.g. {'label': 'fixed', 'model.policy': "
                            "dict(type='fixed', t=549)})")
        parsed, labels = [], set()
        for index, value in enumerate(values):
            if not isinstance(value, dict):
                raise SpecError(where, f"{name} '{axis}' value {index} must be a dict of overrides, "
                                f'got {value!r}')
            value = _plain(value)
            steps = value.get('steps')
            if 'steps' in value and not steps_allowed:
                raise SpecError(where, f"{name} '{axis}' value {index} sets 'steps' (tools/test.py "
                                '--steps), which acts at evaluation only: put it in test_axes')
            if 'steps' in value and (isinstance(steps, bool) or not isinstance(steps, int)
                                     or steps < 1):
                raise SpecError(where, f"{name} '{axis}' value {index}: 'steps' must be a positive "
                                f'integer (tools/test.py --steps), got {steps!r}')
            options = {k: v for k, v in value.items() if k not in ('label', 'steps')}
            if not options and steps is None:
                raise SpecError(where, f"{name} '{axis}' value {index} sets no config key")
            shown = {**options, **({'steps': steps} if steps is not None else {})}
            label = str(value.get('label') or ', '.join(f'{k}={_short(v)}' for k, v in
                                                        shown.items()))
            if label in labels:
                raise SpecError(where, f"{name} '{axis}' has the label '{label}' twice")
            labels.add(label)
            parsed.append(dict(label=label, options=options, steps=steps))
        axes[str(axis)] = parsed
    return axes


def _read_metrics(raw, where: str) -> dict[str, str] | None:
    """``metrics``: column name -> ``'ROW:KEY'`` (a list names each column by its string)."""
    if raw is None:
        return None
    raw = _plain(raw)
    metrics = raw if isinstance(raw, dict) else (
        {m: m for m in raw} if isinstance(raw, (list, tuple)) else None)
    if metrics is None:
        raise SpecError(where, "'metrics' must be a dict (column name -> 'ROW:KEY') or a list of "
                        f"'ROW:KEY', got {raw!r}")
    if not metrics:
        raise SpecError(where, "'metrics' is empty: list the scores to tabulate, or leave it out "
                        'for all of them')
    for column, score in metrics.items():
        if not isinstance(score, str) or not all(split_score(score)):
            raise SpecError(where, f"metrics column '{column}': {score!r} is not 'ROW:KEY' (an "
                            "output row of metrics.json's overall and its score key, e.g. "
                            "'1-step:novel_view/psnr')")
    return {str(column): score for column, score in metrics.items()}


def _read_test_metrics(raw, where: str) -> list[str] | None:
    """``test_metrics``: tools/test.py ``--metrics`` names, each known to ``METRICS``."""
    if raw is None:
        return None
    if isinstance(raw, str) or not isinstance(raw, (list, tuple)) or not raw:
        raise SpecError(where, "'test_metrics' must be a non-empty list of tools/test.py "
                        f"--metrics names (e.g. ['psnr', 'ssim']), got {raw!r}")
    for name in raw:
        try:
            metric_type(str(name))
        except UnknownTypeError as error:
            raise SpecError(where, f'test_metrics: {error}') from None
    return [str(name) for name in raw]


def _short(value) -> str:
    if is_swap(value):
        rest = ', '.join(f'{k}={v}' for k, v in value.items() if k != 'type')
        return f"{value['type']}({rest})"
    return str(value)


def _check_conflicts(common: dict, axes: dict[str, list[dict]], where: str) -> None:
    """No two axes (nor an axis and ``options``) may set the same key or one inside the other."""
    owners: list[tuple[str, str]] = [(key, 'options') for key in common]
    for axis, values in axes.items():
        keys = sorted({key for value in values
                       for key in [*value['options'], *([STEPS_KEY] if value['steps'] else [])]})
        for key in keys:
            for other, owner in owners:
                if owner != axis and _overlap(key, other):
                    raise SpecError(where, f"conflicting keys: axis '{axis}' sets '{key}' and "
                                    f"{'' if owner == 'options' else 'axis '}'{owner}' sets "
                                    f"'{other}'; an entry may be set by one axis only")
        owners += [(key, axis) for key in keys]


def _resolve_base(base, where: str) -> str:
    if not base or not isinstance(base, str):
        raise SpecError(where, "missing 'base': the config file every cell starts from, e.g. "
                        "base = 'configs/mvsplat/mvsplat_synthetic_cpu.py'")
    candidates = [base] if osp.isabs(base) else list(dict.fromkeys(
        [osp.abspath(base), osp.join(REPO_ROOT, base)]))
    for candidate in candidates:
        if osp.isfile(candidate):
            return candidate
    raise SpecError(where, f"base config not found: {base} (looked at {', '.join(candidates)})")


def _import_plugins(custom_imports, where: str) -> None:
    if not custom_imports:
        return
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    try:
        import_modules_from_strings(**custom_imports)
    except ImportError as error:
        raise SpecError(where, f'custom_imports: {error}') from None


def load_spec(path: str, out: str | None = None) -> Spec:
    """Read and check the spec at ``path`` and expand its grid into :class:`Cell` s.

    ``out`` overrides the spec's output folder.

    Raises:
        SpecError: the spec (or a cell it makes) cannot run; nothing has been run or written.
    """
    where = f'sweep spec {path}'
    if not osp.isfile(path):
        raise SpecError(path, 'sweep spec not found')
    raw = Config.fromfile(path)
    unknown = set(raw.keys()) - SPEC_KEYS
    if unknown:
        raise SpecError(where, f"unknown spec field(s) {sorted(unknown)}; the fields are "
                        f'{sorted(SPEC_KEYS)}')
    base = _resolve_base(raw.get('base'), where)
    base_cfg = Config.fromfile(base)
    _import_plugins(base_cfg.get('custom_imports'), where)
    _import_plugins(_plain(raw.get('custom_imports')), where)
    import mmengine.runner  # noqa: F401  (registers torch's optimizers and MMEngine's hooks)

    train, evaluate = bool(raw.get('train', True)), bool(raw.get('evaluate', True))
    checkpoint = raw.get('checkpoint')
    if not train and not evaluate:
        raise SpecError(where, 'train and evaluate are both False: the cells would do nothing')
    if not train and not checkpoint:
        raise SpecError(where, "train=False needs 'checkpoint': the file every cell evaluates")
    if not train:
        if not osp.isfile(checkpoint):
            raise SpecError(where, f'checkpoint not found: {checkpoint}')
        checkpoint = osp.abspath(checkpoint)
    common = _plain(raw.get('options') or {})
    if not isinstance(common, dict):
        raise SpecError(where, "'options' must be a dict of overrides (dotted keys)")
    axes = _read_axes(raw.get('axes'), 'axes', where, steps_allowed=not train)
    test_axes = _read_axes(raw.get('test_axes'), 'test_axes', where, steps_allowed=True)
    if not axes and not test_axes:
        raise SpecError(where, "empty grid: give 'axes' (and/or 'test_axes'), each axis a "
                        'non-empty list of values')
    if test_axes and not evaluate:
        raise SpecError(where, 'test_axes act at evaluation only: set evaluate=True')
    overlapping = set(axes) & set(test_axes)
    if overlapping:
        raise SpecError(where, f'axis name(s) {sorted(overlapping)} in both axes and test_axes')
    _check_conflicts(common, {**axes, **test_axes}, where)
    metrics = _read_metrics(raw.get('metrics'), where)
    test_metrics = _read_test_metrics(raw.get('test_metrics'), where)
    if (metrics or test_metrics) and not evaluate:
        raise SpecError(where, 'metrics and test_metrics need evaluate=True')
    out = osp.abspath(out or raw.get('out') or osp.join('work_dirs', 'sweeps',
                                                        osp.splitext(osp.basename(path))[0]))
    spec = Spec(path=path, base=base, out=out, train=train, evaluate=evaluate,
                checkpoint=checkpoint, metrics=metrics, axes=axes, test_axes=test_axes,
                custom_imports=_plain(raw.get('custom_imports')), test_metrics=test_metrics)
    spec.cells = _expand(spec, common, base_cfg, where)
    return spec


def _expand(spec: Spec, common: dict, base_cfg: Config, where: str) -> list[Cell]:
    """Every combination of axis values, checked against the base config."""
    base_dict = base_cfg.to_dict()
    base_name = osp.relpath(spec.base, REPO_ROOT) if spec.base.startswith(REPO_ROOT) else spec.base
    train_axes = spec.axes if spec.train else {}
    test_axes = spec.test_axes if spec.train else {**spec.axes, **spec.test_axes}
    cells = []
    for train_values in itertools.product(*train_axes.values()):
        train_options = dict(common)
        for value in train_values:
            train_options.update(value['options'])
        for test_values in itertools.product(*test_axes.values()):
            test_options, steps = {}, None
            for value in test_values:
                test_options.update(value['options'])
                steps = value['steps'] or steps
            options = {**train_options, **test_options}
            labels = [v['label'] for v in (*train_values, *test_values)]
            cell_where = f"{where}, cell {' / '.join(labels)}"
            merged = spec.config(options).to_dict()
            check_options(options, base_dict, merged, cell_where)
            _check_evaluation(spec, merged.get('model') or {}, steps, cell_where)
            if spec.train and (merged.get('train_cfg') or {}).get('max_iters') is None:
                raise SpecError(cell_where, 'training cells need an iteration-based train_cfg '
                                '(max_iters): the sweep evaluates iter_<max_iters>.pth')
            train_id = digest(base_name, train_options) if spec.train else None
            tested = [spec.test_metrics, steps] if spec.test_metrics or steps else []
            cell_id = digest(base_name, train_options, test_options, spec.checkpoint, *tested)
            cells.append(Cell(labels=dict(zip([*train_axes, *test_axes], labels)),
                              train_options=train_options, test_options=test_options,
                              train_id=train_id, cell_id=cell_id, steps=steps))
    return cells


def _check_evaluation(spec: Spec, model: dict, steps: int | None, where: str) -> None:
    """``steps`` needs a model with denoising steps; every ``metrics`` row must be one of the
    model's ``evaluation_outputs`` (the rows of its report)."""
    kind = model.get('type')
    if steps is not None and kind not in STEPPED_MODELS:
        raise SpecError(where, f"'steps' (tools/test.py --steps): {kind} has no denoising steps "
                        f"(only {', '.join(STEPPED_MODELS)})")
    if not spec.metrics or not isinstance(kind, str):
        return
    rows = getattr(MODELS.get(kind), 'evaluation_outputs', {'pred': 'pred'})
    for column, score in spec.metrics.items():
        if split_score(score)[0] not in rows:
            raise SpecError(where, f"metrics column '{column}': {kind} has no output row "
                            f"'{split_score(score)[0]}' (its rows: {', '.join(rows)})")
