"""Two-process (gloo, CPU) training runs for the distributed tests (DDP, FSDP2, DeepSpeed), and the
one-process replay of their global batch.

``torchrun`` trains a config under ``tests/_distributed_worker.py``, which records on every rank
what it drew (batches, leap noise, the policy's timesteps) and the weights before the model was
wrapped; :func:`global_batch` and :func:`replay_draws` let a test run the same iterations in one
process.
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

from videoscene.policies import Decision, GridPolicy

REPO = Path(__file__).resolve().parents[1]
ITERS, FREEZE = 4, 2     # iterations of the runs; the policy trains for the first FREEZE


def free_port() -> int:
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def tiny_config(folder: Path, teacher: Path, extra: str = '') -> Path:
    """``folder/config.py``: the tiny distillation config on ``teacher`` with the DepthUnprojection
    reconstructor, batch 2 per rank, ITERS iterations, checkpoints every 2, then ``extra``."""
    config = folder / 'config.py'
    config.write_text(f"""_base_ = [{str(REPO / 'configs/distillation/tiny_cogvideox_synthetic.py')!r}]
model = dict(backbone=dict(pretrained={str(teacher)!r},
                           prompt_embedding={str(teacher / 'prompt_embeds.safetensors')!r}),
             reconstructor=dict(_delete_=True, type='DepthUnprojection'),
             reconstructor_checkpoint=None, policy=dict(channels=(8, 8, 8, 8), groups=4))
train_dataloader = dict(batch_size=2, dataset=dict(num_scenes=4))
param_scheduler = None
train_cfg = dict(max_iters={ITERS})
custom_hooks = [dict(type='IterationSeedHook'), dict(type='TargetEMAHook', decay=0.9),
                dict(type='PolicyScheduleHook', train_iters={FREEZE})]
default_hooks = dict(checkpoint=dict(interval=2, max_keep_ckpts=2), logger=dict(interval=1))
""" + extra)
    return config


def torchrun(out: Path, config: Path, work_dir: Path, resume: str = '',
             processes: int = 2) -> tuple[list[dict], str]:
    """Train ``config`` on ``processes`` processes; returns each rank's record and the log."""
    port = str(free_port())
    env = dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=port, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run',
                             '--nproc-per-node', str(processes),
                             '--master-port', port, str(REPO / 'tests/_distributed_worker.py'),
                             str(config), str(out), str(work_dir), resume],
                            cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    ranks = [torch.load(out / f'rank{r}.pt', weights_only=False) for r in range(processes)]
    return ranks, result.stdout + result.stderr


def train_tiny(folder: Path, extra: str = '') -> tuple[Path, list[dict], str]:
    """A tiny teacher in ``folder``, :func:`tiny_config` with ``extra``, trained on two processes
    into ``folder/work``: ``(config, ranks' records, log)``."""
    from videoscene.backbones.tiny import save_tiny_cogvideox
    config = tiny_config(folder, save_tiny_cogvideox(folder / 'teacher'), extra)
    ranks, log = torchrun(folder, config, folder / 'work')
    return config, ranks, log


def assert_resumes_exactly(run_folder: Path, config: Path, out: Path) -> None:
    """Resuming ``run_folder/work/iter_2.pth`` in a new run ends with ``iter_4``'s weights."""
    from videoscene.engine.sharded_checkpoint import consolidate
    _, log = torchrun(out, config, out / 'work', str(run_folder / 'work' / 'iter_2.pth'))
    assert 'resumed epoch: 0, iter: 2' in log
    first = consolidate(str(run_folder / 'work' / 'iter_4.pth'))['state_dict']
    resumed = consolidate(str(out / 'work' / 'iter_4.pth'))['state_dict']
    assert first.keys() == resumed.keys()
    for key in first:
        assert torch.equal(first[key], resumed[key]), key


def global_batch(ranks: list[dict], iteration: int) -> tuple[dict, torch.Tensor, torch.Tensor]:
    """The ranks' batches, leap noise and timesteps of ``iteration``, concatenated."""
    batch = {part: {key: torch.cat([r['batches'][iteration][part][key] for r in ranks])
                    for key in ranks[0]['batches'][iteration][part]}
             for part in ('context', 'target')}
    return (batch, torch.cat([r['noise'][iteration] for r in ranks]),
            torch.cat([r['t'][iteration] for r in ranks]))


def replay_train_steps(config: Path, ranks: list[dict], monkeypatch):
    """The config's model from the ranks' initial weights after ITERS ``train_step`` calls on the
    global batches with the ranks' draws (the policy frozen after FREEZE), its two optimizers as
    the config builds them, and the EMA update of ``TargetEMAHook(decay=0.9)``."""
    from mmengine.config import Config

    from videoscene.registry import MODELS, OPTIM_WRAPPER_CONSTRUCTORS
    cfg = Config.fromfile(config)
    model = MODELS.build(cfg.model)
    model.load_state_dict(ranks[0]['initial'])
    optim = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type=cfg.optim_wrapper.constructor,
        optim_wrapper_cfg={k: v for k, v in cfg.optim_wrapper.items() if k != 'constructor'}))(model)
    assert all(len(r['noise']) == ITERS for r in ranks)
    replay = replay_draws(monkeypatch)
    for it in range(ITERS):
        batch, replay['noise'], replay['t'] = global_batch(ranks, it)
        model.policy_frozen = it >= FREEZE
        model.train_step(batch, optim)
        model.update_target(0.9)
    return model, optim


def assert_equal_to_replay(replayed: dict, trained: dict) -> None:
    """The replayed state dict equals the distributed run's, key by key.

    Summation order differs between the all-reduce / reduce-scatter and one batch (float32 noise
    ~1e-7 in the gradients). Adam's update ~ lr * g / sqrt(v) magnifies it where a gradient is near
    zero, as many of the small policy's are: its tolerance is 1/10 of one lr step (1e-3).
    """
    assert replayed.keys() == trained.keys()
    for key, value in replayed.items():
        atol = 1e-4 if key.startswith('policy.') else 1e-5
        torch.testing.assert_close(value, trained[key], atol=atol, rtol=1e-4, msg=key)


def replay_draws(monkeypatch) -> dict:
    """Make the policy pick ``replay['t']`` (with its own log-probability) and the leap noise be
    ``replay['noise']``; returns the dict to fill before each step."""
    replay = {}

    def select(policy, latents):
        distribution = policy.distribution(latents)
        index = torch.searchsorted(policy.candidates, replay['t'])
        return Decision(replay['t'], distribution.log_prob(index), distribution.entropy())

    monkeypatch.setattr(GridPolicy, 'select', select)
    monkeypatch.setattr(torch, 'randn_like', lambda tensor, *a, **k: replay['noise'])
    return replay
