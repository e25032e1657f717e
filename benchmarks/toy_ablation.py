"""Toy reproduction of the paper's ablation (Tab. 3, Sec. 4.3) on the CPU, end to end.

    .venv/bin/python benchmarks/toy_ablation.py           # the full run (~30 min, 2 idle cores)
    .venv/bin/python benchmarks/toy_ablation.py --quick   # everything, tiny, about 2 minutes

Every stage is the project's own config with overrides, run by the project's Runner:

1. data: synthetic scenes at 16 x 16 whose camera moves fast and at a varying speed
   (``mean_step``, ``speed_variation``), so the frames between the two context views are not
   an interpolation of them and only the render carries the trajectory; 9-frame clips (context
   pair + 7 targets) drawn once into in-memory pools (``benchmarks/clip_pool.py``): train,
   validation (to choose the fixed leap t) and held-out test scenes;
2. stage 1 (``configs/mvsplat/mvsplat_synthetic_cpu.py``): a slim MVSplat, few iterations
   (``--reconstructor depth``: the ground-truth-depth oracle ``DepthUnprojection`` instead, not
   learned, whose render keeps the scene's structure);
3. stage 2 (``configs/teacher/tiny_cogvideox_synthetic.py``): a 4-layer CogVideoX transformer on
   pixel-unshuffle latents (``tools/make_tiny_backbone.py --vae pixel-unshuffle``), exported as a
   model folder;
4. render cache: the frozen stage-1 reconstruction rendered at every clip's cameras by the
   distillation model's own step 1 (``LeapFlowDistillation.render``), stored with the pools;
5. stage 3 (``configs/distillation/tiny_cogvideox_synthetic*.py``): full VideoScene (DDPNet),
   "w/o 3D-aware leap flow" and "w/o DDPNet" (random leaps), from the same teacher;
6. evaluation on the held-out clips with the one sampling loop (``pipelines.denoise``), the same
   leap noise for every row: the rows of Tab. 3 plus the teachers, with PSNR / SSIM against the
   true frames, sharpness (mean gradient magnitude relative to the true frames: PSNR favours
   blur), fidelity of each one-step student to the teacher's multi-step output from the same start,
   DDPNet's chosen leap t against the render's PSNR, and each stage's wall time.

Metrics cover the 7 frames between the context pair (the first and last frames are given).
Trained stages are cached under ``--work-dir`` by a hash of their settings, so reruns are fast;
``--fresh`` retrains.  The table goes to stdout and to ``--results`` (``.md`` and ``.json``).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import os.path as osp
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config  # noqa: E402

from benchmarks.clip_pool import add_renders, draw_clips, load_pool, save_pool  # noqa: E402
from videoscene.backbones.tiny import save_tiny_cogvideox  # noqa: E402
from videoscene.distillation import load_training_checkpoint  # noqa: E402
from videoscene.engine import VideoSceneRunner  # noqa: E402
from videoscene.evaluation import psnr, sharpness, ssim  # noqa: E402
from videoscene.models.views import scene_views  # noqa: E402
from videoscene.pipelines import VideoScenePipeline, denoise  # noqa: E402
from videoscene.registry import DATASETS, MODELS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CONFIGS = {
    'stage1': 'configs/mvsplat/mvsplat_synthetic_cpu.py',
    'teacher': 'configs/teacher/tiny_cogvideox_synthetic.py',
    'full': 'configs/distillation/tiny_cogvideox_synthetic.py',
    'wo_leap_flow': 'configs/distillation/tiny_cogvideox_synthetic_wo_leap_flow.py',
    'wo_ddpnet': 'configs/distillation/tiny_cogvideox_synthetic_wo_ddpnet.py',
}
RUNS = ('full', 'wo_leap_flow', 'wo_ddpnet')
FRAMES = 9                # context pair + 7 targets
SLIM_MVSPLAT = dict(type='MVSplat', feature_channels=64, num_transformer_layers=1,
                    num_depth_candidates=16, costvolume_unet_feat_dim=32, sh_degree=1)
QUICK = dict(train_scenes=8, clips_per_scene=4, val_scenes=4, test_scenes=8, test_clips=1,
             recon_iters=20, teacher_iters=400, distill_iters=60, log_every=20)


# ---------------------------------------------------------------------------------- arguments
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add = parser.add_argument
    add('--quick', action='store_true', help=f'tiny settings for a ~2 minute run: {QUICK}')
    add('--work-dir', help='stage cache (default work_dirs/toy_ablation[_quick])')
    add('--results', help='results path without suffix (default benchmarks/results/toy_ablation, '
        'or WORK_DIR/toy_ablation with --quick)')
    add('--fresh', action='store_true', help='retrain every stage, ignoring the cache')
    add('--size', type=int, default=16, help='square frame size (a multiple of 16, for MVSplat)')
    add('--train-scenes', type=int, default=48)
    add('--clips-per-scene', type=int, default=8, help='training clips drawn per scene')
    add('--val-scenes', type=int, default=8, help='scenes (2 clips each) to choose the fixed t on')
    add('--test-scenes', type=int, default=24, help='held-out scenes')
    add('--test-clips', type=int, default=2, help='clips per held-out scene')
    add('--scene-frames', type=int, default=64, help='frames per generated scene')
    add('--mean-step', type=float, default=0.05, help='camera metres per scene frame')
    add('--speed-variation', type=float, default=0.9, help='relative speed amplitude, [0, 1)')
    add('--min-gap', type=int, default=24, help='fewest scene frames between the context pair')
    add('--max-gap', type=int, default=40, help='most scene frames between the context pair')
    add('--reconstructor', choices=['mvsplat', 'depth'], default='mvsplat',
        help="the frozen 3D prior: stage 1's MVSplat, or 'depth', the ground-truth-depth oracle "
        '(DepthUnprojection, no training): an informative render')
    add('--recon-iters', type=int, default=300, help='stage-1 iterations')
    add('--recon-batch', type=int, default=4)
    add('--teacher-iters', type=int, default=6000, help='stage-2 iterations')
    add('--teacher-layers', type=int, default=4)
    add('--teacher-heads', type=int, default=4)
    add('--teacher-head-dim', type=int, default=48)
    add('--distill-iters', type=int, default=400, help='stage-3 iterations per run')
    add('--policy-iters', type=float, default=0.75,
        help='DDPNet trains for this share of the distillation iterations, then freezes')
    add('--batch', type=int, default=8, help='teacher and distillation batch size')
    add('--teacher-steps', type=int, default=50, help='teacher steps from noise')
    add('--sweep-stride', type=int, default=1,
        help='sweep every n-th candidate leap t for the fixed-t rows (1: all)')
    add('--log-every', type=int, default=100, help='iterations between training log lines')
    add('--threads', type=int, default=2,
        help='torch CPU threads (on a machine other jobs keep busy, 1 is several times faster)')
    add('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    if args.quick:
        defaults = {action.dest: action.default for action in parser._actions}
        for key, value in QUICK.items():
            if getattr(args, key) == defaults[key]:
                setattr(args, key, value)
    if args.size % 16:
        parser.error(f'--size must be a multiple of 16 (MVSplat), got {args.size}')
    if not args.min_gap >= FRAMES - 1 or args.max_gap < args.min_gap or \
            args.scene_frames <= args.max_gap:
        parser.error('need 8 <= --min-gap <= --max-gap < --scene-frames')
    suffix = '_quick' if args.quick else ''
    args.work_dir = Path(args.work_dir or REPO / f'work_dirs/toy_ablation{suffix}')
    args.results = Path(args.results or (args.work_dir / 'toy_ablation' if args.quick else
                                         REPO / 'benchmarks/results/toy_ablation'))
    return args


def digest(*parts) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:10]


class Clock:
    """Wall time of each stage, printed as it ends; a cached stage reports its original time."""

    def __init__(self) -> None:
        self.start, self.stages = time.perf_counter(), {}

    def done(self, name: str, seconds: float, cached: bool = False) -> None:
        self.stages[name] = dict(seconds=round(seconds, 1), cached=cached)
        note = ' (cached; time of the run that made it)' if cached else ''
        print(f'[{time.perf_counter() - self.start:7.1f} s] {name}: {seconds:.1f} s{note}',
              flush=True)


def cached_stage(clock: Clock, name: str, folder: Path, fresh: bool, make) -> Path:
    """Run ``make(folder)`` unless ``folder/done.json`` exists (then report its recorded time)."""
    marker = folder / 'done.json'
    if marker.is_file() and not fresh:
        clock.done(name, json.loads(marker.read_text())['seconds'], cached=True)
        return folder
    print(f'--- {name} -> {folder}', flush=True)
    folder.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    make(folder)
    seconds = time.perf_counter() - start
    marker.write_text(json.dumps(dict(seconds=seconds)))
    clock.done(name, seconds)
    return folder


def project_config(name: str, overrides: dict) -> Config:
    """The project's config ``CONFIGS[name]`` with ``overrides`` merged in."""
    cfg = Config.fromfile(str(REPO / CONFIGS[name]))
    cfg.merge_from_dict(overrides)
    return cfg


def train(cfg: Config, folder: Path, pool: Path) -> VideoSceneRunner:
    """Train ``cfg`` on the clips of ``pool`` in ``folder`` with the project's Runner (no
    validation: the toy evaluates at the end)."""
    cfg.train_dataloader.dataset = dict(type='ClipPool', path=str(pool))
    cfg.train_dataloader.num_workers = 0
    cfg.train_dataloader.pop('persistent_workers', None)
    cfg.work_dir = str(folder)
    cfg.experiment_name = f'{folder.name}_{time.time_ns()}'
    for key in ('val_dataloader', 'val_cfg', 'val_evaluator', 'test_dataloader', 'test_cfg',
                'test_evaluator'):
        cfg[key] = None
    cfg.train_cfg.pop('val_interval', None)
    runner = VideoSceneRunner.from_cfg(cfg)
    runner.train()
    return runner


def schedule(iters: int, log_every: int) -> dict:
    return dict(train_cfg=dict(max_iters=iters),
                default_hooks=dict(checkpoint=dict(interval=iters, max_keep_ckpts=1,
                                                   save_last=True),
                                   logger=dict(interval=log_every)))


# ---------------------------------------------------------------------------------- stages
def make_pools(args, folder: Path) -> None:
    scenes = dict(type='SyntheticScenes', frames=args.scene_frames, height=args.size,
                  width=args.size, mean_step=args.mean_step, speed_variation=args.speed_variation,
                  seed=args.seed, num_eval_targets=FRAMES - 2,
                  view_sampler=dict(type='bounded', num_targets=FRAMES - 2, min_gap=args.min_gap,
                                    max_gap=args.max_gap))
    for split, stage, count, clips in (('train', 'train', args.train_scenes, args.clips_per_scene),
                                       ('val', 'val', args.val_scenes, 2),
                                       ('test', 'test', args.test_scenes, args.test_clips)):
        dataset = DATASETS.build(dict(scenes, stage=stage, num_scenes=count))
        save_pool(draw_clips(dataset, clips, seed=args.seed), folder / f'{split}.pt')


def train_reconstructor(args, pools: Path, folder: Path) -> None:
    overrides = schedule(args.recon_iters, args.log_every)
    overrides.update(model=dict(reconstructor=SLIM_MVSPLAT),
                     train_dataloader=dict(batch_size=args.recon_batch),
                     param_scheduler=[dict(type='CosineAnnealingLR', T_max=args.recon_iters,
                                           eta_min=2e-5, by_epoch=False)])
    train(project_config('stage1', overrides), folder, pools / 'train.pt')


def train_teacher(args, pools: Path, folder: Path) -> None:
    tiny = save_tiny_cogvideox(folder / 'random_init', height=args.size, width=args.size,
                               num_frames=FRAMES, num_layers=args.teacher_layers,
                               heads=args.teacher_heads, head_dim=args.teacher_head_dim,
                               vae='pixel_unshuffle', seed=args.seed)
    iters = args.teacher_iters
    warmup = max(1, min(200, iters // 20))
    overrides = schedule(iters, args.log_every)
    overrides.update(
        model=dict(backbone=dict(pretrained=str(tiny),
                                 prompt_embedding=str(tiny / 'prompt_embeds.safetensors'))),
        train_dataloader=dict(batch_size=args.batch),
        param_scheduler=[dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0,
                              end=warmup),
                         dict(type='CosineAnnealingLR', T_max=max(1, iters - warmup),
                              eta_min=1e-4, by_epoch=False, begin=warmup, end=iters)])
    runner = train(project_config('teacher', overrides), folder / 'train', pools / 'train.pt')
    runner.model.backbone.save_pretrained(folder / 'model')


def distillation_cfg(args, run: str, teacher: Path, reconstructor: Path | None) -> Config:
    """The run's config: the project's file with the toy's sources and schedule
    (``reconstructor``: the stage-1 run, None for the ground-truth-depth oracle)."""
    model = teacher / 'model'
    iters = args.distill_iters
    overrides = schedule(iters, args.log_every)
    sources = (dict(reconstructor=dict(_delete_=True, type='DepthUnprojection'),
                    reconstructor_checkpoint=None)
               if reconstructor is None else
               dict(reconstructor=SLIM_MVSPLAT,
                    reconstructor_checkpoint=str(checkpoint_of(reconstructor))))
    overrides.update(
        model=dict(backbone=dict(pretrained=str(model),
                                 prompt_embedding=str(model / 'prompt_embeds.safetensors')),
                   **sources),
        train_dataloader=dict(batch_size=args.batch))
    cfg = project_config(run, overrides)
    hooks = [hook for hook in cfg.custom_hooks if hook.type != 'DistillationVisualizationHook']
    for hook in hooks:
        if hook.type == 'PolicyScheduleHook':
            hook.train_iters = int(args.policy_iters * iters)
    cfg.custom_hooks = hooks
    return cfg


def checkpoint_of(folder: Path) -> Path:
    """The last checkpoint of the training run in ``folder``."""
    last = folder / 'last_checkpoint'
    if not last.is_file():
        raise FileNotFoundError(f'{folder} holds no finished training run (no last_checkpoint)')
    return Path(last.read_text().strip())


def make_renders(args, pools: Path, teacher: Path, reconstructor: Path | None,
                 folder: Path) -> None:
    """The pools again, with the frozen reconstruction's renders (the distillation model's own
    step 1); ``render_seconds.json``: reconstruct + render seconds per clip of each split."""
    model = MODELS.build(distillation_cfg(args, 'full', teacher, reconstructor).model).eval()
    seconds = {}
    for split in ('train', 'val', 'test'):
        start = time.perf_counter()
        pool = add_renders(load_pool(pools / f'{split}.pt'), model.render, batch_size=16)
        save_pool(pool, folder / f'{split}.pt')
        seconds[split] = (time.perf_counter() - start) / len(pool['scene'])
        print(f'  rendered {len(pool["scene"])} {split} clips ({seconds[split]:.3f} s/clip)',
              flush=True)
    (folder / 'render_seconds.json').write_text(json.dumps(seconds))


def load_student(args, run: str, teacher: Path, reconstructor: Path | None, folder: Path):
    """The distillation model of ``run`` with its trained student, EMA target and policy."""
    model = MODELS.build(distillation_cfg(args, run, teacher, reconstructor).model)
    load_training_checkpoint(model, checkpoint_of(folder), '')
    return model.eval()


# ---------------------------------------------------------------------------------- evaluation
class HeldOut:
    """Clips of a pool with their renders, the render latents, the first+last-frame conditioning
    and one leap noise: what every row of the table shares."""

    def __init__(self, pool: dict, backbone, seed: int) -> None:
        views = scene_views(pool['context'], pool['target'])
        self.video, self.render = views['image'], views['render']
        with torch.no_grad():
            self.latents = backbone.encode(self.render)
            self.conditioning = backbone.condition(self.video[:, 0], self.video[:, -1],
                                                   self.video.shape[1])
        self.noise = torch.randn(self.latents.shape, generator=torch.Generator().manual_seed(seed))

    def __len__(self) -> int:
        return len(self.video)


@torch.no_grad()
def generate(model, weights: str, data: HeldOut, start: torch.Tensor | None,
             steps: int | None = None) -> torch.Tensor:
    """Videos ``[N, F, 3, H, W]`` from ``model``'s ``weights`` (student/target with the consistency
    scalings, teacher without).  ``start [N]``: from the render latents noised to each sample's
    leap t with the shared noise (as ``VideoScenePipeline`` does), ``steps`` DDIM steps (None: one
    for a student, the solver grid's ``(t + 1) // k`` for the teacher); None: from the noise
    alone, ``steps`` steps."""
    shell, scheduler = model.shell, model.scheduler
    teacher = weights == 'teacher'
    if start is None:
        x, grids = data.noise, [scheduler.timesteps(steps)] * len(data)
    else:
        scale = shell.clean_scale(start).to(data.latents).reshape(-1, 1, 1, 1, 1)
        x = scheduler.add_noise(data.latents * scale, data.noise, start)
        grids = [scheduler.leap_timesteps(int(t), steps or (max(1, (int(t) + 1) // model.skip)
                                                            if teacher else 1)) for t in start]
    groups: dict[tuple[int, ...], list[int]] = {}
    for index, grid in enumerate(grids):
        groups.setdefault(tuple(grid.tolist()), []).append(index)
    clean = torch.empty_like(x)
    for grid, indices in groups.items():
        rows = torch.tensor(indices)
        clean[rows] = denoise(shell, scheduler, x[rows], list(grid),
                              {key: value[rows] for key, value in data.conditioning.items()},
                              params=model.role_params(weights), consistency=not teacher)
    return shell.decode(clean)


def check_against_pipeline(model, pool: dict, video: torch.Tensor, seed: int) -> None:
    """Raise unless ``video`` (the table's one-step videos of ``model``) is what
    ``VideoScenePipeline`` makes of the same clips with the same leap noise, rendering afresh."""
    views = {name: {k: v for k, v in pool[name].items() if k != 'render'}
             for name in ('context', 'target')}
    output = VideoScenePipeline.from_model(model)(
        views['context'], views['target'], generator=torch.Generator().manual_seed(seed))
    error = float((output.video - video).abs().max())
    if error > 1e-4:
        raise RuntimeError(f'the toy evaluation differs from VideoScenePipeline by {error}')
    print(f'  one-step videos match VideoScenePipeline (max difference {error:.1e})', flush=True)


def clip_scores(video: torch.Tensor, truth: torch.Tensor) -> dict[str, torch.Tensor]:
    """Per clip ``[N]``, over the frames between the context pair: PSNR, SSIM and sharpness
    (gradient magnitude over the true frames')."""
    video, truth = video[:, 1:-1], truth[:, 1:-1]
    return dict(psnr=psnr(video, truth).mean(1), ssim=ssim(video, truth).float().mean(1),
                sharpness=sharpness(video, truth))


def summary(scores: dict[str, torch.Tensor]) -> dict[str, float]:
    return {name: round(float(values.mean()), 4) for name, values in scores.items()}


def sweep(model, data: HeldOut, candidates: torch.Tensor) -> torch.Tensor:
    """PSNR ``[K, N]`` of the one-step student from every candidate leap t."""
    return torch.stack([clip_scores(generate(model, 'student', data,
                                             torch.full((len(data),), int(t))), data.video)['psnr']
                        for t in candidates])


def evaluate(args, students: dict, pools: Path) -> dict:
    """Every row of the table on the held-out clips (see the module docstring)."""
    full, plain, random_leap = students['full'], students['wo_leap_flow'], students['wo_ddpnet']
    test = HeldOut(load_pool(pools / 'test.pt'), full.shell, args.seed)
    val = HeldOut(load_pool(pools / 'val.pt'), full.shell, args.seed + 1)
    rows, teacher_ref = {}, {}

    def row(name: str, steps, make, reference: str | None = None,
            seconds_per_clip: float | None = None):
        start = time.perf_counter()
        video = make()
        if seconds_per_clip is None:
            seconds_per_clip = (time.perf_counter() - start) / len(test)
        scores = clip_scores(video, test.video)
        entry = dict(steps=steps, **summary(scores), seconds_per_clip=round(seconds_per_clip, 4))
        if reference is not None:
            entry['fidelity_psnr'] = round(float(psnr(video[:, 1:-1],
                                                      teacher_ref[reference][:, 1:-1]).mean()), 4)
        rows[name] = dict(entry, per_clip_psnr=[round(float(v), 3) for v in scores['psnr']])
        return video

    # leap timesteps: DDPNet's argmax, a uniform draw, the best fixed t on the validation clips
    candidates = full.policy_module.candidates.cpu()[::args.sweep_stride]
    ddpnet_t = full.policy_module(test.latents).t.cpu()
    torch.manual_seed(args.seed)
    random_t = random_leap.policy_module(test.latents).t.cpu()
    val_sweep = {run: sweep(students[run], val, candidates) for run in ('full', 'wo_ddpnet')}
    test_sweep = {run: sweep(students[run], test, candidates) for run in ('full', 'wo_ddpnet')}
    best_t = {run: int(candidates[val_sweep[run].mean(1).argmax()]) for run in val_sweep}
    fixed_t = torch.full((len(test),), best_t['wo_ddpnet'])

    # the teacher's multi-step outputs from each student's start (fidelity references)
    generate(full, 'teacher', test, None, 2)       # warm-up, so that the first timed row is fair
    leap_steps = float(((ddpnet_t + 1) // full.skip).clamp(min=1).float().mean())
    teacher_ref['noise'] = row(f'Teacher, {args.teacher_steps} steps from noise',
                               args.teacher_steps,
                               lambda: generate(full, 'teacher', test, None, args.teacher_steps))
    teacher_ref['ddpnet'] = row('Teacher, multi-step from the DDPNet leap start',
                                f'{leap_steps:.1f} (mean of (t+1)/{full.skip})',
                                lambda: generate(full, 'teacher', test, ddpnet_t))
    teacher_ref['fixed'] = generate(full, 'teacher', test, fixed_t)
    teacher_ref['random'] = generate(full, 'teacher', test, random_t)
    render_seconds = json.loads((pools / 'render_seconds.json').read_text())['test']
    row('Base rendered video', 0, lambda: test.render, seconds_per_clip=render_seconds)
    row('w/o 3D-aware leap flow (1 step from noise)', 1,
        lambda: generate(plain, 'student', test, None, 1), 'noise')
    row(f'w/o DDPNet, fixed t={best_t["wo_ddpnet"]} (best on validation)', 1,
        lambda: generate(random_leap, 'student', test, fixed_t), 'fixed')
    row('w/o DDPNet, random t', 1, lambda: generate(random_leap, 'student', test, random_t),
        'random')
    video = row('VideoScene (full model, DDPNet t), 1 step', 1,
                lambda: generate(full, 'student', test, ddpnet_t), 'ddpnet')
    check_against_pipeline(full, load_pool(pools / 'test.pt'), video, args.seed)
    return dict(rows=rows, ddpnet_t=ddpnet_t, random_t=random_t, best_t=best_t,
                candidates=candidates, val_sweep=val_sweep, test_sweep=test_sweep,
                render_psnr=clip_scores(test.render, test.video)['psnr'], clips=len(test))


# ---------------------------------------------------------------------------------- report
ORDER = ('Base rendered video', 'w/o 3D-aware leap flow', 'w/o DDPNet, fixed', 'w/o DDPNet, random',
         'VideoScene', 'Teacher, ')


def ordered_rows(rows: dict) -> list[str]:
    return [name for prefix in ORDER for name in rows if name.startswith(prefix)]


def t_bins(result: dict, bins: int = 4) -> list[dict]:
    """DDPNet's leap t against the render's PSNR, in render-PSNR quantile bins, beside each
    clip's best leap t for the full student (from the test sweep) and the student's gain over the
    render."""
    render = result['render_psnr']
    oracle = result['candidates'][result['test_sweep']['full'].argmax(0)]
    full = next(row for name, row in result['rows'].items() if name.startswith('VideoScene'))
    gain = torch.tensor(full['per_clip_psnr']) - render
    edges = torch.quantile(render, torch.linspace(0, 1, bins + 1))
    out = []
    for i in range(bins):
        inside = (render >= edges[i]) & ((render < edges[i + 1]) if i < bins - 1 else
                                         (render <= edges[i + 1]))
        if not inside.any():
            continue
        chosen = result['ddpnet_t'][inside]
        values, counts = chosen.unique(return_counts=True)
        out.append(dict(render_psnr=[round(float(edges[i]), 2), round(float(edges[i + 1]), 2)],
                        clips=int(inside.sum()),
                        ddpnet_t_mean=round(float(chosen.float().mean()), 1),
                        ddpnet_t_counts={int(v): int(c) for v, c in zip(values, counts)},
                        best_t_mean=round(float(oracle[inside].float().mean()), 1),
                        student_gain_db=round(float(gain[inside].mean()), 2)))
    return out


def leap_diagnostics(result: dict) -> dict:
    """The fixed-t sweeps: the best fixed t on validation and on test, and the per-clip oracle."""
    candidates, out = result['candidates'], {}
    for run, table in result['test_sweep'].items():
        best_val = result['best_t'][run]
        index = int((candidates == best_val).nonzero()[0, 0])
        out[run] = dict(best_t_on_validation=best_val,
                        test_psnr_at_that_t=round(float(table[index].mean()), 3),
                        best_t_on_test=int(candidates[table.mean(1).argmax()]),
                        test_psnr_at_best_test_t=round(float(table.mean(1).max()), 3),
                        per_clip_oracle_psnr=round(float(table.max(0).values.mean()), 3),
                        sweep_mean_psnr={int(t): round(float(v), 3)
                                         for t, v in zip(candidates, table.mean(1))})
    return out


def markdown(args, result: dict, stages: dict, diagnostics: dict, bins: list[dict],
             load: str) -> str:
    rows = result['rows']
    prior = (f'MVSplat (slim, stage 1: {args.recon_iters} iterations)'
             if args.reconstructor == 'mvsplat' else
             'ground-truth-depth oracle (DepthUnprojection, not learned)')
    lines = [f'# Toy ablation (paper Tab. 3) — {result["clips"]} held-out clips, '
             f'{FRAMES} frames of {args.size}x{args.size}', '',
             f'3D prior: {prior}. Teacher: {args.teacher_iters} iterations of a '
             f'{args.teacher_layers}-layer CogVideoX ({args.teacher_heads} x '
             f'{args.teacher_head_dim}) on pixel-unshuffle latents. Distillation: '
             f'{args.distill_iters} iterations per run, batch {args.batch}.', '',
             'Metrics over the 7 frames between the context pair. Sharpness: mean gradient '
             'magnitude over the true frames\' (1 = as sharp as the truth). Fidelity: PSNR of the '
             'one-step student against the teacher\'s multi-step output from the same start '
             '(same noise, same t). s/clip: generation time (render: reconstruct + render).', '',
             '| Setup | Steps | PSNR ↑ | SSIM ↑ | Sharpness | Fidelity to teacher (dB) '
             '| s/clip |',
             '|---|---|---|---|---|---|---|']
    for name in ordered_rows(rows):
        r = rows[name]
        fidelity = f'{r["fidelity_psnr"]:.2f}' if 'fidelity_psnr' in r else '–'
        lines.append(f'| {name} | {r["steps"]} | {r["psnr"]:.2f} | {r["ssim"]:.3f} | '
                     f'{r["sharpness"]:.2f} | {fidelity} | {r["seconds_per_clip"]:.4f} |')
    lines += ['', '## Leap timestep', '',
              f'Candidates: {len(result["candidates"])} solver timesteps '
              f'{int(result["candidates"][0])}..{int(result["candidates"][-1])}. '
              'Fixed-t sweeps of the one-step students (mean test PSNR):', '',
              '| Student | best t on validation | test PSNR there | best t on test '
              '| test PSNR there | per-clip best t (PSNR) |', '|---|---|---|---|---|---|']
    for run, d in diagnostics.items():
        lines.append(f'| {run} | {d["best_t_on_validation"]} | {d["test_psnr_at_that_t"]:.2f} | '
                     f'{d["best_t_on_test"]} | {d["test_psnr_at_best_test_t"]:.2f} | '
                     f'{d["per_clip_oracle_psnr"]:.2f} |')
    lines += ['', 'DDPNet\'s chosen t against the render\'s PSNR (test clips in render-PSNR '
              'quartiles; best t: each clip\'s best fixed t for the full student; gain: full '
              'one-step PSNR minus render PSNR):', '',
              '| Render PSNR | Clips | DDPNet t (mean) | DDPNet t counts | Best t (mean) '
              '| Gain (dB) |',
              '|---|---|---|---|---|---|']
    for b in bins:
        counts = ', '.join(f'{t}: {n}' for t, n in b['ddpnet_t_counts'].items())
        lines.append(f'| {b["render_psnr"][0]:.1f}–{b["render_psnr"][1]:.1f} | {b["clips"]} | '
                     f'{b["ddpnet_t_mean"]:.0f} | {counts} | {b["best_t_mean"]:.0f} | '
                     f'{b["student_gain_db"]:+.2f} |')
    lines += ['', f'## Wall time (load average at the start: {load})', '',
              '| Stage | Seconds | |', '|---|---|---|']
    for name, stage in stages.items():
        lines.append(f'| {name} | {stage["seconds"]:.1f} | {"cached" if stage["cached"] else ""} |')
    return '\n'.join(lines) + '\n'


def settings(args) -> dict:
    return {key: (str(value) if isinstance(value, Path) else value)
            for key, value in vars(args).items()}


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        return ablation(args)
    finally:
        torch.set_num_threads(threads)


def ablation(args) -> dict:
    """The stages, the evaluation and the report (see the module docstring)."""
    load = ' '.join(f'{v:.2f}' for v in os.getloadavg())
    print(f'toy ablation: work dir {args.work_dir}, load average {load}', flush=True)
    clock, root, fresh = Clock(), args.work_dir, args.fresh
    data_key = digest('data', {k: getattr(args, k) for k in (
        'size', 'train_scenes', 'clips_per_scene', 'val_scenes', 'test_scenes', 'test_clips',
        'scene_frames', 'mean_step', 'speed_variation', 'min_gap', 'max_gap', 'seed')})
    pools = cached_stage(clock, 'data: scenes and clip pools', root / f'data_{data_key}', fresh,
                         lambda out: make_pools(args, out))
    if args.reconstructor == 'mvsplat':
        recon_key = digest(data_key, SLIM_MVSPLAT, args.recon_iters, args.recon_batch)
        reconstructor = cached_stage(clock, 'stage 1: MVSplat', root / f'stage1_{recon_key}',
                                     fresh, lambda out: train_reconstructor(args, pools, out))
    else:
        recon_key, reconstructor = digest(data_key, 'ground-truth depth'), None
    teacher_key = digest(data_key, args.teacher_iters, args.teacher_layers, args.teacher_heads,
                         args.teacher_head_dim, args.batch)
    teacher = cached_stage(clock, 'stage 2: teacher', root / f'teacher_{teacher_key}', fresh,
                           lambda out: train_teacher(args, pools, out))
    renders = cached_stage(clock, 'render cache', root / f'renders_{recon_key}', fresh,
                           lambda out: make_renders(args, pools, teacher, reconstructor, out))
    students = {}
    for run in RUNS:
        key = digest(recon_key, teacher_key, run, args.distill_iters, args.policy_iters, args.batch)
        folder = cached_stage(
            clock, f'stage 3: {run}', root / f'distill_{run}_{key}', fresh,
            lambda out: train(distillation_cfg(args, run, teacher, reconstructor), out,
                              renders / 'train.pt'))
        students[run] = load_student(args, run, teacher, reconstructor, folder)
    start = time.perf_counter()
    result = evaluate(args, students, renders)
    clock.done('evaluation', time.perf_counter() - start)
    clock.done('total', time.perf_counter() - clock.start)
    diagnostics, bins = leap_diagnostics(result), t_bins(result)
    report = markdown(args, result, clock.stages, diagnostics, bins, load)
    print('\n' + report, flush=True)
    args.results.parent.mkdir(parents=True, exist_ok=True)
    args.results.with_suffix('.md').write_text(report)
    summary_json = dict(settings=settings(args), load_average_at_start=load, rows=result['rows'],
                        leap_t=diagnostics, ddpnet_t_by_render_psnr=bins, stages=clock.stages,
                        ddpnet_t=result['ddpnet_t'].tolist(), random_t=result['random_t'].tolist(),
                        render_psnr=[round(float(v), 3) for v in result['render_psnr']])
    args.results.with_suffix('.json').write_text(json.dumps(summary_json, indent=1))
    print(f'wrote {args.results}.md and .json', flush=True)
    return summary_json


if __name__ == '__main__':
    main()
