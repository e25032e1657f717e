"""Frames per second of each evaluation metric on the CPU, for 49-frame 256 x 256 videos.

    python benchmarks/bench_metrics.py [--videos 2] [--frames 49] [--size 256] [--threads N]
                                       [--only psnr lpips ...] [--weights TYPE.arg=PATH ...]

The videos are a synthetic default scene (ray-cast, rigid) as ``gt`` and the same frames with
mild noise as ``pred``. Each metric processes one video untimed (lazy set-up), then ``--videos``
videos timed; the figure is generated frames per second (``pred`` frames of the video; FVD
embeds only its first ``num_frames`` (16) frames, of ``pred`` and ``gt``).

Weights: a metric whose weight files are given (``--weights NovelViewLPIPS.vgg_checkpoint=...``)
runs on them. Otherwise, for timing only, its architecture is built with seeded random weights,
saved in the standard file format into a temporary folder and loaded through the metric: its
scores are meaningless and the printout marks the row ``seeded weights (timing only)``.

FVD (``videoscene/evaluation/fvd.py``) and the VBench scores (``videoscene/evaluation/vbench.py``)
are benchmarked when those modules exist; a metric whose seeded build fails is listed as skipped
with the reason.
"""
from __future__ import annotations

import argparse
import importlib.util
import os.path as osp
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.datasets.synthetic import SyntheticSpec, render_scene  # noqa: E402
from videoscene.evaluation.lpips import default_linear_weights  # noqa: E402
from videoscene.evaluation.report import METRIC_ALIASES  # noqa: E402
from videoscene.registry import METRICS  # noqa: E402

AESTHETIC_HEAD = Path('/work/shared/fixtures/laion_aesthetic/sa_0_4_vit_l_14_linear.pth')


def _seeded_state_dict(module: torch.nn.Module, seed: int = 0) -> dict:
    torch.manual_seed(seed)
    for parameter in module.parameters():
        torch.nn.init.normal_(parameter, std=0.02)
    return module.state_dict()


def _lpips(folder: Path) -> dict:
    import torchvision
    vgg = folder / 'vgg16_seeded.pth'
    torch.save(_seeded_state_dict(torchvision.models.vgg16()), vgg)
    linear = default_linear_weights()
    if linear is None:
        linear = folder / 'lpips_linear_seeded.pth'
        torch.save({f'lin{i}.model.1.weight': torch.rand(1, c, 1, 1)
                    for i, c in enumerate((64, 128, 256, 512, 512))}, linear)
    return dict(vgg_checkpoint=str(vgg), linear_weights=str(linear))


def _fvd(folder: Path) -> dict:
    from videoscene.evaluation.i3d import I3D
    path = folder / 'i3d_seeded.pt'
    torch.save(_seeded_state_dict(I3D()), path)
    return dict(i3d_checkpoint=str(path))


def _dino(folder: Path) -> dict:
    import timm
    path = folder / 'dino_vitb16_seeded.pth'
    network = timm.create_model('vit_base_patch16_224.dino', pretrained=False, num_classes=0)
    torch.save(_seeded_state_dict(network), path)
    return dict(dino_checkpoint=str(path))


def _clip(folder: Path, name: str) -> str:
    import open_clip
    path = folder / f'{name}_seeded.pt'
    if not path.exists():
        torch.save(_seeded_state_dict(open_clip.create_model(name, pretrained=None)), path)
    return str(path)


def _aesthetic(folder: Path) -> dict:
    head = AESTHETIC_HEAD
    if not head.is_file():
        head = folder / 'aesthetic_head_seeded.pth'
        torch.save(_seeded_state_dict(torch.nn.Linear(768, 1)), head)
    return dict(clip_checkpoint=_clip(folder, 'ViT-L-14'), head_checkpoint=str(head))


# METRICS type -> (module that must exist, seeded-weights builder or None: needs no weights)
CANDIDATES: dict[str, tuple[str, Callable[[Path], dict] | None]] = {
    'NovelViewPSNR': ('videoscene.evaluation.image_metrics', None),
    'NovelViewSSIM': ('videoscene.evaluation.image_metrics', None),
    'NovelViewLPIPS': ('videoscene.evaluation.lpips', _lpips),
    'StructureMatching': ('videoscene.evaluation.structure_matching', None),
    'FVD': ('videoscene.evaluation.fvd', _fvd),
    'SubjectConsistency': ('videoscene.evaluation.vbench', _dino),
    'BackgroundConsistency': ('videoscene.evaluation.vbench',
                              lambda folder: dict(clip_checkpoint=_clip(folder, 'ViT-B-32'))),
    'AestheticQuality': ('videoscene.evaluation.vbench', _aesthetic),
}


def _videos(frames: int, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    spec = SyntheticSpec(num_scenes=3, frames=frames, height=size, width=size,
                         num_eval_targets=frames - 2, stage='test')
    gt = render_scene(spec, 2).images
    noise = torch.randn(gt.shape, generator=torch.Generator().manual_seed(0))
    return (gt + 0.02 * noise).clamp(0, 1), gt


def _parse_weights(items: list[str]) -> dict[str, dict]:
    options: dict[str, dict] = {}
    for item in items:
        key, _, value = item.partition('=')
        kind, _, argument = key.partition('.')
        if not value or not argument:
            raise SystemExit(f'--weights {item!r}: expected TYPE.argument=PATH')
        options.setdefault(METRIC_ALIASES.get(kind, kind), {})[argument] = value
    return options


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--videos', type=int, default=2, help='timed videos per metric')
    parser.add_argument('--frames', type=int, default=49)
    parser.add_argument('--size', type=int, default=256)
    parser.add_argument('--threads', type=int, help='torch threads (default: torch\'s)')
    parser.add_argument('--only', nargs='+', help='metric names or METRICS types')
    parser.add_argument('--weights', nargs='+', default=[], help='TYPE.argument=PATH')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    given = _parse_weights(args.weights)
    wanted = [METRIC_ALIASES.get(name, name) for name in args.only] if args.only else None
    pred, gt = _videos(args.frames, args.size)
    sample = dict(pred=pred, gt=gt)
    print(f'{args.videos} videos of {args.frames} x 3 x {args.size} x {args.size}, '
          f'{torch.get_num_threads()} torch threads, CPU')
    print(f'{"metric":24s} {"frames/s":>10s} {"s/video":>9s}  weights')
    with tempfile.TemporaryDirectory() as folder:
        for kind, (module, seeded) in CANDIDATES.items():
            if wanted is not None and kind not in wanted:
                continue
            if importlib.util.find_spec(module) is None or kind not in METRICS.valid_names():
                print(f'{kind:24s} {"":>10s} {"":>9s}  skipped: {module} is not in this tree')
                continue
            options, weights = given.get(kind), 'configured files'
            if options is not None or seeded is None:
                metric = METRICS.build(dict(type=kind, **(options or {})))
                weights = weights if options is not None else 'none needed'
            else:
                weights = 'seeded weights (timing only, not a metric)'
                try:
                    metric = METRICS.build(dict(type=kind, **seeded(Path(folder))))
                except Exception as error:  # a seeded build of another branch's code: report it
                    print(f'{kind:24s} {"":>10s} {"":>9s}  skipped: seeded build failed: '
                          f'{type(error).__name__}: {error}')
                    continue
            metric.process({}, [sample])                      # untimed: lazy set-up
            start = time.perf_counter()
            for _ in range(args.videos):
                metric.process({}, [sample])
            seconds = (time.perf_counter() - start) / args.videos
            print(f'{kind:24s} {args.frames / seconds:10.1f} {seconds:9.2f}  {weights}')


if __name__ == '__main__':
    main()
