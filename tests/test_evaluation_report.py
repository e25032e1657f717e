"""tools/test.py reports: the report machinery, and a stage-1 checkpoint of a tiny synthetic run.

The report's PSNR is checked against PSNR computed here, by its formula, on the same outputs
regenerated in this process."""
from __future__ import annotations

import json
import math
import re

import pytest
import torch
from _engine_runs import TEST, TRAIN, run_tool, stage1_config
from _evaluation_reports import check_report, outputs_here
from mmengine.config import Config
from mmengine.evaluator import BaseMetric

from videoscene.evaluation.report import build_metrics, evaluate, write_report


def test_stage1_checkpoint_report(tmp_path):
    """Stage 1 (tiny MVSplat) trained 2 iterations by tools/train.py; PSNR, SSIM, structure
    matching and an LPIPS whose configured weight file is absent: reported unavailable, naming
    the file, instead of failing."""
    config = stage1_config(tmp_path, 2, schedule_iters=2)
    run_tool(TRAIN, config, '--work-dir', tmp_path / 'work')
    out = tmp_path / 'report'
    result = run_tool(TEST, config, tmp_path / 'work' / 'iter_2.pth', '--work-dir',
                      tmp_path / 'work', '--metrics', 'psnr', 'ssim', 'lpips',
                      'structure_matching', '--out', out,
                      '--cfg-options', 'test_dataloader.dataset.num_scenes=2',
                      'metric_options.NovelViewLPIPS.vgg_checkpoint=/nonexistent/vgg16.pth')
    log = result.stdout + result.stderr
    cfg = Config.fromfile(str(config))
    cfg.test_dataloader.dataset.num_scenes = 2
    expected = outputs_here(cfg, tmp_path / 'work' / 'iter_2.pth', 'pred')
    report = check_report(out, ['render'], expected, 'render', scenes=2)
    scores = report['overall']['render']
    assert 0 < scores['novel_view/ssim'] <= 1
    assert {'structure/inliers', 'structure/matches', 'structure/inlier_ratio'} <= set(scores)
    assert 'VGG16 checkpoint file not found: /nonexistent/vgg16.pth' in report['unavailable']['lpips']
    assert 'Unavailable metrics (not computed): lpips' in log
    table = (out / 'metrics.md').read_text()
    assert re.search(r'^\| render \| .* \| n/a \|$', table, re.M)      # the lpips column
    assert '- lpips: NovelViewLPIPS: FileNotFoundError: VGG16 checkpoint file not found' in table
    assert re.search(r'evaluating: 100%.*2/2', log)                        # the progress bar
    # default report folder, and the config's test_evaluator as the default metric list
    run_tool(TEST, config, tmp_path / 'work' / 'iter_2.pth', '--work-dir', tmp_path / 'work')
    default = json.loads((tmp_path / 'work' / 'test_iter_2' / 'metrics.json').read_text())
    assert default['metrics'] == ['psnr'] and default['unavailable'] == {}
    refused = run_tool(TEST, config, tmp_path / 'work' / 'iter_2.pth', '--steps', '2', check=False)
    assert refused.returncode != 0
    assert 'InputError: --steps: GaussianReconstruction has no denoising steps' in refused.stderr



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
