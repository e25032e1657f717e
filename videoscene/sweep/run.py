"""Running a sweep's cells through ``tools/train.py`` and ``tools/test.py``, resumably.

Layout of the output folder ``OUT``:

* ``OUT/train/<train id>/``: a training's work dir (``config.py``, checkpoints, logs,
  ``train.log`` with the tool's output); cells that differ only in ``test_axes`` share it;
* ``OUT/cells/<cell id>/``: a cell's evaluation (``config.py``, ``test.log``,
  ``test_metrics.json`` written by ``tools/test.py --out-json``) and its completion marker
  ``result.json`` (labels, overrides, checkpoint, metrics);
* ``OUT/commands.sh``: with a cluster launcher, the commands instead of running them.

The ids hash the cell's resolved overrides and the base config's path. A cell with a
``result.json`` is never run again; a training whose final checkpoint (``iter_<max_iters>.pth``)
is complete is not rerun; any other training runs with ``tools/train.py --resume``, which
continues from the work dir's newest complete checkpoint. Cells whose ``test_metrics.json``
a cluster job wrote are collected without rerunning.
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

from .spec import Cell, Spec, _plain

__all__ = ['SweepError', 'LAUNCHERS', 'run_sweep', 'read_test_metrics', 'cell_result']

LAUNCHERS = ('none', 'pytorch', 'slurm')
RESULT, TEST_METRICS = 'result.json', 'test_metrics.json'
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


def read_test_metrics(path: str) -> dict:
    """The metrics ``tools/test.py --out-json`` wrote (MMEngine's ``runner.test()`` dict)."""
    with open(path) as file:
        return json.load(file)


def test_metrics_path(spec: Spec, cell: Cell) -> str:
    return osp.join(cell_dir(spec, cell), TEST_METRICS)


def _launch(tool: str, arguments: list[str], launcher: str, python: str, gpus: int,
            srun_args: str) -> list[str]:
    if launcher == 'none':
        return [python, tool, *arguments]
    if launcher == 'pytorch':
        return [python, '-m', 'torch.distributed.run', f'--nproc_per_node={gpus}', tool,
                *arguments, '--launcher', 'pytorch']
    return ['srun', *shlex.split(srun_args), python, '-u', tool, *arguments,
            '--launcher', 'slurm']


class _Plan:
    """The configs and commands of one cell (written on construction)."""

    def __init__(self, spec: Spec, cell: Cell, launcher: str, python: str, gpus: int,
                 srun_args: str) -> None:
        launch = (lambda tool, args: _launch(tool, args, launcher, python, gpus, srun_args))
        self.folder = cell_dir(spec, cell)
        self.train = self.checkpoint = None
        if spec.train:
            work_dir = train_dir(spec, cell)
            config, cfg = _write_config(spec, cell.train_options, work_dir)
            self.checkpoint = final_checkpoint(cfg, work_dir)
            self.train = launch('tools/train.py', [config, '--work-dir', work_dir, '--resume'])
            self.train_log = osp.join(work_dir, 'train.log')
        else:
            self.checkpoint = spec.checkpoint
        self.test = None
        if spec.evaluate:
            config, _ = _write_config(spec, {**cell.train_options, **cell.test_options},
                                      self.folder)
            self.test = launch('tools/test.py', [config, self.checkpoint, '--work-dir',
                                                 self.folder, '--out-json',
                                                 test_metrics_path(spec, cell)])
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


def _select(spec: Spec, cell: Cell, metrics: dict, source: str) -> dict:
    if spec.metrics is None:
        return metrics
    missing = [key for key in spec.metrics.values() if key not in metrics]
    if missing:
        raise SweepError(f"cell {' / '.join(cell.labels.values())}: {source} has no metric(s) "
                         f'{missing}; it reports {sorted(metrics)}')
    return {key: metrics[key] for key in spec.metrics.values()}


def _run_cell(spec: Spec, cell: Cell, plan: _Plan, execute: Execute) -> dict:
    start = time.perf_counter()
    name = ' / '.join(cell.labels.values())
    json_path = test_metrics_path(spec, cell)
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
    metrics = {}
    if plan.test is not None:
        if not tested:
            _run(execute, plan.test, osp.join(plan.folder, 'test.log'), f'test {name}')
            if not osp.isfile(json_path):
                raise SweepError(f'test {name}: tools/test.py wrote no {json_path}')
        metrics = _select(spec, cell, read_test_metrics(json_path), json_path)
    result = dict(labels=cell.labels, train_options=cell.train_options,
                  test_options=cell.test_options, checkpoint=plan.checkpoint, metrics=metrics,
                  seconds=round(time.perf_counter() - start, 1))
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
        steps = [] if plan.test is None or osp.isfile(test_metrics_path(spec, cell)) else [plan.test]
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
