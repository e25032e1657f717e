"""Two-process FSDP2 (gloo, CPU) distillation through FSDP2Strategy and FlexibleRunner: it equals a
one-process run with the same global batch, its sharded checkpoints consolidate to the
single-process format, and resuming a sharded checkpoint continues exactly."""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import pytest
import torch
from _distributed import (ITERS, REPO, assert_equal_to_replay, assert_resumes_exactly, free_port,
                          replay_train_steps, torchrun, train_tiny)
from safetensors.torch import load_file

from videoscene.backbones.tiny import save_tiny_cogvideox
from videoscene.engine.checkpoint import checkpoint_problem, load_from_trusted_local
from videoscene.engine.sharded_checkpoint import consolidate


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    folder = tmp_path_factory.mktemp('fsdp')
    config, ranks, log = train_tiny(
        folder, "strategy = dict(type='FSDP2Strategy')\nmodel_wrapper_cfg = None\n")
    return folder, config, ranks, log


def test_the_denoiser_is_sharded_and_checkpoints_are_complete_folders(run):
    folder, _, ranks, log = run
    sharded = ranks[0]['tensors']
    assert sharded['backbone.transformer.transformer_blocks.0.attn1.to_q.weight'][0] == 'DTensor'
    assert sharded['backbone.vae.encoder.conv_in.conv.weight'][0] == 'Parameter'  # the shell: whole
    assert sharded['target.transformer:transformer_blocks:0:attn1:to_q:weight'][0] == 'DTensor'
    assert 'policy is frozen from iteration 3' in log
    for step in (2, 4):
        path = folder / 'work' / f'iter_{step}.pth'
        assert path.is_dir() and checkpoint_problem(str(path)) is None
        assert len(list(path.glob('__*_0.distcp'))) == 2          # each rank wrote its shards
    assert (folder / 'work' / 'last_checkpoint').read_text().strip().endswith('iter_4.pth')
    assert not list((folder / 'work').glob('.*partial'))
    broken = folder / 'broken.pth'
    broken.mkdir()
    assert 'not a complete sharded checkpoint' in checkpoint_problem(str(broken))


def test_two_ranks_equal_one_process_with_the_same_global_batch(run, monkeypatch):
    folder, config, ranks, _ = run
    final = consolidate(str(folder / 'work' / 'iter_4.pth'))
    assert final['meta']['iter'] == ITERS
    assert not torch.equal(ranks[0]['noise'][0], ranks[1]['noise'][0])      # the batch was split
    model, optim = replay_train_steps(config, ranks, monkeypatch)
    assert_equal_to_replay(model.state_dict(), final['state_dict'])
    initial = ranks[0]['initial']
    moved = {k.split('.')[0] for k in final['state_dict']
             if not torch.equal(final['state_dict'][k], initial[k])}
    assert {'backbone', 'target', 'policy'} <= moved
    # the consolidated optimizer states are the one-process run's, in its index-keyed layout
    for name in ('student', 'policy'):
        ours = optim[name].state_dict()
        theirs = final['optimizer'][name]
        assert ours['state'].keys() == theirs['state'].keys()
        for index, entry in ours['state'].items():
            for key, value in entry.items():
                torch.testing.assert_close(value, theirs['state'][index][key], atol=1e-4,
                                           rtol=1e-3, msg=f'{name} {index} {key}')


def test_resuming_a_sharded_checkpoint_continues_exactly(run, tmp_path):
    folder, config, _, _ = run
    assert_resumes_exactly(folder, config, tmp_path)


def test_a_two_process_checkpoint_loads_into_one_process(run, tmp_path):
    """DCP re-shards on load: one process resumes the two processes' checkpoint with its exact
    weights (the resumed run stops at once: max_iters is the checkpoint's iteration)."""
    folder, config, _, _ = run
    stop = tmp_path / 'stop_at_2.py'
    stop.write_text(f"_base_ = [{str(config)!r}]\ntrain_cfg = dict(max_iters=2)\n")
    ranks, log = torchrun(tmp_path, stop, tmp_path / 'work', str(folder / 'work' / 'iter_2.pth'),
                          processes=1)
    assert 'resumed epoch: 0, iter: 2' in log
    saved = consolidate(str(folder / 'work' / 'iter_2.pth'))['state_dict']
    loaded = ranks[0]['final']
    assert saved.keys() == loaded.keys()
    for key in saved:
        assert torch.equal(saved[key], loaded[key]), key


def test_bfloat16_backbone_keeps_float32_master_weights(run, tmp_path):
    """The recipe's precision: frozen weights and the teacher's copy in bfloat16, the trained
    tensors and the EMA target in float32, weights gathered in bfloat16; with a schedule."""
    folder, config, _, _ = run
    bf16 = tmp_path / 'bf16_config.py'
    bf16.write_text(f"""_base_ = [{str(config)!r}]
model = dict(backbone=dict(dtype='bfloat16'), trainable='attention')
train_cfg = dict(max_iters=2)
strategy = dict(mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'))
param_scheduler = [dict(type='LinearLR', start_factor=0.5, by_epoch=False, begin=0, end=2)]
""")
    ranks, log = torchrun(tmp_path, bf16, tmp_path / 'work')
    sharded = ranks[0]['tensors']
    block = 'transformer.transformer_blocks.0.'
    assert sharded[f'backbone.{block}attn1.to_q.weight'] == ('DTensor', torch.float32)
    assert sharded[f'backbone.{block}ff.net.0.proj.weight'] == ('DTensor', torch.bfloat16)
    assert sharded['backbone.vae.encoder.conv_in.conv.weight'] == ('Parameter', torch.bfloat16)
    key = block.replace('.', ':') + 'attn1:to_q:weight'
    assert sharded[f'teacher.{key}'] == ('DTensor', torch.bfloat16)
    assert sharded[f'target.{key}'] == ('DTensor', torch.float32)
    # one schedule per optimizer (MMEngine's strategies built only the first one's)
    assert re.findall(r'policy\.lr: ([\d.e+-]+)', log) == ['5.0000e-04', '1.0000e-03']
    losses = [float(v) for v in re.findall(r'loss_consistency: ([-\d.e]+)', log)]
    assert len(losses) == 2 and all(math.isfinite(v) for v in losses)
    final = consolidate(str(tmp_path / 'work' / 'iter_2.pth'))['state_dict']
    assert final[f'backbone.{block}attn1.to_q.weight'].dtype == torch.float32


def test_tools_read_a_sharded_checkpoint_as_its_consolidated_file(run, tmp_path):
    folder, _, _, _ = run
    result = subprocess.run([sys.executable, str(REPO / 'tools/consolidate_checkpoint.py'),
                             str(folder / 'work' / 'iter_4.pth'), '--out',
                             str(tmp_path / 'single.pth')], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    single = load_from_trusted_local(str(tmp_path / 'single.pth'))
    direct = load_from_trusted_local(str(folder / 'work' / 'iter_4.pth'))
    assert single['state_dict'].keys() == direct['state_dict'].keys()
    assert all(torch.equal(single['state_dict'][k], direct['state_dict'][k])
               for k in single['state_dict'])
    assert single['meta']['iter'] == ITERS and 'message_hub' in single


def test_teacher_fine_tune_trains_sharded_and_tools_test_reads_its_folder(tmp_path):
    """Stage 2 under FSDP2Strategy through tools/train.py; tools/test.py evaluates the folder."""
    teacher = save_tiny_cogvideox(tmp_path / 'tiny')
    config = tmp_path / 'teacher_fsdp.py'
    config.write_text(f"""_base_ = [{str(REPO / 'configs/teacher/tiny_cogvideox_synthetic.py')!r}]
model = dict(backbone=dict(pretrained={str(teacher)!r},
                           prompt_embedding={str(teacher / 'prompt_embeds.safetensors')!r}),
             sample_steps=2)
train_dataloader = dict(batch_size=2)
test_dataloader = dict(dataset=dict(num_scenes=1))
param_scheduler = None
train_cfg = dict(max_iters=2)
default_hooks = dict(checkpoint=dict(interval=2), logger=dict(interval=1))
strategy = dict(type='FSDP2Strategy')
work_dir = {str(tmp_path / 'work')!r}
""")
    port = str(free_port())
    env = dict(os.environ, MASTER_ADDR='127.0.0.1', MASTER_PORT=port, OMP_NUM_THREADS='1')
    result = subprocess.run([sys.executable, '-m', 'torch.distributed.run', '--nproc-per-node', '2',
                             '--master-port', port, 'tools/train.py', str(config), '--launcher',
                             'pytorch'], cwd=REPO, env=env, capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    folder = tmp_path / 'work' / 'iter_2.pth'
    assert folder.is_dir() and checkpoint_problem(str(folder)) is None
    trained = consolidate(str(folder))['state_dict']
    start = load_file(teacher / 'transformer' / 'diffusion_pytorch_model.safetensors')
    key = 'transformer_blocks.0.attn1.to_q.weight'
    assert not torch.equal(trained[f'backbone.transformer.{key}'], start[key])   # it trained
    result = subprocess.run([sys.executable, 'tools/test.py', str(config), str(folder), '--out',
                             str(tmp_path / 'test')], cwd=REPO, env=env, capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-4000:]
    assert 'teacher' in (tmp_path / 'test' / 'metrics.md').read_text()
