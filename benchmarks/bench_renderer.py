"""Benchmark of the pure-torch CPU renderer on an MVSplat-sized scene.

The scene: two 256x256 context cameras, 0.2 apart, each unprojecting one Gaussian per pixel at a
random depth in [2, 8] (131,072 Gaussians), with a random rotation, per-axis standard deviations of
``footprint x U(0.5, 1.5)`` (``footprint`` = the pixel's size at that depth times ``--scale``),
opacities U(0.05, 1) and degree-4 harmonics, as MVSplat predicts. Both views are rendered at
256x256. Each case runs in a fresh subprocess so that its peak resident memory (``ru_maxrss``) is
its own; times are the median of ``--repeats`` runs after one warm-up.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_renderer.py [--scale 1.0] [--repeats 5]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time

import torch

from videoscene.renderers import TorchRenderer
from videoscene.structures import Gaussians

SIZE = 256
FOCAL = 1.0  # normalised


def pixel_aligned_scene(scale: float, seed: int = 0):
    """Gaussians unprojected from two 256x256 views, and those views' cameras ([1, 2, ...])."""
    gen = torch.Generator().manual_seed(seed)
    extrinsics = torch.eye(4).repeat(1, 2, 1, 1)
    extrinsics[0, :, 0, 3] = torch.tensor([-0.1, 0.1])
    intrinsics = torch.tensor([[FOCAL, 0.0, 0.5], [0.0, FOCAL, 0.5], [0.0, 0.0, 1.0]]).repeat(1, 2, 1, 1)
    centres = (torch.arange(SIZE) + 0.5) / SIZE
    ys, xs = torch.meshgrid(centres, centres, indexing='ij')
    rays = torch.stack([(xs - 0.5) / FOCAL, (ys - 0.5) / FOCAL, torch.ones_like(xs)], dim=-1).reshape(-1, 3)
    means, covariances = [], []
    for view in range(2):
        depth = 2 + 6 * torch.rand(rays.shape[0], 1, generator=gen)
        means.append(rays * depth + extrinsics[0, view, :3, 3])
        footprint = depth / (FOCAL * SIZE) * scale
        sigmas = footprint * (0.5 + torch.rand(rays.shape[0], 3, generator=gen))
        rotation, _ = torch.linalg.qr(torch.randn(rays.shape[0], 3, 3, generator=gen))
        covariances.append(rotation @ torch.diag_embed(sigmas ** 2) @ rotation.transpose(-1, -2))
    count = 2 * rays.shape[0]
    harmonics = 0.1 * torch.randn(1, count, 3, 25, generator=gen)
    harmonics[..., 0] = torch.randn(1, count, 3, generator=gen)
    gaussians = Gaussians(means=torch.cat(means)[None], covariances=torch.cat(covariances)[None],
                          harmonics=harmonics, opacities=0.05 + 0.95 * torch.rand(1, count, generator=gen))
    near, far = torch.full((1, 2), 1.0), torch.full((1, 2), 100.0)
    return gaussians, extrinsics, intrinsics, near, far


def run_case(backward: bool, scale: float, repeats: int) -> dict:
    """Time one case in this process (one warm-up run, then ``repeats``); report this process's peak RSS."""
    gaussians, extrinsics, intrinsics, near, far = pixel_aligned_scene(scale)
    renderer = TorchRenderer(views_per_chunk=2)
    wall, cpu = [], []
    for _ in range(repeats + 1):
        leaves = Gaussians(*(t.clone().requires_grad_(backward) for t in
                             (gaussians.means, gaussians.covariances, gaussians.harmonics, gaussians.opacities)))
        start, start_cpu = time.perf_counter(), time.process_time()
        with torch.set_grad_enabled(backward):
            out = renderer.render(leaves, extrinsics, intrinsics, (SIZE, SIZE), near, far)
            if backward:
                (out.color.sum() + out.depth.mean()).backward()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {'median_s': statistics.median(wall[1:]), 'min_s': min(wall[1:]), 'cpu_s': statistics.median(cpu[1:]),
            'peak_rss_mb': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def baseline_rss_mb() -> float:
    """Peak RSS of a process that imports torch, builds the scene and renders 2,000 of its Gaussians at
    32x32 with gradients (libraries and kernels paged in): what the cases' peaks are compared with."""
    gaussians, extrinsics, intrinsics, near, far = pixel_aligned_scene(1.0)
    few = Gaussians(*(t[:, :2000].clone().requires_grad_(True) for t in
                      (gaussians.means, gaussians.covariances, gaussians.harmonics, gaussians.opacities)))
    out = TorchRenderer().render(few, extrinsics, intrinsics, (32, 32), near, far)
    (out.color.sum() + out.depth.mean()).backward()
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--scale', type=float, nargs='+', default=[0.5, 1.0, 2.0],
                        help='Gaussian size in pixel footprints (several values: one row each)')
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--threads', type=int, default=torch.get_num_threads(), help='torch intra-op threads')
    parser.add_argument('--case', help=argparse.SUPPRESS)  # internal: run one case, print JSON
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.case == 'baseline':
        print(json.dumps({'peak_rss_mb': baseline_rss_mb()}))
        return
    if args.case is not None:
        print(json.dumps(run_case(args.case == 'backward', args.scale[0], args.repeats)))
        return

    def child(*extra: str) -> dict:
        command = [sys.executable, __file__, '--threads', str(args.threads), *extra]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        return json.loads(result.stdout.strip().splitlines()[-1])

    print(f'torch {torch.__version__}, {args.threads} threads, load average {os.getloadavg()[0]:.1f} on '
          f'{os.cpu_count()} CPUs; 131,072 Gaussians, 2 views of {SIZE}x{SIZE}')
    base = child('--case', 'baseline')['peak_rss_mb']
    print(f'baseline process (import torch, build the scene, render a tiny view): {base:.0f} MB peak RSS')
    print(f'{"scale":>6} {"case":>17} {"median s":>9} {"min s":>7} {"CPU s":>7} {"peak RSS MB":>12} {"over base":>10}')
    for scale in args.scale:
        for case in ('forward', 'backward'):
            row = child('--case', case, '--scale', str(scale), '--repeats', str(args.repeats))
            name = 'forward' if case == 'forward' else 'forward+backward'
            print(f'{scale:>6.2f} {name:>17} {row["median_s"]:>9.3f} {row["min_s"]:>7.3f} {row["cpu_s"]:>7.3f} '
                  f'{row["peak_rss_mb"]:>12.0f} {row["peak_rss_mb"] - base:>10.0f}')
    print('times: wall clock, median and min of the repeats; CPU s: process CPU time (all threads), median.\n'
          'peak RSS: the case process (torch alone is ~0.7 GB); "over base" subtracts the baseline process.')


if __name__ == '__main__':
    main()
