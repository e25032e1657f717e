"""RE10K chunk I/O, the RE10K dataset reader, view samplers, resize+crop and the synthetic cache."""
from __future__ import annotations

import json
import pickle

import pytest
import torch

from videoscene.datasets import RE10KDataset, SyntheticScenes
from videoscene.datasets import chunks
from videoscene.datasets.crop import resize_and_center_crop
from videoscene.datasets.synthetic import SyntheticSpec, draw_scene, generate, render_scene
from videoscene.datasets.view_samplers import BoundedViewSampler
from videoscene.geometry.cameras import c2w_to_w2c_rows, pixel_centers, project
from videoscene.registry import DATASETS

SPEC = SyntheticSpec(num_scenes=3, frames=24, height=32, width=48, num_eval_targets=5, scenes_per_chunk=2)


def random_cameras(count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    c2w = torch.eye(4).repeat(count, 1, 1)
    rotations, _ = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator))
    rotations[:, :, 0] *= torch.linalg.det(rotations).sign()[:, None]  # proper rotations
    c2w[:, :3, :3] = rotations
    c2w[:, :3, 3] = 5.0 * torch.randn(count, 3, generator=generator)
    intrinsics = torch.eye(3).repeat(count, 1, 1)
    intrinsics[:, 0, 0], intrinsics[:, 1, 1] = 0.8 + torch.rand(count, generator=generator), 1.2
    intrinsics[:, 0, 2], intrinsics[:, 1, 2] = 0.45 + 0.1 * torch.rand(count, generator=generator), 0.52
    return c2w, intrinsics


@pytest.fixture(scope='module')
def written(tmp_path_factory):
    """SPEC written to a folder, with the exact recordings it was made from."""
    root = tmp_path_factory.mktemp('synthetic')
    generate.write_synthetic_dataset(root, SPEC)
    return root, [render_scene(SPEC, index) for index in range(SPEC.num_scenes)]


def test_camera_rows_round_trip():
    c2w, intrinsics = random_cameras(10)
    rows = chunks.encode_cameras(c2w, intrinsics)
    assert rows.shape == (10, 18) and rows.dtype == torch.float32
    assert torch.equal(rows[:, 4:6], torch.zeros(10, 2))
    decoded_c2w, decoded_intrinsics = chunks.decode_cameras(rows)
    w2c = torch.eye(4).repeat(10, 1, 1)
    w2c[:, :3] = rows[:, 6:].reshape(10, 3, 4)
    # the read camera-to-world is the inverse of the written world-to-camera
    assert torch.allclose(decoded_c2w.double() @ w2c.double(), torch.eye(4, dtype=torch.float64).expand(10, 4, 4), atol=1e-6)
    assert torch.allclose(decoded_c2w, c2w, atol=1e-5)
    assert torch.equal(decoded_intrinsics, intrinsics)


def test_w2c_rows_follow_opencv_world_to_camera():
    c2w, _ = random_cameras(4, seed=1)
    rows = c2w_to_w2c_rows(c2w).reshape(4, 3, 4)
    point = torch.tensor([0.3, -1.0, 2.0])
    camera_frame = rows[:, :, :3] @ point + rows[:, :, 3]
    assert torch.allclose(c2w[:, :3, :3] @ camera_frame.unsqueeze(-1) + c2w[:, :3, 3:], point.view(1, 3, 1).expand(4, 3, 1), atol=1e-4)


def test_depth_png_round_trip():
    depth = torch.rand(17, 23) * 20.0
    depth[0, 0] = 0.0
    decoded = chunks.decode_depth(chunks.encode_depth(depth))
    assert decoded.shape == (17, 23) and decoded.dtype == torch.float32
    assert (decoded - depth).abs().max() <= 0.5 / chunks.DEPTH_SCALE + 1e-6
    with pytest.raises(ValueError, match='depths must be finite'):
        chunks.encode_depth(torch.full((2, 2), 100.0))


def test_written_chunks_round_trip(written):
    root, recordings = written
    index = chunks.load_index(root, SPEC.stage)
    assert sorted(index) == sorted(SPEC.key(i) for i in range(SPEC.num_scenes))
    assert sorted({path.name for path in index.values()}) == ['000000.torch', '000001.torch']
    for recording in recordings:
        stored = {example['key']: example for example in chunks.load_chunk(index[recording.key])}[recording.key]
        assert stored['timestamps'].dtype == torch.int64 and stored['timestamps'].shape == (SPEC.frames,)
        assert stored['cameras'].dtype == torch.float32 and isinstance(stored['url'], str)
        assert all(image.dtype == torch.uint8 and image.dim() == 1 for image in stored['images'])
        c2w, intrinsics = chunks.decode_cameras(stored['cameras'])
        assert torch.allclose(c2w, recording.extrinsics, atol=1e-5)
        assert torch.allclose(intrinsics, recording.intrinsics)
        images = torch.stack([chunks.decode_image(data) for data in stored['images']])
        assert images.shape == recording.images.shape
        assert (images - recording.images).abs().mean() < 0.02  # JPEG at quality 95
        depths = torch.stack([chunks.decode_depth(data) for data in stored['depths']])
        assert (depths - recording.depths).abs().max() < 1e-3


def test_evaluation_index_targets_lie_strictly_between_the_context(written):
    root, _ = written
    with (root / f'evaluation_index_{SPEC.stage}.json').open() as file:
        index = json.load(file)
    assert sorted(index) == sorted(SPEC.key(i) for i in range(SPEC.num_scenes))
    for entry in index.values():
        first, last = entry['context']
        assert (first, last) == (0, SPEC.frames - 1)
        targets = entry['target']
        assert len(targets) == SPEC.num_eval_targets == len(set(targets))
        assert all(first < t < last for t in targets) and targets == sorted(targets)
        gaps = [b - a for a, b in zip([first, *targets], [*targets, last])]
        assert max(gaps) - min(gaps) <= 1


def test_evaluation_index_with_a_context_gap_and_too_few_frames():
    index = chunks.evaluation_index({'a': 100}, num_targets=3, context_gap=40)
    assert index['a'] == {'context': [0, 40], 'target': [10, 20, 30]}
    with pytest.raises(ValueError, match="scene 'b': has 5 frames"):
        chunks.evaluation_index({'b': 5}, num_targets=4)


def _examples(count: int, fail_after: int | None = None):
    c2w, intrinsics = random_cameras(3)
    for i in range(count):
        if i == fail_after:
            raise RuntimeError('interrupted')
        yield chunks.encode_example(f'scene{i}', torch.rand(3, 3, 16, 16), c2w, intrinsics)


def test_interrupted_write_leaves_nothing_that_looks_like_data(tmp_path):
    with pytest.raises(RuntimeError, match='interrupted'):
        chunks.write_dataset(tmp_path, 'test', _examples(5, fail_after=3), scenes_per_chunk=1, num_eval_targets=1)
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError, match='no chunk index'):
        RE10KDataset(tmp_path, 'test')


def test_write_refuses_to_overwrite_unless_asked(tmp_path):
    chunks.write_dataset(tmp_path, 'test', _examples(2), num_eval_targets=1)
    with pytest.raises(FileExistsError):
        chunks.write_dataset(tmp_path, 'test', _examples(1), num_eval_targets=1)
    chunks.write_dataset(tmp_path, 'test', _examples(1), num_eval_targets=1, overwrite=True)
    assert list(chunks.load_index(tmp_path, 'test')) == ['scene0']
    assert sorted(path.name for path in tmp_path.iterdir()) == ['evaluation_index_test.json', 'test']


def test_dataset_samples_have_the_documented_layout(written):
    root, recordings = written
    dataset = DATASETS.build(dict(type='RE10KDataset', root=str(root), stage=SPEC.stage, near=0.5, far=20.0))
    assert len(dataset) == SPEC.num_scenes and dataset.metainfo['num_scenes'] == SPEC.num_scenes
    sample = dataset[1]
    assert sample['scene'] == SPEC.key(1)
    for part, count in (('context', 2), ('target', SPEC.num_eval_targets)):
        views = sample[part]
        assert views['image'].shape == (count, 3, SPEC.height, SPEC.width) and views['image'].dtype == torch.float32
        assert views['extrinsics'].shape == (count, 4, 4) and views['intrinsics'].shape == (count, 3, 3)
        assert views['near'].shape == views['far'].shape == (count,)
        assert torch.equal(views['near'], torch.full((count,), 0.5))
        assert views['index'].dtype == torch.int64
        assert torch.allclose(views['extrinsics'], recordings[1].extrinsics[views['index']], atol=1e-5)
        assert 0.0 <= views['image'].min() and views['image'].max() <= 1.0
    assert torch.allclose(sample['context']['depth'], recordings[1].depths[sample['context']['index']], atol=1e-3)
    assert sample['target']['depth'].shape == (SPEC.num_eval_targets, SPEC.height, SPEC.width)
    assert torch.allclose(sample['target']['depth'], recordings[1].depths[sample['target']['index']], atol=1e-3)
    assert sample['context']['index'].tolist() == [0, SPEC.frames - 1]


def test_training_sampler_is_bounded_and_reproducible(written):
    root, _ = written
    sampler = dict(type='bounded', num_targets=4, min_gap=6, max_gap=12, target_spacing='random', seed=3)
    dataset = RE10KDataset(root, SPEC.stage, view_sampler=sampler)
    again = RE10KDataset(root, SPEC.stage, view_sampler=sampler)
    draws = []
    for visit in range(3):
        for index in range(len(dataset)):
            torch.manual_seed(visit * 100 + index)  # what IterationSeedHook does before each batch
            sample = dataset[index]
            torch.manual_seed(visit * 100 + index)
            twin = again[index]
            (first, last), targets = sample['context']['index'].tolist(), sample['target']['index'].tolist()
            assert 6 <= last - first <= 12 and 0 <= first and last < SPEC.frames
            assert len(set(targets)) == 4 and all(first < t < last for t in targets) and targets == sorted(targets)
            assert torch.equal(sample['target']['index'], twin['target']['index'])
            draws.append((first, last, *targets))
    assert len(set(draws)) > len(draws) // 2  # visits and items draw differently


def test_uniform_training_targets_are_evenly_spaced():
    sampler = BoundedViewSampler(num_targets=5, min_gap=20, max_gap=40, target_spacing='uniform')
    context, target = sampler.sample('scene', 60, index=4)
    gaps = torch.diff(torch.cat([context[:1], target, context[1:]]))
    assert gaps.min() >= 1 and gaps.max() - gaps.min() <= 1
    with pytest.raises(ValueError, match='too few'):
        sampler.sample('short', 15, index=0)
    with pytest.raises(ValueError, match='min_gap >= num_targets'):
        BoundedViewSampler(num_targets=5, min_gap=5, max_gap=9)


def test_resize_and_crop_keep_projections_on_the_same_content():
    """A bright blob at the projection of a 3D point stays at its projection through the new intrinsics."""
    height, width = 60, 90
    intrinsics = torch.tensor([[[0.9, 0.0, 0.47], [0.0, 1.3, 0.55], [0.0, 0.0, 1.0]]])
    c2w = torch.eye(4)[None]
    point = torch.tensor([[0.2, -0.1, 3.0]])
    uv, _ = project(point, intrinsics, c2w)
    centres = pixel_centers(height, width)
    offset = (centres - uv[0]) * torch.tensor([width, height])
    blob = torch.exp(-(offset ** 2).sum(-1) / (2 * 3.0 ** 2))
    images = blob.expand(1, 3, height, width)
    for shape in ((32, 32), (40, 48), (20, 64), (120, 120)):
        cropped, new_intrinsics, _ = resize_and_center_crop(images, intrinsics, shape)
        assert cropped.shape == (1, 3, *shape)
        weights = cropped[0, 0]
        grid = pixel_centers(*shape)
        centroid = (grid * weights[..., None]).sum((0, 1)) / weights.sum()
        expected, _ = project(point, new_intrinsics, c2w)
        error_pixels = (centroid - expected[0]) * torch.tensor([shape[1], shape[0]])
        assert error_pixels.abs().max() < 0.05, (shape, error_pixels)


def test_dataset_resize_matches_a_render_at_the_new_intrinsics(written):
    """Resized and cropped views look like the scene rendered directly with the updated intrinsics
    (and clearly unlike a render with the stored ones)."""
    root, recordings = written
    views = RE10KDataset(root, SPEC.stage, image_shape=(24, 24))[0]['target']
    assert views['image'].shape == (SPEC.num_eval_targets, 3, 24, 24)
    scene, _ = draw_scene(SPEC, 0)
    rendered, depth = scene.render(views['extrinsics'], views['intrinsics'], 24, 24)
    assert torch.isclose(views['depth'], depth, rtol=0.05).float().mean() > 0.9
    stale, _ = scene.render(views['extrinsics'], recordings[0].intrinsics[views['index']], 24, 24)
    error = (views['image'] - rendered).abs().mean()
    assert error < 0.06 and error < 0.5 * (views['image'] - stale).abs().mean()


def test_synthetic_scenes_generate_once_and_ignore_partial_folders(tmp_path, monkeypatch):
    spec = SyntheticSpec(num_scenes=2, frames=8, height=16, width=16, num_eval_targets=3)
    cache = tmp_path / 'cache'
    junk = cache / 'synthetic' / f'{spec.digest()}.partial-leftover' / spec.stage
    junk.mkdir(parents=True)
    (junk / 'index.json').write_text('{}')
    options = dict(num_scenes=2, frames=8, height=16, width=16, num_eval_targets=3, cache_dir=cache)
    calls = []
    original = generate.write_synthetic_dataset
    monkeypatch.setattr(generate, 'write_synthetic_dataset', lambda *args, **kw: calls.append(1) or original(*args, **kw))
    first = SyntheticScenes(**options)
    assert len(calls) == 1 and len(first) == 2 and first.root == cache / 'synthetic' / spec.digest()
    second = DATASETS.build(dict(type='SyntheticScenes', **options))
    assert len(calls) == 1  # read from the cache, not regenerated
    assert torch.equal(first[1]['target']['image'], second[1]['target']['image'])
    assert (cache / 'synthetic' / f'{spec.digest()}.partial-leftover').exists()  # left alone, never read


def test_interrupted_synthetic_generation_is_retried(tmp_path, monkeypatch):
    options = dict(num_scenes=2, frames=8, height=16, width=16, num_eval_targets=3, cache_dir=tmp_path)
    original = generate.render_scene

    def fail_on_second(spec, index):
        if index == 1:
            raise KeyboardInterrupt
        return original(spec, index)

    monkeypatch.setattr(generate, 'render_scene', fail_on_second)
    with pytest.raises(KeyboardInterrupt):
        SyntheticScenes(**options)
    assert list((tmp_path / 'synthetic').iterdir()) == []
    monkeypatch.setattr(generate, 'render_scene', original)
    assert len(SyntheticScenes(**options)) == 2


def test_dataset_pickles_without_its_cached_chunk(written):
    root, _ = written
    dataset = RE10KDataset(root, SPEC.stage)
    first = dataset[0]
    assert dataset.source._chunk
    clone = pickle.loads(pickle.dumps(dataset))
    assert clone.source._chunk == {} and clone.source._chunk_path is None
    assert torch.equal(clone[0]['target']['image'], first['target']['image'])


def test_default_evaluation_targets_fit_short_scenes():
    assert SyntheticSpec(frames=120).eval_targets == 49
    assert SyntheticSpec(frames=24).eval_targets == 22
    with pytest.raises(ValueError, match='num_eval_targets'):
        SyntheticSpec(frames=24, num_eval_targets=30)


def test_spec_digest_changes_with_the_parameters():
    assert SPEC.digest() == SyntheticSpec(**{**SPEC.__dict__}).digest()
    for change in (dict(fov_deg=50.0), dict(seed=1), dict(stage='test'), dict(height=16)):
        assert SPEC.digest() != SyntheticSpec(**{**SPEC.__dict__, **change}).digest()
