"""Every shipped config parses, and plugins load from any working directory."""
import glob
import os.path as osp
import subprocess
import sys

import pytest
from mmengine import Config

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
CONFIGS = sorted(p for p in glob.glob(f'{REPO}/configs/**/*.py', recursive=True) +
                 glob.glob(f'{REPO}/projects/*/configs/*.py') if '/_base_/' not in p)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, REPO))
def test_config_parses_with_the_videoscene_scope(path):
    cfg = Config.fromfile(path)
    if 'model' in cfg:
        assert cfg.default_scope == 'videoscene'
        assert 'type' in cfg.model


def test_stage1_configs_swap_the_reconstructor():
    mvsplat = Config.fromfile(f'{REPO}/configs/mvsplat/mvsplat_re10k.py')
    pixelsplat = Config.fromfile(f'{REPO}/configs/pixelsplat/pixelsplat_re10k.py')
    assert mvsplat.model.reconstructor.type == 'MVSplat'
    assert pixelsplat.model.reconstructor == dict(type='pixelSplat')
    assert pixelsplat.model.renderer == mvsplat.model.renderer


def test_project_plugin_imports_from_another_working_directory(tmp_path):
    # Import videoscene, then take the repository off sys.path: only load_config may put it back.
    script = f"""
import argparse, importlib.util, sys
sys.path.insert(0, {REPO!r})
from videoscene.engine.config import load_config
from videoscene.registry import TIMESTEP_POLICIES
from videoscene.schedulers import DDIMScheduler
sys.path[:] = [p for p in sys.path if p not in ({REPO!r}, '')]
assert importlib.util.find_spec('projects') is None
args = argparse.Namespace(config={REPO!r} + '/projects/example_policy/configs/truncated_normal_policy.py',
                          cfg_options={{}}, launcher='none', work_dir=None)
policy = TIMESTEP_POLICIES.build(load_config(args).policy,
                                 default_args=dict(scheduler=DDIMScheduler(), latent_channels=4))
print(type(policy).__module__)
"""
    out = subprocess.run([sys.executable, '-c', script], cwd=tmp_path, capture_output=True,
                         text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == 'projects.example_policy.truncated_normal'
