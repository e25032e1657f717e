"""`make demo` end to end at the smallest settings: train the three stages, generate, write outputs;
a second run takes every stage from the cache."""
import json
import os
import re
import subprocess
import sys

import pytest

SMALLEST = ['--recon-iters', '2', '--teacher-iters', '2', '--distill-iters', '1',
            '--train-scenes', '2', '--recon-batch', '1', '--teacher-batch', '1',
            '--distill-batch', '1', '--test-scenes', '1', '--steps', '2']


def run_demo(repo_root, out, cache):
    result = subprocess.run([sys.executable, 'tools/demo.py', '--out', str(out), *SMALLEST],
                            cwd=repo_root, capture_output=True, text=True, timeout=900,
                            env=dict(os.environ, VIDEOSCENE_CACHE=str(cache)))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return result.stdout + result.stderr


@pytest.fixture(scope='module')
def demo(repo_root, tmp_path_factory):
    root = tmp_path_factory.mktemp('demo')
    log = run_demo(repo_root, root / 'out', root / 'cache')
    return root, log


def test_demo_writes_every_output(demo):
    root, _ = demo
    out = root / 'out'
    for name in ('side_by_side.mp4', 'contact_sheet.png', 'results.md', 'results.json'):
        assert (out / name).stat().st_size > 0, name
    plys = list((out / 'gaussians').glob('*.ply'))
    assert len(plys) == 1 and plys[0].read_bytes().startswith(b'ply\n')


def test_results_table_parses(demo):
    root, _ = demo
    summary = json.loads((root / 'out' / 'results.json').read_text())
    assert set(summary['metrics']) == {'render', 'one_step', 'n_step'}
    evaluations = {k: row['network_evaluations'] for k, row in summary['metrics'].items()}
    assert evaluations == {'render': 0, 'one_step': 1, 'n_step': 2}
    for row in summary['metrics'].values():
        assert 0 < row['psnr'] < 100 and -1 <= row['ssim'] <= 1 and row['seconds_per_scene'] > 0
        # no VGG weights on a fresh machine: LPIPS is reported unavailable, never made up
        assert row['lpips'] is None
    assert summary['lpips'].startswith('unavailable')
    assert [stage['name'] for stage in summary['training']] == \
        ['reconstructor', 'teacher', 'distillation']
    assert not any(stage['cached'] for stage in summary['training'])
    # the markdown table has the same three rows, with the JSON's PSNR
    table = (root / 'out' / 'results.md').read_text()
    rows = [line for line in table.splitlines()
            if re.match(r'\| (render \(|VideoScene, |teacher, )', line)]
    assert len(rows) == 3
    assert f'{summary["metrics"]["one_step"]["psnr"]:.2f}' in rows[1]


def test_second_run_reads_the_cache(demo, repo_root):
    root, _ = demo
    log = run_demo(repo_root, root / 'again', root / 'cache')
    summary = json.loads((root / 'again' / 'results.json').read_text())
    assert all(stage['cached'] for stage in summary['training'])
    assert 'Iter(train)' not in log and 'resuming' not in log
