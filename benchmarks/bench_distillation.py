"""Memory and time of one leap-flow distillation step: shared weights against three full copies,
and against one teacher fine-tune step.

    .venv/bin/python benchmarks/bench_distillation.py [--config medium] [--trainable attention]
        [--batch 1] [--steps 3] [--threads N]

Three arrangements, each in a fresh process (``spawn``) so that its peak resident memory is its
own, on the same configuration (``benchmarks/bench_pipeline.py``'s CogVideoX sizes; the
``DepthUnprojection`` reconstructor on the synthetic scenes' depth; the DDPNet, solver, loss and
optimizers of ``configs/distillation/tiny_cogvideox_synthetic.py``) and the same batch:

* ``shared``: ``LeapFlowDistillation.train_step`` with its ``OptimWrapperDict``, then the EMA
  update: one backbone, the teacher and the target as copies of the trained tensors only;
* ``three copies``: the same step (steps 1-10 of ``videoscene/distillation/model.py``) computed
  with the teacher, the student and the target each a ``copy.deepcopy`` of the whole backbone
  (VAE, prompt embedding, denoiser), as a naive implementation holds them; its losses are checked
  equal to the shared step's (same seeds, same policy weights);
* ``teacher``: one ``InterpolationTeacher`` fine-tune step (stage 2) of the same backbone.

Memory: the process's peak RSS (``VmHWM``, the kernel's high-water mark of resident memory, so
short-lived activations count) after ``--steps`` steps, and its increase over the RSS before
the models were built (interpreter, torch and the batch already loaded): the increase is what the
arrangement needs and the ratio is taken on it.  Also listed: the bytes of distinct parameter and
buffer storages (``weights``) and of the optimizer states.  Time: the minimum over steps 2..N
(the first step allocates the optimizer states), in wall seconds and in CPU seconds of the process
(``time.process_time``; with ``--threads 1`` on a shared machine, the wall time of an idle core).
"""
from __future__ import annotations

import argparse
import copy
import inspect
import multiprocessing
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.bench_pipeline import CONFIGS  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DISTILLATION = REPO / 'configs/distillation/tiny_cogvideox_synthetic.py'
TEACHER = REPO / 'configs/teacher/tiny_cogvideox_synthetic.py'
ARRANGEMENTS = ('shared', 'three copies', 'teacher')


def _peak_rss_mib() -> float:
    """This process's peak resident memory (``VmHWM``, Linux).  Not ``ru_maxrss``: Linux carries
    that over ``execve`` from the parent, so a spawned child would start at the parent's peak."""
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) / 1024                                   # kB
    raise SystemExit('bench_distillation.py reads VmHWM from /proc/self/status (Linux only)')


def _storage_bytes(tensors) -> int:
    seen = {}
    for tensor in tensors:
        storage = tensor.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
    return sum(seen.values())


def _optimizer_bytes(wrappers) -> int:
    return _storage_bytes(value for wrapper in wrappers
                          for state in wrapper.optimizer.state.values()
                          for value in state.values() if torch.is_tensor(value) and value.ndim)


def batch(spec: dict, size: int) -> dict:
    """``size`` collated samples: the context pair ``frames - 1`` apart and every frame between."""
    from mmengine.dataset import default_collate

    from videoscene.registry import DATASETS
    frames = spec['frames']
    dataset = DATASETS.build(dict(
        type='SyntheticScenes', stage='test', num_scenes=size, frames=frames,
        height=spec['size'], width=spec['size'], num_eval_targets=frames - 2,
        view_sampler=dict(type='fixed', context=[0, frames - 1],
                          target=list(range(1, frames - 1)))))
    return default_collate([dataset[i] for i in range(size)])


def model_cfg(folder: str, args: argparse.Namespace) -> dict:
    """The distillation config's model on the benchmark's backbone, reconstructor and renderer,
    with its target's EMA decay (``ema_decay``, not a model argument)."""
    from mmengine.config import Config
    from videoscene.distillation import LeapFlowDistillation
    config = Config.fromfile(str(DISTILLATION))
    cfg = {name: p.default for name, p in inspect.signature(LeapFlowDistillation).parameters.items()
           if p.default is not inspect.Parameter.empty} | config.model.to_dict()
    if cfg['guidance_scale'] != 1 or not cfg['leap_flow'] or cfg['augment_conditions']:
        raise SystemExit(f'{DISTILLATION}: the three-copies step implements the config without '
                         'guidance, with leap flow and without condition augmentation')
    cfg['ema_decay'] = next(hook['decay'] for hook in config.custom_hooks
                            if hook['type'] == 'TargetEMAHook')
    cfg.update(backbone=dict(type='CogVideoX', pretrained=folder,
                             prompt_embedding=f'{folder}/prompt_embeds.safetensors'),
               reconstructor=dict(type='DepthUnprojection'),
               renderer=dict(type='torch', views_per_chunk=CONFIGS[args.config]['frames']),
               trainable=args.trainable)
    cfg.pop('reconstructor_checkpoint', None)
    return cfg


def optim_wrappers(names_params: dict, config: Path) -> dict:
    """One ``OptimWrapper`` per entry, built from ``config``'s ``optim_wrapper`` (the distillation
    config's ``student``/``policy`` entries, or the teacher config's single one)."""
    from mmengine.config import Config

    from videoscene.registry import OPTIM_WRAPPERS, OPTIMIZERS
    cfg = Config.fromfile(str(config)).optim_wrapper.to_dict()
    wrappers = {}
    for name, params in names_params.items():
        entry = dict(cfg.get(name, cfg))
        entry.pop('constructor', None)
        optimizer = OPTIMIZERS.build(dict(entry.pop('optimizer'), params=params))
        wrappers[name] = OPTIM_WRAPPERS.build(dict(entry, optimizer=optimizer))
    return wrappers


def three_copies_step(parts: dict, data: dict, wrappers: dict, model_args: dict) -> dict:
    """Steps 1-10 of ``LeapFlowDistillation`` with three whole backbones (``parts``: student,
    teacher, target, reconstructor, renderer, policy, scheduler)."""
    from videoscene.models.views import scene_views
    from videoscene.pipelines.sampling import estimate, step
    student, teacher, target = parts['student'], parts['teacher'], parts['target']
    scheduler = parts['scheduler']
    skip = scheduler.num_train_timesteps // model_args['solver_steps']
    views = scene_views(data['context'], data['target'])
    video = views['image']
    with torch.no_grad():
        gaussians = parts['reconstructor'](data['context'])                              # 1
        render = parts['renderer'].render(gaussians, views['extrinsics'], views['intrinsics'],
                                          tuple(video.shape[-2:]), views['near'],
                                          views['far']).color.clamp(0, 1)
        render_latents, true_latents = student.encode(render), student.encode(video)   # 2
        conditioning = student.condition(video[:, 0], video[:, -1], video.shape[1])
    decision = parts['policy'](render_latents)                                          # 3
    t = decision.t
    t_prev = (t - skip).clamp(min=0)
    scale = student.clean_scale(t).to(render_latents).reshape(-1, 1, 1, 1, 1)
    x_t = scheduler.add_noise(render_latents * scale, torch.randn_like(render_latents), t)  # 4
    student_x0, _ = estimate(student, scheduler, x_t, t, conditioning, consistency=True)   # 5
    with torch.no_grad():
        teacher_x0, teacher_eps = estimate(teacher, scheduler, x_t, t, conditioning)      # 6
        x_prev = step(teacher, scheduler, teacher_x0, teacher_eps, t, t_prev)
        target_x0, _ = estimate(target, scheduler, x_prev, t_prev, conditioning,          # 7
                                consistency=True)
    c, squared = model_args['huber_c'], (student_x0 - target_x0).pow(2)                 # 8
    loss = squared.mean() if model_args['loss'] == 'l2' else (squared + c ** 2).sqrt().mean() - c
    reward = -(student_x0.detach() - true_latents).pow(2).flatten(1).mean(1)            # 9
    advantage = reward - reward.mean()        # the first step's baseline is the batch mean
    policy_loss = (-(advantage * decision.log_prob).mean()
                   - model_args['entropy_weight'] * decision.entropy.mean())
    wrappers['student'].update_params(loss)
    wrappers['policy'].update_params(policy_loss)
    with torch.no_grad():                                                               # 10
        trained = student.trained_tensors()
        for name, tensor in target.named_parameters():
            if name in trained:
                tensor.lerp_(trained[name].detach(), 1 - model_args['ema_decay'])
    return {'loss_consistency': loss.item(), 'loss_policy': policy_loss.item()}


def _run(arrangement: str, folder: str, policy_state: str, args: argparse.Namespace) -> dict:
    """One arrangement in this (fresh) process: ``args.steps`` steps; peak memory and times."""
    from mmengine.config import Config

    from videoscene.distillation import DistillationOptimWrapperConstructor
    from videoscene.registry import (MODELS, RECONSTRUCTORS, RENDERERS, TIMESTEP_POLICIES,
                                     VIDEO_BACKBONES)
    if args.threads:
        torch.set_num_threads(args.threads)
    data = batch(CONFIGS[args.config], args.batch)
    before = _peak_rss_mib()
    cfg = model_cfg(folder, args)
    policy_weights = torch.load(policy_state)
    if arrangement == 'shared':
        model = MODELS.build({k: v for k, v in cfg.items() if k != 'ema_decay'})
        model.policy.load_state_dict(policy_weights)
        optim_cfg = Config.fromfile(str(DISTILLATION)).optim_wrapper.to_dict()
        optim_cfg.pop('constructor')
        optim = DistillationOptimWrapperConstructor(optim_cfg)(model)
        wrappers = list(optim.values())
        modules = [model]

        def one_step() -> dict:
            log = model.train_step(data, optim)
            model.update_target(cfg['ema_decay'])
            return {k: float(v) for k, v in log.items() if k.startswith('loss')}
    elif arrangement == 'three copies':
        student = VIDEO_BACKBONES.build(cfg['backbone'])
        student.select_trainable(cfg['trainable'])
        teacher, target = copy.deepcopy(student), copy.deepcopy(student)
        teacher.requires_grad_(False)
        target.requires_grad_(False)
        scheduler = student.build_scheduler()
        policy = TIMESTEP_POLICIES.build(cfg['policy'], default_args=dict(
            scheduler=scheduler, latent_channels=student.latent_channels))
        policy.load_state_dict(policy_weights)
        parts = dict(student=student, teacher=teacher, target=target, scheduler=scheduler,
                     reconstructor=RECONSTRUCTORS.build(cfg['reconstructor']).eval(),
                     renderer=RENDERERS.build(cfg['renderer']), policy=policy)
        named = optim_wrappers({'student': list(student.trained_tensors().values()),
                                'policy': list(policy.parameters())}, DISTILLATION)
        wrappers = list(named.values())
        modules = [student, teacher, target, policy, parts['reconstructor']]

        def one_step() -> dict:
            return three_copies_step(parts, data, named, cfg)
    else:
        model = MODELS.build(dict(type='InterpolationTeacher', backbone=cfg['backbone'],
                                  trainable=cfg['trainable']))
        named = optim_wrappers({'optim_wrapper': list(model.backbone.trained_tensors().values())},
                               TEACHER)
        wrappers = list(named.values())
        modules = [model]

        def one_step() -> dict:
            log = model.train_step(data, named['optim_wrapper'])
            return {k: float(v.detach()) for k, v in log.items() if k.startswith('loss')}
    times, cpu_times, losses = [], [], []
    for _ in range(args.steps):
        torch.manual_seed(0)
        start, cpu = time.perf_counter(), time.process_time()
        losses.append(one_step())
        times.append(time.perf_counter() - start)
        cpu_times.append(time.process_time() - cpu)
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers())]
    return dict(before_mib=before, peak_mib=_peak_rss_mib(),
                weights_mib=_storage_bytes(tensors) / 2 ** 20,
                optimizer_mib=_optimizer_bytes(wrappers) / 2 ** 20,
                seconds=min(times[1:]), cpu_seconds=min(cpu_times[1:]), losses=losses[0])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='medium', choices=list(CONFIGS))
    parser.add_argument('--trainable', default='attention',
                        help="the student's trained tensors (select_trainable): 'attention' (the "
                        "paper's), 'all' or a regex")
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--steps', type=int, default=3, help='steps per arrangement (>= 2)')
    parser.add_argument('--threads', type=int, help="torch CPU threads (default: torch's)")
    args = parser.parse_args()
    if args.steps < 2:
        parser.error('--steps must be at least 2 (the first step allocates the optimizer states)')
    spec = CONFIGS[args.config]

    from videoscene.backbones.tiny import save_tiny_cogvideox
    from videoscene.registry import TIMESTEP_POLICIES, VIDEO_BACKBONES
    batch(spec, args.batch)                 # generate the scenes once, outside the measurements
    spawn = multiprocessing.get_context('spawn')
    with tempfile.TemporaryDirectory() as folder:
        save_tiny_cogvideox(folder, height=spec['size'], width=spec['size'],
                            num_frames=spec['frames'], num_layers=spec['num_layers'],
                            heads=spec['heads'], head_dim=spec['head_dim'])
        backbone = VIDEO_BACKBONES.build(model_cfg(folder, args)['backbone'])
        selection = backbone.select_trainable(args.trainable)
        trained = _storage_bytes(backbone.trained_tensors().values())
        frozen = _storage_bytes((*backbone.parameters(), *backbone.buffers())) - trained
        torch.manual_seed(0)
        policy = TIMESTEP_POLICIES.build(model_cfg(folder, args)['policy'], default_args=dict(
            scheduler=backbone.build_scheduler(), latent_channels=backbone.latent_channels))
        policy_state = f'{folder}/policy.pt'
        torch.save(policy.state_dict(), policy_state)
        results = {}
        for arrangement in ARRANGEMENTS:
            with spawn.Pool(1) as pool:
                results[arrangement] = pool.apply(_run, (arrangement, folder, policy_state, args))
            print(f'{arrangement}: done', flush=True)

    print(f'\nOne distillation step on CPU, {args.config} CogVideoX ({spec["num_layers"]} layers, '
          f'{spec["heads"]} x {spec["head_dim"]} heads, {spec["frames"]} frames of '
          f'{spec["size"]} x {spec["size"]}), batch {args.batch}, trained: {args.trainable} '
          f'({selection})')
    print(f'{"arrangement":>13} {"weights MiB":>12} {"optimizer MiB":>13} {"RSS before":>11} '
          f'{"peak RSS":>9} {"peak - before":>13} {"step s":>7} {"step CPU s":>10}')
    for name, r in results.items():
        print(f'{name:>13} {r["weights_mib"]:>12.1f} {r["optimizer_mib"]:>13.1f} '
              f'{r["before_mib"]:>11.0f} {r["peak_mib"]:>9.0f} '
              f'{r["peak_mib"] - r["before_mib"]:>13.0f} {r["seconds"]:>7.2f} '
              f'{r["cpu_seconds"]:>10.2f}')
    shared, copies, teacher = (results[a] for a in ARRANGEMENTS)
    increase = {k: r['peak_mib'] - r['before_mib'] for k, r in results.items()}
    same = all(abs(shared['losses'][k] - copies['losses'][k]) <= 1e-5 * max(1, abs(copies['losses'][k]))
               for k in copies['losses'])
    print(f'shared / three copies, peak memory increase: '
          f'{increase["shared"] / increase["three copies"]:.3f} (target <= 0.5); '
          f'peak RSS: {shared["peak_mib"] / copies["peak_mib"]:.3f}; weights: '
          f'{shared["weights_mib"] / copies["weights_mib"]:.3f}')
    print(f'bound from the backbone\'s bytes (F frozen, A trained; Adam states and gradients 3A '
          f'in both): weights (F + 3A) / 3(F + A) = {(frozen + 3 * trained) / (3 * (frozen + trained)):.3f}, '
          f'with optimizer and gradients (F + 6A) / (3F + 6A) = '
          f'{(frozen + 6 * trained) / (3 * frozen + 6 * trained):.3f}; activations add alike to both')
    print(f'same step in both arrangements: {"yes" if same else "NO"} '
          f'(shared {shared["losses"]}, three copies {copies["losses"]})')
    print(f'distillation step / teacher fine-tune step: wall time '
          f'{shared["seconds"] / teacher["seconds"]:.2f}, CPU time '
          f'{shared["cpu_seconds"] / teacher["cpu_seconds"]:.2f}; peak memory increase '
          f'{increase["shared"] / increase["teacher"]:.2f}')


if __name__ == '__main__':
    main()
