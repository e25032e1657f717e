"""Running a sweep's cells through ``tools/train.py`` and ``tools/test.py``, resumably.

Layout of the output folder ``OUT``:

* ``OUT/train/<train id>/``: a training's work dir (``config.py``, checkpoints, logs,
  ``train.log`` with the tool's output); cells that differ only in ``test_axes`` share it;
* ``OUT/cells/<cell id>/``: a cell's evaluation (``config.py``, ``test.log``, and the report
  ``metrics.json`` / ``metrics.md`` of ``tools/test.py CONFIG CHECKPOINT --out <cell dir>
  [--metrics ...] [--steps N]``) and its completion marker ``result.json`` (labels, overrides,
  checkpoint, steps, every overall score as ``'ROW:KEY' -> value``, unavailable metrics);
* ``OUT/commands.sh``: with a cluster launcher, the commands instead of running them
  (``tools/test.py`` is one process: plain ``python``, or ``srun ... --ntasks=1``).

The ids hash the cell's resolved overrides and the base config's path (the cell id also its
``steps`` and the spec's ``test_metrics``). A cell with a ``result.json`` is never run again; a
training whose final checkpoint (``iter_<max_iters>.pth``) is complete is not rerun; any other
training runs with ``tools/train.py --resume``, which continues from the work dir's newest
complete checkpoint. Cells whose ``metrics.json`` a cluster job wrote are collected without
rerunning. Every cell's scores, finished before or not, must hold the spec's ``metrics``
columns, else :class:`SweepError` names the rows / keys its report has.
"""
from __future__ import annotations

import json
import os
import os.path as osp
import shlex
import subprocess
import sys
import time
from collections.abc import Callable

from videoscene.engine.checkpoint import checkpoint_problem
from videoscene.engine.config import REPO_ROOT
from videoscene.errors import VideoSceneError

from .spec import Cell, Spec, _plain, split_score

__all__ = ['SweepError', 'LAUNCHERS', 'run_sweep', 'read_scores', 'cell_result']

LAUNCHERS = ('none', 'pytorch', 'slurm')
RESULT, REPORT = 'result.json', 'metrics.json'
Execute = Callable[[list[str], str], int]   # (command, log file) -> exit status


class SweepError(VideoSceneError):
    """A cell's tool failed or its results lack what the spec asks for."""


def train_dir(spec: Spec, cell: Cell) -> str:
    return osp.join(spec.out, 'train', cell.train_id)


def cell_dir(spec: Spec, cell: Cell) -> str:
    return osp.join(spec.out, 'cells', cell.cell_id)


def _write_atomic(path: str, text: str) -> None:
    temporary = f'{path}.{os.getpid()}.partial'
    with open(temporary, 'w') as file:
        file.write(text)
    os.replace(temporary, path)


def _write_config(spec: Spec, options: dict, folder: str) -> tuple[str, object]:
    os.makedirs(folder, exist_ok=True)
    cfg = spec.config(options)
    path = osp.join(folder, 'config.py')
    _write_atomic(path, cfg.pretty_text)
    return path, cfg


def final_checkpoint(cfg, folder: str) -> str:
    """The checkpoint an iteration-based training ends with (MMEngine's ``save_last``)."""
    return osp.join(folder, f'iter_{cfg.train_cfg.max_iters}.pth')


def read_scores(path: str) -> dict:
    """A ``tools/test.py`` report (``metrics.json``) as ``{'scores': {'ROW:KEY': value},
    'unavailable': {metric: reason}, 'steps': N or None}`` (``overall`` flattened)."""
    with open(path) as file:
        report = json.load(file)
    scores = {f'{row}:{key}': value for row, values in report['overall'].items()
              for key, value in values.items()}
    return dict(scores=scores, unavailable=report.get('unavailable') or {},
                steps=report.get('steps'))


def report_path(spec: Spec, cell: Cell) -> str:
    return osp.join(cell_dir(spec, cell), REPORT)


def _launch(tool: str, arguments: list[str], launcher: str, python: str, gpus: int,
            srun_args: str) -> list[str]:
    if launcher == 'none':
        return [python, tool, *arguments]
    if launcher == 'pytorch':
        return [python, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}', tool,
                *arguments, '--launcher', 'pytorch']
    return ['srun', *shlex.split(srun_args), python, '-u', tool, *arguments,
            '--launcher', 'slurm']


def _launch_one(tool: str, arguments: list[str], launcher: str, python: str,
                srun_args: str) -> list[str]:
    """A one-process command (tools/test.py has no distributed evaluation)."""
    if launcher == 'slurm':
        return ['srun', *shlex.split(srun_args), '--ntasks=1', python, '-u', tool, *arguments]
    return [python, tool, *arguments]


class _Plan:
    """The configs and commands of one cell (written on construction)."""

    def __init__(self, spec: Spec, cell: Cell, launcher: str, python: str, gpus: int,
                 srun_args: str) -> None:
        self.folder = cell_dir(spec, cell)
        self.train = self.checkpoint = None
        if spec.train:
            work_dir = train_dir(spec, cell)
            config, cfg = _write_config(spec, cell.train_options, work_dir)
            self.checkpoint = final_checkpoint(cfg, work_dir)
            self.train = _launch('tools/train.py', [config, '--work-dir', work_dir, '--resume'],
                                 launcher, python, gpus, srun_args)
            self.train_log = osp.join(work_dir, 'train.log')
        else:
            self.checkpoint = spec.checkpoint
        self.test = None
        if spec.evaluate:
            config, _ = _write_config(spec, {**cell.train_options, **cell.test_options},
                                      self.folder)
            arguments = [config, self.checkpoint, '--work-dir', self.folder, '--out', self.folder]
            if spec.test_metrics:
                arguments += ['--metrics', *spec.test_metrics]
            if cell.steps is not None:
                arguments += ['--steps', str(cell.steps)]
            self.test = _launch_one('tools/test.py', arguments, launcher, python, srun_args)
        else:
            os.makedirs(self.folder, exist_ok=True)


def _subprocess(command: list[str], log: str) -> int:
    with open(log, 'a') as file:
        return subprocess.run(command, cwd=REPO_ROOT, stdout=file, stderr=subprocess.STDOUT,
                              env=os.environ.copy()).returncode


def _tail(path: str, lines: int = 30) -> str:
    with open(path, errors='replace') as file:
        return ''.join(file.readlines()[-lines:])


def _run(execute: Execute, command: list[str], log: str, what: str) -> None:
    print(f'  {what}: {shlex.join(command)}  (output: {log})', flush=True)
    status = execute(command, log)
    if status != 0:
        raise SweepError(f'{what} failed (exit status {status}); the end of {log}:\n{_tail(log)}')


def cell_result(spec: Spec, cell: Cell) -> dict | None:
    """The cell's completion marker, or None when it has not finished."""
    path = osp.join(cell_dir(spec, cell), RESULT)
    if not osp.isfile(path):
        return None
    with open(path) as file:
        return json.load(file)


def _check_columns(spec: Spec, result: dict, where: str) -> None:
    """The cell's scores hold every ``metrics`` column as a number; else name what is there."""
    name = ' / '.join(result['labels'].values())
    scores = result['metrics']
    rows: dict[str, list[str]] = {}
    for score in scores:
        row, key = split_score(score)
        rows.setdefault(row, []).append(key)
    for column, score in (spec.metrics or {}).items():
        row, key = split_score(score)
        problem = None
        if row not in rows:
            problem = f"no output row '{row}'; its rows: {', '.join(rows) or 'none'}"
        elif score not in scores:
            unavailable = ''.join(f'; unavailable: {metric} ({reason})' for metric, reason in
                                  result.get('unavailable', {}).items())
            problem = (f"row '{row}' has no score '{key}'; its scores: {', '.join(rows[row])}"
                       f'{unavailable}')
        elif isinstance(scores[score], bool) or not isinstance(scores[score], (int, float)):
            problem = f"'{score}' is not a number: {scores[score]!r}"
        if problem:
            raise SweepError(f"cell {name}: metrics column '{column}' ('{score}'): {where} has "
                             f'{problem}')


def _run_cell(spec: Spec, cell: Cell, plan: _Plan, execute: Execute) -> dict:
    start = time.perf_counter()
    name = ' / '.join(cell.labels.values())
    json_path = report_path(spec, cell)
    tested = plan.test is not None and osp.isfile(json_path)    # e.g. by a cluster job
    if plan.train is not None and not tested:
        if checkpoint_problem(plan.checkpoint) is not None:
            _run(execute, plan.train, plan.train_log, f'train {name}')
            problem = checkpoint_problem(plan.checkpoint)
            if problem is not None:
                raise SweepError(f'train {name}: tools/train.py finished but its final checkpoint '
                                 f'{plan.checkpoint} {problem} (keep default_hooks.checkpoint.'
                                 'save_last=True)')
        else:
            print(f'  train {name}: done before ({plan.checkpoint})', flush=True)
    report = dict(scores={}, unavailable={}, steps=None)
    if plan.test is not None:
        if not tested:
            _run(execute, plan.test, osp.join(plan.folder, 'test.log'), f'test {name}')
            if not osp.isfile(json_path):
                raise SweepError(f'test {name}: tools/test.py wrote no {json_path}')
        report = read_scores(json_path)
    result = dict(labels=cell.labels, train_options=cell.train_options,
                  test_options=cell.test_options, checkpoint=plan.checkpoint,
                  steps=report['steps'], metrics=report['scores'],
                  unavailable=report['unavailable'], seconds=round(time.perf_counter() - start, 1))
    _check_columns(spec, result, json_path)   # before the marker: a wrong column reruns nothing
    text = json.dumps(_plain(result), indent=2)
    _write_atomic(osp.join(plan.folder, RESULT), text)
    return json.loads(text)   # as a rerun reads it back


def run_sweep(spec: Spec, launcher: str = 'none', execute: Execute | None = None,
              python: str | None = None, gpus: int = 1, srun_args: str = '') -> list:
    """Run the cells of ``spec`` that have not finished, one after another, and return every
    cell's result (``launcher='none'``); with ``'pytorch'`` / ``'slurm'``, write the commands of
    the unfinished cells to ``OUT/commands.sh``, print them (one line per training, i.e. per
    cell unless cells share a training through ``test_axes``) and return them.

    ``execute(command, log)`` runs one tool (default: a subprocess in the repository root, its
    output appended to ``log``).
    """
    if launcher not in LAUNCHERS:
        raise ValueError(f'launcher must be one of {LAUNCHERS}, got {launcher!r}')
    python = python or sys.executable
    plans = [_Plan(spec, cell, launcher, python, gpus, srun_args) for cell in spec.cells]
    if launcher != 'none':
        return _write_commands(spec, plans)
    execute = execute or _subprocess
    results = []
    for index, (cell, plan) in enumerate(zip(spec.cells, plans)):
        name = ' / '.join(cell.labels.values())
        result = cell_result(spec, cell)
        if result is not None:
            print(f'[{index + 1}/{len(plans)}] {name}: finished before ({plan.folder})', flush=True)
            _check_columns(spec, result, osp.join(plan.folder, RESULT))
        else:
            print(f'[{index + 1}/{len(plans)}] {name} -> {plan.folder}', flush=True)
            result = _run_cell(spec, cell, plan, execute)
        results.append(result)
    return results


def _write_commands(spec: Spec, plans: list[_Plan]) -> list[str]:
    lines, trained = [], {}
    for cell, plan in zip(spec.cells, plans):
        if cell_result(spec, cell) is not None:
            continue
        steps = [] if plan.test is None or osp.isfile(report_path(spec, cell)) else [plan.test]
        if plan.train is not None:
            if cell.train_id in trained:          # a shared training: its line runs this test too
                lines[trained[cell.train_id]] += [shlex.join(step) for step in steps]
                continue
            trained[cell.train_id] = len(lines)
            steps.insert(0, plan.train)
        lines.append([shlex.join(step) for step in steps])
    commands = [' && '.join(steps) for steps in lines if steps]
    text = (f'# {spec.path}: run from {REPO_ROOT}, then `python tools/sweep.py {spec.path} '
            f'--out {spec.out}` collects the results\n' + ''.join(f'{line}\n' for line in commands))
    os.makedirs(spec.out, exist_ok=True)
    _write_atomic(osp.join(spec.out, 'commands.sh'), text)
    print(text, end='', flush=True)
    return commands
