"""VideoScene inference: two (or more) views in, a 3D-consistent video, its cameras and Gaussians out.

Inputs, one of:

  (a) images with cameras        IMG0 IMG1 --cameras cameras.json     (format: videoscene/pipelines/inputs.py)
                                 IMG0 IMG1 --transforms transforms.json | --colmap SCENE_DIR
                                 --cameras cameras.json               (the images it lists, e.g. infer's own output)
  (b) two images, no cameras     IMG0 IMG1      the relative pose is estimated; its match report and
                                 confidence are printed and an unreliable estimate is refused
  (c) a dataset scene            --scene KEY_OR_INDEX   a scene of the config's test (else val, else
                                 train) dataset, with its true frames as ground truth
  (d) more than two images       IMG0 IMG1 IMG2 ... with cameras: a clip between each consecutive pair,
                                 chained into one video (each shared boundary frame once)

    python tools/infer.py IMG0 IMG1 [--cameras FILE] --config CONFIG [--checkpoint CKPT] --out DIR
    python tools/infer.py --scene 0 --config CONFIG --policy fixed --leap-t 549 --out DIR

Without --checkpoint the model is the fine-tuned teacher before distillation (give it a policy
without weights: --policy fixed/random). Images are resized (covering) and centre-cropped to --size,
intrinsics updated; conversions of grayscale, alpha, 16-bit and EXIF-rotated images are listed in
videoscene/pipelines/inputs.py.

Outputs in --out (refused if it exists, unless --overwrite): generated.mp4 and frames/*.png,
render.mp4 (the 3D prior), side_by_side.mp4 (render | generated | ground truth when known),
cameras.json (every generated frame, the format (a) reads), gaussians.ply, summary.json. At the end:
a timing breakdown and the peak memory.
"""
from __future__ import annotations

import argparse
import json
import os.path as osp
import resource
import shutil
import sys
import time
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

import torch  # noqa: E402
from mmengine.config import Config  # noqa: E402
from mmengine.dataset import default_collate  # noqa: E402
from tqdm import tqdm  # noqa: E402

from videoscene.engine.config import CfgOptionsAction  # noqa: E402
from videoscene.errors import InputError  # noqa: E402
from videoscene.evaluation import psnr, ssim  # noqa: E402
from videoscene.pipelines import VideoScenePipeline  # noqa: E402
from videoscene.pipelines.clips import generate_along_views  # noqa: E402
from videoscene.pipelines.inputs import (estimate_views, prepare_views, read_camera_file,  # noqa: E402
                                         views_from_camera_file, views_from_scene, write_camera_file)
from videoscene.visualization import save_png, save_video  # noqa: E402

DEFAULT_CONFIG = 'configs/distillation/tiny_cogvideox_synthetic.py'
DEFAULT_NEAR, DEFAULT_FAR = 1.0, 100.0
OUTPUT_FILES = ('generated.mp4', 'render.mp4', 'side_by_side.mp4', 'cameras.json', 'gaussians.ply',
                'summary.json')
STAGES = ('reconstruct', 'render', 'encode', 'policy', 'denoise', 'decode')


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    inputs = parser.add_argument_group('inputs')
    inputs.add_argument('images', nargs='*', help='image files, in path order')
    cameras = inputs.add_mutually_exclusive_group()
    cameras.add_argument('--cameras', help='camera JSON (videoscene/pipelines/inputs.py)')
    cameras.add_argument('--transforms', help='instant-ngp / nerfstudio transforms.json holding the images')
    cameras.add_argument('--colmap', help='COLMAP scene folder (sparse/0, images/) holding the images')
    inputs.add_argument('--scene', help='(c) a scene key or index of the config\'s dataset')
    inputs.add_argument('--near', type=float, help='depth bounds where the cameras give none '
                        f'(default {DEFAULT_NEAR}; COLMAP: from its sparse points)')
    inputs.add_argument('--far', type=float, help=f'(default {DEFAULT_FAR})')
    inputs.add_argument('--fov', type=float, default=60.0,
                        help='(b) horizontal field of view in degrees when no intrinsics are given')
    inputs.add_argument('--min-confidence', type=float, default=0.5,
                        help='(b) smallest pose-estimation confidence accepted')

    model = parser.add_argument_group('model')
    model.add_argument('--config', default=DEFAULT_CONFIG, help='distillation config')
    model.add_argument('--checkpoint', help='tools/train.py checkpoint of the config (none: the teacher)')
    model.add_argument('--weights', choices=['student', 'target', 'teacher'],
                       help='default: student with a checkpoint, teacher without')
    model.add_argument('--policy', choices=['ddpnet', 'fixed', 'random'],
                       help="leap timestep policy (default: the config's)")
    model.add_argument('--leap-t', type=int, help='the fixed policy\'s timestep (implies --policy fixed; default 549)')
    model.add_argument('--policy-checkpoint', help='take only the policy (DDPNet) from this checkpoint')
    model.add_argument('--reconstructor', help='reconstructor type replacing the config\'s (e.g. MVSplat)')
    model.add_argument('--reconstructor-checkpoint',
                       help='.pth: a stage-1 tools/train.py checkpoint; .ckpt/.safetensors: official weights')
    model.add_argument('--renderer', choices=['torch', 'gsplat'], help='default: gsplat on CUDA, torch on CPU')
    model.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={}, metavar='KEY=VALUE',
                       help='override config entries')

    run = parser.add_argument_group('sampling and output')
    run.add_argument('--steps', type=int, default=1, help='denoising steps (1: the one-step leap)')
    run.add_argument('--from-noise', action='store_true', help='the plain --steps sampler from pure noise')
    run.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                     help="frame size (default: the config's training size)")
    run.add_argument('--frames', type=int, help='frames per clip (default: the config\'s training videos)')
    run.add_argument('--seed', type=int, default=0)
    run.add_argument('--device', help='default: cuda when available, else cpu')
    run.add_argument('--dtype', help='default: bfloat16 on CUDA, float32 on CPU')
    run.add_argument('--vae-tiling', action='store_true')
    run.add_argument('--vae-slicing', action='store_true')
    run.add_argument('--fps', type=float, default=8.0)
    run.add_argument('--out', required=True, help='output folder')
    run.add_argument('--overwrite', action='store_true', help='replace the outputs of an existing folder')
    return parser.parse_args(argv)


# ----------------------------------------------------------------------------- config
def load_config(args: argparse.Namespace) -> Config:
    if not osp.isfile(args.config):
        raise InputError(args.config, 'config file not found (distillation configs live in configs/distillation/)')
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if args.reconstructor:
        cfg.model.reconstructor = dict(type=args.reconstructor)
        cfg.model.reconstructor_checkpoint = None
    if args.reconstructor_checkpoint:
        path = Path(args.reconstructor_checkpoint)
        if path.suffix == '.pth':
            cfg.model.reconstructor_checkpoint = str(path)
        elif path.suffix in ('.ckpt', '.safetensors'):
            cfg.model.reconstructor.checkpoint = str(path)
            cfg.model.reconstructor_checkpoint = None
        else:
            raise InputError('--reconstructor-checkpoint', f'{path}: expected a .pth (tools/train.py) or an '
                             'official .ckpt / .safetensors file')
    return cfg


def training_dataset(cfg: Config) -> dict:
    loader = cfg.get('train_dataloader') or {}
    return loader.get('dataset') or {}


def default_size(cfg: Config, args: argparse.Namespace) -> tuple[int, int]:
    """--size, else the config's training frames (dataset ``image_shape`` or ``height``/``width``)."""
    if args.size:
        return tuple(args.size)
    dataset = training_dataset(cfg)
    if dataset.get('image_shape'):
        return tuple(dataset['image_shape'])
    if dataset.get('height') and dataset.get('width'):
        return int(dataset['height']), int(dataset['width'])
    raise InputError('--size', f'{args.config} names no training frame size; give --size H W')


def default_frames(cfg: Config, args: argparse.Namespace) -> int:
    """--frames, else the config's training videos (``num_targets`` + the 2 context frames), else 49."""
    if args.frames:
        return args.frames
    sampler = training_dataset(cfg).get('view_sampler') or {}
    return int(sampler['num_targets']) + 2 if 'num_targets' in sampler else 49


def policy_override(cfg: Config, args: argparse.Namespace) -> dict | None:
    if args.leap_t is not None and args.policy not in (None, 'fixed'):
        raise InputError('--leap-t', f'sets the fixed policy\'s timestep; it cannot go with --policy {args.policy}')
    if args.policy == 'fixed' or args.leap_t is not None:
        return dict(type='fixed', t=549 if args.leap_t is None else args.leap_t)
    configured = cfg.model.get('policy', {})
    if args.policy == 'random':
        extra = {key: configured[key] for key in ('max_timestep',) if key in configured}
        return dict(type='random', solver_steps=cfg.model.get('solver_steps', 50), **extra)
    if args.policy == 'ddpnet' and configured.get('type') != 'DDPNet':
        raise InputError('--policy ddpnet', f"the config's policy is {configured.get('type')!r}, not DDPNet")
    return None


# ----------------------------------------------------------------------------- inputs
def read_views(args: argparse.Namespace, size: tuple[int, int]):
    """``(views, mode, pose report)`` of the image inputs (a), (b), (d)."""
    near = DEFAULT_NEAR if args.near is None else args.near
    far = DEFAULT_FAR if args.far is None else args.far
    images = [Path(p) for p in args.images]
    report = None
    if args.transforms or args.colmap:
        if len(images) < 2:
            raise InputError('images', 'give at least two of the scene\'s image files to generate between')
        if args.transforms:
            from videoscene.datasets.transforms_json import read_transforms_json
            scene = _dataset_reader(read_transforms_json, args.transforms)
        else:
            from videoscene.datasets.colmap import depth_bounds, read_colmap_scene
            scene, points = _dataset_reader(read_colmap_scene, args.colmap)
            if args.near is None:
                intrinsics = torch.stack([camera.intrinsics() for camera in scene.cameras])
                near, far = depth_bounds(points, scene.extrinsics, intrinsics)
        views = views_from_scene(scene, images, near, far)
    elif args.cameras:
        cameras = read_camera_file(args.cameras)
        images = images or cameras.images or []
        if len(images) < 2:
            raise InputError(args.cameras, 'lists fewer than two "images" and none are given on the command line')
        if cameras.extrinsics is None:
            views, report = estimate_views(images, cameras.intrinsics, near, far,
                                           min_confidence=args.min_confidence)
        else:
            views = views_from_camera_file(images, cameras, near, far)
    else:
        if len(images) != 2:
            raise InputError('images', f'got {len(images)} images without cameras: pose estimation takes '
                             'exactly two; give --cameras, --transforms or --colmap for more')
        views, report = estimate_views(images, None, near, far, fov_x_degrees=args.fov,
                                       min_confidence=args.min_confidence)
    if report is not None:
        print(f'pose estimation: {report.summary()}')
        print(f'pose estimation confidence: {report.confidence:.2f} (at least {args.min_confidence} accepted)')
    mode = 'images, estimated cameras' if report else ('chained clips' if len(views) > 2 else 'images with cameras')
    return prepare_views(views, size), mode, report


def _dataset_reader(reader, path):
    """A dataset reader's result, its ValueError / FileNotFoundError as an InputError naming ``path``."""
    try:
        return reader(path)
    except (ValueError, FileNotFoundError) as error:
        if isinstance(error, InputError):
            raise
        raise InputError(path, str(error)) from None


def dataset_sample(cfg: Config, args: argparse.Namespace, frames: int, size: tuple[int, int]) -> dict:
    """(c): one sample of the config's test (else val, else train) dataset with ``frames`` frames
    evenly spaced between its evaluation context pair (the ``video`` view sampler)."""
    from videoscene.registry import DATASETS
    for name in ('test_dataloader', 'val_dataloader', 'train_dataloader'):
        if cfg.get(name) and cfg[name].get('dataset'):
            break
    else:
        raise InputError(args.config, 'has no dataset to take --scene from')
    dataset_cfg = cfg[name].dataset.to_dict()
    dataset_cfg.update(view_sampler=dict(type='video', num_frames=frames), image_shape=size)
    dataset = DATASETS.build(dataset_cfg)
    key = args.scene
    if key not in dataset.scenes:
        if not key.isdigit() or int(key) >= len(dataset.scenes):
            raise InputError('--scene', f'{key!r} is neither a scene key nor an index below {len(dataset.scenes)} '
                             f'of the {name} dataset (keys e.g. {dataset.scenes[:3]})')
        key = dataset.scenes[int(key)]
    print(f'scene {key!r} of the {name} dataset ({dataset_cfg["type"]})')
    return default_collate([dataset.get_sample(dataset.scenes.index(key))])


def prepare_output(path: str, overwrite: bool) -> Path:
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise InputError('--out', f'{out} exists and is not a folder')
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise InputError('--out', f'{out} exists and is not empty; pass --overwrite to replace its outputs '
                             'or choose another folder')
        shutil.rmtree(out / 'frames', ignore_errors=True)
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    return out


# ----------------------------------------------------------------------------- outputs
def write_outputs(out: Path, output, fps: float) -> None:
    """Everything but ``summary.json``."""
    out.mkdir(parents=True, exist_ok=True)
    video, render = output.video[0].cpu(), output.render[0].cpu()
    names = []
    for i, frame in enumerate(tqdm(video, desc='writing frames', leave=False)):
        names.append(f'frames/{i:05d}.png')
        save_png(out / names[-1], frame)
    save_video(out / 'generated.mp4', video, fps=fps)
    save_video(out / 'render.mp4', render, fps=fps)
    columns = [render, video] + ([output.ground_truth[0].cpu()] if output.ground_truth is not None else [])
    save_video(out / 'side_by_side.mp4', torch.cat(columns, dim=-1), fps=fps)
    cameras = {key: value[0] for key, value in output.cameras.items()}
    write_camera_file(out / 'cameras.json', names, cameras['extrinsics'], cameras['intrinsics'],
                      cameras['near'], cameras['far'], tuple(video.shape[-2:]))
    output.gaussians.save_ply(out / 'gaussians.ply')


def peak_memory(device: torch.device) -> dict[str, float]:
    memory = {'cpu_max_rss_mib': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if device.type == 'cuda':
        memory['cuda_max_allocated_mib'] = torch.cuda.max_memory_allocated(device) / 2 ** 20
    return memory


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
    timings: dict[str, float] = {}
    out = prepare_output(args.out, args.overwrite)
    if args.steps < 1:
        raise InputError('--steps', f'must be at least 1, got {args.steps}')
    if args.scene is not None and (args.images or args.cameras or args.transforms or args.colmap):
        raise InputError('--scene', 'takes the views from the dataset: give no images or camera files with it')
    cfg = load_config(args)
    size, frames = default_size(cfg, args), default_frames(cfg, args)
    torch.manual_seed(args.seed)

    tic = time.perf_counter()
    report = None
    if args.scene is not None:
        sample, mode = dataset_sample(cfg, args, frames, size), 'dataset scene'
        names = [f'{sample["scene"][0]} frame {i}' for i in sample['context']['index'][0].tolist()]
    else:
        if cfg.model.reconstructor.get('type') == 'DepthUnprojection':
            raise InputError('--reconstructor', 'DepthUnprojection places Gaussians at known per-pixel depth, '
                             'which image inputs lack; use a learned reconstructor (e.g. --reconstructor MVSplat '
                             'with --reconstructor-checkpoint) or --scene')
        views, mode, report = read_views(args, size)
        names = views.names
    timings['read inputs'] = time.perf_counter() - tic

    tic = time.perf_counter()
    try:
        pipeline = VideoScenePipeline.from_config(
            cfg, args.checkpoint, args.weights, policy_override(cfg, args), args.policy_checkpoint,
            renderer=args.renderer, device=args.device, dtype=args.dtype, vae_tiling=args.vae_tiling,
            vae_slicing=args.vae_slicing)
    except FileNotFoundError as error:
        raise InputError(args.config, f'{error}; the config\'s header lists how its frozen sources are made '
                         '(or point it elsewhere with --cfg-options)') from None
    timings['load models'] = time.perf_counter() - tic
    pipeline.check_inputs(size, frames)
    policy = type(pipeline.policy).__name__
    from_noise = args.from_noise or not cfg.model.get('leap_flow', True)
    if from_noise and not args.from_noise:
        print('the config is the "w/o 3D-aware leap flow" ablation, distilled from ground truth plus noise: '
              'it samples from pure noise')
    print(f'{mode}: {len(names)} views, {frames} frames per clip at {size[0]} x {size[1]}; '
          f'{"teacher" if args.checkpoint is None else args.weights or "student"} weights, '
          f'{"from pure noise" if from_noise else "policy " + policy}, {args.steps} step(s), on {pipeline.device}')

    generator = torch.Generator().manual_seed(args.seed)
    if args.scene is not None:
        output = pipeline(sample['context'], sample['target'], steps=args.steps, from_noise=from_noise,
                          generator=generator, progress=True)
    else:
        output = generate_along_views(pipeline, views, frames, steps=args.steps, from_noise=from_noise,
                                      generator=generator, progress=True)
    timings.update(output.timings)

    summary = {
        'mode': mode, 'inputs': names, 'config': args.config, 'checkpoint': args.checkpoint,
        'weights': 'teacher' if args.checkpoint is None else args.weights or 'student',
        'policy': None if from_noise else policy,
        'leap_t': output.t.tolist(), 'steps': args.steps, 'from_noise': from_noise,
        'frames': int(output.video.shape[1]), 'frames_per_clip': frames, 'clips': len(output.t),
        'image_size': list(size), 'seed': args.seed, 'device': str(pipeline.device),
        'dtype': str(pipeline.backbone.dtype).removeprefix('torch.'),
        'pose_estimation': None if report is None else asdict(report),
    }
    if output.ground_truth is not None:
        truth = output.ground_truth[0].cpu()
        summary['metrics_vs_ground_truth'] = {
            name: {'psnr': float(psnr(video[0].cpu(), truth).mean()), 'ssim': float(ssim(video[0].cpu(), truth).mean())}
            for name, video in (('generated', output.video), ('render', output.render))}
    tic = time.perf_counter()
    write_outputs(out, output, args.fps)
    timings['write outputs'] = time.perf_counter() - tic
    timings['total'] = time.perf_counter() - start
    summary['timings_s'] = timings
    summary['peak_memory_mib'] = peak_memory(pipeline.device)
    (out / 'summary.json').write_text(json.dumps(summary, indent=1))

    print(f'leap timestep(s): {output.t.tolist()}')
    if 'metrics_vs_ground_truth' in summary:
        for name, values in summary['metrics_vs_ground_truth'].items():
            print(f'{name} vs ground truth: PSNR {values["psnr"]:.2f} dB, SSIM {values["ssim"]:.3f}')
    print('timings (s): ' + ', '.join(f'{name} {seconds:.2f}' for name, seconds in timings.items()))
    print('peak memory: ' + ', '.join(f'{name.removesuffix("_mib")} {value:.0f} MiB'
                                      for name, value in summary['peak_memory_mib'].items()))
    print(f'outputs in {out.resolve()}: frames/, {", ".join(OUTPUT_FILES)}')
    return summary


if __name__ == '__main__':
    sys.exit(main())
