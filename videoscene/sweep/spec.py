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
    test_axes = dict()        # inference-time only: applied to tools/test.py on the trained cell
    train = True              # False: every cell evaluates ``checkpoint`` (axes act at test time)
    checkpoint = None
    evaluate = True           # run tools/test.py on each cell
    metrics = ['novel_view/psnr']   # or dict(PSNR='novel_view/psnr'); default: all reported
    out = 'work_dirs/sweeps/my_sweep'   # default work_dirs/sweeps/<spec file name>
    custom_imports = dict(imports=['projects.example_policy'])  # plugins (optional)

Each axis value is a dict of ``--cfg-options`` style overrides (dotted keys, list indices as
numbers) plus an optional ``label`` (its name in the table).  A value that is a dict with a
``type`` replaces that config entry whole (a registry swap: no argument of the old type is kept).

:func:`load_spec` checks everything a run could trip over later and raises :class:`SpecError`
naming the problem before anything runs: a missing base config, an empty grid or axis,
duplicate labels, two axes (or an axis and ``options``) setting the same key or one inside the
other, config keys that neither the base config nor the built class (``type``) has, and ``type``
names no registry holds (after the base config's and the spec's ``custom_imports``).
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

from .checks import SpecError, check_options, is_swap

__all__ = ['SpecError', 'Cell', 'Spec', 'load_spec']

SPEC_KEYS = {'base', 'options', 'axes', 'test_axes', 'train', 'checkpoint', 'evaluate', 'metrics',
             'out', 'custom_imports'}


@dataclass
class Cell:
    """One row of the table: the labels of its axis values and its resolved overrides."""

    labels: dict[str, str]          # axis name -> value label (training axes, then test axes)
    train_options: dict             # common + training-axis overrides
    test_options: dict              # inference-time overrides on top of ``train_options``
    train_id: str | None            # hash naming the training work dir (None: no training)
    cell_id: str                    # hash naming the cell's evaluation folder


@dataclass
class Spec:
    path: str
    base: str                       # resolved base config path
    out: str
    train: bool
    evaluate: bool
    checkpoint: str | None
    metrics: dict[str, str] | None  # column name -> result key; None: every reported key
    axes: dict[str, list[dict]]
    test_axes: dict[str, list[dict]]
    cells: list[Cell] = field(default_factory=list)
    custom_imports: dict | None = None

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


def _read_axes(raw, field_name: str, where: str) -> dict[str, list[dict]]:
    """``axes`` / ``test_axes``: axis name -> [dict(label=..., options={dotted key: value})]."""
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
            options = {k: v for k, v in value.items() if k != 'label'}
            if not options:
                raise SpecError(where, f"{name} '{axis}' value {index} sets no config key")
            label = str(value.get('label') or ', '.join(f'{k}={_short(v)}' for k, v in
                                                        options.items()))
            if label in labels:
                raise SpecError(where, f"{name} '{axis}' has the label '{label}' twice")
            labels.add(label)
            parsed.append(dict(label=label, options=options))
        axes[str(axis)] = parsed
    return axes


def _short(value) -> str:
    if is_swap(value):
        rest = ', '.join(f'{k}={v}' for k, v in value.items() if k != 'type')
        return f"{value['type']}({rest})"
    return str(value)


def _check_conflicts(common: dict, axes: dict[str, list[dict]], where: str) -> None:
    """No two axes (nor an axis and ``options``) may set the same key or one inside the other."""
    owners: list[tuple[str, str]] = [(key, 'options') for key in common]
    for axis, values in axes.items():
        keys = sorted({key for value in values for key in value['options']})
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
    axes = _read_axes(raw.get('axes'), 'axes', where)
    test_axes = _read_axes(raw.get('test_axes'), 'test_axes', where)
    if not axes and not test_axes:
        raise SpecError(where, "empty grid: give 'axes' (and/or 'test_axes'), each axis a "
                        'non-empty list of values')
    if test_axes and not evaluate:
        raise SpecError(where, 'test_axes act at evaluation only: set evaluate=True')
    overlapping = set(axes) & set(test_axes)
    if overlapping:
        raise SpecError(where, f'axis name(s) {sorted(overlapping)} in both axes and test_axes')
    _check_conflicts(common, {**axes, **test_axes}, where)
    metrics = raw.get('metrics')
    if metrics is not None:
        metrics = dict(metrics) if isinstance(metrics, dict) else {str(m): str(m) for m in metrics}
        if not metrics:
            raise SpecError(where, "'metrics' is empty: list the result keys to tabulate, or "
                            'leave it out for all of them')
    out = osp.abspath(out or raw.get('out') or osp.join('work_dirs', 'sweeps',
                                                        osp.splitext(osp.basename(path))[0]))
    spec = Spec(path=path, base=base, out=out, train=train, evaluate=evaluate,
                checkpoint=checkpoint, metrics=metrics, axes=axes, test_axes=test_axes,
                custom_imports=_plain(raw.get('custom_imports')))
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
            test_options = {}
            for value in test_values:
                test_options.update(value['options'])
            options = {**train_options, **test_options}
            labels = [v['label'] for v in (*train_values, *test_values)]
            cell_where = f"{where}, cell {' / '.join(labels)}"
            merged = spec.config(options).to_dict()
            check_options(options, base_dict, merged, cell_where)
            if spec.train and (merged.get('train_cfg') or {}).get('max_iters') is None:
                raise SpecError(cell_where, 'training cells need an iteration-based train_cfg '
                                '(max_iters): the sweep evaluates iter_<max_iters>.pth')
            train_id = digest(base_name, train_options) if spec.train else None
            cell_id = digest(base_name, train_options, test_options, spec.checkpoint)
            cells.append(Cell(labels=dict(zip([*train_axes, *test_axes], labels)),
                              train_options=train_options, test_options=test_options,
                              train_id=train_id, cell_id=cell_id))
    return cells
