"""VideoScenePipeline: built from a distillation config, its output equals the steps done by hand."""
from __future__ import annotations

import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import default_collate

from videoscene.errors import CheckpointError, InputError
from videoscene.models.views import scene_views
from videoscene.pipelines import VideoScenePipeline, denoise, estimate
from videoscene.pipelines.clips import chain, generate_along_views
from videoscene.pipelines.inputs import Views
from videoscene.registry import DATASETS, MODELS, RECONSTRUCTORS, RENDERERS

from _pipeline_setup import SIZE, TINY_MVSPLAT, tiny_config

FIXED = dict(type='fixed', t=549)


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    return tiny_config(tmp_path_factory.mktemp('pipeline'))


@pytest.fixture(scope='module')
def teacher(config):
    return VideoScenePipeline.from_config(config, policy=FIXED)


@pytest.fixture(scope='module')
def sample():
    dataset = DATASETS.build(dict(type='SyntheticScenes', num_scenes=1, frames=24, height=SIZE, width=SIZE,
                                  num_eval_targets=7, view_sampler=dict(type='video', num_frames=9)))
    return default_collate([dataset[0]])


def by_hand(pipeline, sample, t: int, seed: int, params=None, consistency=False):
    """Reconstruct, render at the sample's frames, encode, noise to t and one estimate, decoded."""
    context, target = sample['context'], sample['target']
    views = scene_views(context, target)
    gaussians = RECONSTRUCTORS.build(dict(type='DepthUnprojection'))(context)
    render = RENDERERS.build(dict(type='torch')).render(
        gaussians, views['extrinsics'], views['intrinsics'], (SIZE, SIZE), views['near'],
        views['far']).color.clamp(0, 1)
    backbone, scheduler = pipeline.backbone, pipeline.backbone.build_scheduler()
    latents = backbone.encode(render)
    conditioning = backbone.condition(context['image'][:, 0], context['image'][:, 1], 9)
    noise = torch.randn(latents.shape, generator=torch.Generator().manual_seed(seed))
    timestep = torch.tensor([t])
    x_t = scheduler.add_noise(latents, noise, timestep)
    x0, _ = estimate(backbone, scheduler, x_t, timestep, conditioning, params=params, consistency=consistency)
    return backbone.decode(x0), render, latents, noise, conditioning


@torch.no_grad()
def test_one_step_output_is_decode_of_one_estimate_from_the_noised_render(teacher, sample):
    out = teacher(sample['context'], sample['target'], generator=torch.Generator().manual_seed(3))
    video, render, *_ = by_hand(teacher, sample, 549, seed=3, params=teacher.params)
    assert out.t.tolist() == [549]
    torch.testing.assert_close(out.render, render)
    torch.testing.assert_close(out.video, video, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(out.ground_truth, scene_views(sample['context'], sample['target'])['image'])
    assert set(out.timings) == {'reconstruct', 'render', 'encode', 'policy', 'denoise', 'decode'}
    assert all(seconds > 0 for seconds in out.timings.values())
    # the teacher generates with its frozen copy and no consistency scalings
    assert not teacher.consistency and teacher.params is not None


@torch.no_grad()
def test_multi_step_from_the_leap_start_and_from_noise_follow_the_scheduler_grids(teacher, sample):
    _, _, latents, noise, conditioning = by_hand(teacher, sample, 549, seed=5, params=teacher.params)
    scheduler = teacher.scheduler
    x_t = scheduler.add_noise(latents, noise, torch.tensor([549]))
    expected = teacher.backbone.decode(denoise(teacher.backbone, scheduler, x_t, scheduler.leap_timesteps(549, 3),
                                               conditioning, params=teacher.params))
    out = teacher(sample['context'], sample['target'], steps=3, generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out.video, expected, rtol=1e-5, atol=1e-5)

    expected = teacher.backbone.decode(denoise(teacher.backbone, scheduler, noise, scheduler.timesteps(3),
                                               conditioning, params=teacher.params))
    out = teacher(sample['context'], sample['target'], steps=3, from_noise=True,
                  generator=torch.Generator().manual_seed(5))
    torch.testing.assert_close(out.video, expected, rtol=1e-5, atol=1e-5)
    assert out.t.tolist() == [scheduler.num_train_timesteps - 1]


@torch.no_grad()
def test_interpolated_path_passes_through_both_context_cameras(teacher, sample):
    context = sample['context']
    out = teacher(context, num_frames=9, generator=torch.Generator().manual_seed(0))
    extrinsics = out.cameras['extrinsics']
    assert out.video.shape == (1, 9, 3, SIZE, SIZE) and out.ground_truth is None
    torch.testing.assert_close(extrinsics[:, 0], context['extrinsics'][:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(extrinsics[:, -1], context['extrinsics'][:, 1], rtol=0, atol=1e-5)
    assert not torch.allclose(extrinsics[:, 4], extrinsics[:, 0], atol=1e-3)


def test_a_frame_count_the_vae_cannot_take_fails_before_any_network_runs(teacher, sample, monkeypatch):
    calls = []
    handles = [module.register_forward_pre_hook(lambda *_: calls.append(1)) for module in
               (teacher.reconstructor, teacher.backbone.vae, teacher.backbone.transformer)]
    monkeypatch.setattr(teacher.renderer, 'render', lambda *a, **k: calls.append(1))
    try:
        with pytest.raises(InputError, match='num_frames.*8k\\+1'):
            teacher(sample['context'], num_frames=8)
        with pytest.raises(InputError, match='image size'):
            teacher.check_inputs((SIZE + 4, SIZE), 9)
    finally:
        for handle in handles:
            handle.remove()
    assert calls == []


@torch.no_grad()
def test_a_distillation_checkpoint_gives_the_student_and_target_with_consistency_scalings(config, sample,
                                                                                             tmp_path):
    model = MODELS.build(Config.fromfile(str(config)).model)
    with torch.no_grad():
        for p in model.backbone.trained_tensors().values():
            p.add_(0.05 * torch.randn_like(p))       # the student moved away from the teacher
        model.update_target(0.5)
        model.policy.head.bias[3] = 5.0           # DDPNet prefers its 4th candidate
    checkpoint = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, checkpoint)
    assert not any(key.startswith('reconstructor.') for key in model.state_dict())

    student = VideoScenePipeline.from_config(config, checkpoint)
    chosen = int(model.policy.candidates[3])
    out = student(sample['context'], sample['target'], generator=torch.Generator().manual_seed(1))
    assert out.t.tolist() == [chosen] and student.consistency
    video, *_ = by_hand(student, sample, chosen, seed=1, params=None, consistency=True)
    torch.testing.assert_close(out.video, video, rtol=1e-5, atol=1e-5)
    target = VideoScenePipeline.from_config(config, checkpoint, weights='target', policy=FIXED)
    video, *_ = by_hand(target, sample, 549, seed=1, params=target.params, consistency=True)
    torch.testing.assert_close(target(sample['context'], sample['target'],
                                      generator=torch.Generator().manual_seed(1)).video, video,
                               rtol=1e-5, atol=1e-5)
    teacher_params = model.role_params('teacher')
    for name, value in target.params.items():
        torch.testing.assert_close(value, 0.5 * teacher_params[name]
                                   + 0.5 * model.backbone.trained_tensors()[name])

    # the teacher with only the policy of the checkpoint
    policy_only = VideoScenePipeline.from_config(config, policy_checkpoint=checkpoint)
    assert not policy_only.consistency
    assert policy_only(sample['context'], sample['target']).t.tolist() == [chosen]

    # a checkpoint that lacks a trained tensor is refused, naming the file
    state = model.state_dict()
    state.pop(next(key for key in state if key.startswith('backbone.')))
    torch.save({'state_dict': state}, tmp_path / 'partial.pth')
    with pytest.raises(CheckpointError, match='partial.pth.*lacks 1 trained'):
        VideoScenePipeline.from_config(config, tmp_path / 'partial.pth')
    (tmp_path / 'empty.pth').write_bytes(b'')
    with pytest.raises(CheckpointError, match='empty.pth'):
        VideoScenePipeline.from_config(config, tmp_path / 'empty.pth')


def test_from_config_refuses_what_it_cannot_run(config, tmp_path):
    with pytest.raises(InputError, match='DDPNet is a learned policy'):
        VideoScenePipeline.from_config(config)          # an untrained DDPNet would pick garbage
    with pytest.raises(InputError, match="weights: 'student' needs a distillation checkpoint"):
        VideoScenePipeline.from_config(config, weights='student', policy=FIXED)
    with pytest.raises(InputError, match='dtype: torch.bfloat16 runs on CUDA only'):
        VideoScenePipeline.from_config(config, policy=FIXED, device='cpu', dtype='bf16')
    with pytest.raises(InputError, match='renderer: GsplatRenderer renders on CUDA only'):
        VideoScenePipeline.from_config(config, policy=FIXED, device='cpu', renderer='gsplat')
    teacher_config = tmp_path / 'teacher.py'
    teacher_config.write_text("model = dict(type='InterpolationTeacher')\n")
    with pytest.raises(InputError, match='expected a distillation config'):
        VideoScenePipeline.from_config(teacher_config)
    random = VideoScenePipeline.from_config(config, policy=dict(type='random', max_timestep=799))
    assert type(random.policy).__name__ == 'RandomTimestep' and int(random.policy.candidates.max()) <= 799
    assert type(random.renderer).__name__ == 'TorchRenderer'


def test_chain_keeps_each_shared_boundary_frame_once():
    clips = [torch.arange(5.0)[None], torch.arange(4.0, 9.0)[None], torch.arange(8.0, 13.0)[None]]
    torch.testing.assert_close(chain(clips), torch.arange(13.0)[None])


@torch.no_grad()
def test_clips_between_consecutive_views_are_chained(tmp_path, sample):
    config = tiny_config(tmp_path, reconstructor=TINY_MVSPLAT)   # image views carry no depth
    pipeline = VideoScenePipeline.from_config(config, policy=FIXED)
    views = scene_views(sample['context'], sample['target'])
    pick = [0, 4, 8]
    three = Views(views['image'][0, pick], views['extrinsics'][0, pick], views['intrinsics'][0, pick],
                  views['near'][0, pick], views['far'][0, pick], ['a', 'b', 'c'])
    out = generate_along_views(pipeline, three, 9, generator=torch.Generator().manual_seed(2))
    assert out.video.shape == (1, 17, 3, SIZE, SIZE) and out.t.tolist() == [549, 549]
    generator = torch.Generator().manual_seed(2)
    first = pipeline(three.pair(0), num_frames=9, generator=generator)
    second = pipeline(three.pair(1), num_frames=9, generator=generator)
    for key in ('video', 'render'):
        torch.testing.assert_close(getattr(out, key), torch.cat([getattr(first, key), getattr(second, key)[:, 1:]],
                                                                dim=1))
    torch.testing.assert_close(out.cameras['extrinsics'][0, 8], three.extrinsics[1], rtol=0, atol=1e-5)
    assert out.gaussians.means.shape[1] == 2 * 2 * SIZE * SIZE
    assert set(out.timings) == set(first.timings)
