"""MVSplat forward wall time and peak memory on CPU (random weights; the official architecture).

    PYTHONPATH=. .venv/bin/python benchmarks/bench_mvsplat.py [--sizes 256x256 480x720] [--repeats 1]

Each size runs in a fresh process so that its peak resident memory (``ru_maxrss``) is its own.
Reported: median forward time over ``--repeats`` runs (after one warm-up run when repeats > 1),
the process's peak RSS, and the peak's increase over the RSS before the first forward (model and
inputs already built). On the 2-core build machine 480x720 takes tens of seconds per forward.
"""
from __future__ import annotations

import argparse
import multiprocessing
import resource
import statistics
import time

import torch


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _measure(height: int, width: int, views: int, repeats: int, threads: int | None) -> dict:
    from videoscene.reconstructors import MVSplat

    if threads is not None:
        torch.set_num_threads(threads)
    torch.manual_seed(0)
    model = MVSplat().eval()
    intrinsics = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9 * width / height, 0.5], [0.0, 0.0, 1.0]])
    extrinsics = torch.eye(4).repeat(1, views, 1, 1)
    extrinsics[0, :, 0, 3] = 0.2 * torch.arange(views)
    context = {'image': torch.rand(1, views, 3, height, width), 'extrinsics': extrinsics,
               'intrinsics': intrinsics.repeat(1, views, 1, 1), 'near': torch.ones(1, views),
               'far': torch.full((1, views), 100.0)}
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
    return {'size': f'{height}x{width}', 'views': views, 'gaussians': gaussians.means.shape[1],
            'threads': torch.get_num_threads(), 'seconds': statistics.median(times),
            'runs': len(times), 'peak_rss_mib': peak, 'forward_peak_increase_mib': peak - before}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--sizes', nargs='+', default=['256x256', '480x720'],
                        help='HxW image sizes (multiples of 16)')
    parser.add_argument('--views', type=int, default=2)
    parser.add_argument('--repeats', type=int, default=1, help='timed forwards per size')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    args = parser.parse_args()

    context = multiprocessing.get_context('spawn')
    print(f'MVSplat forward on CPU (torch {torch.__version__}), {args.views} views, random weights')
    print(f"{'size':>9} {'gaussians':>10} {'threads':>7} {'runs':>4} {'seconds':>8} "
          f"{'peak RSS MiB':>12} {'forward +MiB':>12}")
    for size in args.sizes:
        height, width = (int(v) for v in size.lower().split('x'))
        with context.Pool(1) as pool:
            result = pool.apply(_measure, (height, width, args.views, args.repeats, args.threads))
        print(f"{result['size']:>9} {result['gaussians']:>10} {result['threads']:>7} "
              f"{result['runs']:>4} {result['seconds']:>8.2f} {result['peak_rss_mib']:>12.0f} "
              f"{result['forward_peak_increase_mib']:>12.0f}")


if __name__ == '__main__':
    main()
