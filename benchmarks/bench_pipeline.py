"""One-step VideoScene pipeline against the 50-step baseline and against the sum of its parts.

    .venv/bin/python benchmarks/bench_pipeline.py [--configs tiny medium] [--repeats 5]
        [--baseline-repeats 2] [--steps 50] [--threads N] [--profile]

For each configuration (a random CogVideoX of ``tools/make_tiny_backbone.py``'s family; the
DDPNet of ``configs/distillation/``; the ``DepthUnprojection`` reconstructor on the synthetic
scenes' depth, one Gaussian per context pixel; the CPU renderer), on one held-out synthetic scene,
measured side by side in one process:

* ``one step``: ``VideoScenePipeline(context, target, steps=1)``, the product's call;
* ``baseline``: the same pipeline with ``from_noise=True, steps=50`` (the teacher's DDIM sampler
  from pure noise; it still reconstructs and renders, as the pipeline does for its outputs);
* the unavoidable parts of the one step, each called alone on the same tensors: reconstruct,
  render, encode (render latents + first/last-frame conditions), one network evaluation
  (``backbone.predict``), decode.

Every quantity is timed ``--repeats`` times (the baseline ``--baseline-repeats`` times), rounds
interleaved so that load from other processes hits all alike, after one warm-up call; the table
reports the minimum over repeats (the least-disturbed run; medians in ``--json``), the sum of
parts as the minimum over rounds of each round's sum (a sum of per-part minima would be biased
low), each in wall seconds and in CPU seconds of the process (``time.process_time``).  On a
shared machine use ``--threads 1``: OpenMP threads then do not wait on each other, and CPU
seconds equal the wall seconds of an idle core.  Targets: one
step / baseline <= 1/20 and one step / sum of parts <= 1.05.  ``--profile`` prints torch's
profile of one one-step call.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch
from mmengine.dataset import default_collate

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videoscene.backbones.tiny import save_tiny_cogvideox  # noqa: E402
from videoscene.pipelines import VideoScenePipeline  # noqa: E402
from videoscene.registry import (CAMERA_PATHS, DATASETS, RECONSTRUCTORS, RENDERERS,  # noqa: E402
                                 TIMESTEP_POLICIES, VIDEO_BACKBONES)

# Transformer sizes; the VAE is the tiny one (4x spatial, 4x temporal, 4 channels) in both.
CONFIGS = {
    'tiny': dict(size=32, frames=9, num_layers=2, heads=2, head_dim=16),
    'medium': dict(size=64, frames=17, num_layers=12, heads=12, head_dim=64),
}
POLICY = dict(type='DDPNet', max_timestep=799, channels=(16, 16, 32, 32), groups=8)
PARTS = ('reconstruct', 'render', 'encode', 'network', 'decode')


def build(name: str, folder: Path) -> tuple[VideoScenePipeline, dict, dict]:
    """The pipeline of configuration ``name`` and one held-out scene (context, target)."""
    spec = CONFIGS[name]
    size, frames = spec['size'], spec['frames']
    save_tiny_cogvideox(folder, height=size, width=size, num_frames=frames,
                        num_layers=spec['num_layers'], heads=spec['heads'],
                        head_dim=spec['head_dim'])
    backbone = VIDEO_BACKBONES.build(dict(type='CogVideoX', pretrained=str(folder),
                                          prompt_embedding=str(folder / 'prompt_embeds.safetensors')))
    policy = TIMESTEP_POLICIES.build(POLICY, default_args=dict(
        scheduler=backbone.build_scheduler(), latent_channels=backbone.latent_channels))
    pipeline = VideoScenePipeline(RECONSTRUCTORS.build(dict(type='DepthUnprojection')),
                                  RENDERERS.build(dict(type='torch', views_per_chunk=frames)),
                                  CAMERA_PATHS.build(dict(type='interpolated')), backbone, policy)
    dataset = DATASETS.build(dict(
        type='SyntheticScenes', stage='test', num_scenes=1, frames=frames, height=size,
        width=size, num_eval_targets=frames - 2,
        view_sampler=dict(type='fixed', context=[0, frames - 1], target=list(range(1, frames - 1)))))
    sample = default_collate([dataset[0]])
    return pipeline, sample['context'], sample['target']


def parts(pipeline: VideoScenePipeline, context: dict, target: dict) -> dict[str, Callable]:
    """The one step's unavoidable parts as calls on fixed inputs (made by one pipeline call)."""
    backbone = pipeline.backbone
    output = pipeline(context, target, steps=1, generator=torch.Generator().manual_seed(0))
    frames, shape = output.render.shape[1], tuple(output.render.shape[-2:])
    cameras = output.cameras
    latents = backbone.encode(output.render)
    conditioning = backbone.condition(context['image'][:, 0], context['image'][:, -1], frames)
    x_t = pipeline.scheduler.add_noise(latents, torch.randn_like(latents), output.t)

    def encode():
        backbone.encode(output.render)
        backbone.condition(context['image'][:, 0], context['image'][:, -1], frames)

    return dict(
        reconstruct=lambda: pipeline.reconstructor(context),
        render=lambda: pipeline.renderer.render(output.gaussians, cameras['extrinsics'],
                                                cameras['intrinsics'], shape, cameras['near'],
                                                cameras['far']),
        encode=encode,
        network=lambda: backbone.predict(x_t, output.t, conditioning),
        decode=lambda: backbone.decode(latents))


CLOCKS = {'wall': time.perf_counter, 'cpu': time.process_time}


def seconds(call: Callable) -> dict[str, float]:
    """Wall and CPU (process) seconds of one call."""
    start = {clock: read() for clock, read in CLOCKS.items()}
    call()
    return {clock: read() - start[clock] for clock, read in CLOCKS.items()}


def ratios(low: dict[str, float], steps: int) -> dict[str, float]:
    """The two target ratios and what the parts predict for the first (the baseline is the same
    parts with ``steps`` network evaluations)."""
    parts = low['sum_of_parts']
    return dict(one_step_over_baseline=low['one_step'] / low['baseline'],
                predicted=parts / (parts + (steps - 1) * low['network']),
                one_step_over_parts=low['one_step'] / parts)


@torch.no_grad()
def measure(name: str, args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        pipeline, context, target = build(name, Path(folder))
        calls = parts(pipeline, context, target)
        generator = lambda: torch.Generator().manual_seed(0)  # noqa: E731
        one_step = lambda: pipeline(context, target, steps=1, generator=generator())  # noqa: E731
        baseline = lambda: pipeline(context, target, steps=args.steps,  # noqa: E731
                                    from_noise=True, generator=generator())
        one_step()                                                   # warm-up
        times = {key: [] for key in ('one_step', 'baseline', 'sum_of_parts', *PARTS)}
        for round_ in range(args.repeats):
            times['one_step'].append(seconds(one_step))
            for part, call in calls.items():
                times[part].append(seconds(call))
            times['sum_of_parts'].append({clock: sum(times[part][-1][clock] for part in PARTS)
                                          for clock in CLOCKS})
            if round_ < args.baseline_repeats:
                times['baseline'].append(seconds(baseline))
        if args.profile:
            from torch.profiler import ProfilerActivity, profile
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                one_step()
            print(f'--- {name}: profile of one one-step call')
            print(prof.key_averages().table(sort_by='cpu_time_total', row_limit=20))
        result = dict(config=name, **CONFIGS[name], threads=torch.get_num_threads(),
                      denoiser_parameters=sum(p.numel() for p in
                                              pipeline.backbone.denoiser().parameters()))
    for clock in CLOCKS:
        series = {key: [run[clock] for run in runs] for key, runs in times.items()}
        low = {key: min(values) for key, values in series.items()}
        result[clock] = dict(minimum=low, ratios=ratios(low, args.steps),
                             median={key: statistics.median(v) for key, v in series.items()})
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--configs', nargs='+', default=list(CONFIGS), choices=list(CONFIGS))
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--baseline-repeats', type=int, default=2)
    parser.add_argument('--steps', type=int, default=50, help='baseline DDIM steps')
    parser.add_argument('--threads', type=int, help='torch CPU threads (default: torch\'s)')
    parser.add_argument('--profile', action='store_true')
    parser.add_argument('--json', help='also write the results (minima and medians) here')
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    results = [measure(name, args) for name in args.configs]

    print(f'\nVideoScene pipeline on CPU (torch {torch.__version__}, '
          f'{results[0]["threads"]} threads); seconds: minimum over repeats')
    print(f'{"config":>7} {"frames":>6} {"size":>5} {"denoiser":>9} {"clock":>5} {"one step":>9} '
          f'{f"{args.steps} steps":>9} {"ratio":>7} {"predicted":>9} {"parts":>7} '
          f'{"overhead":>8}  ' + ' '.join(f'{p:>11}' for p in PARTS))
    for r in results:
        for clock in CLOCKS:
            low, ratio = r[clock]['minimum'], r[clock]['ratios']
            print(f'{r["config"]:>7} {r["frames"]:>6} {r["size"]:>5} '
                  f'{r["denoiser_parameters"] / 1e6:>8.1f}M {clock:>5} {low["one_step"]:>9.3f} '
                  f'{low["baseline"]:>9.3f} {ratio["one_step_over_baseline"]:>7.3f} '
                  f'{ratio["predicted"]:>9.3f} {low["sum_of_parts"]:>7.3f} '
                  f'{ratio["one_step_over_parts"]:>8.3f}  '
                  + ' '.join(f'{low[p]:>11.3f}' for p in PARTS))
    print(f'targets: ratio (one step / {args.steps} steps) <= {1 / 20:.3f}; overhead (one step / '
          f'sum of parts) <= 1.05.  predicted: parts / (parts + {args.steps - 1} network '
          'evaluations).  cpu: process time, which other processes on a shared machine barely '
          'disturb (with one thread it is the wall time of an idle core)')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


if __name__ == '__main__':
    main()
