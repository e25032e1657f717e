import os.path as osp
import sys

import pytest

REPO_ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if REPO_ROOT not in sys.path:  # `projects.*` plugins import from the repository root
    sys.path.insert(0, REPO_ROOT)


@pytest.fixture(scope='session')
def repo_root() -> str:
    return REPO_ROOT
