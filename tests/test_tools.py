"""tools/train.py and tools/test.py: configs, overrides, errors and bit-exact resume."""
import argparse
import math
import re
import textwrap

import pytest
import torch
from _engine_runs import (REPO, TEST, TRAIN, assert_same_weights, run_tool, stage1_config,
                          toy_config, weights)

from videoscene.engine.config import CfgOptionsAction, load_config


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


def test_missing_config_file_is_named(tmp_path):
    result = run_tool(TRAIN, tmp_path / 'nope.py', check=False)
    assert result.returncode != 0
    assert 'Config file not found' in result.stderr and 'nope.py' in result.stderr


def test_malformed_cfg_options_are_explained(config_pair):
    result = run_tool(TRAIN, config_pair, '--cfg-options', 'train_cfg.max_iters', check=False)
    assert result.returncode == 2
    assert "'train_cfg.max_iters' is not of the form key=value" in result.stderr


def test_cfg_options_warn_about_new_keys(config_pair):
    with pytest.warns(UserWarning, match="adds 'model.haed.channels'"):
        cfg = load_config(_args(config_pair, 'model.haed.channels=8'))
    assert cfg.model.haed.channels == 8  # added, as MMEngine does, but not silently




def test_resume_is_bit_exact(tmp_path):
    env = {'PYTHONPATH': str(tmp_path)}
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    run_tool(TRAIN, toy_config(tmp_path, 8), '--work-dir', straight, env=env)
    run_tool(TRAIN, toy_config(tmp_path, 4), '--work-dir', stopped, env=env)
    resumed = run_tool(TRAIN, toy_config(tmp_path, 8), '--work-dir', stopped, '--resume', env=env)
    assert 'resumed' in (resumed.stdout + resumed.stderr).lower()
    b = torch.load(stopped / 'iter_8.pth', map_location='cpu', weights_only=False)
    assert b['meta']['iter'] == 8
    assert_same_weights(weights(straight / 'iter_8.pth'), b['state_dict'])
    # The two halves trained: weights moved away from the 4-iteration checkpoint.
    half = weights(stopped / 'iter_4.pth')
    assert any(not torch.equal(v, half[k]) for k, v in b['state_dict'].items())


def _psnr(result) -> float:
    found = re.findall(r'novel_view/psnr: ([0-9.]+)', result.stdout + result.stderr)
    assert found, result.stdout[-2000:] + result.stderr[-2000:]
    return float(found[-1])


def test_stage1_resume_is_bit_exact_and_test_tool_evaluates_it(tmp_path):
    """Stage 1 (MVSplat through the CPU renderer) with two DataLoader workers, flip augmentation
    and a cosine schedule: 2 iterations + resume end with exactly the weights of 4 straight
    iterations. tools/test.py then scores the checkpoint tools/train.py wrote (MMEngine's full
    pickle) and the same weights as safetensors alike, and refuses weights missing a key by name
    (a bare state dict: the plain-weights path)."""
    from safetensors.torch import save_file
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    config = stage1_config(tmp_path, 4, schedule_iters=4)
    run_tool(TRAIN, config, '--work-dir', straight)
    run_tool(TRAIN, stage1_config(tmp_path, 2, schedule_iters=4), '--work-dir', stopped)
    resumed = run_tool(TRAIN, config, '--work-dir', stopped, '--resume')
    assert 'resumed epoch: 0, iter: 2' in resumed.stdout + resumed.stderr
    a, b = weights(straight / 'iter_4.pth'), weights(stopped / 'iter_4.pth')
    assert any(not torch.equal(v, weights(stopped / 'iter_2.pth')[k]) for k, v in b.items())
    assert_same_weights(a, b)
    # The schedule resumed too: after 3 scheduler steps (the 4th is past its end) the learning rate
    # is the cosine value at step 3 in both runs.
    lr = [torch.load(run / 'iter_4.pth', weights_only=False)['optimizer']['param_groups'][0]['lr']
          for run in (straight, stopped)]
    assert lr[0] == lr[1] == pytest.approx(1e-4 + 0.5 * (1e-3 - 1e-4) * (1 + math.cos(0.75 * math.pi)))

    psnr = _psnr(run_tool(TEST, config, stopped / 'iter_4.pth', '--work-dir', tmp_path / 'test'))
    assert 5.0 < psnr < 60.0
    save_file({k: v.contiguous() for k, v in b.items()}, tmp_path / 'weights.safetensors')
    assert _psnr(run_tool(TEST, config, tmp_path / 'weights.safetensors',
                          '--work-dir', tmp_path / 'test')) == psnr
    b.pop(next(iter(b)))
    torch.save(b, tmp_path / 'partial.pth')
    refused = run_tool(TEST, config, tmp_path / 'partial.pth', '--work-dir', tmp_path / 'test',
                       check=False)
    assert refused.returncode != 0
    assert f'CheckpointError: {tmp_path / "partial.pth"}: does not fit' in refused.stderr
    assert 'missing keys' in refused.stderr


def test_shipped_cpu_config_is_reproducible(tmp_path):
    """Two runs of configs/mvsplat/mvsplat_synthetic_cpu.py (two workers, default settings,
    shortened) end with identical weights."""
    config = REPO / 'configs' / 'mvsplat' / 'mvsplat_synthetic_cpu.py'
    options = ['train_cfg.max_iters=4', 'train_dataloader.dataset.num_scenes=4',
               'val_dataloader=None', 'val_cfg=None', 'val_evaluator=None']
    env = {'VIDEOSCENE_CACHE': str(tmp_path / 'cache')}
    for run in ('a', 'b'):
        run_tool(TRAIN, config, '--work-dir', tmp_path / run, '--cfg-options', *options, env=env)
    assert_same_weights(weights(tmp_path / 'a' / 'iter_4.pth'), weights(tmp_path / 'b' / 'iter_4.pth'))
