"""Look at one sample of a dataset: a contact sheet, an mp4 of its target frames and a top-down plot
of its camera path.

    python tools/browse_dataset.py CONFIG [--split train] [--index 0] [--out outputs/browse]
    python tools/browse_dataset.py --synthetic [--size 128] [--frames 49] [--out outputs/browse]

CONFIG is a training/test config; its ``{split}_dataloader.dataset`` is built. ``--synthetic``
browses the embedded synthetic scenes instead (generated once into the cache). Writes:

* ``contact_sheet.png``: the two context views and up to ``--tiles`` targets at equal intervals,
  labelled with their frame numbers, with a row of colourised depth when the sample has depth;
* ``targets.mp4``: the target frames in order (beside their depth when known);
* ``camera_path.png``: the target cameras and the path interpolated between the two context
  cameras, seen from above.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.utils import import_modules_from_strings  # noqa: E402

from videoscene.registry import CAMERA_PATHS, DATASETS  # noqa: E402
from videoscene.visualization import colorize_depth, contact_sheet, plot_path, save_png, save_video  # noqa: E402
from videoscene.engine.cli import run_tool  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', nargs='?', help='config file whose {split}_dataloader.dataset is browsed')
    parser.add_argument('--synthetic', action='store_true', help='browse the embedded synthetic scenes instead')
    parser.add_argument('--split', default='train', choices=('train', 'val', 'test'), help='which dataloader')
    parser.add_argument('--index', type=int, default=0, help='which item of the dataset')
    parser.add_argument('--seed', type=int, default=0, help="seed of torch's generator (random view samplers, flips)")
    parser.add_argument('--out', default='outputs/browse', help='output folder')
    parser.add_argument('--tiles', type=int, default=8, help='targets on the contact sheet')
    parser.add_argument('--fps', type=float, default=12.0, help='frames per second of the mp4')
    parser.add_argument('--size', type=int, default=128, help='--synthetic: square image size')
    parser.add_argument('--frames', type=int, default=49, help='--synthetic: target frames per scene')
    parser.add_argument('--cache-dir',
                        help='--synthetic: cache root (default $VIDEOSCENE_CACHE or ~/.cache/videoscene)')
    args = parser.parse_args()
    if args.synthetic == (args.config is not None):
        parser.error('give a CONFIG or --synthetic (exactly one)')
    return args


def build_dataset(args: argparse.Namespace):
    if args.synthetic:
        # a 120-frame walk (as in tools/demo.py): the context pair is its first and last frame
        return DATASETS.build(dict(type='SyntheticScenes', stage='test', num_scenes=1,
                                   frames=max(120, args.frames + 2), height=args.size, width=args.size,
                                   num_eval_targets=args.frames, cache_dir=args.cache_dir))
    cfg = Config.fromfile(args.config)
    if cfg.get('custom_imports'):
        import_modules_from_strings(**cfg.custom_imports)
    loader = cfg.get(f'{args.split}_dataloader')
    if not loader or 'dataset' not in loader:
        raise SystemExit(f'{args.config} has no {args.split}_dataloader.dataset to browse')
    return DATASETS.build(loader.dataset)


def main() -> None:
    args = parse_args()
    start = time.perf_counter()
    dataset = build_dataset(args)
    if not 0 <= args.index < len(dataset):
        raise SystemExit(f'--index {args.index} is outside the {len(dataset)} items of {type(dataset).__name__}')
    torch.manual_seed(args.seed)
    sample = dataset[args.index]
    context, target = sample['context'], sample['target']
    out = Path(args.out)

    picks = torch.linspace(0, len(target['image']) - 1, min(args.tiles, len(target['image']))).round().long()
    tiles = torch.cat([context['image'], target['image'][picks]])
    labels = ([f'context {i}' for i in context['index'].tolist()]
              + [f'frame {i}' for i in target['index'][picks].tolist()])
    video = target['image']
    if 'depth' in target and 'depth' in context:
        tiles = torch.cat([tiles, colorize_depth(context['depth']), colorize_depth(target['depth'][picks])])
        labels = labels + labels
        video = torch.cat([video, colorize_depth(target['depth'])], dim=-1)
    written = [save_png(out / 'contact_sheet.png', contact_sheet(tiles, ncols=len(picks) + 2, labels=labels)),
               save_video(out / 'targets.mp4', video, fps=args.fps)]

    batched = {key: value[None] for key, value in context.items()}
    interpolated = CAMERA_PATHS.build(dict(type='interpolated'))(batched, None, max(len(target['image']), 2))
    written.append(plot_path(out / 'camera_path.png', target, {key: value[0] for key, value in interpolated.items()},
                             context))

    print(f'{type(dataset).__name__}: {len(dataset)} items; item {args.index} is scene {sample["scene"]!r}: context '
          f'frames {context["index"].tolist()}, {len(target["image"])} targets of {tuple(target["image"].shape[-2:])} '
          f'pixels, near {float(context["near"][0]):g}, far {float(context["far"][0]):g} '
          f'({time.perf_counter() - start:.1f} s)')
    for path in written:
        print(f'  {path}')


if __name__ == '__main__':
    run_tool(main)
