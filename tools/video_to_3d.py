"""Video to 3D: fit Gaussians to a generated video (a tools/infer.py output folder).

    python tools/video_to_3d.py INFER_OUT [--out DIR] [--every 4] [--iterations 300] [--views-per-step 2]
                                [--renderer torch|gsplat] [--device DEV]
                                [--lpips-vgg VGG16.pth [--lpips-linear vgg.pth]]

Reads INFER_OUT/cameras.json (its frames and their cameras) and INFER_OUT/gaussians.ply (the
reconstructor's Gaussians, the initialisation), fits every Gaussian's mean, colour, opacity and
covariance with Adam through the differentiable renderer (torch on the CPU, gsplat on CUDA), holding
out every k-th frame (method: videoscene/pipelines/video_to_3d.py). Writes to --out (default
INFER_OUT/video_to_3d; refused if it exists, unless --overwrite): gaussians.ply (fitted),
contact_sheet.png (held-out frames: video | initial render | fitted render), metrics.json; prints
PSNR/SSIM on the held-out frames before and after, and LPIPS when local VGG16 weights are given
(never downloaded; otherwise it says LPIPS is unavailable).
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import sys
import time
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402

from videoscene.errors import InputError  # noqa: E402
from videoscene.geometry.camera_validation import check_camera_tensors  # noqa: E402
from videoscene.pipelines.inputs import read_camera_file, read_images  # noqa: E402
from videoscene.pipelines.video_to_3d import fit_gaussians, render_frames  # noqa: E402
from videoscene.registry import RENDERERS  # noqa: E402
from videoscene.structures import Gaussians  # noqa: E402
from videoscene.visualization import contact_sheet, save_png  # noqa: E402

OUTPUT_FILES = ('gaussians.ply', 'contact_sheet.png', 'metrics.json')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('video', help='a tools/infer.py output folder (cameras.json, frames/, gaussians.ply)')
    parser.add_argument('--out', help='output folder (default: VIDEO/video_to_3d)')
    parser.add_argument('--overwrite', action='store_true', help='replace the outputs of an existing folder')
    parser.add_argument('--every', type=int, default=4, help='hold out frames k, 2k, ... (not the last)')
    parser.add_argument('--iterations', type=int, default=300, help='Adam steps')
    parser.add_argument('--views-per-step', type=int, default=2, help='training frames rendered per step')
    parser.add_argument('--renderer', choices=['torch', 'gsplat'], help='default: gsplat on CUDA, torch on CPU')
    parser.add_argument('--device', help='default: cuda when available, else cpu')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--lpips-vgg', help="local torchvision VGG16 weights (vgg16-397923af.pth) for LPIPS")
    parser.add_argument('--lpips-linear', help="LPIPS linear weights (default: the lpips package's vgg.pth)")
    return parser.parse_args(argv)


def build_lpips(args: argparse.Namespace, device: torch.device):
    if args.lpips_vgg is None:
        return None
    from videoscene.evaluation import LPIPS
    try:
        return LPIPS(args.lpips_vgg, args.lpips_linear).to(device)
    except (FileNotFoundError, ValueError) as error:
        raise InputError('--lpips-vgg', str(error)) from None


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        run(args)
    except InputError as error:
        print(f'error: {error}', file=sys.stderr)
        return 2
    return 0


def run(args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    folder = Path(args.video)
    out = Path(args.out) if args.out else folder / 'video_to_3d'
    if out.exists() and any(out.iterdir()):
        if not args.overwrite:
            raise InputError('--out', f'{out} exists and is not empty; pass --overwrite to replace its outputs')
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    cameras = read_camera_file(folder / 'cameras.json')
    if cameras.images is None or cameras.extrinsics is None or cameras.near is None:
        raise InputError(cameras.path, 'needs "images", "extrinsics", "near" and "far" (tools/infer.py writes them)')
    if not (folder / 'gaussians.ply').is_file():
        raise InputError(folder / 'gaussians.ply', 'not found: the initial Gaussians of tools/infer.py are needed')
    device = torch.device(args.device or ('cuda' if torch.cuda.is_available() else 'cpu'))
    count = len(cameras.images)
    frames = torch.stack(read_images(cameras.images)).to(device)
    views = {'extrinsics': cameras.extrinsics.float(),
             'intrinsics': cameras.intrinsics.float().expand(count, 3, 3),
             'near': cameras.near.float().expand(count), 'far': cameras.far.float().expand(count)}
    check_camera_tensors(views, str(cameras.path), dims=('frame',))
    try:
        initial = Gaussians.load_ply(folder / 'gaussians.ply')
    except ValueError as error:
        raise InputError(folder / 'gaussians.ply', str(error)) from None
    renderer = RENDERERS.build(dict(type=args.renderer or ('gsplat' if device.type == 'cuda' else 'torch')))
    if renderer.needs_cuda and device.type != 'cuda':
        raise InputError('--renderer', f'{args.renderer} renders on CUDA only; on {device} use torch')
    lpips = build_lpips(args, device)
    print(f'{count} frames of {folder} at {frames.shape[-2]} x {frames.shape[-1]}, '
          f'{initial.means.shape[1]} Gaussians; {args.iterations} iterations on {device}')

    torch.manual_seed(args.seed)
    result = fit_gaussians(initial, frames, views, renderer, held_out_every=args.every,
                           iterations=args.iterations, views_per_step=args.views_per_step, seed=args.seed,
                           lpips=lpips, progress=True)
    out.mkdir(parents=True, exist_ok=True)
    result.gaussians.save_ply(out / 'gaussians.ply')
    with torch.no_grad():
        before = render_frames(renderer, initial.to(device), {k: v.to(device) for k, v in views.items()},
                               result.held_out, tuple(frames.shape[-2:]))
    held = result.held_out
    sheet = torch.cat([frames[held], before, result.held_out_renders]).cpu()
    labels = ([f'video {i}' for i in held] + [f'initial {i}' for i in held] + [f'fitted {i}' for i in held])
    save_png(out / 'contact_sheet.png', contact_sheet(sheet, ncols=len(held), labels=labels))
    metrics = {'held_out_frames': held, 'train_frames': result.train, 'before': result.before,
               'after': result.after, 'lpips': 'computed' if lpips is not None else
               'unavailable: no local VGG16 weights configured (--lpips-vgg)',
               'iterations': args.iterations, 'final_loss': result.losses[-1] if result.losses else None,
               'seconds': time.perf_counter() - start}
    (out / 'metrics.json').write_text(json.dumps(metrics, indent=1))

    for name in ('before', 'after'):
        values = getattr(result, name)
        line = f'held-out frames {held}, {name} fitting: PSNR {values["psnr"]:.2f} dB, SSIM {values["ssim"]:.3f}'
        print(line + (f', LPIPS {values["lpips"]:.3f}' if 'lpips' in values else ''))
    if lpips is None:
        print('LPIPS: unavailable (no local VGG16 weights configured; pass --lpips-vgg, they are never downloaded)')
    print(f'done in {metrics["seconds"]:.1f} s; outputs in {out.resolve()}: {", ".join(OUTPUT_FILES)}')
    return metrics


if __name__ == '__main__':
    sys.exit(main())
