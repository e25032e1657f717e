"""Shared by the tools/test.py report tests: PSNR by its formula on outputs regenerated here
(same weights, same per-scene seeds) and the checks of a written report."""
from __future__ import annotations

import json
import math

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate

from videoscene.registry import DATASETS, MODELS


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
