"""Fault injection: training killed with SIGKILL (also inside a checkpoint write) always resumes to
the weights of an uninterrupted run; broken checkpoint files are named and skipped, never trusted
and never silently replaced by a fresh start."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _engine_runs import REPO, TEST, TRAIN, assert_same_weights, run_tool, toy_config, weights

from videoscene.engine.checkpoint import find_resume_checkpoint, load_from_trusted_local
from videoscene.errors import CheckpointError

FAULT_PLUGIN = '''
"""Pauses tools/train.py at the point named by $FAULT, after writing $FAULT_MARKER, so that the
test's SIGKILL lands exactly there:
    iter:N     inside training iteration N (1-based), before its batch is used;
    save:N     half-way through writing iter_N.pth (half its bytes on disk);
    pointer:N  after iter_N.pth is in place, before last_checkpoint names it."""
import os
import time
from pathlib import Path

from mmengine.fileio.backends import LocalBackend
from mmengine.hooks import Hook

from videoscene.engine.hooks import atomic_checkpoint
from videoscene.registry import HOOKS

KIND, _, STEP = os.environ.get('FAULT', '').partition(':')


def wait_for_kill():
    Path(os.environ['FAULT_MARKER']).write_text(os.environ['FAULT'])
    time.sleep(600)


if KIND == 'save':
    original_put = LocalBackend.put

    def put(self, obj, filepath):
        if os.path.basename(str(filepath)).startswith(f'.iter_{STEP}.pth'):
            with open(filepath, 'wb') as file:
                file.write(obj[:len(obj) // 2])
                file.flush()
                os.fsync(file.fileno())
            wait_for_kill()
        original_put(self, obj, filepath)

    LocalBackend.put = put

if KIND == 'pointer':
    original_write = atomic_checkpoint.write_last_checkpoint

    def write_last_checkpoint(work_dir, checkpoint):
        if os.path.basename(checkpoint) == f'iter_{STEP}.pth':
            wait_for_kill()
        original_write(work_dir, checkpoint)

    atomic_checkpoint.write_last_checkpoint = write_last_checkpoint


@HOOKS.register_module()
class FaultHook(Hook):
    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if KIND == 'iter' and runner.iter + 1 == int(STEP):
            wait_for_kill()
'''

FAULT_HOOKS = '''
custom_imports = dict(imports=['toy_plugin', 'fault_plugin'], allow_failed_imports=False)
custom_hooks = [dict(type='IterationSeedHook'), dict(type='FaultHook')]
'''


def kill_at(fault: str, config: Path, work_dir: Path, *args: str) -> str:
    """Run tools/train.py until it pauses at ``fault``, SIGKILL it and its DataLoader workers;
    return what it printed."""
    folder = config.parent
    marker, log_path = folder / f'reached-{fault}', folder / f'log-{fault}.txt'
    env = {**os.environ, 'PYTHONPATH': str(folder), 'FAULT': fault, 'FAULT_MARKER': str(marker)}
    with open(log_path, 'w') as log:
        process = subprocess.Popen([sys.executable, TRAIN, str(config), '--work-dir', str(work_dir),
                                    *args], cwd=REPO, env=env, stdout=log,
                                   stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 300
            while not marker.exists():
                assert process.poll() is None, (f'ended (exit {process.returncode}) before {fault}:\n'
                                                 + log_path.read_text()[-3000:])
                assert time.monotonic() < deadline, f'never reached {fault}'
                time.sleep(0.1)
        finally:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
    assert process.returncode == -signal.SIGKILL
    return log_path.read_text()


def test_killed_runs_resume_to_the_uninterrupted_weights(tmp_path):
    """Killed before the first checkpoint, inside a checkpoint write, between the checkpoint and
    its last_checkpoint, and inside an iteration; then a lost pointer and a 0-byte newer file:
    each --resume continues from the newest complete checkpoint and the run ends with exactly the
    weights of an uninterrupted one. ``max_keep_ckpts=1``: MMEngine deleted the only complete
    checkpoint before writing the next, so a kill inside that write left nothing to resume."""
    (tmp_path / 'fault_plugin.py').write_text(FAULT_PLUGIN)
    config = toy_config(tmp_path, 8, num_workers=2, interval=2, max_keep_ckpts=1, extra=FAULT_HOOKS)
    straight, run = tmp_path / 'straight', tmp_path / 'run'
    run_tool(TRAIN, config, '--work-dir', straight, env={'PYTHONPATH': str(tmp_path)})

    kill_at('iter:1', config, run)
    assert not list(run.glob('iter_*.pth'))

    log = kill_at('save:4', config, run, '--resume')
    assert 'holds no checkpoint' in log and 'starting from scratch' in log
    partials = list(run.glob('.iter_4.pth.*.partial'))
    assert len(partials) == 1 and partials[0].stat().st_size > 0  # torn, under its temporary name
    assert not (run / 'iter_4.pth').exists()
    assert (run / 'last_checkpoint').read_text() == str(run / 'iter_2.pth')

    log = kill_at('pointer:6', config, run, '--resume')
    assert f'Resuming from {run / "iter_2.pth"}' in log and 'resumed epoch: 0, iter: 2' in log
    assert f'Removed {partials[0]}' in log and not partials[0].exists()
    assert (run / 'last_checkpoint').read_text() == str(run / 'iter_4.pth')
    assert (run / 'iter_4.pth').exists() and (run / 'iter_6.pth').exists()

    log = kill_at('iter:7', config, run, '--resume')
    assert 'resumed epoch: 0, iter: 4' in log
    assert (run / 'last_checkpoint').read_text() == str(run / 'iter_6.pth')
    assert not (run / 'iter_4.pth').exists()  # outdated, deleted once iter_6 was safe

    (run / 'last_checkpoint').write_text('')
    (run / 'iter_8.pth').write_bytes(b'')
    finished = run_tool(TRAIN, config, '--work-dir', run, '--resume',
                        env={'PYTHONPATH': str(tmp_path)})
    log = finished.stdout + finished.stderr
    assert f'{run / "last_checkpoint"} is empty' in log
    assert f'{run / "iter_8.pth"} is empty (0 bytes)' in log
    assert 'resumed epoch: 0, iter: 6' in log
    final = torch.load(run / 'iter_8.pth', map_location='cpu', weights_only=False)
    assert final['meta']['iter'] == 8
    assert_same_weights(weights(straight / 'iter_8.pth'), final['state_dict'])
    assert not list(run.glob('.*.partial'))


@pytest.fixture
def work_dir(tmp_path):
    """A work dir with complete checkpoints iter_2.pth and iter_4.pth and no last_checkpoint."""
    for step in (2, 4):
        torch.save({'meta': {'iter': step}, 'state_dict': {'w': torch.full((64, 64), float(step))}},
                   tmp_path / f'iter_{step}.pth')
    return tmp_path


def truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[:len(data) // 2])


def test_resume_skips_a_zero_byte_newest_checkpoint(work_dir):
    (work_dir / 'iter_6.pth').write_bytes(b'')
    path, note = find_resume_checkpoint(str(work_dir))
    assert path == str(work_dir / 'iter_4.pth')
    assert f'{work_dir / "iter_6.pth"} is empty (0 bytes)' in note


def test_resume_skips_a_truncated_checkpoint_that_last_checkpoint_names(work_dir):
    truncate(work_dir / 'iter_4.pth')
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_4.pth'))
    path, note = find_resume_checkpoint(str(work_dir))
    assert path == str(work_dir / 'iter_2.pth')
    assert f'names {work_dir / "iter_4.pth"}, which is truncated' in note
    assert f'resuming from {work_dir / "iter_2.pth"}' in note


def test_resume_with_an_empty_last_checkpoint_takes_the_newest(work_dir):
    (work_dir / 'last_checkpoint').write_text('\n')
    path, note = find_resume_checkpoint(str(work_dir))
    assert path == str(work_dir / 'iter_4.pth') and 'last_checkpoint is empty' in note


def test_resume_with_last_checkpoint_naming_a_missing_file(work_dir):
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_10.pth'))
    path, note = find_resume_checkpoint(str(work_dir))
    assert path == str(work_dir / 'iter_4.pth')
    assert f'names {work_dir / "iter_10.pth"}, which does not exist' in note


def test_resume_uses_a_complete_last_checkpoint_without_a_note(work_dir):
    (work_dir / 'last_checkpoint').write_text(str(work_dir / 'iter_2.pth'))
    assert find_resume_checkpoint(str(work_dir)) == (str(work_dir / 'iter_2.pth'), '')


def test_resume_refuses_to_restart_over_unreadable_checkpoints(work_dir):
    (work_dir / 'iter_2.pth').write_bytes(b'')
    truncate(work_dir / 'iter_4.pth')
    with pytest.raises(CheckpointError) as error:
        find_resume_checkpoint(str(work_dir))
    message = str(error.value)
    assert message.startswith(f'{work_dir}: holds checkpoints but none can be resumed from')
    assert 'iter_2.pth is empty' in message and 'iter_4.pth is truncated' in message
    assert '--restart-if-unreadable' in message
    path, note = find_resume_checkpoint(str(work_dir), restart_if_unreadable=True)
    assert path is None and 'starting from iteration 0 as asked' in note


def test_resume_in_an_empty_work_dir_starts_from_scratch(tmp_path):
    (tmp_path / 'iter_x.pth').write_bytes(b'')  # not a checkpoint name
    path, note = find_resume_checkpoint(str(tmp_path))
    assert path is None and 'holds no checkpoint' in note and 'starting from scratch' in note


@pytest.mark.parametrize('damage', ['empty', 'truncated', 'text'])
def test_loading_a_broken_checkpoint_names_the_file(work_dir, damage):
    path = work_dir / 'iter_4.pth'
    if damage == 'empty':
        path.write_bytes(b'')
    elif damage == 'truncated':
        truncate(path)
    else:
        path.write_text('not a checkpoint')
    with pytest.raises(CheckpointError, match=rf'^{path}: is (empty|truncated)'):
        load_from_trusted_local(str(path))


def test_resuming_from_plain_weights_is_refused_by_name(tmp_path):
    path = tmp_path / 'weights.pth'
    torch.save({'w': torch.zeros(3)}, path)
    assert set(load_from_trusted_local(str(path))) == {'w'}
    with pytest.raises(CheckpointError, match=rf'^{path}: holds no training state'):
        load_from_trusted_local(str(path), resuming=True)


def test_tools_name_a_broken_checkpoint_given_on_the_command_line(tmp_path):
    config = toy_config(tmp_path, 4)
    broken = tmp_path / 'iter_4.pth'
    broken.write_bytes(b'')
    env = {'PYTHONPATH': str(tmp_path)}
    for tool, args in ((TRAIN, ['--resume', broken]), (TEST, [broken])):
        result = run_tool(tool, config, '--work-dir', tmp_path / 'work', *args, env=env,
                          check=False)
        assert result.returncode != 0
        assert f'CheckpointError: {broken}: ' in result.stderr and 'empty (0 bytes)' in result.stderr
