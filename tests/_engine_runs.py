"""Tiny training runs of tools/train.py and tools/test.py in subprocesses, for the engine tests."""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
TRAIN, TEST = 'tools/train.py', 'tools/test.py'

NOISY_VIEW_BLEND = '''
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


def run_tool(*args, env: dict | None = None, check: bool = True) -> subprocess.CompletedProcess:
    """``python *args`` in the repository root; ``env`` adds variables (``PYTHONPATH`` ...)."""
    result = subprocess.run([sys.executable, *map(str, args)], cwd=REPO, capture_output=True,
                            text=True, env={**os.environ, **(env or {})})
    if check and result.returncode != 0:
        raise AssertionError(f'{args} failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}')
    return result


def toy_config(folder: Path, max_iters: int, *, num_workers: int = 0, interval: int = 4,
               max_keep_ckpts: int = 3, extra: str = '') -> Path:
    """A config training ``NoisyViewBlend`` (needs ``folder`` on ``PYTHONPATH``) on 16x16 scenes."""
    (folder / 'toy_plugin.py').write_text(NOISY_VIEW_BLEND)
    config = folder / f'toy_{max_iters}.py'
    config.write_text(textwrap.dedent(f'''
        _base_ = ['{REPO}/configs/_base_/default_runtime.py']
        custom_imports = dict(imports=['toy_plugin'], allow_failed_imports=False)
        model = dict(type='NoisyViewBlend')
        train_dataloader = dict(
            batch_size=2, num_workers={num_workers}, persistent_workers={num_workers > 0},
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict(type='SyntheticScenes', cache_dir='{folder / "cache"}', num_scenes=3,
                         frames=24, height=16, width=16,
                         view_sampler=dict(type='bounded', num_targets=2, min_gap=3, max_gap=12)))
        optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-2))
        train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters})
        default_hooks = dict(checkpoint=dict(interval={interval}, max_keep_ckpts={max_keep_ckpts}),
                             logger=dict(interval=2))
        randomness = dict(seed=123)
    ''') + textwrap.dedent(extra))
    return config


TINY_MVSPLAT = dict(num_depth_candidates=4, costvolume_unet_feat_dim=8, depth_unet_feat_dim=8,
                    feature_channels=16, num_transformer_layers=1, sh_degree=0,
                    costvolume_unet_channel_mult=(1,), depth_unet_channel_mult=(1,),
                    costvolume_unet_attn_res=(), depth_unet_attn_res=())


def stage1_config(folder: Path, max_iters: int, *, schedule_iters: int) -> Path:
    """Stage 1 (``GaussianReconstruction``: tiny MVSplat + CPU renderer) on 32x32 scenes, with two
    DataLoader workers, flip augmentation, a cosine schedule over ``schedule_iters``, deterministic
    mode, checkpoints every 2 iterations, and a test split scored by PSNR. The schedule's ``end`` is
    explicit: MMEngine defaults it to ``max_iters`` and restores it on resume, so a run stopped by
    a shorter ``max_iters`` would otherwise keep its shorter schedule."""
    config = folder / f'stage1_{max_iters}.py'
    scenes = f"type='SyntheticScenes', cache_dir='{folder / 'cache'}', frames=24, height=32, width=32"
    config.write_text(textwrap.dedent(f'''
        _base_ = ['{REPO}/configs/_base_/default_runtime.py']
        model = dict(type='GaussianReconstruction', reconstructor=dict(type='MVSplat', **{TINY_MVSPLAT!r}),
                     renderer=dict(type='torch'))
        train_dataloader = dict(
            batch_size=2, num_workers=2, persistent_workers=True,
            sampler=dict(type='InfiniteSampler', shuffle=True),
            collate_fn=dict(type='default_collate'),
            dataset=dict({scenes}, num_scenes=3, flip_probability=0.5,
                         view_sampler=dict(type='bounded', num_targets=2, min_gap=3, max_gap=12)))
        test_dataloader = dict(
            batch_size=1, num_workers=0, sampler=dict(type='DefaultSampler', shuffle=False),
            collate_fn=dict(type='default_collate'),
            dataset=dict({scenes}, stage='test', num_scenes=1, num_eval_targets=2, view_sampler=None))
        test_evaluator = dict(type='NovelViewPSNR')
        test_cfg = dict(type='TestLoop')
        optim_wrapper = dict(optimizer=dict(type='Adam', lr=1e-3), clip_grad=dict(max_norm=0.5))
        param_scheduler = [dict(type='CosineAnnealingLR', T_max={schedule_iters}, eta_min=1e-4,
                                by_epoch=False, end={schedule_iters})]
        train_cfg = dict(type='IterBasedTrainLoop', max_iters={max_iters})
        default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
        randomness = dict(seed=123, deterministic=True)
    '''))
    return config


def weights(path: Path) -> dict[str, torch.Tensor]:
    """The model state dict of a checkpoint tools/train.py wrote."""
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


def assert_same_weights(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert a.keys() == b.keys()
    different = {key: float((a[key].double() - b[key].double()).abs().max())
                 for key in a if not torch.equal(a[key], b[key])}
    largest = sorted(different.items(), key=lambda item: -item[1])[:3]
    assert not different, f'{len(different)} of {len(a)} tensors differ; largest |dw|: {largest}'
