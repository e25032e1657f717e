"""Forward wall time and peak memory of the feed-forward reconstructors on CPU (random weights,
official architectures).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_reconstructors.py [--arch MVSplat pixelSplat]
        [--sizes 256x256 480x720] [--repeats 1] [--threads N] [--cfg '{"deterministic": false}']

Two context views (pixelSplat's checkpoints are two-view models). Each (architecture, size) runs
in a fresh process so that its peak resident memory (``ru_maxrss``) is its own. Reported: median
forward time over ``--repeats`` runs (after one warm-up run when repeats > 1), the process's peak
RSS, and the peak's increase over the RSS before the first forward (model and inputs built).
On the 2-core build machine MVSplat at 480x720 takes tens of seconds, pixelSplat at 256x256 about
a minute.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import resource
import statistics
import time

import torch

VIEWS = 2


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _context(height: int, width: int) -> dict:
    """Two random views side by side, 0.2 apart, 90-ish degree field of view."""
    intrinsics = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9 * width / height, 0.5], [0.0, 0.0, 1.0]])
    extrinsics = torch.eye(4).repeat(1, VIEWS, 1, 1)
    extrinsics[0, :, 0, 3] = 0.2 * torch.arange(VIEWS)
    return {'image': torch.rand(1, VIEWS, 3, height, width), 'extrinsics': extrinsics,
            'intrinsics': intrinsics.repeat(1, VIEWS, 1, 1), 'near': torch.ones(1, VIEWS),
            'far': torch.full((1, VIEWS), 100.0)}


def _measure(config: dict, height: int, width: int, repeats: int, threads: int | None) -> dict:
    from videoscene.registry import RECONSTRUCTORS

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = RECONSTRUCTORS.build(config).eval()
    context = _context(height, width)
    before = _peak_rss_mib()
    times = []
    with torch.no_grad():
        for run in range(repeats + (1 if repeats > 1 else 0)):
            start = time.perf_counter()
            gaussians = model(context)
            elapsed = time.perf_counter() - start
            if repeats == 1 or run > 0:
                times.append(elapsed)
    peak = _peak_rss_mib()
    return {'gaussians': gaussians.means.shape[1], 'threads': torch.get_num_threads(),
            'seconds': statistics.median(times), 'runs': len(times), 'peak_rss_mib': peak,
            'forward_peak_increase_mib': peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', nargs='+', default=['MVSplat', 'pixelSplat'],
                        help='RECONSTRUCTORS entries to time')
    parser.add_argument('--sizes', nargs='+', default=['256x256'],
                        help='HxW image sizes (multiples of 16)')
    parser.add_argument('--repeats', type=int, default=1, help='timed forwards per size')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument('--cfg', type=json.loads, default={},
                        help='extra constructor arguments as JSON, e.g. \'{"deterministic": false}\'')
    args = parser.parse_args()

    pool_context = multiprocessing.get_context('spawn')
    print(f'reconstructor forward on CPU (torch {torch.__version__}), {VIEWS} views, '
          f'random weights, extra arguments {args.cfg}')
    print(f"{'arch':>11} {'size':>9} {'gaussians':>10} {'threads':>7} {'runs':>4} {'seconds':>8} "
          f"{'peak RSS MiB':>12} {'forward +MiB':>12}")
    for arch in args.arch:
        for size in args.sizes:
            height, width = (int(v) for v in size.lower().split('x'))
            with pool_context.Pool(1) as pool:
                result = pool.apply(_measure, (dict(type=arch, **args.cfg), height, width,
                                               args.repeats, args.threads))
            print(f"{arch:>11} {size:>9} {result['gaussians']:>10} {result['threads']:>7} "
                  f"{result['runs']:>4} {result['seconds']:>8.2f} "
                  f"{result['peak_rss_mib']:>12.0f} {result['forward_peak_increase_mib']:>12.0f}")


if __name__ == '__main__':
    main()
