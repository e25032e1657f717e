"""tools/test.py report of a stage-2 (teacher) checkpoint of a tiny synthetic run: the teacher's
N-step videos; PSNR checked against PSNR computed here on the regenerated outputs."""
from __future__ import annotations

import pytest
from _engine_runs import REPO, TEST, TRAIN, run_tool
from _evaluation_reports import check_report, outputs_here
from mmengine.config import Config

from videoscene.backbones.tiny import save_tiny_cogvideox

TEACHER_CONFIG = REPO / 'configs/teacher/tiny_cogvideox_synthetic.py'


@pytest.fixture(scope='module')
def tiny_teacher(tmp_path_factory):
    return save_tiny_cogvideox(tmp_path_factory.mktemp('teacher') / 'tiny')


def test_teacher_checkpoint_report(tmp_path, tiny_teacher):
    """Stage 2 (tiny CogVideoX teacher) trained 1 iteration: the teacher's 2-step videos."""
    config = tmp_path / 'teacher.py'
    config.write_text(f"""_base_ = [{str(TEACHER_CONFIG)!r}]
model = dict(backbone=dict(pretrained={str(tiny_teacher)!r},
                           prompt_embedding={str(tiny_teacher / 'prompt_embeds.safetensors')!r}))
train_dataloader = dict(batch_size=2, dataset=dict(num_scenes=2, cache_dir={str(tmp_path / 'cache')!r}))
test_dataloader = dict(dataset=dict(num_scenes=2, cache_dir={str(tmp_path / 'cache')!r}))
train_cfg = dict(max_iters=1)
default_hooks = dict(checkpoint=dict(interval=1))
""")
    run_tool(TRAIN, config, '--work-dir', tmp_path / 'work')
    checkpoint = tmp_path / 'work' / 'iter_1.pth'
    out = tmp_path / 'report'
    run_tool(TEST, config, checkpoint, '--work-dir', tmp_path / 'work', '--steps', '2',
             '--metrics', 'psnr', 'structure_matching', '--out', out)
    cfg = Config.fromfile(str(config))
    cfg.model.sample_steps = 2
    expected = outputs_here(cfg, checkpoint, 'pred')
    report = check_report(out, ['teacher'], expected, 'teacher', scenes=2)
    assert report['steps'] == 2 and report['model'] == 'InterpolationTeacher'
    refused = run_tool(TEST, config, checkpoint, '--metrics', 'psnr', 'nonsense', check=False)
    assert refused.returncode != 0 and "'nonsense' is not a registered metric" in refused.stderr
