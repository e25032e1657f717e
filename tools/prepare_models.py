"""Train, or find in the cache, the small models the demo runs: stage 1 -> 2 -> 3 on the CPU.

    python tools/prepare_models.py [--recon-iters 150] [--teacher-iters 600] [--distill-iters 100]
        [--recon-batch 1] [--teacher-batch B] [--distill-batch 1] [--train-scenes 16]
        [--threads 1] [--retrain]

Each stage is the project's own config, written out with shortened schedules (every iteration
count of the config, learning-rate schedule and hook intervals scaled to the new length):

1. reconstructor: ``configs/mvsplat/mvsplat_synthetic_cpu.py``, trained on the 32 x 32 synthetic
   scenes stages 2 and 3 use (the distillation renders at 32 x 32; generating the config's own
   64 x 64 set costs about two CPU minutes more);
2. teacher: a tiny random CogVideoX with the pixel-unshuffle VAE (``tools/make_tiny_backbone.py
   --arch cogvideox --vae pixel-unshuffle``) fine-tuned with
   ``configs/teacher/tiny_cogvideox_synthetic.py``, exported as a model folder
   (``tools/export_teacher.py``);
3. distillation: ``configs/distillation/tiny_cogvideox_synthetic.py`` (student, EMA target and
   DDPNet) from those two.

Cache: ``$VIDEOSCENE_CACHE/demo/<stage>-<key>/`` (default ``~/.cache/videoscene``).  ``key`` hashes
the stage's resolved config, which names the folders of the stages it depends on, so changing a
config, an iteration count or an upstream stage retrains that stage and those after it; the tiny
backbone's key hashes the generator's parameters.  Code changes are not hashed: ``--retrain``
trains again.  A stage folder holds ``config.py`` (what was trained), ``train.log`` (the training
output), ``work/`` (MMEngine's checkpoints and logs) and, once complete, ``done.json``.
Training runs ``tools/train.py --resume`` in a subprocess, so a run killed mid-stage continues
from that stage's latest checkpoint the next time.
"""
from __future__ import annotations

import argparse
import ctypes
import fcntl
import hashlib
import inspect
import json
import os
import re
import resource
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mmengine.config import Config
from tqdm import tqdm

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from videoscene.backbones.tiny import save_tiny_cogvideox  # noqa: E402
from videoscene.datasets.synthetic.generate import default_cache_dir  # noqa: E402
from videoscene.errors import InputError  # noqa: E402
from videoscene.engine.cli import run_tool  # noqa: E402

CONFIGS = dict(reconstructor='configs/mvsplat/mvsplat_synthetic_cpu.py',
               teacher='configs/teacher/tiny_cogvideox_synthetic.py',
               distillation='configs/distillation/tiny_cogvideox_synthetic.py')
CACHE_LAYOUT = 1       # bump when the folder layout of a stage changes
_ITERATION = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\]')
_ECHO = re.compile(r'Generating \d+ synthetic scenes|[Rr]esum(ed|ing) from')


@dataclass
class Settings:
    """What the chain is trained with (the defaults are the demo's, sized for 2 CPU cores)."""

    recon_iters: int = 150
    teacher_iters: int = 600
    distill_iters: int = 100
    recon_batch: int | None = 1
    teacher_batch: int | None = None
    distill_batch: int | None = 1
    train_scenes: int = 16
    threads: int = 1
    retrain: bool = False
    cache_dir: Path = field(default_factory=default_cache_dir)


@dataclass
class StageRecord:
    """One stage of the chain: where it lives, whether it came from the cache, its training time."""

    name: str
    folder: str
    iterations: int
    cached: bool
    seconds: float
    cpu_seconds: float


@dataclass
class Prepared:
    """The trained chain: what ``VideoScenePipeline.from_config`` and ``tools/infer.py`` take."""

    reconstructor_checkpoint: Path
    teacher_folder: Path
    distillation_config: Path
    distillation_checkpoint: Path
    stages: list[StageRecord]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    defaults = Settings()
    parser.add_argument('--recon-iters', type=int, default=defaults.recon_iters,
                        help='stage-1 (MVSplat) iterations')
    parser.add_argument('--teacher-iters', type=int, default=defaults.teacher_iters,
                        help='stage-2 (teacher) iterations')
    parser.add_argument('--distill-iters', type=int, default=defaults.distill_iters,
                        help='stage-3 (distillation) iterations')
    for stage in ('recon', 'teacher', 'distill'):
        default = getattr(defaults, f'{stage}_batch')
        parser.add_argument(f'--{stage}-batch', type=int, default=default,
                            help=f'{stage} batch size (default: {default or "from the config"})')
    parser.add_argument('--train-scenes', type=int, default=defaults.train_scenes,
                        help='synthetic training scenes')
    parser.add_argument('--threads', type=int, default=defaults.threads,
                        help='torch CPU threads of every stage (OMP_NUM_THREADS; 0: torch\'s '
                        'default). 1 was the fastest on a shared 2-core machine, where extra '
                        'threads stall waiting on each other')
    parser.add_argument('--retrain', action='store_true',
                        help='train every stage again, ignoring the cache')


def settings_from(args: argparse.Namespace) -> Settings:
    names = ('recon_iters', 'teacher_iters', 'distill_iters', 'recon_batch', 'teacher_batch',
             'distill_batch', 'train_scenes')
    for name in names:
        if getattr(args, name) is not None and getattr(args, name) < 1:
            raise InputError(f'--{name.replace("_", "-")}',
                             f'must be at least 1, got {getattr(args, name)}')
    if args.threads < 0:
        raise InputError('--threads', f"must be 0 (torch's default) or more, got {args.threads}")
    return Settings(**{name: getattr(args, name) for name in names}, threads=args.threads,
                    retrain=args.retrain)


# ------------------------------------------------------------------------------ configs
def shortened(cfg: Config, iters: int) -> Config:
    """``cfg`` trained for ``iters`` iterations: learning-rate schedule points (``begin``, ``end``,
    ``T_max``) and custom-hook iteration counts (``interval``, ``train_iters``) scale with it; a
    checkpoint every fifth of the run (what a killed run resumes from), a log line every tenth;
    no validation loop (the demo evaluates on held-out scenes itself)."""
    ratio = iters / cfg.train_cfg.max_iters

    def scale(value: int, least: int = 1) -> int:
        return max(least, round(value * ratio))

    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=iters)
    schedulers = cfg.param_scheduler
    groups = schedulers.values() if isinstance(schedulers, dict) else [schedulers]
    for group in groups:
        for scheduler in ([group] if isinstance(group, dict) else group):
            for key in ('begin', 'end', 'T_max'):
                if key in scheduler:
                    scheduler[key] = scale(scheduler[key], least=0 if key == 'begin' else 1)
    for hook in cfg.get('custom_hooks', []):
        for key in ('interval', 'train_iters'):
            if key in hook:
                hook[key] = scale(hook[key])
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', by_epoch=False,
                                        interval=max(1, iters // 5), max_keep_ckpts=2,
                                        save_last=True)
    cfg.default_hooks.logger = dict(type='LoggerHook', interval=max(1, min(10, iters // 10)))
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    return cfg


def training_data(cfg: Config, reference: Config, scenes: int, batch: int | None) -> None:
    """Point ``cfg``'s training set at ``reference``'s synthetic scenes (same generation
    parameters, hence the same cached data) with ``scenes`` scenes and, if given, ``batch``
    samples a batch; ``cfg`` keeps its view sampler."""
    spec = {key: value for key, value in reference.train_dataloader.dataset.items()
            if key != 'view_sampler'}
    cfg.train_dataloader.dataset.update(spec, num_scenes=scenes)
    if batch is not None:
        cfg.train_dataloader.batch_size = batch


def stage_key(text: str, cache: Path) -> str:
    """16 hex digits naming a stage by what defines it (paths inside the cache made relative)."""
    text = f'layout {CACHE_LAYOUT}\n' + text.replace(str(cache), '<cache>')
    return hashlib.sha256(text.encode()).hexdigest()[:16]


# ------------------------------------------------------------------------------ running stages
@contextmanager
def locked(folder: Path) -> Iterator[None]:
    """Hold ``folder/.lock`` (another demo preparing the same stage waits, then finds it done)."""
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / '.lock', 'w') as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _die_with_parent() -> None:
    """In the child: receive SIGTERM when the demo dies, so no orphan keeps training."""
    libc = ctypes.CDLL('libc.so.6', use_errno=True)
    libc.prctl(1, signal.SIGTERM)    # PR_SET_PDEATHSIG


def run_logged(command: list[str], log: Path, threads: int,
               progress: tqdm | None = None) -> None:
    """Run ``command`` (a Python tool) with its output appended to ``log`` and ``threads`` torch
    threads (0: torch's default); MMEngine's ``Iter(train) [k/N]`` lines move ``progress``; data
    generation and resume lines are echoed.  A failure raises ``SystemExit`` naming the log, after
    its last lines."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if threads:
        env['OMP_NUM_THREADS'] = str(threads)
    linux = sys.platform.startswith('linux')
    with open(log, 'a', buffering=1) as file:     # line-buffered: a killed demo loses nothing
        file.write(f'\n$ {" ".join(command)}\n')
        file.flush()
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE,
                                   stderr=subprocess.STDOUT, text=True, bufsize=1,
                                   preexec_fn=_die_with_parent if linux else None)
        try:
            for line in process.stdout:
                file.write(line)
                match = _ITERATION.search(line)
                if match and progress is not None:
                    progress.update(int(match.group(1)) - progress.n)
                elif _ECHO.search(line):
                    tqdm.write('    ' + line.rstrip()[-200:])
            code = process.wait()
        except BaseException:
            process.terminate()
            process.wait()
            raise
    if code != 0:
        tail = ''.join(log.read_text().splitlines(keepends=True)[-25:])
        raise SystemExit(f'{tail}\n{command[1]} failed (exit {code}); full output: {log}')


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def latest_iteration(work: Path) -> int:
    """The highest ``iter_N.pth`` in ``work`` (0 when none)."""
    found = [int(m.group(1)) for p in work.glob('iter_*.pth')
             if (m := re.fullmatch(r'iter_(\d+)\.pth', p.name))]
    return max(found, default=0)


def train_stage(name: str, cfg: Config, settings: Settings,
                after=None) -> tuple[Path, StageRecord]:
    """Train ``cfg`` into ``{cache}/demo/{name}-{key}`` unless done there; ``after(folder,
    checkpoint)`` runs once training has finished (e.g. the teacher's export).  Returns the folder
    and its record."""
    cache = settings.cache_dir
    text = cfg.pretty_text
    folder = cache / 'demo' / f'{name}-{stage_key(text, cache)}'
    iters = cfg.train_cfg.max_iters
    with locked(folder):
        done = folder / 'done.json'
        if settings.retrain and done.is_file():
            for child in folder.iterdir():
                if child.name != '.lock':
                    shutil.rmtree(child) if child.is_dir() else child.unlink()
        if done.is_file():
            return folder, StageRecord(**{**json.loads(done.read_text()), 'cached': True})
        (folder / 'config.py').write_text(text)
        work = folder / 'work'
        resumed = latest_iteration(work)
        if resumed:
            tqdm.write(f'    resuming {name} from iteration {resumed} (an earlier run stopped)')
        start, cpu = time.perf_counter(), _children_cpu()
        with tqdm(total=iters, initial=resumed, desc=f'    {name}', unit='it',
                  dynamic_ncols=True) as bar:
            run_logged([sys.executable, str(REPO / 'tools/train.py'), str(folder / 'config.py'),
                        '--work-dir', str(work), '--resume'], folder / 'train.log',
                       settings.threads, bar)
        if after is not None:
            after(folder, work / f'iter_{iters}.pth')
        record = StageRecord(name, str(folder), iters, False, time.perf_counter() - start,
                             _children_cpu() - cpu)
        partial = folder / 'done.json.partial'
        partial.write_text(json.dumps(asdict(record), indent=1))
        os.replace(partial, done)
    return folder, record


def tiny_backbone(cache: Path) -> Path:
    """The tiny random CogVideoX of ``tools/make_tiny_backbone.py --vae pixel-unshuffle`` (its
    other defaults), written once.  The pixel-unshuffle VAE is an exact inverse: a random tiny VAE
    decodes nothing recognisable, however well the transformer learns."""
    parameters = {name: p.default for name, p in
                  inspect.signature(save_tiny_cogvideox).parameters.items() if name != 'out'}
    parameters['vae'] = 'pixel_unshuffle'
    folder = cache / 'demo' / f'tiny_cogvideox-{stage_key(json.dumps(parameters), cache)}'
    with locked(folder):
        if not (folder / 'done').is_file():
            save_tiny_cogvideox(folder / 'model', **parameters)
            (folder / 'done').write_text(json.dumps(parameters))
    return folder / 'model'


def prepare(settings: Settings) -> Prepared:
    """Stages 1-3 (see the module docstring), each trained or taken from the cache."""
    configs = {name: Config.fromfile(str(REPO / path)) for name, path in CONFIGS.items()}
    distillation = configs['distillation']
    records = []

    tqdm.write(f'[1/3] reconstructor: {CONFIGS["reconstructor"]}, {settings.recon_iters} iterations')
    cfg = shortened(configs['reconstructor'], settings.recon_iters)
    training_data(cfg, distillation, settings.train_scenes, settings.recon_batch)
    folder, record = train_stage('reconstructor', cfg, settings)
    reconstructor = folder / 'work' / f'iter_{settings.recon_iters}.pth'
    records.append(record)

    tqdm.write(f'[2/3] teacher: {CONFIGS["teacher"]}, {settings.teacher_iters} iterations')
    tiny = tiny_backbone(settings.cache_dir)
    cfg = shortened(configs['teacher'], settings.teacher_iters)
    training_data(cfg, distillation, settings.train_scenes, settings.teacher_batch)
    cfg.model.backbone.update(pretrained=str(tiny),
                              prompt_embedding=str(tiny / 'prompt_embeds.safetensors'))

    def export(folder: Path, checkpoint: Path) -> None:
        run_logged([sys.executable, str(REPO / 'tools/export_teacher.py'),
                    str(folder / 'config.py'), str(checkpoint), '--out', str(folder / 'model')],
                   folder / 'train.log', settings.threads)

    folder, record = train_stage('teacher', cfg, settings, after=export)
    teacher = folder / 'model'
    records.append(record)

    tqdm.write(f'[3/3] distillation: {CONFIGS["distillation"]}, {settings.distill_iters} '
               'iterations')
    cfg = shortened(distillation, settings.distill_iters)
    training_data(cfg, distillation, settings.train_scenes, settings.distill_batch)
    cfg.model.backbone.update(pretrained=str(teacher),
                              prompt_embedding=str(teacher / 'prompt_embeds.safetensors'))
    cfg.model.reconstructor_checkpoint = str(reconstructor)
    folder, record = train_stage('distillation', cfg, settings)
    records.append(record)
    for record in records:
        tqdm.write(f'    {record.name}: {"cached" if record.cached else "trained"} '
                   f'({record.iterations} iterations, {record.seconds:.0f} s, '
                   f'{record.cpu_seconds:.0f} CPU-s) in {record.folder}')
    return Prepared(reconstructor, teacher, folder / 'config.py',
                    folder / 'work' / f'iter_{settings.distill_iters}.pth', records)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    prepared = prepare(settings_from(parser.parse_args(argv)))
    print(f'distillation config:     {prepared.distillation_config}\n'
          f'distillation checkpoint: {prepared.distillation_checkpoint}\n'
          f'teacher model folder:    {prepared.teacher_folder}\n'
          f'reconstructor checkpoint: {prepared.reconstructor_checkpoint}')


if __name__ == '__main__':
    run_tool(main)
