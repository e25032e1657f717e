"""Leap-flow distillation from precomputed renders: a sample carrying ``render`` in its context
and target views trains exactly as if the frozen reconstructor had rendered it."""
import pytest
import torch
from mmengine.dataset import default_collate

from videoscene.backbones.tiny import save_tiny_cogvideox
from videoscene.models.views import scene_views
from videoscene.registry import DATASETS, MODELS


@pytest.fixture(scope='module')
def model(tmp_path_factory):
    folder = save_tiny_cogvideox(tmp_path_factory.mktemp('cogvideox') / 'tiny', height=16,
                                 width=16, num_layers=1, vae='pixel_unshuffle')
    return MODELS.build(dict(
        type='LeapFlowDistillation',
        backbone=dict(type='CogVideoX', pretrained=str(folder),
                      prompt_embedding=str(folder / 'prompt_embeds.safetensors')),
        reconstructor=dict(type='DepthUnprojection'),
        policy=dict(type='DDPNet', max_timestep=600, channels=(8, 8, 8, 8), groups=4),
        trainable='attention'))


def test_a_cached_render_replaces_rendering_and_gives_the_same_losses(model):
    dataset = DATASETS.build(dict(type='SyntheticScenes', num_scenes=2, frames=24, height=16,
                                  width=16, num_eval_targets=7, view_sampler=dict(
                                      type='bounded', num_targets=7, min_gap=8, max_gap=12)))
    torch.manual_seed(0)
    batch = default_collate([dataset[0], dataset[1]])
    context, target = batch['context'], batch['target']
    with torch.no_grad():
        rendered = model.render(context, scene_views(context, target))
        gaussians = model.reconstructor(context)
        cached = {}
        for name, views in (('context', context), ('target', target)):
            cached[name] = dict(views, render=model.renderer.render(
                gaussians, views['extrinsics'], views['intrinsics'], (16, 16), views['near'],
                views['far']).color.clamp(0, 1))
    torch.testing.assert_close(scene_views(cached['context'], cached['target'])['render'], rendered)

    torch.manual_seed(1)
    losses, log = model.losses(context, target)

    def refuse(*args, **kwargs):
        raise AssertionError('the reconstructor ran although the views carry their render')

    model.reconstructor.forward = refuse
    try:
        torch.manual_seed(1)
        cached_losses, cached_log = model.losses(cached['context'], cached['target'])
    finally:
        del model.reconstructor.forward
    torch.testing.assert_close(cached_losses['loss_consistency'], losses['loss_consistency'])
    torch.testing.assert_close(cached_log['reward'], log['reward'])
    assert torch.equal(cached_log['leap_t'], log['leap_t'])
