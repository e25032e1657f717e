"""Held-out v-prediction loss of a stage-2 teacher, against reference predictors.

    python benchmarks/bench_teacher.py configs/teacher/tiny_cogvideox_synthetic.py \
        --checkpoint work_dirs/teacher_tiny_cogvideox_synthetic/iter_300.pth [--batches 8]

Builds the config's model and dataset (with ``stage='test'``: scenes never trained on), then, with
fixed noise and timesteps, prints the mean v-MSE per timestep range of

* ``untrained``: the model as the config builds it (no checkpoint);
* ``teacher``: the model with the checkpoint's weights;
* ``blind``: the best predictor that sees only ``x_t`` and ``t`` if latents were i.i.d. Gaussian
  with their empirical second moment ``s2``: ``Var(v) - Cov(v, x_t)^2 / Var(x_t)``;
* ``ends``: the same with ``x0 ~ N(m, r2)``, ``m`` the latent-frame-wise linear blend of the video's
  first and last latent frames and ``r2`` the empirical residual: what the two end frames give a
  linear predictor.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

import torch
from mmengine.config import Config
from torch.utils.data import DataLoader, default_collate

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.models.views import scene_views  # noqa: E402
from videoscene.registry import DATASETS, MODELS  # noqa: E402

BINS = ((0, 250), (250, 500), (500, 750), (750, 1000))


def gaussian_mse(ab: torch.Tensor, variance: float) -> torch.Tensor:
    """MSE of the best linear estimate of ``v`` from ``x_t`` for ``x0 ~ N(., variance)`` per element."""
    var_v = ab + (1 - ab) * variance
    cov = (ab * (1 - ab)).sqrt() * (1 - variance)
    return var_v - cov ** 2 / (ab * variance + 1 - ab)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--checkpoint', required=True)
    parser.add_argument('--batches', type=int, default=8)
    parser.add_argument('--draws', type=int, default=8, help='noise/timestep draws per batch')
    args = parser.parse_args()
    cfg = Config.fromfile(args.config)
    dataset_cfg = cfg.train_dataloader.dataset
    dataset_cfg.stage = 'test'
    dataset = DATASETS.build(dataset_cfg)
    loader = DataLoader(dataset, batch_size=cfg.train_dataloader.batch_size, collate_fn=default_collate)
    untrained = MODELS.build(cfg.model).eval()
    teacher = MODELS.build(cfg.model).eval()
    state = torch.load(args.checkpoint, map_location='cpu', weights_only=False)['state_dict']
    teacher.load_state_dict(state)
    scheduler = teacher.scheduler
    T = scheduler.num_train_timesteps

    sums = {name: torch.zeros(len(BINS)) for name in ('untrained', 'teacher', 'blind', 'ends')}
    counts = torch.zeros(len(BINS))
    torch.manual_seed(0)
    with torch.no_grad():
        for b, batch in zip(range(args.batches), loader):
            video = scene_views(batch['context'], batch['target'])['image']
            x0 = teacher.backbone.encode(video)
            conditioning = teacher.backbone.condition(video[:, 0], video[:, -1], video.shape[1])
            weight = torch.linspace(0, 1, x0.shape[1])[None, :, None, None, None]
            blend = x0[:, :1] * (1 - weight) + x0[:, -1:] * weight
            s2, r2 = x0.square().mean().item(), (x0 - blend).square().mean().item()
            for _ in range(args.draws):
                noise = torch.randn_like(x0)
                t = torch.randint(0, T, (len(x0),))
                x_t = scheduler.add_noise(x0, noise, t)
                wanted = scheduler.training_target(x0, noise, t)
                ab = scheduler.alphas_cumprod[t].float()
                losses = {name: (model.backbone.predict(x_t, t, conditioning) - wanted).square().mean((1, 2, 3, 4))
                          for name, model in (('untrained', untrained), ('teacher', teacher))}
                losses.update(blind=gaussian_mse(ab, s2), ends=gaussian_mse(ab, r2))
                for i, (lo, hi) in enumerate(BINS):
                    inside = (t >= lo) & (t < hi)
                    counts[i] += inside.sum()
                    for name, value in losses.items():
                        sums[name][i] += value[inside].sum()
            print(f'batch {b + 1}/{args.batches}: s2={s2:.4f} r2={r2:.4f}', flush=True)
    print(f'\nheld-out v-MSE ({int(counts.sum())} samples, {dataset_cfg.type} stage=test)')
    print('t range     ' + ''.join(f'{name:>11}' for name in sums))
    for i, (lo, hi) in enumerate(BINS):
        print(f'[{lo:>3},{hi:>4})  ' + ''.join(f'{(sums[n][i] / counts[i]).item():11.4f}' for n in sums))
    print('all         ' + ''.join(f'{(sums[n].sum() / counts.sum()).item():11.4f}' for n in sums))


if __name__ == '__main__':
    main()
