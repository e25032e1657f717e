"""A sweep's table in the paper's layout: one row per cell (its axis labels), one column per
score (the spec's ``metrics``: column -> ``'ROW:KEY'`` of the cell's ``metrics.json``; default:
every numeric ``'ROW:KEY'`` reported); written as ``results.md``, ``results.csv`` (full
precision, byte-stable: no timings) and ``results.png`` (matplotlib, a bar chart per column),
plus ``sweep.json`` with every cell's overrides, checkpoint, steps, scores and wall time."""
from __future__ import annotations

import csv
import io
import json
import math
import os.path as osp

from .spec import Spec

__all__ = ['write_report']


def _columns(spec: Spec, results: list[dict]) -> dict[str, str]:
    """Column name -> ``'ROW:KEY'``: the spec's ``metrics``, else every numeric score reported."""
    if spec.metrics is not None:
        return dict(spec.metrics)
    keys: dict[str, str] = {}
    for result in results:
        keys.update({key: key for key, value in result['metrics'].items()
                     if isinstance(value, (int, float)) and not isinstance(value, bool)})
    return keys


def _markdown_value(value) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.4f}'
    return str(value)


def _table(spec: Spec, results: list[dict]) -> tuple[list[str], list[list]]:
    axes = list(spec.cells[0].labels) if spec.cells else []
    columns = _columns(spec, results)
    header = [*axes, *columns]
    if not spec.evaluate:
        header.append('checkpoint')
    rows = []
    for result in results:
        row = [result['labels'][axis] for axis in axes]
        row += [result['metrics'].get(key) for key in columns.values()]
        if not spec.evaluate:
            row.append(result['checkpoint'])
        rows.append(row)
    return header, rows


def write_report(spec: Spec, results: list[dict]) -> dict[str, str]:
    """Write the table, the plot and ``sweep.json`` into ``spec.out``; return their paths."""
    header, rows = _table(spec, results)
    paths = {name: osp.join(spec.out, f'results.{name}') for name in ('md', 'csv', 'png')}
    paths['json'] = osp.join(spec.out, 'sweep.json')
    lines = ['| ' + ' | '.join(header) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(_markdown_value(v) for v in row) + ' |' for row in rows]
    with open(paths['md'], 'w') as file:
        file.write('\n'.join(lines) + '\n')
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator='\n')
    writer.writerow(header)
    writer.writerows([['' if v is None else v for v in row] for row in rows])
    with open(paths['csv'], 'w', newline='') as file:
        file.write(buffer.getvalue())
    _plot(spec, results, paths['png'])
    with open(paths['json'], 'w') as file:
        json.dump(dict(spec=spec.path, base=spec.base, cells=[
            dict(cell=cell.cell_id, train=cell.train_id, **result)
            for cell, result in zip(spec.cells, results)]), file, indent=2)
    return paths


def _plot(spec: Spec, results: list[dict], path: str) -> None:
    import matplotlib
    matplotlib.use('Agg')
    from matplotlib import pyplot as plt

    columns = _columns(spec, results)
    names = [' / '.join(result['labels'].values()) for result in results]
    count = max(1, len(columns))
    figure, axes = plt.subplots(1, count, figsize=(max(4.0, 0.6 * len(names) + 2) * count, 4),
                                squeeze=False)
    for axis, (column, key) in zip(axes[0], columns.items()):
        values = [result['metrics'].get(key) for result in results]
        shown = [isinstance(v, (int, float)) and math.isfinite(v) for v in values]
        bars = axis.bar(range(len(names)), [v if ok else 0.0 for v, ok in zip(values, shown)],
                        color=['tab:blue' if ok else 'none' for ok in shown])
        axis.bar_label(bars, labels=[f'{v:.4g}' if ok else '' for v, ok in zip(values, shown)],
                       fontsize=8)
        for index, ok in enumerate(shown):
            if not ok:    # missing or infinite: no bar, a note instead
                axis.annotate(str(values[index]), (index, 0), ha='center', va='bottom')
        axis.set_xticks(range(len(names)), names, rotation=30, ha='right', fontsize=8)
        axis.set_title(column)
    if not columns:
        axes[0][0].set_axis_off()
        axes[0][0].set_title('no metrics (evaluate=False)')
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)
