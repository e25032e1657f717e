"""Ablation sweeps: a grid of config overrides and registry swaps, run cell by cell through
``tools/train.py`` / ``tools/test.py`` (its ``metrics.json`` report) and tabulated
(``tools/sweep.py``)."""
from .report import write_report
from .run import LAUNCHERS, SweepError, cell_result, read_scores, run_sweep
from .spec import Cell, Spec, SpecError, load_spec, split_score

__all__ = ['Cell', 'LAUNCHERS', 'Spec', 'SpecError', 'SweepError', 'cell_result', 'load_spec',
           'read_scores', 'run_sweep', 'split_score', 'write_report']
