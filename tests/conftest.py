import os
import os.path as osp
import sys

import pytest
import torch

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # `projects.*` plugins import from the repository root
    sys.path.insert(0, REPO_ROOT)


if 'PYTEST_XDIST_WORKER' in os.environ:
    # `make test` runs one worker per core: one thread each (and in the tools they start), so the
    # workers do not oversubscribe the cores; tiny networks run faster single-threaded anyway.
    os.environ['OMP_NUM_THREADS'] = '1'
    torch.set_num_threads(1)


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO_ROOT
