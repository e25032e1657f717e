"""Leap-flow distillation: weight sharing, the training step, the EMA target, checkpoints."""
from __future__ import annotations

import copy

import pytest
import torch
from mmengine import Config
from mmengine.dataset import default_collate

from videoscene.backbones.tiny import save_tiny_cogvideox
from videoscene.distillation import LeapFlowDistillation, TargetEMAHook
from videoscene.errors import CheckpointError
from videoscene.registry import DATASETS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return save_tiny_cogvideox(tmp_path_factory.mktemp('cogvideox') / 'tiny', num_layers=2)


@pytest.fixture(scope='module')
def batch():
    dataset = DATASETS.build(dict(type='SyntheticScenes', num_scenes=2, frames=40, height=32,
                                  width=32, num_eval_targets=7, view_sampler=dict(
                                      type='bounded', num_targets=7, min_gap=8, max_gap=20)))
    return default_collate([dataset[0], dataset[1]])


def model_config(folder, **overrides) -> dict:
    cfg = dict(type='LeapFlowDistillation',
               backbone=dict(type='CogVideoX', pretrained=str(folder),
                             prompt_embedding=str(folder / 'prompt_embeds.safetensors'),
                             negative_prompt_embedding=str(folder / 'negative_prompt_embeds.safetensors')),
               reconstructor=dict(type='DepthUnprojection'),
               policy=dict(type='DDPNet', max_timestep=600, channels=(8, 8, 8, 8), groups=4),
               trainable='attention')
    cfg.update(overrides)
    return cfg


def optimizers(model, student_lr=1e-3, policy_lr=1e-2):
    return OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='DistillationOptimWrapperConstructor', optim_wrapper_cfg=dict(
            student=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=student_lr)),
            policy=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=policy_lr)))))(model)


def storage_bytes(tensors) -> int:
    seen = {}
    for t in tensors:
        seen[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
    return sum(seen.values())


def test_roles_share_the_frozen_tensors_and_copy_only_the_trained_ones(folder):
    model = MODELS.build(model_config(folder))
    backbone = model.backbone
    trained = backbone.trained_tensors()
    assert trained and all('attn' in name for name in trained)
    # what each role's forward reads: record the storage of a frozen and a trained tensor
    frozen_module = backbone.transformer.norm_final          # untrained LayerNorm of the denoiser
    trained_module = backbone.transformer.transformer_blocks[0].attn1.to_q
    seen = {}

    def record(role, kind):
        def hook(module, args):
            seen[role, kind] = module.weight.data_ptr()
        return hook

    x = torch.randn(1, 3, 4, 8, 8)
    conditioning = backbone.condition(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), 9)
    for role in ('student', 'teacher', 'target'):
        handles = [frozen_module.register_forward_pre_hook(record(role, 'frozen')),
                   trained_module.register_forward_pre_hook(record(role, 'trained'))]
        with torch.no_grad():
            backbone.predict(x, torch.tensor([500]), conditioning, model.role_params(role))
        for h in handles:
            h.remove()
    frozen_ptrs = {role: ptr for (role, kind), ptr in seen.items() if kind == 'frozen'}
    trained_ptrs = {role: ptr for (role, kind), ptr in seen.items() if kind == 'trained'}
    assert len(set(frozen_ptrs.values())) == 1
    assert frozen_ptrs['student'] == frozen_module.weight.data_ptr()
    assert len(set(trained_ptrs.values())) == 3

    # memory: the frozen tensors once, the trained ones three times (student, teacher, target)
    everything = [*model.parameters(), *model.buffers()]
    trained_bytes = storage_bytes(trained.values())
    frozen = [p for p in backbone.parameters() if not p.requires_grad] + list(backbone.buffers())
    policy = [*model.policy.parameters(), *model.policy.buffers()]
    expected = storage_bytes(frozen) + 3 * trained_bytes + storage_bytes(policy) + 4
    assert storage_bytes(everything) == expected


def test_each_role_computes_what_a_deep_copied_backbone_with_its_weights_does(folder):
    model = MODELS.build(model_config(folder))
    with torch.no_grad():
        for p in model.backbone.trained_tensors().values():
            p.add_(0.05 * torch.randn_like(p))                 # the student has moved on
        model.update_target(0.5)
    x = torch.randn(2, 3, 4, 8, 8)
    t = torch.tensor([100, 700])
    conditioning = model.backbone.condition(torch.rand(2, 3, 32, 32), torch.rand(2, 3, 32, 32), 9)
    for role in ('student', 'teacher', 'target'):
        plain = copy.deepcopy(model.backbone)
        if role != 'student':
            plain.load_state_dict(model.role_params(role), strict=False)
        with torch.no_grad():
            shared = model.backbone.predict(x, t, conditioning, model.role_params(role))
            torch.testing.assert_close(shared, plain(x, t, conditioning), rtol=0, atol=0)
    teacher = model.role_params('teacher')
    target = model.role_params('target')
    for name, p in model.backbone.trained_tensors().items():
        torch.testing.assert_close(target[name], 0.5 * teacher[name] + 0.5 * p.detach())


def test_train_step_trains_the_student_and_the_policy_apart(folder, batch):
    torch.manual_seed(0)
    model = MODELS.build(model_config(folder))
    optim = optimizers(model)
    frozen = {n: p.clone() for n, p in model.backbone.named_parameters() if not p.requires_grad}
    student = {n: p.clone() for n, p in model.backbone.trained_tensors().items()}
    teacher = {n: v.clone() for n, v in model.role_params('teacher').items()}
    target = {n: v.clone() for n, v in model.role_params('target').items()}
    policy = [p.clone() for p in model.policy.parameters()]
    gradients = {}
    for name, p in [*model.backbone.named_parameters(), *model.policy.named_parameters()]:
        if p.requires_grad:
            p.register_hook(lambda g, name=name: gradients.__setitem__(name, g))
    assert not any(p.requires_grad for n, p in model.backbone.named_parameters() if n not in student)
    log = model.train_step(batch, optim)
    assert {'loss_consistency', 'loss_policy', 'reward', 'leap_t'} <= set(log)
    assert set(gradients) == {*model.backbone.trained_tensors(),
                              *dict(model.policy.named_parameters())}
    assert all(torch.equal(p, frozen[n]) for n, p in model.backbone.named_parameters()
               if not p.requires_grad)
    assert any(not torch.equal(p, student[n]) for n, p in model.backbone.trained_tensors().items())
    assert any(not torch.equal(a, b) for a, b in zip(model.policy.parameters(), policy))
    # teacher and target never move with the optimizers; the target moves by the EMA hook only
    assert all(torch.equal(v, teacher[n]) for n, v in model.role_params('teacher').items())
    assert all(torch.equal(v, target[n]) for n, v in model.role_params('target').items())
    runner = type('Runner', (), {'model': model, 'iter': 0})()
    TargetEMAHook(decay=0.9).after_train_iter(runner, 0)
    for name, p in model.backbone.trained_tensors().items():
        torch.testing.assert_close(model.role_params('target')[name],
                                   0.9 * target[name] + 0.1 * p.detach())


def test_policy_loss_is_reinforce_against_a_running_baseline(folder, batch):
    torch.manual_seed(1)
    model = MODELS.build(model_config(folder, baseline_momentum=0.5, entropy_weight=0.0))
    losses, log = model.losses(batch['context'], batch['target'])
    # the first batch is its own baseline: zero advantage, zero policy loss
    assert torch.isclose(log['reward_baseline'], log['reward'])
    assert losses['loss_policy'].abs() < 1e-6 and losses['loss_policy'].requires_grad
    first = log['reward']
    losses, log = model.losses(batch['context'], batch['target'])
    assert torch.isclose(log['reward_baseline'], first)
    torch.testing.assert_close(model.reward_baseline, 0.5 * first + 0.5 * log['reward'])
    # the reward is the student's one-step error against the true latents: never positive
    assert log['reward'] < 0


def test_a_frozen_policy_gets_no_gradient_and_no_loss(folder, batch):
    model = MODELS.build(model_config(folder))
    optim = optimizers(model)
    model.policy_frozen = True
    before = [p.clone() for p in model.policy.parameters()]
    log = model.train_step(batch, optim)
    assert 'loss_policy' not in log
    assert all(torch.equal(a, b) for a, b in zip(model.policy.parameters(), before))
    assert all(p.grad is None for p in model.policy.parameters())


def test_checkpoints_hold_only_what_trains_and_reload_exactly(folder, batch):
    model = MODELS.build(model_config(folder))
    model.train_step(batch, optimizers(model))
    model.update_target(0.9)
    state = model.state_dict()
    assert not any(key.startswith(('reconstructor.', 'teacher.')) for key in state)
    trained = {f'backbone.{name}' for name in model.backbone.trained_tensors()}
    backbone_keys = {key for key in state if key.startswith('backbone.')}
    assert backbone_keys == trained
    assert any(key.startswith('target.') for key in state) and 'reward_baseline' in state
    assert any(key.startswith('policy.') for key in state)

    fresh = MODELS.build(model_config(folder))
    fresh.load_state_dict(state, strict=True)        # the missing keys are exactly the frozen ones
    for key, value in fresh.state_dict().items():
        torch.testing.assert_close(value, state[key], rtol=0, atol=0, msg=key)
    broken = {k: v for k, v in state.items() if k != sorted(trained)[0]}
    with pytest.raises(CheckpointError, match='lacks 1 trained tensor'):
        MODELS.build(model_config(folder)).load_state_dict(broken, strict=True)


def test_guided_teacher_uses_the_negative_prompt(folder, batch):
    torch.manual_seed(2)
    plain = MODELS.build(model_config(folder))
    guided = MODELS.build(model_config(folder, guidance_scale=4.0))
    guided.load_state_dict(plain.state_dict())
    assert plain.guidance({}) is None
    conditioning = guided.backbone.condition(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32), 9)
    unconditional = guided.guidance(conditioning).unconditional
    assert torch.equal(unconditional['image_latents'], conditioning['image_latents'])
    assert not torch.equal(unconditional['prompt_embeds'], conditioning['prompt_embeds'])


def test_the_ablations_swap_by_config_alone(folder, repo_root):
    names = {'': ('DDPNet', True), '_wo_leap_flow': ('random', False), '_wo_ddpnet': ('random', True)}
    for suffix, (policy, leap) in names.items():
        cfg = Config.fromfile(f'{repo_root}/configs/distillation/tiny_cogvideox_synthetic{suffix}.py')
        model_cfg = dict(cfg.model, backbone=model_config(folder)['backbone'],
                         reconstructor=dict(type='DepthUnprojection'), reconstructor_checkpoint=None)
        model = MODELS.build(model_cfg)
        assert isinstance(model, LeapFlowDistillation)
        assert type(model.policy).__name__ == {'DDPNet': 'DDPNet', 'random': 'RandomTimestep'}[policy]
        assert model.leap_flow is leap and (policy == 'DDPNet') == model.policy_learns
    assert max(model.policy.candidates) == 799


def test_re10k_config_follows_the_paper(repo_root):
    cfg = Config.fromfile(f'{repo_root}/configs/distillation/cogvideox_re10k.py')
    assert cfg.model.type == 'LeapFlowDistillation' and cfg.model.trainable == 'attention'
    assert cfg.model.reconstructor.type == 'MVSplat' and cfg.model.policy.type == 'DDPNet'
    assert cfg.train_cfg.max_iters == 20_000
    hooks = {hook.type: hook for hook in cfg.custom_hooks}
    assert hooks['PolicyScheduleHook'].train_iters == 4000 and 'TargetEMAHook' in hooks
    assert cfg.model_wrapper_cfg.type == 'MMSeparateDistributedDataParallel'
    assert cfg.optim_wrapper.student.optimizer.type == 'AdamW'
    assert cfg.train_dataloader.dataset.view_sampler.num_targets + 2 == 49
    assert cfg.test_dataloader.dataset.view_sampler.num_frames == 49


@pytest.mark.parametrize('arch', ['SVD', 'DynamiCrafter'])
def test_distillation_steps_with_every_backbone(arch, tmp_path, batch):
    """SVD (EDM / Euler, its guidance branch) and DynamiCrafter (its dynamic x0 rescale in the
    backbone's clean_scale) distil through the same model."""
    from videoscene.backbones.dynamicrafter import TINY_DYNAMICRAFTER, save_tiny_dynamicrafter
    from videoscene.backbones.tiny import save_tiny_svd
    if arch == 'SVD':
        backbone = dict(type='SVD', pretrained=str(save_tiny_svd(tmp_path / 'svd')))
    else:
        backbone = dict(type='DynamiCrafter', **TINY_DYNAMICRAFTER,
                        checkpoint=str(save_tiny_dynamicrafter(tmp_path / 'dc.ckpt')))
    torch.manual_seed(0)
    model = MODELS.build(dict(type='LeapFlowDistillation', backbone=backbone,
                              reconstructor=dict(type='DepthUnprojection'),
                              policy=dict(type='DDPNet', channels=(8, 8, 8, 8), groups=4),
                              trainable='attention', guidance_scale=2.0))
    if arch == 'DynamiCrafter':      # its UNet needs sides divisible by 64
        dataset = DATASETS.build(dict(type='SyntheticScenes', num_scenes=1, frames=40, height=64,
                                      width=64, num_eval_targets=2, view_sampler=dict(
                                          type='bounded', num_targets=2, min_gap=8, max_gap=20)))
        batch = default_collate([dataset[0]])
    before = {n: p.clone() for n, p in model.backbone.trained_tensors().items()}
    log = model.train_step(batch, optimizers(model))
    assert torch.isfinite(log['loss_consistency']) and torch.isfinite(log['loss_policy'])
    assert any(not torch.equal(p, before[n]) for n, p in model.backbone.trained_tensors().items())


def test_predict_leaps_from_the_render_or_starts_from_noise_without_leap_flow(folder, batch):
    leap = MODELS.build(model_config(folder)).eval()
    plain = MODELS.build(model_config(folder, leap_flow=False,
                                      policy=dict(type='random'))).eval()
    with torch.no_grad():
        ours, standard = leap(batch['context'], batch['target']), plain(batch['context'],
                                                                          batch['target'])
    assert all(s['t'] <= 600 for s in ours) and all(s['t'] == 999 for s in standard)
    assert ours[0]['pred'].shape == ours[0]['gt'].shape == ours[0]['render'].shape == (9, 3, 32, 32)
