"""Ablation sweeps: a grid of config overrides and registry swaps, run cell by cell through
``tools/train.py`` / ``tools/test.py`` and tabulated (``tools/sweep.py``)."""
from .report import write_report
from .run import LAUNCHERS, SweepError, cell_result, read_test_metrics, run_sweep
from .spec import Cell, Spec, SpecError, load_spec

__all__ = ['Cell', 'LAUNCHERS', 'Spec', 'SpecError', 'SweepError', 'cell_result', 'load_spec',
           'read_test_metrics', 'run_sweep', 'write_report']
