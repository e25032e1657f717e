"""benchmarks/toy_ablation.py end to end at a tiny size: every stage trains through the project's
configs, the table has every row of the paper's Tab. 3 plus the teachers, and a second run (with
the ground-truth-depth prior) reuses the cached data and teacher."""
import importlib.util
import json
import os.path as osp

import pytest

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = ['--size', '16', '--train-scenes', '2', '--clips-per-scene', '2', '--val-scenes', '1',
        '--test-scenes', '3', '--test-clips', '1', '--scene-frames', '30', '--min-gap', '10',
        '--max-gap', '14', '--recon-iters', '1', '--recon-batch', '2', '--teacher-iters', '2',
        '--teacher-layers', '1', '--teacher-heads', '2', '--teacher-head-dim', '16',
        '--distill-iters', '2', '--batch', '2', '--teacher-steps', '4', '--sweep-stride', '10',
        '--log-every', '1', '--threads', '1']
ROWS = ['Base rendered video', 'w/o 3D-aware leap flow (1 step from noise)', 'w/o DDPNet, fixed t=',
        'w/o DDPNet, random t', 'VideoScene (full model, DDPNet t), 1 step',
        'Teacher, 4 steps from noise', 'Teacher, multi-step from the DDPNet leap start']


def toy_ablation():
    spec = importlib.util.spec_from_file_location(
        'toy_ablation', osp.join(REPO, 'benchmarks', 'toy_ablation.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp('toy')
    argv = TINY + ['--work-dir', str(root / 'work'), '--results', str(root / 'results')]
    return toy_ablation(), argv, root


def test_the_table_has_every_row_and_stages_are_cached(run, monkeypatch):
    module, argv, root = run
    monkeypatch.setenv('VIDEOSCENE_CACHE', str(root / 'cache'))
    result = module.main(argv)
    table = (root / 'results.md').read_text()
    names = list(result['rows'])
    for prefix in ROWS:
        assert sum(name.startswith(prefix) for name in names) == 1, prefix
        assert any(line.startswith(f'| {prefix}') for line in table.splitlines()), prefix
    saved = json.loads((root / 'results.json').read_text())
    assert list(saved['rows']) == names
    for name, row in saved['rows'].items():
        assert len(row['per_clip_psnr']) == 3 and 0 < row['ssim'] <= 1 and row['sharpness'] > 0
        assert ('fidelity_psnr' in row) == name.startswith(('w/o', 'VideoScene')), name
    # the render row is the cached render itself; the one-step students ran one step
    assert saved['rows']['Base rendered video']['steps'] == 0
    assert saved['rows']['VideoScene (full model, DDPNet t), 1 step']['steps'] == 1
    assert set(saved['stages']) >= {'data: scenes and clip pools', 'stage 1: MVSplat',
                                    'stage 2: teacher', 'render cache', 'stage 3: full',
                                    'stage 3: wo_leap_flow', 'stage 3: wo_ddpnet', 'evaluation'}
    assert not any(stage['cached'] for stage in saved['stages'].values())
    assert sum(b['clips'] for b in saved['ddpnet_t_by_render_psnr']) == 3
    assert len(saved['ddpnet_t']) == 3

    # the ground-truth-depth prior reuses the data and the teacher, and trains no stage 1
    oracle = module.main(argv + ['--reconstructor', 'depth', '--results', str(root / 'oracle')])
    assert 'stage 1: MVSplat' not in oracle['stages']
    assert oracle['stages']['data: scenes and clip pools']['cached']
    assert oracle['stages']['stage 2: teacher']['cached']
    assert not oracle['stages']['render cache']['cached']
    assert all(sum(name.startswith(prefix) for name in oracle['rows']) == 1 for prefix in ROWS)
    assert oracle['rows']['Base rendered video'] != saved['rows']['Base rendered video']
