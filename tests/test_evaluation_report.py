"""tools/test.py reports: stage-1, teacher and distillation checkpoints of tiny synthetic runs.

Each report's PSNR is checked against PSNR computed here, by its formula, on the same outputs
regenerated in this process (same weights, same per-scene seeds)."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
from _engine_runs import REPO, TEST, TRAIN, run_tool, stage1_config
from mmengine.config import Config
from mmengine.dataset import default_collate
from mmengine.evaluator import BaseMetric

from videoscene.backbones.tiny import save_tiny_cogvideox
from videoscene.evaluation.report import build_metrics, evaluate, write_report
from videoscene.registry import DATASETS, MODELS

TEACHER_CONFIG = REPO / 'configs/teacher/tiny_cogvideox_synthetic.py'
DISTILLATION_CONFIG = REPO / 'configs/distillation/tiny_cogvideox_synthetic.py'


def independent_psnr(pred: torch.Tensor, gt: torch.Tensor) -> float:
    """Mean over frames of ``10 log10(1 / MSE)``, predictions clamped to [0, 1]."""
    values = [10 * math.log10(1 / float(((p.clamp(0, 1) - g) ** 2).mean())) for p, g in zip(pred, gt)]
    return sum(values) / len(values)


def outputs_here(config: Config, checkpoint, key: str, seed: int = 0) -> dict[str, float]:
    """Per-scene PSNR of ``key`` regenerated in this process from the checkpoint."""
    model = MODELS.build(config.model)
    state = torch.load(checkpoint, map_location='cpu', weights_only=False)
    model.load_state_dict(state['state_dict'])
    model.eval()
    dataset = DATASETS.build(config.test_dataloader.dataset)
    found = {}
    with torch.no_grad():
        for index in range(len(dataset)):
            torch.manual_seed(seed + index)
            for sample in model.test_step(default_collate([dataset[index]])):
                found[sample['scene']] = independent_psnr(sample[key], sample['gt'])
    return found


def check_report(out, rows: list[str], expected_psnr: dict[str, float], row: str,
                 scenes: int) -> dict:
    report = json.loads((out / 'metrics.json').read_text())
    assert report['outputs'] == rows and report['scenes'] == scenes
    per_scene = report['per_scene'][row]
    assert set(per_scene) == set(expected_psnr) and len(per_scene) == scenes
    for scene, value in expected_psnr.items():
        assert per_scene[scene]['novel_view/psnr'] == pytest.approx(value, abs=1e-3), scene
    overall = report['overall'][row]['novel_view/psnr']
    # every scene has the same number of frames: the overall mean is the mean of scene means
    assert overall == pytest.approx(sum(expected_psnr.values()) / scenes, abs=1e-3)
    table = (out / 'metrics.md').read_text()
    header = next(line for line in table.splitlines() if line.startswith('| output |'))
    columns = [c.strip() for c in header.strip('|').split('|')]
    line = next(line for line in table.splitlines() if line.startswith(f'| {row} |'))
    cells = dict(zip(columns, (c.strip() for c in line.strip('|').split('|'))))
    assert cells['novel_view/psnr'] == f'{overall:.4f}'
    return report


def test_stage1_checkpoint_report(tmp_path):
    """Stage 1 (tiny MVSplat) trained 2 iterations by tools/train.py; PSNR, SSIM, structure
    matching and an unconfigured LPIPS, which is reported unavailable instead of failing."""
    config = stage1_config(tmp_path, 2, schedule_iters=2)
    run_tool(TRAIN, config, '--work-dir', tmp_path / 'work')
    out = tmp_path / 'report'
    result = run_tool(TEST, config, tmp_path / 'work' / 'iter_2.pth', '--work-dir',
                      tmp_path / 'work', '--metrics', 'psnr', 'ssim', 'lpips',
                      'structure_matching', '--out', out,
                      '--cfg-options', 'test_dataloader.dataset.num_scenes=2')
    log = result.stdout + result.stderr
    cfg = Config.fromfile(str(config))
    cfg.test_dataloader.dataset.num_scenes = 2
    expected = outputs_here(cfg, tmp_path / 'work' / 'iter_2.pth', 'pred')
    report = check_report(out, ['render'], expected, 'render', scenes=2)
    scores = report['overall']['render']
    assert 0 < scores['novel_view/ssim'] <= 1
    assert {'structure/inliers', 'structure/matches', 'structure/inlier_ratio'} <= set(scores)
    assert 'vgg_checkpoint' in report['unavailable']['lpips']
    assert 'Unavailable metrics (not computed): lpips' in log
    table = (out / 'metrics.md').read_text()
    assert re.search(r'^\| render \| .* \| n/a \|$', table, re.M)      # the lpips column
    assert '- lpips: NovelViewLPIPS: ValueError: NovelViewLPIPS is unavailable' in table
    assert re.search(r'evaluating: 100%.*2/2', log)                        # the progress bar
    # default report folder, and the config's test_evaluator as the default metric list
    run_tool(TEST, config, tmp_path / 'work' / 'iter_2.pth', '--work-dir', tmp_path / 'work')
    default = json.loads((tmp_path / 'work' / 'test_iter_2' / 'metrics.json').read_text())
    assert default['metrics'] == ['psnr'] and default['unavailable'] == {}


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


class _Outputs(torch.nn.Module):
    """predict samples with a render, a one-step video and no N-step video."""
    evaluation_outputs = {'render': 'render', '1-step': 'pred', 'N-step': 'n_step'}

    def test_step(self, batch):
        gt = torch.full((3, 3, 16, 16), 0.5)
        return [dict(render=gt + 0.1, pred=gt - 0.01 * (1 + batch), gt=gt, scene='same')]


class _SetScore(BaseMetric):
    """A score of a set of videos (no per-scene value) with a text note, like FVD."""
    per_scene = False
    default_prefix = 'set'

    def process(self, data_batch, data_samples):
        self.results.extend(float(s['pred'].mean()) for s in data_samples)

    def compute_metrics(self, results):
        if len(results) < 2:
            raise ValueError('needs two videos')
        return dict(spread=max(results) - min(results), note='biased at small N')


def test_report_rows_per_scene_scores_and_notes(tmp_path):
    metrics, unavailable = build_metrics(['psnr', 'lpips'])
    assert list(metrics) == ['psnr'] and 'vgg_checkpoint' in unavailable['lpips']
    result = evaluate(_Outputs(), [0, 1], {**metrics, 'set': _SetScore()}, num_scenes=2)
    assert result['outputs'] == ['render', '1-step'] and result['scenes'] == 2
    scenes = result['per_scene']['1-step']
    assert list(scenes) == ['same', 'same#1']           # repeated scene names stay apart
    assert scenes['same']['novel_view/psnr'] == pytest.approx(40.0)   # MSE 1e-4
    assert scenes['same#1']['novel_view/psnr'] == pytest.approx(-10 * math.log10(4e-4))
    assert 'set/spread' not in scenes['same']               # a set score has no per-scene value
    overall = result['overall']['1-step']
    assert overall['set/spread'] == pytest.approx(0.01, abs=1e-6) and overall['set/note'] == 'biased at small N'
    assert result['overall']['render']['novel_view/psnr'] == pytest.approx(20.0)
    report = dict(result, config='c.py', checkpoint='iter_1.pth', model='M', split='s',
                  steps=None, metrics=['psnr', 'lpips', 'set'], unavailable=unavailable)
    write_report(report, tmp_path)
    table = (tmp_path / 'metrics.md').read_text()
    assert '| output | novel_view/psnr | novel_view/psnr_exact_views | set/spread | lpips |' in table
    assert '| render | 20.0000 | 0.0000 | 0.0000 | n/a |' in table
    assert '- 1-step set/note: biased at small N' in table
    assert json.loads((tmp_path / 'metrics.json').read_text())['per_scene'] == result['per_scene']
