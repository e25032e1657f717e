"""tools/sweep.py: bad specs fail before anything runs, cluster commands, reports collected from
the cells' metrics.json (columns 'ROW:KEY', steps as a test axis), and a 3-cell policy sweep
(DDPNet / fixed / random) of the tiny distillation config that, interrupted in its second cell's
training, resumes to the same table as an uninterrupted sweep."""
from __future__ import annotations

import functools
import importlib.util
import shlex
import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pytest
from _pipeline_setup import SMALL_DDPNET, tiny_backbone

from videoscene.evaluation.report import write_report as write_evaluation_report
from videoscene.sweep import SpecError, SweepError, load_spec, run_sweep, write_report
from videoscene.sweep.run import _subprocess

REPO = Path(__file__).resolve().parents[1]
DISTILLATION = REPO / 'configs/distillation/tiny_cogvideox_synthetic.py'
MVSPLAT = REPO / 'configs/mvsplat/mvsplat_synthetic_cpu.py'
POLICIES = """[
    {'label': 'DDPNet', 'model.policy.max_timestep': 799},
    {'label': 'fixed', 'model.policy': dict(type='fixed', t=549)},
    {'label': 'random', 'model.policy': dict(type='random', max_timestep=799)},
]"""


def write_spec(folder: Path, body: str, base: Path | str = DISTILLATION, name='spec.py') -> Path:
    path = folder / name
    path.write_text(f'base = {str(base)!r}\nout = {str(folder / "out")!r}\n{body}\n')
    return path


@pytest.fixture
def nothing_runs(monkeypatch):
    """Fail the test if any subprocess starts."""
    def refuse(*args, **kwargs):
        raise AssertionError(f'a subprocess started: {args[0] if args else kwargs}')
    monkeypatch.setattr(subprocess, 'run', refuse)
    monkeypatch.setattr(subprocess, 'Popen', refuse)


BAD_SPECS = {
    'unknown registry type': (
        "axes = dict(policy=[{'model.policy': dict(type='DDPNett')}])",
        ["'DDPNett' is not a registered timestep policy", 'DDPNet, fixed, random']),
    'unknown type of a type-only swap': (
        "axes = dict(policy=[{'model.policy.type': 'fixd'}])",
        ["'fixd' is not a registered timestep policy"]),
    'unknown hook type': (
        "axes = dict(hooks=[{'custom_hooks': [dict(type='NoSuchHook')]}])",
        ["'NoSuchHook' is not a registered hook", 'custom_hooks.0']),
    'empty grid': ('axes = dict()', ['empty grid']),
    'empty axis': ("axes = dict(policy=[{'model.policy.t': 1}], steps=[])", ["axis 'steps' is empty"]),
    'conflicting keys': (
        "axes = dict(a=[{'model.loss': 'l2'}], b=[{'model.loss': 'huber'}])",
        ["conflicting keys: axis 'b' sets 'model.loss' and axis 'a' sets 'model.loss'"]),
    'nested conflicting keys': (
        "axes = dict(policy=[{'model.policy': dict(type='fixed')}], t=[{'model.policy.t': 3}])",
        ["conflicting keys: axis 't' sets 'model.policy.t' and axis 'policy' sets 'model.policy'"]),
    'axis against options': (
        "options = {'train_cfg.max_iters': 2}\naxes = dict(iters=[{'train_cfg.max_iters': 4}])",
        ["axis 'iters' sets 'train_cfg.max_iters' and 'options' sets"]),
    'unknown config key': (
        "axes = dict(iters=[{'train_cfg.max_iter': 4}])",
        ["unknown config key 'train_cfg.max_iter'", 'IterBasedTrainLoop']),
    'unknown nested key': (
        "axes = dict(policy=[{'model.polcy.t': 4}])", ["unknown config key 'model.polcy.t'"]),
    'unknown argument of a swapped type': (
        "axes = dict(policy=[{'model.policy': dict(type='fixed', tt=4)}])",
        ["unknown config key 'model.policy.tt': fixed takes no argument 'tt'"]),
    'type-only swap keeps old arguments': (
        "axes = dict(policy=[{'model.policy.type': 'fixed'}])",
        ["fixed takes no argument 'max_timestep'", 'swap the whole entry']),
    'unknown runner-level key': (
        "axes = dict(a=[{'auto_scale_lrr': 3}])",
        ["unknown config key 'auto_scale_lrr': not in the base config nor an argument of Runner"]),
    'unknown data loader key': (
        "axes = dict(a=[{'train_dataloader.pin_memry': True}])",
        ["'train_dataloader.pin_memry'", 'nor an argument of DataLoader']),
    'epoch-based training': (
        "axes = dict(loop=[{'train_cfg': dict(type='EpochBasedTrainLoop', max_epochs=1)}])",
        ['iteration-based train_cfg (max_iters)']),
    'duplicate labels': (
        "axes = dict(policy=[{'label': 'a', 'model.policy.t': 1}, {'label': 'a', 'model.loss': 'l2'}])",
        ["has the label 'a' twice"]),
    'unknown spec field': ("axes = dict(a=[{'model.loss': 'l2'}])\naxis = 3", ["unknown spec field(s) ['axis']"]),
    'steps on a trained axis': (
        "axes = dict(steps=[{'steps': 4}])", ["sets 'steps'", 'put it in test_axes']),
    'steps not a positive integer': (
        "axes = dict(a=[{'model.loss': 'l2'}])\ntest_axes = dict(steps=[{'steps': 0}])",
        ["'steps' must be a positive integer", 'got 0']),
    'steps against an axis setting sample_steps': (
        "axes = dict(n=[{'model.sample_steps': 2}])\ntest_axes = dict(steps=[{'steps': 4}])",
        ["axis 'steps' sets 'model.sample_steps' and axis 'n' sets 'model.sample_steps'"]),
    'metrics column not ROW:KEY': (
        "axes = dict(a=[{'model.loss': 'l2'}])\nmetrics = dict(PSNR='novel_view/psnr')",
        ["metrics column 'PSNR': 'novel_view/psnr' is not 'ROW:KEY'", '1-step:novel_view/psnr']),
    'metrics row the model lacks': (
        "axes = dict(a=[{'model.loss': 'l2'}])\nmetrics = ['2-step:novel_view/psnr']",
        ["LeapFlowDistillation has no output row '2-step'",
         'its rows: render, 1-step, N-step, teacher']),
    'unknown metric argument': (
        "options = {'metric_options.NovelViewLPIPS.vgg_chekpoint': '/w/vgg16.pth'}\n"
        "axes = dict(a=[{'model.loss': 'l2'}])",
        ["unknown config key 'metric_options.NovelViewLPIPS.vgg_chekpoint': NovelViewLPIPS "
         "takes no argument 'vgg_chekpoint'"]),
    'unknown metric in metric_options': (
        "options = {'metric_options': dict(NovelViewLPIPZ=dict(vgg_checkpoint='/w.pth'))}\n"
        "axes = dict(a=[{'model.loss': 'l2'}])", ["unknown metric in 'metric_options'", 'LPIPZ']),
    'unknown test metric': (
        "axes = dict(a=[{'model.loss': 'l2'}])\ntest_metrics = ['psnr', 'lpipz']",
        ['test_metrics:', "'lpipz'"]),
}


@pytest.mark.parametrize('kind', BAD_SPECS)
def test_bad_specs_fail_naming_the_problem_before_anything_runs(kind, tmp_path, nothing_runs):
    body, expected = BAD_SPECS[kind]
    spec = write_spec(tmp_path, body)
    with pytest.raises(SpecError) as error:
        load_spec(str(spec))
    assert str(spec) in str(error.value)
    for text in expected:
        assert text in str(error.value)
    assert not (tmp_path / 'out').exists()


def test_missing_base_config_and_plugin_types(tmp_path, nothing_runs, monkeypatch):
    # as in a fresh process: the plugin not imported yet (another test in this worker may have)
    from videoscene.registry import TIMESTEP_POLICIES
    monkeypatch.delitem(TIMESTEP_POLICIES._module_dict, 'truncated_normal', raising=False)
    for module in ('projects.example_policy', 'projects.example_policy.truncated_normal'):
        monkeypatch.delitem(sys.modules, module, raising=False)
    missing = write_spec(tmp_path, "axes = dict(a=[{'model.loss': 'l2'}])",
                         base='configs/no_such.py', name='missing.py')
    with pytest.raises(SpecError, match=r'base config not found: configs/no_such\.py'):
        load_spec(str(missing))
    # a plugin's policy is unknown until the spec imports it, then the swap is checked against it
    plugin = "axes = dict(policy=[{'model.policy': dict(type='truncated_normal', mean=549.0)}])"
    with pytest.raises(SpecError, match="'truncated_normal' is not a registered timestep policy"):
        load_spec(str(write_spec(tmp_path, plugin, name='no_import.py')))
    spec = load_spec(str(write_spec(
        tmp_path, plugin + "\ncustom_imports = dict(imports=['projects.example_policy'])",
        name='import.py')))
    assert spec.config(spec.cells[0].train_options).custom_imports.imports == \
        ['projects.example_policy']


def test_grid_hashes_and_test_axes(tmp_path, nothing_runs):
    """Cells are the product of the axes; the training hash ignores inference-time axes, the
    cell hash does not; a type swap replaces the entry and an argument the class takes is a
    known key although the base config does not set it."""
    spec = load_spec(str(write_spec(tmp_path, f"""
options = {{'train_dataloader.pin_memory': False}}
axes = dict(policy={POLICIES}, leap=[{{'label': 'on', 'model.leap_flow': True}},
                                      {{'label': 'off', 'model.leap_flow': False}}])
test_axes = dict(renderer=[{{'label': 'torch', 'model.renderer.views_per_chunk': 9}},
                           {{'label': 'torch/3', 'model.renderer.views_per_chunk': 3}}])""")))
    assert len(spec.cells) == 12
    assert [list(c.labels.values()) for c in spec.cells[:3]] == [
        ['DDPNet', 'on', 'torch'], ['DDPNet', 'on', 'torch/3'], ['DDPNet', 'off', 'torch']]
    assert len({c.train_id for c in spec.cells}) == 6
    assert len({c.cell_id for c in spec.cells}) == 12
    assert spec.cells[0].train_id == spec.cells[1].train_id
    fixed = spec.config(spec.cells[4].train_options).model.policy
    assert fixed.to_dict() == dict(type='fixed', t=549)   # DDPNet's arguments are gone
    again = load_spec(str(write_spec(tmp_path, f'axes = dict(policy={POLICIES})', name='b.py')))
    assert again.cells[1].train_id == load_spec(str(write_spec(
        tmp_path, f'axes = dict(policy={POLICIES})', name='c.py'))).cells[1].train_id


def test_shipped_spec_is_valid(nothing_runs):
    spec = load_spec(str(REPO / 'configs/sweeps/tiny_distillation_policy.py'))
    assert [(c.labels['policy'], c.steps) for c in spec.cells] == [
        (policy, steps) for policy in ('DDPNet', 'fixed t=549', 'random') for steps in (4, 8)]
    assert spec.config(spec.cells[4].train_options).model.policy.to_dict() == \
        dict(type='random', max_timestep=799)
    assert len({c.train_id for c in spec.cells}) == 3 and len({c.cell_id for c in spec.cells}) == 6
    assert spec.metrics['PSNR N-step'] == 'N-step:novel_view/psnr'


def test_steps_on_a_model_without_denoising_steps(tmp_path, nothing_runs):
    spec = write_spec(tmp_path, "axes = dict(iters=[{'train_cfg.max_iters': 2}])\n"
                      "test_axes = dict(steps=[{'steps': 4}])", base=MVSPLAT)
    with pytest.raises(SpecError, match=r"'steps' \(tools/test.py --steps\): "
                       r'GaussianReconstruction has no denoising steps'):
        load_spec(str(spec))


def test_cluster_launchers_print_one_command_per_cell(tmp_path, capsys, nothing_runs):
    spec = load_spec(str(write_spec(tmp_path, f'axes = dict(policy={POLICIES})')))
    commands = run_sweep(spec, launcher='slurm', srun_args='-p gpu --ntasks=4')
    printed = [line for line in capsys.readouterr().out.splitlines() if not line.startswith('#')]
    assert printed == commands and len(commands) == 3
    assert (tmp_path / 'out/commands.sh').read_text().splitlines()[1:] == commands
    for cell, line in zip(spec.cells, commands):
        train, test = [shlex.split(part) for part in line.split(' && ')]
        assert train[:3] == ['srun', '-p', 'gpu'] and 'tools/train.py' in train
        assert train[-2:] == ['--launcher', 'slurm'] and '--resume' in train
        work_dir = train[train.index('--work-dir') + 1]
        assert work_dir == str(tmp_path / 'out/train' / cell.train_id)
        assert Path(train[train.index('tools/train.py') + 1]).is_file()   # the cell's config
        # tools/test.py is one process: srun's last --ntasks wins, no --launcher
        assert test[:5] == ['srun', '-p', 'gpu', '--ntasks=4', '--ntasks=1']
        assert 'tools/test.py' in test and '--launcher' not in test
        assert test[test.index('tools/test.py') + 2] == f'{work_dir}/iter_200.pth'
        cell_dir = str(tmp_path / 'out/cells' / cell.cell_id)
        assert test[test.index('--out') + 1] == test[test.index('--work-dir') + 1] == cell_dir
        assert '--steps' not in test and '--metrics' not in test
    torchrun = run_sweep(spec, launcher='pytorch', gpus=4)
    assert all('-m torch.distributed.run --nproc_per_node=4 tools/train.py' in c for c in torchrun)
    capsys.readouterr()
    _tool('tools/sweep.py').main([spec.path, '--launcher', 'slurm', '--out', str(tmp_path / 'cli')])
    printed = capsys.readouterr().out.splitlines()
    assert f'--out {tmp_path / "cli"}` collects' in printed[0]
    assert len(printed) == 4 and all(line.startswith('srun --ntasks=1 --gres=gpu:1 ')
                                     for line in printed[1:])
    assert not (tmp_path / 'cli/results.csv').exists()


def test_cluster_commands_of_shared_trainings_and_evaluation_only_sweeps(tmp_path, nothing_runs):
    """Cells differing in test_axes only share one training: one line trains, then tests each;
    with train=False every cell evaluates the given checkpoint, its axes at test time."""
    renderer = """[{'label': 'a', 'model.renderer.views_per_chunk': 9},
                 {'label': 'b', 'model.renderer.views_per_chunk': 3}]"""
    spec = load_spec(str(write_spec(tmp_path, f'axes = dict(policy={POLICIES})\n'
                                    f'test_axes = dict(chunk={renderer})')))
    lines = run_sweep(spec, launcher='pytorch')
    assert len(spec.cells) == 6 and len(lines) == 3
    for line in lines:
        train, *tests = [shlex.split(part) for part in line.split(' && ')]
        assert train[4] == 'tools/train.py' and [test[1] for test in tests] == ['tools/test.py'] * 2
    weights = tmp_path / 'weights.pth'
    weights.write_bytes(b'')
    evaluate = load_spec(str(write_spec(tmp_path, f'axes = dict(chunk={renderer})\ntrain = False\n'
                                        f'checkpoint = {str(weights)!r}', name='evaluate.py')))
    lines = run_sweep(evaluate, launcher='pytorch')
    assert len(lines) == 2 and all(' && ' not in line and 'tools/train.py' not in line
                                   for line in lines)
    assert all(shlex.split(line)[3] == str(weights) for line in lines)
    assert evaluate.cells[1].test_options == {'model.renderer.views_per_chunk': 3}


def test_reports_are_collected_into_columns_and_wrong_columns_name_what_is_there(
        tmp_path, nothing_runs):
    """Each cell runs tools/test.py --out CELL_DIR [--metrics ...] [--steps N]; the table's
    columns are 'ROW:KEY' scores of the metrics.json it writes (here written by the evaluation
    report's own writer, as a cluster job would leave them)."""
    weights = tmp_path / 'weights.pth'
    weights.write_bytes(b'')
    common = (f"train = False\ncheckpoint = {str(weights)!r}\ntest_metrics = ['psnr', 'lpips']\n"
              "options = {'metric_options.NovelViewLPIPS.vgg_checkpoint': '/weights/vgg16.pth'}\n"
              "test_axes = dict(steps=[{'steps': 2}, {'label': '4 steps', 'steps': 4}])\n")
    spec = load_spec(str(write_spec(tmp_path, common + """metrics = {
    'PSNR 1-step': '1-step:novel_view/psnr', 'PSNR N-step': 'N-step:novel_view/psnr'}""")))
    lines = run_sweep(spec, launcher='pytorch')
    assert [shlex.split(line)[-5:] for line in lines] == [
        ['--metrics', 'psnr', 'lpips', '--steps', str(steps)] for steps in (2, 4)]
    missing = 'NovelViewLPIPS: FileNotFoundError: no VGG16 weights at /weights/vgg16.pth'
    for index, cell in enumerate(spec.cells):
        overall = {row: {'novel_view/psnr': base + index}
                   for row, base in (('render', 10.0), ('1-step', 20.0), ('N-step', 30.0))}
        write_evaluation_report(dict(
            config='c.py', checkpoint=str(weights), model='LeapFlowDistillation', split='test',
            steps=cell.steps, metrics=['psnr', 'lpips'], unavailable={'lpips': missing},
            outputs=list(overall), overall=overall, per_scene={}, scenes=1, seconds=0.1),
            Path(spec.out) / 'cells' / cell.cell_id)

    def refuse(command, log):
        raise AssertionError(f'ran {command}')
    results = run_sweep(spec, execute=refuse)
    assert [r['steps'] for r in results] == [2, 4]
    assert spec.config(spec.cells[0].train_options).metric_options.NovelViewLPIPS.to_dict() == \
        dict(vgg_checkpoint='/weights/vgg16.pth')   # where tools/test.py reads metric arguments
    csv = Path(write_report(spec, results)['csv']).read_text().splitlines()
    assert csv == ['steps,PSNR 1-step,PSNR N-step', 'steps=2,20.0,30.0', '4 steps,21.0,31.0']
    every = load_spec(str(write_spec(tmp_path, common, name='every.py')))
    assert Path(write_report(every, run_sweep(every, execute=refuse))['csv']).read_text() \
        .splitlines()[0] == ('steps,render:novel_view/psnr,1-step:novel_view/psnr,'
                             'N-step:novel_view/psnr')
    wrong_key = load_spec(str(write_spec(
        tmp_path, common + "metrics = dict(LPIPS='1-step:novel_view/lpips')", name='key.py')))
    with pytest.raises(SweepError) as error:
        run_sweep(wrong_key, execute=refuse)
    assert "metrics column 'LPIPS' ('1-step:novel_view/lpips')" in str(error.value)
    assert "row '1-step' has no score 'novel_view/lpips'; its scores: novel_view/psnr; " \
        f'unavailable: lpips ({missing})' in str(error.value)
    wrong_row = load_spec(str(write_spec(
        tmp_path, common + "metrics = ['teacher:novel_view/psnr']", name='row.py')))
    with pytest.raises(SweepError, match="no output row 'teacher'; its rows: render, 1-step, "
                       'N-step'):
        run_sweep(wrong_row, execute=refuse)


# ------------------------------------------------------------------ a real sweep, interrupted
class Interrupt(Exception):
    pass


class Tools:
    """Runs the sweep's tool commands: ``tools/train.py`` / ``tools/test.py`` ``main(argv)`` in
    this process (a subprocess each would spend seconds importing; the sweep's own executor
    is :func:`_subprocess`), output appended to the command's log. ``stop_in``: the training
    of that work dir runs as a real subprocess to iteration 1 only (its checkpoint written),
    then the sweep is interrupted, as if killed there."""

    def __init__(self, stop_in: str | None = None) -> None:
        self.stop_in, self.commands = stop_in, []

    def __call__(self, command: list[str], log: str) -> int:
        self.commands.append(command)
        tool, argv = command[1], command[2:]
        if self.stop_in and tool == 'tools/train.py' and f'/{self.stop_in}/' in argv[0]:
            status = _subprocess([*command, '--cfg-options', 'train_cfg.max_iters=1'], log)
            assert status == 0, Path(log).read_text()[-3000:]
            raise Interrupt
        name = f'{Path(argv[argv.index("--work-dir") + 1]).name}_{len(self.commands)}'
        with open(log, 'a') as file, redirect_stdout(file), redirect_stderr(file):
            # a new experiment name per run: MMEngine keeps one logger per name
            _tool(tool).main([*argv, '--cfg-options', f'experiment_name={name}'])
        return 0


@functools.cache
def _tool(path: str):
    spec = importlib.util.spec_from_file_location(Path(path).stem + '_tool', REPO / path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def policy_spec(tmp_path):
    teacher = tiny_backbone(tmp_path)
    base = tmp_path / 'base.py'
    base.write_text(f"""_base_ = [{str(DISTILLATION)!r}]
model = dict(backbone=dict(pretrained={str(teacher)!r},
                           prompt_embedding={str(teacher / 'prompt_embeds.safetensors')!r}),
             reconstructor=dict(_delete_=True, type='DepthUnprojection'),
             reconstructor_checkpoint=None, policy={SMALL_DDPNET!r})
train_dataloader = dict(batch_size=1, dataset=dict(num_scenes=2, frames=24, height=16, width=16))
test_dataloader = dict(dataset=dict(num_scenes=1, frames=24, height=16, width=16))
train_cfg = dict(max_iters=2)
custom_hooks = [dict(type='IterationSeedHook'), dict(type='TargetEMAHook', decay=0.95),
                dict(type='PolicyScheduleHook', train_iters=2)]
default_hooks = dict(logger=dict(interval=1))
experiment_name = None   # set per run by Tools
""")
    def make(name: str):
        folder = tmp_path / name
        folder.mkdir()
        return load_spec(str(write_spec(folder, f"""axes = dict(policy={POLICIES})
test_metrics = ['psnr']
metrics = dict(PSNR='1-step:novel_view/psnr')""", base=base)))
    return make


def test_interrupted_policy_sweep_resumes_to_the_same_table(policy_spec, monkeypatch):
    monkeypatch.chdir(REPO)
    straight = policy_spec('straight')
    results = run_sweep(straight, execute=Tools())
    paths = write_report(straight, results)
    lines = Path(paths['csv']).read_text().splitlines()
    assert lines[0] == 'policy,PSNR' and [line.split(',')[0] for line in lines[1:]] == \
        ['DDPNet', 'fixed', 'random']
    assert all(float(line.split(',')[1]) > 0 for line in lines[1:])
    assert '| policy | PSNR |' in Path(paths['md']).read_text()
    assert Path(paths['png']).read_bytes()[:4] == b'\x89PNG'

    stopped = policy_spec('stopped')
    second = stopped.cells[1].train_id
    first_run = Tools(stop_in=second)
    with pytest.raises(Interrupt):
        run_sweep(stopped, execute=first_run)
    assert (Path(stopped.out) / 'train' / second / 'iter_1.pth').is_file()
    resumed = Tools()
    results = run_sweep(stopped, execute=resumed)
    # the finished first cell is not redone; the second resumes its training from iteration 1
    assert [c[1] for c in resumed.commands] == ['tools/train.py', 'tools/test.py'] * 2
    assert all(stopped.cells[0].train_id not in ' '.join(c) for c in resumed.commands)
    assert 'Resuming from' in (Path(stopped.out) / 'train' / second / 'train.log').read_text()
    again = Tools()
    assert run_sweep(stopped, execute=again) == results and again.commands == []
    csv = Path(write_report(stopped, results)['csv']).read_bytes()
    assert csv == Path(paths['csv']).read_bytes()
    # the command line on the finished sweep: nothing runs again, the same table comes out
    (Path(stopped.out) / 'results.csv').unlink()
    tool = subprocess.run([sys.executable, 'tools/sweep.py', stopped.path], cwd=REPO,
                          capture_output=True, text=True)
    assert tool.returncode == 0, tool.stderr[-2000:]
    assert tool.stdout.count('finished before') == 3
    assert (Path(stopped.out) / 'results.csv').read_bytes() == csv
