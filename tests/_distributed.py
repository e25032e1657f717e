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
