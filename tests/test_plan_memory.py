"""tools/plan_memory.py and videoscene/engine/memory_plan.py: the plan's items are the built
model's bytes, placed as the strategy says; the verdict; the CLI on the 5B recipe."""
import importlib.util
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from videoscene.backbones.tiny import save_tiny_cogvideox
from videoscene.engine.memory_plan import GiB, plan_memory
from videoscene.errors import InputError
from videoscene.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
TINY = osp.join(REPO, 'configs/distillation/tiny_cogvideox_synthetic.py')
RECIPE = osp.join(REPO, 'configs/distillation/cogvideox5b_re10k_8gpu_fsdp.py')
ARCH = osp.join(REPO, 'configs/_base_/models/cogvideox5b_i2v')
FSDP = dict(type='FSDP2Strategy',
            mixed_precision=dict(param_dtype='bfloat16', reduce_dtype='float32'))


def _tool():
    spec = importlib.util.spec_from_file_location('plan_memory_tool',
                                                  osp.join(REPO, 'tools/plan_memory.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def tiny_cfg(tmp_path_factory):
    folder = save_tiny_cogvideox(tmp_path_factory.mktemp('tiny'))
    cfg = Config.fromfile(TINY)
    cfg.merge_from_dict({'model.backbone.pretrained': str(folder),
                         'model.backbone.prompt_embedding': str(folder / 'prompt_embeds.safetensors'),
                         'model.reconstructor_checkpoint': None,
                         'model.trainable': 'attention'})
    return cfg


@pytest.fixture(scope='module')
def built(tiny_cfg):
    """The real model of the tiny config (weights read from its folder)."""
    return MODELS.build(tiny_cfg.model.to_dict())


def _nbytes(tensors, dtype=None):
    return sum(t.numel() * (dtype.itemsize if dtype else t.element_size()) for t in tensors)


def _groups(model):
    backbone = model.backbone
    trained = list(backbone.trained_tensors().values())
    denoiser = [*backbone.transformer.parameters(), *backbone.transformer.buffers()]
    ids = {id(t) for t in denoiser}
    return dict(trained=trained,
                frozen_denoiser=[t for t in denoiser if id(t) not in {id(p) for p in trained}],
                shell=[t for t in (*backbone.parameters(), *backbone.buffers()) if id(t) not in ids],
                reconstructor=[*model.reconstructor.parameters(), *model.reconstructor.buffers()])


def test_items_are_the_built_models_bytes(tiny_cfg, built):
    plan = plan_memory(tiny_cfg)
    groups = _groups(built)
    trained = _nbytes(groups['trained'])
    scalars = sum(t.numel() for t in groups['trained'])
    assert trained > 0 and _nbytes(groups['frozen_denoiser']) > 0
    assert plan.item('student trained weights').bytes == trained
    assert plan.item('teacher copy').bytes == trained
    assert plan.item('EMA target copy').bytes == trained
    assert plan.item('student gradients').bytes == trained
    assert plan.item('optimizer states').bytes == 2 * 4 * scalars          # AdamW
    assert plan.item('frozen denoiser weights').bytes == _nbytes(groups['frozen_denoiser'])
    assert plan.item('frozen shell (VAE, encoders, prompt)').bytes == _nbytes(groups['shell'])
    assert plan.item('reconstructor (frozen)').bytes == _nbytes(groups['reconstructor'])
    policy = [*built.policy.parameters(), *built.policy.buffers()]
    learned = [p for p in built.policy.parameters() if p.requires_grad]
    assert plan.item('policy (weights, grads, optimizer)').bytes == (
        _nbytes(policy) + 3 * _nbytes(learned))                            # grads + 2 Adam states
    assert plan.counts['trained'] == scalars
    assert plan.counts['denoiser'] == sum(p.numel() for p in built.backbone.transformer.parameters())
    assert plan.counts['reconstructor'] == sum(p.numel() for p in built.reconstructor.parameters())
    assert plan.total == sum(item.bytes for item in plan.items)


def test_fsdp_divides_the_sharded_items(tiny_cfg, built):
    """The 8-GPU recipe's placement (LeapFlowDistillation.shard) with a bfloat16 backbone:
    float32 masters, gradients, AdamW states and target, bfloat16 frozen weights and teacher."""
    single = plan_memory(tiny_cfg)                       # float32, one device
    cfg = Config(tiny_cfg.to_dict())
    cfg.strategy = FSDP
    cfg.merge_from_dict({'model.backbone.dtype': 'bfloat16', 'model.gradient_checkpointing': True})
    plan = plan_memory(cfg, world_size=4)
    groups = _groups(built)
    for name in ('student trained weights', 'EMA target copy', 'student gradients',
                 'optimizer states'):
        assert plan.item(name).bytes == single.item(name).bytes / 4, name
    assert plan.item('teacher copy').bytes == single.item('teacher copy').bytes / 2 / 4
    bf16 = torch.bfloat16
    assert plan.item('frozen denoiser weights').bytes == _nbytes(groups['frozen_denoiser'], bf16) / 4
    # replicated: the shell in the backbone's dtype, the reconstructor as built
    assert plan.item('frozen shell (VAE, encoders, prompt)').bytes == _nbytes(groups['shell'], bf16)
    assert plan.item('reconstructor (frozen)').bytes == _nbytes(groups['reconstructor'])
    assert plan.item('policy (weights, grads, optimizer)').bytes == \
        single.item('policy (weights, grads, optimizer)').bytes
    largest = max(sum(t.numel() for t in (*b.parameters(), *b.buffers()))
                  for b in built.backbone.transformer.transformer_blocks)
    assert plan.item('all-gathered block (transient)').bytes == largest * 2
    assert plan.sharding.checkpointing


def test_deepspeed_stages(tiny_cfg):
    single = plan_memory(tiny_cfg)
    plans = {}
    for stage in (1, 2):
        cfg = Config(tiny_cfg.to_dict())
        cfg.strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=stage),
                            config=dict(torch_autocast=dict(enabled=True, dtype='bfloat16')))
        plans[stage] = plan_memory(cfg, world_size=2)
    for stage, plan in plans.items():
        assert plan.item('optimizer states').bytes == single.item('optimizer states').bytes / 2
        assert plan.item('student trained weights').bytes == \
            single.item('student trained weights').bytes                  # weights stay whole
    assert plans[1].item('student gradients').bytes == single.item('student gradients').bytes
    assert plans[2].item('student gradients').bytes == single.item('student gradients').bytes / 2
    assert 'L x 2,' in plans[2].item('activations (one step)').detail       # bfloat16 autocast
    cfg = Config(tiny_cfg.to_dict())
    cfg.strategy = dict(type='DeepSpeedStrategy', zero_optimization=dict(stage=3))
    with pytest.raises(InputError, match='ZeRO-3 is refused'):
        plan_memory(cfg, world_size=2)


def test_verdict_flips_with_capacity(tiny_cfg):
    plan = plan_memory(tiny_cfg)
    assert plan.verdict(plan.total + GiB).startswith('fits in')
    verdict = plan.verdict(plan.total / 2)
    biggest = max(plan.items, key=lambda item: item.bytes)
    assert verdict.startswith('does NOT fit') and biggest.name in verdict


def _recipe(tmp_path) -> str:
    if osp.isfile(RECIPE):
        return RECIPE
    path = tmp_path / 'recipe_8gpu_fsdp.py'
    path.write_text(f"_base_ = [{osp.join(REPO, 'configs/distillation/cogvideox_re10k.py')!r}]\n"
                    f'strategy = {FSDP!r}\n')
    return str(path)


def test_cli_plans_the_5b_recipe(tmp_path, capsys):
    tool = _tool()
    args = [_recipe(tmp_path), '--world-size', '8', '--cfg-options',
            f'model.backbone.pretrained={ARCH}']
    tool.main(args)
    out = capsys.readouterr().out
    assert 'world size 8' in out and 'FSDP2' in out
    assert 'denoiser 5,570,479,680' in out        # CogVideoX-5B-I2V's transformer
    assert 'N = 1 x (17550 + 226) tokens, D = 3072, L = 42' in out   # 49 x 480 x 720
    assert 'fits in 80 GiB' in out
    tool.main(args + ['--gpu-memory', '4GB'])
    assert 'does NOT fit in 4 GiB' in capsys.readouterr().out


def test_cli_user_errors_exit_2(tmp_path, capsys):
    from videoscene.engine.cli import run_tool
    config = tmp_path / 'odd.py'
    config.write_text(f"_base_ = [{TINY!r}]\nstrategy = dict(type='ColossalAIStrategy')\n")
    for argv in ([str(config)], [str(tmp_path / 'missing.py')], [TINY, '--gpu-memory', 'lots']):
        with pytest.raises(SystemExit) as exit_info:
            run_tool(lambda: _tool().main(argv))
        assert exit_info.value.code == 2
        assert capsys.readouterr().err.startswith('error: ')
