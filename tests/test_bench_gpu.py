"""benchmarks/bench_gpu.py (the full-size GPU figures) runs its whole path at toy scale on the CPU:
a random model folder written from architecture files, loaded through the config, one-step
inference and one distillation iteration measured."""
import importlib.util
import json
import os.path as osp

from videoscene.backbones.tiny import save_tiny_cogvideox

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def test_bench_gpu_runs_at_toy_scale_on_the_cpu(tmp_path):
    spec = importlib.util.spec_from_file_location('bench_gpu', osp.join(REPO, 'benchmarks/bench_gpu.py'))
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    arch = save_tiny_cogvideox(tmp_path / 'arch')       # only its config.json files are read
    out = tmp_path / 'figures.json'
    bench.main(['--device', 'cpu', '--config',
                osp.join(REPO, 'configs/distillation/tiny_cogvideox_synthetic.py'),
                '--arch', str(arch), '--frames', '9', '--size', '32', '32', '--repeats', '1',
                '--no-tiling', '--json', str(out)])
    figures = json.loads(out.read_text())
    assert figures['parameters']['trained'] == figures['parameters']['denoiser'] > 0  # 'all'
    for row in ('one step', 'distillation iteration'):
        assert figures[row]['seconds'] > 0 and figures[row]['peak_gib'] > 0
    assert 'renderer' not in figures            # gsplat needs CUDA
