"""Stage-2 teacher: scene samples -> videos, the v-prediction loss, attention-only updates, configs."""
import os.path as osp

import pytest
import torch
from mmengine.config import Config

from videoscene.backbones.tiny import save_tiny_cogvideox
from videoscene.models.teacher import InterpolationTeacher
from videoscene.models.views import scene_views
from videoscene.registry import MODELS

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return save_tiny_cogvideox(tmp_path_factory.mktemp('teacher') / 'model', height=16, width=16)


def backbone_config(folder):
    return dict(type='CogVideoX', pretrained=str(folder),
                prompt_embedding=str(folder / 'prompt_embeds.safetensors'))


def views(index, size=4):
    index = torch.as_tensor(index)
    # each frame's image is filled with its frame number, so order is visible in the pixels
    image = index[..., None, None, None].float().expand(*index.shape, 3, size, size) / 100
    return {'image': image, 'index': index}


def test_scene_views_brackets_targets_with_the_context_pair():
    video = scene_views(views([[10, 18], [0, 8]]), views([[12, 11, 13, 14, 15, 16, 17], [1, 2, 3, 4, 5, 6, 7]]))['image']
    assert video.shape == (2, 9, 3, 4, 4)
    assert video[0, :, 0, 0, 0].mul(100).round().tolist() == list(range(10, 19))
    assert video[1, :, 0, 0, 0].mul(100).round().tolist() == list(range(0, 9))


def test_scene_views_merges_context_frames_repeated_as_targets():
    # the RE10K video benchmark lists the context frames among the targets
    video = scene_views(views([[2, 10]]), views([[2, 4, 6, 8, 10]]))['image']
    assert video[0, :, 0, 0, 0].mul(100).round().tolist() == [2, 4, 6, 8, 10]


def test_scene_views_errors():
    with pytest.raises(ValueError, match='between the two context frames'):
        scene_views(views([[2, 10]]), views([[4, 12]]))['image']
    with pytest.raises(ValueError, match='different frame counts'):
        scene_views(views([[2, 10], [2, 10]]), views([[2, 4], [3, 4]]))['image']


def scene_batch(batch=2, frames=9, size=16):
    torch.manual_seed(3)
    base = torch.rand(batch, 1, 3, size, size)
    drift = torch.linspace(0, 1, frames)[None, :, None, None, None]
    video = (base * (1 - 0.3 * drift) + 0.3 * drift * base.flip(-1)).clamp(0, 1)
    index = torch.arange(frames).repeat(batch, 1)
    context = {'image': video[:, [0, -1]], 'index': index[:, [0, -1]]}
    target = {'image': video[:, 1:-1], 'index': index[:, 1:-1]}
    return context, target, video


def test_loss_is_the_v_prediction_mse_and_trains_attention_only(folder):
    teacher = InterpolationTeacher(backbone_config(folder))
    context, target, video = scene_batch()
    torch.manual_seed(0)
    output, wanted = teacher(context, target, mode='tensor')
    assert output.shape == wanted.shape == (2, 3, 4, 4, 4)
    torch.manual_seed(0)  # same noise and timesteps: the loss is their mean squared error
    loss = teacher(context, target, mode='loss')['loss']
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(output, wanted))
    loss.backward()
    with_grad = {name for name, p in teacher.named_parameters() if p.grad is not None}
    assert with_grad and all('.attn1.' in name for name in with_grad)
    blocks = teacher.backbone.transformer.transformer_blocks
    assert with_grad == {f'backbone.transformer.transformer_blocks.{i}.attn1.{name}'
                         for i, block in enumerate(blocks) for name, _ in block.attn1.named_parameters()}


def test_the_training_target_is_v_of_the_encoded_video(folder):
    teacher = InterpolationTeacher(backbone_config(folder), timestep_range=(400, 401),
                                   augment_conditions=False)
    context, target, video = scene_batch()
    torch.manual_seed(5)
    _, wanted = teacher(context, target, mode='tensor')
    torch.manual_seed(5)
    with torch.no_grad():
        x0 = teacher.backbone.encode(video)
    noise = torch.randn_like(x0)
    ab = teacher.scheduler.alphas_cumprod[400].float()
    torch.testing.assert_close(wanted, ab.sqrt() * noise - (1 - ab).sqrt() * x0)


def test_a_few_steps_lower_the_loss_on_a_fixed_batch(folder):
    teacher = InterpolationTeacher(backbone_config(folder), trainable='all', augment_conditions=False)
    context, target, _ = scene_batch(batch=2)
    optimizer = torch.optim.AdamW([p for p in teacher.parameters() if p.requires_grad], lr=5e-3)

    def fixed_loss():
        torch.manual_seed(11)
        return teacher(context, target)['loss']

    with torch.no_grad():
        before = fixed_loss().item()
    for step in range(6):
        torch.manual_seed(step)
        optimizer.zero_grad()
        teacher(context, target)['loss'].backward()
        optimizer.step()
    with torch.no_grad():
        after = fixed_loss().item()
    assert after < 0.7 * before


def test_sampling_returns_a_video(folder):
    teacher = InterpolationTeacher(backbone_config(folder)).eval()
    context, target, video = scene_batch(batch=1)
    samples = teacher(context, target, mode='predict')
    assert len(samples) == 1 and samples[0]['pred'].shape == video.shape[1:]
    assert torch.equal(samples[0]['gt'], video[0]) and samples[0]['scene'] is None
    generated = teacher.sample(video[:, 0], video[:, -1], 9, steps=3)
    assert generated.shape == video.shape and 0 <= generated.min() and generated.max() <= 1


def test_bad_arguments(folder):
    with pytest.raises(ValueError, match='timestep_range'):
        InterpolationTeacher(backbone_config(folder), timestep_range=(10, 2000))
    context, target, _ = scene_batch()
    with pytest.raises(ValueError, match="mode must be"):
        InterpolationTeacher(backbone_config(folder))(context, target, mode='bogus')


def test_tiny_config_builds_its_model(folder):
    cfg = Config.fromfile(osp.join(REPO, 'configs/teacher/tiny_cogvideox_synthetic.py'))
    cfg.model.backbone.update(backbone_config(folder))
    teacher = MODELS.build(cfg.model)
    assert isinstance(teacher, InterpolationTeacher) and teacher.selection.spec == 'all'
    sampler = cfg.train_dataloader.dataset.view_sampler
    assert sampler.num_targets + 2 == 9  # a valid CogVideoX frame count
    assert cfg.train_dataloader.collate_fn.type == 'default_collate'


def test_re10k_config_follows_the_paper():
    cfg = Config.fromfile(osp.join(REPO, 'configs/teacher/cogvideox_re10k.py'))
    assert cfg.model.trainable == 'attention' and cfg.model.backbone.type == 'CogVideoX'
    dataset = cfg.train_dataloader.dataset
    assert dataset.image_shape == (480, 720) and dataset.view_sampler.num_targets + 2 == 49
    assert cfg.optim_wrapper.optimizer.type == 'AdamW'
    warmup = cfg.param_scheduler[0]
    assert warmup.type == 'LinearLR' and warmup.end - warmup.begin == 900


def test_export_writes_a_folder_that_reloads_the_trained_weights(folder, tmp_path):
    teacher = InterpolationTeacher(backbone_config(folder))
    with torch.no_grad():
        for p in teacher.backbone.transformer.parameters():
            if p.requires_grad:
                p.add_(0.01)  # stands for training
    out = teacher.backbone.save_pretrained(tmp_path / 'exported')
    reloaded = MODELS.build(dict(type='InterpolationTeacher', backbone=backbone_config(out)))
    for (name, a), (_, b) in zip(teacher.state_dict().items(), reloaded.state_dict().items()):
        torch.testing.assert_close(a, b, msg=name)
    changed = reloaded.backbone.transformer.transformer_blocks[0].attn1.to_q.weight
    original = MODELS.build(dict(type='InterpolationTeacher', backbone=backbone_config(folder)))
    assert not torch.equal(changed, original.backbone.transformer.transformer_blocks[0].attn1.to_q.weight)
