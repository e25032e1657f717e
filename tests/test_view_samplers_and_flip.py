"""View samplers as registry entries (evaluation, video, bounded, fixed, plugins) and the
horizontal-flip augmentation's camera consistency."""
from __future__ import annotations

import json

import pytest
import torch

from _scene_writers import jpeg_bytes, write_chunks, write_transforms
from videoscene.datasets import RE10KDataset, TransformsJSONDataset
from videoscene.datasets.flip import flip_extrinsics, flip_intrinsics, flip_views
from videoscene.datasets.synthetic import SyntheticSpec, render_scene
from videoscene.datasets.view_samplers import ViewSampler, VideoViewSampler
from videoscene.geometry.cameras import pixel_centers, project, unproject
from videoscene.registry import VIEW_SAMPLERS, UnknownTypeError

SPEC = SyntheticSpec(num_scenes=1, frames=12, height=24, width=32, num_eval_targets=4)


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    root = tmp_path_factory.mktemp('samplers')
    recording = render_scene(SPEC, 0)
    write_chunks(root, 'room', jpeg_bytes(recording.images), recording.extrinsics, recording.intrinsics,
                 num_eval_targets=4, depths=recording.depths)
    return root, recording


def write_index(path, entries):
    path.write_text(json.dumps(entries))
    return path


def test_samplers_are_registry_entries():
    assert {'evaluation', 'video', 'bounded', 'fixed'} <= set(VIEW_SAMPLERS.valid_names())
    sampler = VIEW_SAMPLERS.build(dict(type='bounded', num_targets=2, min_gap=3, max_gap=5))
    context, target = sampler.sample('scene', 20, index=0)
    assert 3 <= int(context[1] - context[0]) <= 5 and len(target) == 2
    with pytest.raises(UnknownTypeError, match="'nearest' is not a registered view sampler.*bounded"):
        VIEW_SAMPLERS.build(dict(type='nearest'))


def test_a_plugin_sampler_is_built_from_a_dataset_config(written):
    root, _ = written

    class EveryThird(ViewSampler):
        def scenes(self, available):
            return list(available)

        def sample(self, scene, num_frames, index):
            return torch.tensor([0, 9]), torch.tensor([3, 6])

    VIEW_SAMPLERS.register_module(name='test_every_third', module=EveryThird)
    try:
        sample = RE10KDataset(root, 'test', view_sampler=dict(type='test_every_third'))[0]
    finally:
        VIEW_SAMPLERS._module_dict.pop('test_every_third')
    assert sample['context']['index'].tolist() == [0, 9] and sample['target']['index'].tolist() == [3, 6]


def test_video_sampler_reproduces_videoscenes_video_index(tmp_path):
    """The official ``evaluation_index_re10k_video.json``: context [2, 98] -> targets 2, 4, ..., 98."""
    index = write_index(tmp_path / 'index.json', {'a': {'context': [2, 98], 'target': [50]},
                                                  'b': {'context': [1, 97], 'target': [3]}, 'skipped': None})
    sampler = VIEW_SAMPLERS.build(dict(type='video', index_path=index))
    assert sampler.scenes(['b', 'a', 'other']) == ['a', 'b']
    for scene, first in (('a', 2), ('b', 1)):
        context, target = sampler.sample(scene, 120, index=0)
        assert context.tolist() == [first, first + 96]
        assert target.tolist() == list(range(first, first + 97, 2)) and len(target) == 49


@pytest.mark.parametrize('gap, count', [(50, 49), (61, 49), (100, 13), (12, 2)])
def test_video_sampler_spacing_is_near_equal_and_hits_both_ends(tmp_path, gap, count):
    index = write_index(tmp_path / 'index.json', {'s': {'context': [5, 5 + gap], 'target': [6]}})
    context, target = VideoViewSampler(index, num_frames=count).sample('s', 200, index=0)
    steps = torch.diff(target)
    assert target[0] == context[0] and target[-1] == context[1] and len(target) == count
    assert steps.min() >= 1 and steps.max() - steps.min() <= 1
    inner_context, inner = VideoViewSampler(index, num_frames=count, include_context=False).sample('s', 200, index=0)
    inner_steps = torch.diff(torch.cat([inner_context[:1], inner, inner_context[1:]]))
    assert len(inner) == count and inner_steps.min() >= 1 and inner_steps.max() - inner_steps.min() <= 1


def test_video_sampler_refuses_a_gap_too_short_and_frames_outside_the_scene(tmp_path):
    index = write_index(tmp_path / 'index.json', {'short': {'context': [0, 40], 'target': [1]},
                                                  'long': {'context': [0, 96], 'target': [1]}})
    sampler = VideoViewSampler(index, num_frames=49)
    with pytest.raises(ValueError, match="scene 'short'.*49 distinct frames from 0 to 40"):
        sampler.sample('short', 100, index=0)
    with pytest.raises(ValueError, match="scene 'long' has 50 frames"):
        sampler.sample('long', 50, index=0)


def test_datasets_give_their_own_evaluation_index_to_samplers_that_need_one(written, tmp_path):
    root, recording = written
    sample = RE10KDataset(root, 'test', view_sampler=dict(type='video', num_frames=6))[0]
    assert sample['context']['index'].tolist() == [0, 11]
    assert sample['target']['index'].tolist() == [0, 2, 4, 7, 9, 11]  # 11 / 5 = 2.2 frames apart
    folder = write_transforms(tmp_path / 'room', jpeg_bytes(recording.images[:2]), recording.extrinsics[:2],
                              recording.intrinsics[:2], SPEC.height, SPEC.width)
    with pytest.raises(ValueError, match="view sampler 'video' needs an index_path: TransformsJSONDataset has no"):
        TransformsJSONDataset(folder, view_sampler=dict(type='video'))


def test_fixed_sampler_checks_the_scene_length():
    sampler = VIEW_SAMPLERS.build(dict(type='fixed', context=[0, 1], target=[0, 1]))
    assert [t.tolist() for t in sampler.sample('pair', 2, index=3)] == [[0, 1], [0, 1]]
    with pytest.raises(ValueError, match="scene 'pair' has 2 frames"):
        VIEW_SAMPLERS.build(dict(type='fixed', context=[0, 5], target=[1])).sample('pair', 2, index=0)


def random_cameras(count: int, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    extrinsics = torch.eye(4).repeat(count, 1, 1)
    rotations, _ = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator))
    rotations[:, :, 0] *= torch.linalg.det(rotations).sign()[:, None]
    extrinsics[:, :3, :3], extrinsics[:, :3, 3] = rotations, torch.randn(count, 3, generator=generator)
    intrinsics = torch.eye(3).repeat(count, 1, 1)
    intrinsics[:, 0, 0], intrinsics[:, 1, 1] = 0.9, 1.1
    intrinsics[:, 0, 1] = 0.05  # skew
    intrinsics[:, 0, 2], intrinsics[:, 1, 2] = 0.3 + 0.4 * torch.rand(count, generator=generator), 0.55
    return extrinsics, intrinsics


def test_flipped_cameras_project_mirrored_points_onto_flipped_pixels():
    extrinsics, intrinsics = random_cameras(6)
    flipped_e, flipped_k = flip_extrinsics(extrinsics), flip_intrinsics(intrinsics)
    assert torch.allclose(torch.linalg.det(flipped_e[:, :3, :3]), torch.ones(6), atol=1e-5)  # proper rotations
    assert torch.allclose(flip_extrinsics(flipped_e), extrinsics)
    assert torch.allclose(flip_intrinsics(flipped_k), intrinsics)
    points = extrinsics[:, None, :3, 3] + torch.randn(6, 50, 3) + 3.0 * extrinsics[:, None, :3, 2]
    uv, z = project(points, intrinsics[:, None], extrinsics[:, None])
    mirrored = points * torch.tensor([-1.0, 1.0, 1.0])
    flipped_uv, flipped_z = project(mirrored, flipped_k[:, None], flipped_e[:, None])
    assert torch.allclose(flipped_z, z, atol=1e-5)
    assert torch.allclose(flipped_uv[..., 0], 1.0 - uv[..., 0], atol=1e-5)
    assert torch.allclose(flipped_uv[..., 1], uv[..., 1], atol=1e-5)


def reprojection_error(views) -> float:
    """Mean colour difference between view 0's pixels and where their depth puts them in view 1."""
    h, w = views['image'].shape[-2:]
    uv = pixel_centers(h, w)
    points = unproject(uv, views['depth'][0], views['intrinsics'][0], views['extrinsics'][0])
    target_uv, z = project(points, views['intrinsics'][1], views['extrinsics'][1])
    grid = (target_uv * 2 - 1)[None]
    sampled = torch.nn.functional.grid_sample(views['image'][1:2], grid, align_corners=False)[0]
    inside = (z > 0) & (target_uv > 0).all(-1) & (target_uv < 1).all(-1)
    assert inside.float().mean() > 0.3
    return float((sampled - views['image'][0]).abs().mean(0)[inside].mean())


def test_flipped_samples_stay_multi_view_consistent(written):
    """The flipped images with the flipped cameras reproject as well as the originals do, and much
    better than flipped images with unflipped cameras."""
    root, _ = written
    sampler = dict(type='fixed', context=[0, 2], target=[1])
    plain = RE10KDataset(root, 'test', view_sampler=sampler, near=0.5, far=20.0)[0]
    flipped = RE10KDataset(root, 'test', view_sampler=sampler, near=0.5, far=20.0, flip_probability=1.0)[0]
    assert torch.equal(flipped['context']['image'], plain['context']['image'].flip(-1))
    assert torch.equal(flipped['target']['depth'], plain['target']['depth'].flip(-1))
    assert torch.allclose(flipped['target']['extrinsics'], flip_extrinsics(plain['target']['extrinsics']))
    assert torch.equal(flipped['context']['index'], plain['context']['index'])
    error, flipped_error = reprojection_error(plain['context']), reprojection_error(flipped['context'])
    stale = reprojection_error({**flipped['context'], 'extrinsics': plain['context']['extrinsics'],
                                'intrinsics': plain['context']['intrinsics']})
    assert flipped_error < 1.2 * error + 0.01 and flipped_error < 0.5 * stale, (error, flipped_error, stale)


def test_flip_probability_draws_from_torchs_global_generator(written):
    root, _ = written
    dataset = RE10KDataset(root, 'test', near=0.5, far=20.0, flip_probability=0.5)
    plain = RE10KDataset(root, 'test', near=0.5, far=20.0)[0]['context']['image']
    outcomes = []
    for seed in range(12):
        torch.manual_seed(seed)
        first = dataset[0]['context']['image']
        torch.manual_seed(seed)
        assert torch.equal(dataset[0]['context']['image'], first)  # reproducible under the engine's seeding
        flipped = torch.equal(first, plain.flip(-1))
        assert flipped or torch.equal(first, plain)
        outcomes.append(flipped)
    assert 0 < sum(outcomes) < len(outcomes)  # both outcomes occur


def test_flip_views_keeps_other_keys():
    extrinsics, intrinsics = random_cameras(2)
    views = {'image': torch.rand(2, 3, 4, 5), 'extrinsics': extrinsics, 'intrinsics': intrinsics,
             'near': torch.ones(2), 'index': torch.tensor([3, 7])}
    flipped = flip_views(views)
    assert flipped['near'] is views['near'] and flipped['index'] is views['index'] and 'depth' not in flipped
    assert torch.equal(flip_views(flipped)['image'], views['image'])
