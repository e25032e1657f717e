"""Bad input: corrupt JPEGs are skipped with a counted warning (once per file); zero baselines,
non-finite or improper cameras, missing files and wrongly sized images raise errors naming the
scene or file. (tests/test_bad_inputs.py walks the whole table of bad inputs.)"""
from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from mmengine.logging import MMLogger
from torch.utils.data import DataLoader

from _scene_writers import jpeg_bytes, pixel_intrinsics, write_colmap, write_images, write_transforms
from videoscene.datasets import COLMAPDataset, RE10KDataset, TransformsJSONDataset, chunks
from videoscene.datasets.chunks import CorruptImageError
from videoscene.datasets.synthetic import SyntheticSpec, render_scene
from videoscene.errors import CameraError, InputError

SPEC = SyntheticSpec(num_scenes=1, frames=6, height=16, width=24, num_eval_targets=2)
SAMPLER = dict(type='fixed', context=[0, 5], target=[2, 3])


@pytest.fixture(scope='module')
def recording():
    return render_scene(SPEC, 0)


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


@pytest.fixture
def warnings():
    records = Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    yield records.messages
    logger.removeHandler(records)


def chunk_root(tmp_path, recording, damage):
    examples = []
    for key in 'abcd':
        jpegs, extrinsics = jpeg_bytes(recording.images), recording.extrinsics.clone()
        if key in damage:
            damage[key](jpegs, extrinsics)
        example = chunks.encode_example(key, jpegs, recording.extrinsics, recording.intrinsics)
        example['cameras'] = chunks.encode_cameras(extrinsics, recording.intrinsics)  # may hold what encode refuses
        examples.append(example)
    chunks.write_dataset(tmp_path, 'test', examples, num_eval_targets=None, scenes_per_chunk=2)
    return tmp_path


def truncate(jpegs, extrinsics):
    jpegs[2] = jpegs[2][:len(jpegs[2]) // 2]


def test_truncated_jpeg_is_detected_although_opencv_decodes_it(recording):
    data = chunks.encode_image(recording.images[0])
    half = data[:len(data) // 2 + 40]
    with pytest.raises(CorruptImageError, match='truncated JPEG'):
        chunks.decode_image(half, 'frame 3')
    with pytest.raises(CorruptImageError, match=r'frame 3: 100 bytes do not decode'):
        chunks.decode_image(torch.full((100,), 7, dtype=torch.uint8), 'frame 3')
    padded = torch.cat([data, torch.zeros(4, dtype=torch.uint8)])  # trailing padding is not corruption
    assert torch.equal(chunks.decode_image(padded), chunks.decode_image(data))


def test_corrupt_jpeg_skips_the_example_with_a_counted_warning(tmp_path, recording, warnings):
    root = chunk_root(tmp_path, recording, {'b': truncate})
    dataset = RE10KDataset(root, 'test', view_sampler=SAMPLER, near=0.5, far=20.0)
    sample = dataset[1]
    assert sample['scene'] == 'c' and dataset.skipped == 1
    assert len(warnings) == 1
    assert "scene 'b'" in warnings[0] and 'frame 2' in warnings[0] and '000000.torch' in warnings[0]
    assert '1 examples skipped so far' in warnings[0]
    scenes = [batch['scene'][0] for batch in DataLoader(dataset, batch_size=1)]  # a whole epoch runs
    assert scenes == ['a', 'c', 'c', 'd'] and dataset.skipped == 2
    assert len(warnings) == 1  # the same file again: counted, warned about once


def test_only_corrupt_examples_raise(tmp_path, recording):
    root = chunk_root(tmp_path, recording, {key: truncate for key in 'abcd'})
    with pytest.raises(RuntimeError, match='all 4 items have corrupt data'):
        RE10KDataset(root, 'test', view_sampler=SAMPLER)[0]


def test_identical_context_cameras_are_refused(tmp_path, recording):
    def freeze(jpegs, extrinsics):
        extrinsics[5] = extrinsics[0]
    root = chunk_root(tmp_path, recording, {'c': freeze})
    dataset = RE10KDataset(root, 'test', view_sampler=SAMPLER)
    dataset[0]
    with pytest.raises(ValueError, match="scene 'c': context frames 0 and 5 have camera centres 0 apart"):
        dataset[2]
    assert RE10KDataset(root, 'test', view_sampler=SAMPLER, min_baseline=None)[2]['scene'] == 'c'
    with pytest.raises(ValueError, match="scene 'a'.*at most min_baseline=100"):
        RE10KDataset(root, 'test', view_sampler=SAMPLER, min_baseline=100.0)[0]


@pytest.mark.parametrize('damage, message', [
    (lambda jpegs, extrinsics: extrinsics[3].fill_(math.nan), r"frame 3 of scene 'd' in .*000001.torch: non-finite"),
    (lambda jpegs, extrinsics: extrinsics[2, :, 0].neg_(), r"frame 2 of scene 'd' .*det = -1"),
])
def test_bad_chunk_cameras_name_the_scene_and_frame(tmp_path, recording, damage, message):
    root = chunk_root(tmp_path, recording, {'d': damage})
    with pytest.raises(ValueError, match=message):
        RE10KDataset(root, 'test', view_sampler=SAMPLER)[3]


def test_non_finite_cameras_are_refused_when_written(recording):
    extrinsics = recording.extrinsics.clone()
    extrinsics[4, 0, 3] = math.inf
    with pytest.raises(ValueError, match=r"scene 'x': non-finite cameras at frames \[4\]"):
        chunks.encode_example('x', recording.images, extrinsics, recording.intrinsics)


def test_views_of_different_sizes_need_an_image_shape(tmp_path, recording):
    def shrink(jpegs, extrinsics):
        jpegs[3] = chunks.encode_image(recording.images[3][:, :8, :12])
    root = chunk_root(tmp_path, recording, {'a': shrink})
    with pytest.raises(ValueError, match=r"scene 'a': frames \[0, 2, 3, 5\] have different sizes"):
        RE10KDataset(root, 'test', view_sampler=SAMPLER)[0]
    sample = RE10KDataset(root, 'test', view_sampler=SAMPLER, image_shape=(8, 8))[0]
    assert sample['target']['image'].shape == (2, 3, 8, 8)


def test_missing_chunk_file_is_named(tmp_path, recording):
    root = chunk_root(tmp_path, recording, {})
    (root / 'test' / '000001.torch').unlink()
    dataset = RE10KDataset(root, 'test', view_sampler=SAMPLER)
    with pytest.raises(FileNotFoundError, match=r"chunk .*000001.torch of scene 'c'"):
        dataset[2]


@pytest.fixture
def transforms_scene(tmp_path, recording):
    return write_transforms(tmp_path / 'room', jpeg_bytes(recording.images), recording.extrinsics,
                            recording.intrinsics, SPEC.height, SPEC.width)


def edit_frames(folder, edit):
    content = json.loads((folder / 'transforms.json').read_text())
    edit(content)
    (folder / 'transforms.json').write_text(json.dumps(content))


def test_missing_image_file_is_named(transforms_scene):
    (transforms_scene / 'images' / 'frame_00004.jpg').unlink()
    with pytest.raises(FileNotFoundError, match=r"scene 'room': 1 image files do not exist.*frame_00004.jpg"):
        TransformsJSONDataset(transforms_scene, view_sampler=SAMPLER)


def test_non_finite_transform_matrix_names_the_file(transforms_scene):
    edit_frames(transforms_scene, lambda content: content['frames'][2]['transform_matrix'][0].__setitem__(3, math.nan))
    with pytest.raises(CameraError, match=r'transforms.json, frame images/frame_00002.jpg: non-finite extrinsics'):
        TransformsJSONDataset(transforms_scene, view_sampler=SAMPLER)


def test_image_of_the_wrong_size_names_the_file(transforms_scene, recording):
    write_images(transforms_scene / 'images', jpeg_bytes(recording.images[:1, :, :10, :10]), names=['frame_00003.jpg'])
    dataset = TransformsJSONDataset(transforms_scene, view_sampler=SAMPLER)
    with pytest.raises(InputError, match=r"frame_00003.jpg \(scene 'room', frame 3\): is 10 x 10 pixels but its "
                                         r'camera is 24 x 16'):
        dataset[0]


def test_corrupt_image_file_is_skipped_like_a_corrupt_chunk_image(transforms_scene, recording, warnings):
    (transforms_scene / 'images' / 'frame_00002.jpg').write_bytes(b'\xff\xd8not really a jpeg')
    other = write_transforms(transforms_scene.parent / 'other', jpeg_bytes(recording.images), recording.extrinsics,
                             recording.intrinsics, SPEC.height, SPEC.width)
    dataset = TransformsJSONDataset([transforms_scene, other], view_sampler=SAMPLER)
    assert dataset[0]['scene'] == 'other' and dataset.skipped == 1
    assert any('frame_00002.jpg' in m for m in warnings)


@pytest.mark.parametrize('fields, message', [
    (dict(camera_model='OPENCV', k1=0.1, k4=0.01), 'k4 = 0.01: nerfstudio.s r\\^8 radial term has no OpenCV'),
    (dict(camera_model='OPENCV_FISHEYE', k1=0.1, p1=0.01), 'OPENCV_FISHEYE with tangential terms'),
    (dict(camera_model='PINHOLE', k1=0.1), "PINHOLE with distortion coefficients {'k1': 0.1}"),
    (dict(camera_model='EQUIRECTANGULAR'), "camera_model 'EQUIRECTANGULAR' is not supported"),
])
def test_distortion_that_cannot_be_honoured_is_refused(transforms_scene, fields, message):
    edit_frames(transforms_scene, lambda content: content.update(fields))
    with pytest.raises(ValueError, match=message):
        TransformsJSONDataset(transforms_scene, view_sampler=SAMPLER)


def test_distortion_with_undistort_off_is_refused(transforms_scene):
    edit_frames(transforms_scene, lambda content: content.update(k1=-0.1, k2=0.02))
    assert TransformsJSONDataset(transforms_scene, view_sampler=SAMPLER)[0]['scene'] == 'room'
    with pytest.raises(InputError, match=r"scene 'room': has lens distortion \(opencv coefficients \(-0.1, 0.02"):
        TransformsJSONDataset(transforms_scene, view_sampler=SAMPLER, undistort=False)


def test_colmap_errors_name_the_model(tmp_path, recording):
    h, w = SPEC.height, SPEC.width
    camera = ('FOV', w, h, (*pixel_intrinsics(recording.intrinsics[0], h, w), 0.9))
    write_colmap(tmp_path / 'fov', jpeg_bytes(recording.images), recording.extrinsics,
                 torch.zeros(0, 3, dtype=torch.float64), camera, binary=False)
    with pytest.raises(ValueError, match=r'fov/sparse/0: COLMAP camera 1 uses the FOV model.*image_undistorter'):
        COLMAPDataset(tmp_path / 'fov', view_sampler=SAMPLER)
    (tmp_path / 'fov' / 'sparse' / '0' / 'images.txt').unlink()
    with pytest.raises(FileNotFoundError, match=r'holds no COLMAP model.*found \[.cameras.txt., .points3D.txt.\]'):
        COLMAPDataset(tmp_path / 'fov', view_sampler=SAMPLER)
    camera = ('PINHOLE', w, h, pixel_intrinsics(recording.intrinsics[0], h, w))
    write_colmap(tmp_path / 'cut', jpeg_bytes(recording.images), recording.extrinsics,
                 torch.zeros(0, 3, dtype=torch.float64), camera, binary=True)
    images = tmp_path / 'cut' / 'sparse' / '0' / 'images.bin'
    images.write_bytes(images.read_bytes()[:-30])
    with pytest.raises(InputError, match=r'images.bin: ends early'):
        COLMAPDataset(tmp_path / 'cut', view_sampler=SAMPLER)
    write_colmap(tmp_path / 'empty', jpeg_bytes(recording.images), recording.extrinsics,
                 torch.zeros(0, 3, dtype=torch.float64), camera, binary=True)
    with pytest.raises(ValueError, match=r"COLMAP scene 'empty': too few sparse points"):
        COLMAPDataset(tmp_path / 'empty', view_sampler=SAMPLER)[0]
