"""tools/test.py report of a stage-3 (distillation) checkpoint of a tiny synthetic run: render,
1-step, N-step and teacher rows; the render's PSNR checked against PSNR computed here."""
from __future__ import annotations

import re

import pytest
from _engine_runs import REPO, TEST, TRAIN, run_tool
from _evaluation_reports import check_report, outputs_here
from mmengine.config import Config

from videoscene.backbones.tiny import save_tiny_cogvideox

DISTILLATION_CONFIG = REPO / 'configs/distillation/tiny_cogvideox_synthetic.py'


@pytest.fixture(scope='module')
def tiny_teacher(tmp_path_factory):
    return save_tiny_cogvideox(tmp_path_factory.mktemp('teacher') / 'tiny')


def test_distillation_checkpoint_report_has_every_output(tmp_path, tiny_teacher):
    """Stage 3 (tiny student, depth-unprojection oracle) trained 1 iteration: render, 1-step,
    N-step and teacher rows; the render's PSNR is checked."""
    config = tmp_path / 'distillation.py'
    cache = str(tmp_path / 'cache')
    config.write_text(f"""_base_ = [{str(DISTILLATION_CONFIG)!r}]
model = dict(backbone=dict(pretrained={str(tiny_teacher)!r},
                           prompt_embedding={str(tiny_teacher / 'prompt_embeds.safetensors')!r}),
             reconstructor=dict(_delete_=True, type='DepthUnprojection'),
             reconstructor_checkpoint=None, policy=dict(channels=(8, 8, 8, 8), groups=4))
train_dataloader = dict(batch_size=2, dataset=dict(num_scenes=2, cache_dir={cache!r}))
test_dataloader = dict(dataset=dict(num_scenes=2, cache_dir={cache!r}))
train_cfg = dict(max_iters=1)
default_hooks = dict(checkpoint=dict(interval=1))
custom_hooks = [dict(type='IterationSeedHook'), dict(type='TargetEMAHook', decay=0.95)]
""")
    run_tool(TRAIN, config, '--work-dir', tmp_path / 'work')
    checkpoint = tmp_path / 'work' / 'iter_1.pth'
    out = tmp_path / 'report'
    run_tool(TEST, config, checkpoint, '--work-dir', tmp_path / 'work', '--steps', '2',
             '--metrics', 'psnr', '--out', out)
    cfg = Config.fromfile(str(config))
    expected = outputs_here(cfg, checkpoint, 'render')
    report = check_report(out, ['render', '1-step', 'N-step', 'teacher'], expected, 'render',
                          scenes=2)
    assert report['steps'] == 2
    table = (out / 'metrics.md').read_text()
    assert all(re.search(rf'^\| {row} \| [0-9.]+ \|', table, re.M)
               for row in ('render', '1-step', 'N-step', 'teacher'))
