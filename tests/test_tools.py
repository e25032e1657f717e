"""tools/train.py and tools/test.py: configs, overrides, errors and bit-exact resume."""
import argparse
import os
import subprocess
import sys
import textwrap

import pytest
import torch

from videoscene.engine.config import CfgOptionsAction, load_config

TRAIN = 'tools/train.py'
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_tool(repo_root, *args, env_path=None, check=True):
    env = None if env_path is None else {**os.environ, 'PYTHONPATH': str(env_path)}
    result = subprocess.run([sys.executable, *args], cwd=repo_root, capture_output=True,
                            text=True, env=env)
    if check and result.returncode != 0:
        raise AssertionError(f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return result


@pytest.fixture
def config_pair(tmp_path):
    (tmp_path / 'base.py').write_text(textwrap.dedent('''
        model = dict(type='Net', depth=4, head=dict(type='Head', channels=16))
        train_cfg = dict(max_iters=100)
        names = ['a', 'b']
    '''))
    (tmp_path / 'child.py').write_text(textwrap.dedent('''
        _base_ = ['./base.py']
        model = dict(head=dict(channels=32))
        extra = 1
    '''))
    return tmp_path / 'child.py'


def _args(config, *options, work_dir=None):
    parser = argparse.ArgumentParser()
    parser.add_argument('--o', nargs='+', action=CfgOptionsAction, default={})
    parsed = parser.parse_args(['--o', *options] if options else [])
    return argparse.Namespace(config=str(config), cfg_options=parsed.o, launcher='none',
                              work_dir=work_dir)


def test_config_inheritance_merges_dicts(config_pair):
    cfg = load_config(_args(config_pair))
    assert cfg.model.depth == 4 and cfg.model.head.channels == 32 and cfg.extra == 1
    assert cfg.train_cfg.max_iters == 100 and cfg.names == ['a', 'b']
    assert cfg.work_dir.endswith('child')


def test_cfg_options_override_nested_keys(config_pair):
    cfg = load_config(_args(config_pair, 'model.head.channels=8', 'train_cfg.max_iters=7',
                            "names=['x']", work_dir='/tmp/wd'))
    assert cfg.model.head.channels == 8 and cfg.model.head.type == 'Head'
    assert cfg.train_cfg.max_iters == 7 and cfg.names == ['x'] and cfg.work_dir == '/tmp/wd'


def test_missing_config_file_is_named(repo_root, tmp_path):
    result = run_tool(repo_root, TRAIN, str(tmp_path / 'nope.py'), check=False)
    assert result.returncode != 0
    assert 'Config file not found' in result.stderr and 'nope.py' in result.stderr


def test_malformed_cfg_options_are_explained(repo_root, config_pair):
    result = run_tool(repo_root, TRAIN, str(config_pair), '--cfg-options', 'train_cfg.max_iters',
                      check=False)
    assert result.returncode == 2
    assert "'train_cfg.max_iters' is not of the form key=value" in result.stderr


def test_cfg_options_warn_about_new_keys(config_pair):
    with pytest.warns(UserWarning, match="adds 'model.haed.channels'"):
        cfg = load_config(_args(config_pair, 'model.haed.channels=8'))
    assert cfg.model.haed.channels == 8  # added, as MMEngine does, but not silently


RESUME_PLUGIN = '''
import torch
from torch import nn
from mmengine.model import BaseModel
from videoscene.registry import MODELS


@MODELS.register_module()
class NoisyViewBlend(BaseModel):
    """Predicts each target view as a learned per-pixel blend of the two context views, with input
    noise: training draws random numbers every iteration, as diffusion training does."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 1, 3, padding=1))

    def forward(self, context, target, scene=None, mode='loss'):
        first, last = context['image'][:, 0], context['image'][:, 1]
        x = torch.cat([first, last], 1)
        weight = torch.sigmoid(self.net(x + 0.05 * torch.randn_like(x)))
        pred = weight * first + (1 - weight) * last
        return dict(loss=((pred[:, None] - target['image']) ** 2).mean())
'''


def _resume_config(tmp_path, max_iters):
    cache = tmp_path / 'cache'
    config = tmp_path / f'resume_{max_iters}.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = ['{REPO}/configs/_base_/default_runtime.py']
        custom_imports = dict(imports=['resume_plugin'], allow_failed_imports=False)
        model = dict(type='NoisyViewBlend')
        train_dataloader = dict(
            batch_size=2, num_workers=0,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='SyntheticScenes', cache_dir='{cache}', num_scenes=3, frames=24,
                         height=16, width=16,
                         view_sampler=dict(type='bounded', num_targets=2, min_gap=3, max_gap=12)))
        optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-2))
        train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters})
        default_hooks = dict(checkpoint=dict(interval=4), logger=dict(interval=2))
        randomness = dict(seed=123)
    '''))
    return config


def test_resume_is_bit_exact(repo_root, tmp_path):
    (tmp_path / 'resume_plugin.py').write_text(RESUME_PLUGIN)
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    run_tool(repo_root, TRAIN, str(_resume_config(tmp_path, 8)), '--work-dir', str(straight),
             env_path=tmp_path)
    run_tool(repo_root, TRAIN, str(_resume_config(tmp_path, 4)), '--work-dir', str(stopped),
             env_path=tmp_path)
    resumed = run_tool(repo_root, TRAIN, str(_resume_config(tmp_path, 8)), '--work-dir',
                       str(stopped), '--resume', env_path=tmp_path)
    assert 'resumed' in (resumed.stdout + resumed.stderr).lower()
    a = torch.load(straight / 'iter_8.pth', map_location='cpu', weights_only=False)
    b = torch.load(stopped / 'iter_8.pth', map_location='cpu', weights_only=False)
    assert b['meta']['iter'] == 8
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    # The two halves trained: weights moved away from the 4-iteration checkpoint.
    half = torch.load(stopped / 'iter_4.pth', map_location='cpu', weights_only=False)
    assert any(not torch.equal(v, half['state_dict'][k]) for k, v in a['state_dict'].items())
