"""The main job on the embedded default: synthetic scenes through the pipeline that exists today.

    python tools/demo.py [--out outputs/demo] [--scene 0] [--size 256] [--frames 49]

1. Generates (once, cached) the synthetic scene set in the RE10K chunk format and reads one
   evaluation example: two context views and the target frames between them, with depth.
2. Writes the scene as a contact sheet and an mp4 (frames beside their depth) and a top-down plot
   of the camera path (ground truth and the interpolated path between the two context cameras).
3. Reconstructs Gaussians from the two context views (``DepthUnprojection`` on ground-truth depth,
   until a trained MVSplat checkpoint is given with ``--mvsplat``), renders them along both paths
   with the CPU renderer, reports PSNR against the true frames and exports the Gaussians as PLY.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.dataset import default_collate  # noqa: E402

from videoscene.evaluation import psnr  # noqa: E402
from videoscene.registry import CAMERA_PATHS, DATASETS, RECONSTRUCTORS, RENDERERS  # noqa: E402
from videoscene.visualization import colorize_depth, contact_sheet, plot_path, save_png, save_video  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--out', default='outputs/demo', help='output folder')
    parser.add_argument('--scene', type=int, default=0, help='which evaluation scene')
    parser.add_argument('--size', type=int, default=256, help='square image size')
    parser.add_argument('--frames', type=int, default=49, help='target frames between the views')
    parser.add_argument('--mvsplat', help='trained MVSplat checkpoint (official .ckpt or '
                        'safetensors) to reconstruct with instead of ground-truth depth')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()

    dataset = DATASETS.build(dict(type='SyntheticScenes', stage='test', num_scenes=4, frames=120,
                                  height=args.size, width=args.size, num_eval_targets=args.frames))
    sample = default_collate([dataset[args.scene]])
    context, target = sample['context'], sample['target']
    print(f'scene {sample["scene"][0]}: context frames {context["index"][0].tolist()}, '
          f'{target["image"].shape[1]} target frames, data in {dataset.root} '
          f'({time.perf_counter() - start:.1f} s)')

    frames, depth = target['image'][0], target['depth'][0]
    depth_rgb = colorize_depth(depth)
    picks = torch.linspace(0, len(frames) - 1, 8).round().long()
    sheet = torch.cat([context['image'][0], frames[picks], colorize_depth(context['depth'][0]),
                       depth_rgb[picks]])
    labels = ['context 0', 'context 1'] + [f'frame {i}' for i in picks.tolist()]
    save_png(out / 'scene_contact_sheet.png', contact_sheet(sheet, ncols=10,
                                                            labels=labels + labels))
    save_video(out / 'scene_with_depth.mp4', torch.cat([frames, depth_rgb], dim=-1), fps=12)

    interpolated = CAMERA_PATHS.build(dict(type='interpolated'))(context, None, len(frames))
    plot_path(out / 'camera_path.png', {k: v[0] for k, v in target.items()},
              {k: v[0] for k, v in interpolated.items()}, {k: v[0] for k, v in context.items()})

    reconstructor = (RECONSTRUCTORS.build(dict(type='MVSplat', checkpoint=args.mvsplat))
                     if args.mvsplat else RECONSTRUCTORS.build(dict(type='DepthUnprojection')))
    renderer = RENDERERS.build(dict(type='torch', views_per_chunk=4))
    with torch.no_grad():
        gaussians = reconstructor.eval()(context)
        gaussians.save_ply(out / 'gaussians.ply')
        shape = tuple(frames.shape[-2:])
        on_truth = renderer.render(gaussians, target['extrinsics'], target['intrinsics'], shape,
                                   target['near'], target['far'])
        on_path = renderer.render(gaussians, interpolated['extrinsics'],
                                  interpolated['intrinsics'], shape, interpolated['near'],
                                  interpolated['far'])
    score = psnr(on_truth.color[0], frames)
    save_video(out / 'render_vs_truth.mp4', torch.cat([on_truth.color[0], frames], dim=-1), fps=12)
    save_video(out / 'render_interpolated_path.mp4', on_path.color[0], fps=12)
    save_png(out / 'render_contact_sheet.png', contact_sheet(
        torch.cat([on_truth.color[0][picks], frames[picks]]), ncols=8,
        labels=[f'render {i}' for i in picks.tolist()] + [f'truth {i}' for i in picks.tolist()]))

    name = 'MVSplat' if args.mvsplat else 'DepthUnprojection (ground-truth depth)'
    print(f'{name}: {gaussians.means.shape[1]} Gaussians; render at the true target cameras: '
          f'PSNR {score.mean():.2f} dB (min {score.min():.2f}, max {score.max():.2f})')
    print(f'done in {time.perf_counter() - start:.1f} s; outputs in {out.resolve()}:')
    for path in sorted(out.iterdir()):
        print(f'  {path.name}')


if __name__ == '__main__':
    main()
