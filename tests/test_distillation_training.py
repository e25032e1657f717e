"""Distillation through tools/train.py: a tiny config trains, checkpoints and resumes bit-exactly."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from videoscene.backbones.tiny import save_tiny_cogvideox

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / 'configs/distillation/tiny_cogvideox_synthetic.py'


@pytest.fixture(scope='module')
def teacher(tmp_path_factory):
    return save_tiny_cogvideox(tmp_path_factory.mktemp('teacher') / 'tiny')


def tiny_config(teacher: Path, folder: Path) -> Path:
    """The shipped tiny config with the test's teacher, the depth-unprojection oracle instead of
    the stage-1 MVSplat (no stage 1 to train here) and a smaller DDPNet."""
    path = folder / 'tiny_distillation.py'
    path.write_text(f"""_base_ = [{str(CONFIG)!r}]
model = dict(backbone=dict(pretrained={str(teacher)!r},
                           prompt_embedding={str(teacher / 'prompt_embeds.safetensors')!r}),
             reconstructor=dict(_delete_=True, type='DepthUnprojection'),
             reconstructor_checkpoint=None,
             policy=dict(channels=(8, 8, 8, 8), groups=4))
""")
    return path


def train(teacher: Path, work_dir: Path, iters: int, *args: str) -> str:
    options = [f'train_cfg.max_iters={iters}', 'default_hooks.checkpoint.interval=3',
               'default_hooks.checkpoint.max_keep_ckpts=5', 'default_hooks.logger.interval=1',
               'train_dataloader.batch_size=2', 'train_dataloader.num_workers=2',
               'train_dataloader.persistent_workers=True', 'train_dataloader.dataset.num_scenes=4',
               'custom_hooks.2.train_iters=4', 'custom_hooks.3.interval=3']
    config = tiny_config(teacher, work_dir.parent)
    result = subprocess.run([sys.executable, 'tools/train.py', str(config), '--work-dir',
                             str(work_dir), *args, '--cfg-options', *options], cwd=REPO,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout + result.stderr


def test_tiny_distillation_trains_and_resumes_bit_exactly(teacher, tmp_path):
    """EMA target, DDPNet frozen after 4 iterations, a param scheduler, two data workers: 6
    iterations straight equal 3 + resume to 6."""
    straight, stopped = tmp_path / 'straight', tmp_path / 'stopped'
    log = train(teacher, straight, 6)
    assert 'policy is frozen from iteration 5' in log
    assert (straight / 'vis' / 'iter_3.mp4').is_file()      # render | one-step | truth
    train(teacher, stopped, 3)
    resumed = train(teacher, stopped, 6, '--resume')
    assert 'resumed' in resumed.lower()
    a = torch.load(straight / 'iter_6.pth', map_location='cpu', weights_only=False)
    b = torch.load(stopped / 'iter_6.pth', map_location='cpu', weights_only=False)
    assert a['state_dict'].keys() == b['state_dict'].keys()
    for key, value in a['state_dict'].items():
        assert torch.equal(value, b['state_dict'][key]), key
    for name in ('student', 'policy'):
        assert a['optimizer'][name]['state'].keys() == b['optimizer'][name]['state'].keys()
    # what the checkpoint holds: trained tensors, target, policy, baseline; no frozen weights
    keys = a['state_dict'].keys()
    assert not any(k.startswith(('reconstructor.', 'teacher.', 'backbone.vae.')) for k in keys)
    assert any(k.startswith('target.') for k in keys) and any(k.startswith('policy.') for k in keys)
    assert set(a['param_schedulers']) == {'student', 'policy'}
    # the student and the policy trained in both halves; the policy stopped after iteration 4
    third = torch.load(stopped / 'iter_3.pth', map_location='cpu', weights_only=False)['state_dict']
    student = [k for k in keys if k.startswith('backbone.')]
    assert any(not torch.equal(a['state_dict'][k], third[k]) for k in student)
