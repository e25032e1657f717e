"""Every scene source (RE10K chunks, transforms.json, COLMAP text and binary, videos, image pairs)
yields the same cameras and images for the same scene; conversion to chunks; undistortion."""
from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from mmengine.logging import MMLogger

from _scene_writers import (distorted_pattern, jpeg_bytes, pinhole_pattern, pixel_intrinsics, png_bytes, write_chunks,
                            write_colmap, write_images, write_transforms, write_video)
from videoscene.datasets import (COLMAPDataset, ImagePairDataset, RE10KDataset, TransformsJSONDataset, VideoDataset,
                                 chunks)
from videoscene.datasets.colmap import read_colmap_model, read_colmap_scene
from videoscene.datasets.convert import convert_to_chunks
from videoscene.datasets.image_files import ImageFileSource
from videoscene.datasets.synthetic import SyntheticSpec, render_scene
from videoscene.datasets.transforms_json import read_transforms_json
from videoscene.datasets.video import read_video_frames
from videoscene.geometry.cameras import pixel_centers, unproject
from videoscene.geometry.pose_estimation import PoseEstimationError
from videoscene.geometry.rotations import so3_log
from videoscene.visualization import save_video

SPEC = SyntheticSpec(num_scenes=1, frames=10, height=24, width=32, num_eval_targets=3)
KEY = 'room'
NEAR, FAR = 0.5, 20.0


@pytest.fixture(scope='module')
def scene(tmp_path_factory):
    """One synthetic scene written as chunks, transforms.json, COLMAP text and binary, and a video."""
    root = tmp_path_factory.mktemp('sources')
    recording = render_scene(SPEC, 0)
    jpegs = jpeg_bytes(recording.images)
    h, w = SPEC.height, SPEC.width
    write_chunks(root / 'chunks', KEY, jpegs, recording.extrinsics, recording.intrinsics, num_eval_targets=3)
    write_transforms(root / 'transforms' / KEY, jpegs, recording.extrinsics, recording.intrinsics, h, w,
                     frame_order=list(reversed(range(SPEC.frames))))
    uv = pixel_centers(h, w)[::4, ::4].reshape(-1, 2)
    points = torch.cat([unproject(uv, recording.depths[i][::4, ::4].reshape(-1), recording.intrinsics[i],
                                  recording.extrinsics[i]) for i in (0, SPEC.frames - 1)])
    camera = ('PINHOLE', w, h, pixel_intrinsics(recording.intrinsics[0], h, w))
    for binary in (False, True):
        write_colmap(root / f'colmap_{"bin" if binary else "txt"}' / KEY, jpegs, recording.extrinsics, points.double(),
                     camera, binary=binary)
    write_video(root / 'videos', KEY, recording.images, recording.extrinsics, recording.intrinsics)
    return root, recording


def evaluation(root) -> dict:
    return dict(type='evaluation', index_path=root / 'chunks' / 'evaluation_index_test.json')


def build_all(root) -> dict:
    options = dict(view_sampler=evaluation(root), near=NEAR, far=FAR)
    return {
        'chunks': RE10KDataset(root / 'chunks', 'test', near=NEAR, far=FAR),
        'transforms': TransformsJSONDataset(root / 'transforms' / KEY, **options),
        'colmap text': COLMAPDataset(root / 'colmap_txt' / KEY, **options),
        'colmap binary': COLMAPDataset(root / 'colmap_bin' / KEY, **options),
    }


def assert_same_views(views, reference, name):
    assert torch.equal(views['index'], reference['index']), name
    assert torch.allclose(views['extrinsics'], reference['extrinsics'], atol=2e-5), name
    assert torch.allclose(views['intrinsics'], reference['intrinsics'], atol=1e-6), name
    assert torch.equal(views['near'], reference['near']) and torch.equal(views['far'], reference['far']), name
    assert torch.equal(views['image'], reference['image']), name


def test_every_source_yields_the_same_cameras_and_images(scene):
    root, recording = scene
    datasets = build_all(root)
    reference = datasets['chunks'][0]
    assert reference['context']['index'].tolist() == [0, SPEC.frames - 1]
    assert torch.allclose(reference['target']['extrinsics'], recording.extrinsics[reference['target']['index']],
                          atol=2e-5)
    for name, dataset in datasets.items():
        assert len(dataset) == 1
        sample = dataset[0]
        assert sample['scene'] == KEY, name
        for part in ('context', 'target'):
            assert_same_views(sample[part], reference[part], f'{name} {part}')


def test_sources_agree_after_resizing_too(scene):
    root, _ = scene
    options = dict(view_sampler=evaluation(root), near=NEAR, far=FAR, image_shape=(16, 16))
    reference = RE10KDataset(root / 'chunks', 'test', near=NEAR, far=FAR, image_shape=(16, 16))[0]
    sample = COLMAPDataset(root / 'colmap_bin' / KEY, **options)[0]
    assert sample['target']['image'].shape[-2:] == (16, 16)
    assert_same_views(sample['target'], reference['target'], 'resized COLMAP')


def test_colmap_text_and_binary_models_are_read_alike(scene):
    root, _ = scene
    text = read_colmap_model(root / 'colmap_txt' / KEY / 'sparse' / '0')
    binary = read_colmap_model(root / 'colmap_bin' / KEY / 'sparse' / '0')
    assert text.cameras == binary.cameras and text.cameras[1].model == 'PINHOLE'
    assert sorted(text.images) == sorted(binary.images) == list(range(1, SPEC.frames + 1))
    for image_id, image in text.images.items():
        other = binary.images[image_id]
        assert image.name == other.name and image.camera_id == other.camera_id
        assert torch.allclose(torch.tensor(image.qvec), torch.tensor(other.qvec), atol=1e-12)
    assert text.points.shape == binary.points.shape and len(text.points) > 0
    assert torch.allclose(text.points, binary.points) and torch.equal(text.colors, binary.colors)


def test_colmap_text_model_with_one_line_per_image_keeps_every_image(scene, tmp_path):
    """images.txt without 2D-point lines (one line per image) is read by content: no image is dropped."""
    root, recording = scene
    camera = ('PINHOLE', SPEC.width, SPEC.height, pixel_intrinsics(recording.intrinsics[0], SPEC.height, SPEC.width))
    folder = write_colmap(tmp_path / KEY, jpeg_bytes(recording.images), recording.extrinsics,
                          torch.zeros(0, 3, dtype=torch.float64), camera, binary=False, point_lines=False)
    model = read_colmap_model(folder / 'sparse' / '0')
    assert sorted(model.images) == list(range(1, SPEC.frames + 1))
    assert model.images == read_colmap_model(root / 'colmap_txt' / KEY / 'sparse' / '0').images
    scene_, _ = read_colmap_scene(folder)
    assert len(scene_.paths) == SPEC.frames
    assert torch.allclose(scene_.extrinsics, recording.extrinsics, atol=2e-5)


def test_colmap_depth_bounds_from_sparse_points_enclose_the_scene(scene):
    root, recording = scene
    dataset = COLMAPDataset(root / 'colmap_txt' / KEY, view_sampler=evaluation(root))
    sample = dataset[0]
    near, far = float(sample['context']['near'][0]), float(sample['context']['far'][0])
    depths = recording.depths[sample['target']['index']]
    assert 0 < near < torch.quantile(depths.flatten(), 0.01) and far > torch.quantile(depths.flatten(), 0.99)
    assert far < 10 * float(depths.max())  # derived from the points, not a blind default


def test_transforms_json_intrinsic_variants(scene, tmp_path):
    root, recording = scene
    jpegs = jpeg_bytes(recording.images)
    h, w = SPEC.height, SPEC.width
    reference = TransformsJSONDataset(root / 'transforms' / KEY, view_sampler=evaluation(root), near=NEAR, far=FAR)[0]
    fov_x = 2 * math.atan(0.5 / float(recording.intrinsics[0, 0, 0]))
    fov_y = 2 * math.atan(0.5 / float(recording.intrinsics[0, 1, 1]))
    variants = {
        'per_frame': write_transforms(tmp_path / 'per_frame' / KEY, jpegs, recording.extrinsics, recording.intrinsics,
                                      h, w, per_frame=True),
        # instant-ngp style: field of view, no size (read from the image), default principal point
        'angles': write_transforms(tmp_path / 'angles' / KEY, jpegs, recording.extrinsics, recording.intrinsics, h, w,
                                   per_frame=True, shared={'camera_angle_x': fov_x, 'camera_angle_y': fov_y}),
    }
    content = json.loads((variants['angles'] / 'transforms.json').read_text())
    for frame in content['frames']:
        for name in ('fl_x', 'fl_y', 'cx', 'cy', 'w', 'h'):
            frame.pop(name)
        frame['file_path'] = frame['file_path'][:-4]  # NeRF-synthetic paths omit the suffix
    (variants['angles'] / 'transforms.json').write_text(json.dumps(content))
    for name, folder in variants.items():
        sample = TransformsJSONDataset(folder, view_sampler=evaluation(root), near=NEAR, far=FAR)[0]
        for part in ('context', 'target'):
            assert_same_views(sample[part], reference[part], f'{name} {part}')


def test_transforms_json_converts_opengl_poses_to_opencv(tmp_path):
    write_images(tmp_path / 'images', jpeg_bytes(torch.rand(1, 3, 8, 8)))
    looking_down_x = [[0, 0, -1, 2], [0, 1, 0, 3], [1, 0, 0, 4], [0, 0, 0, 1]]  # OpenGL: camera -z = world +x
    (tmp_path / 'transforms.json').write_text(json.dumps({'fl_x': 8, 'w': 8, 'h': 8, 'frames': [
        {'file_path': 'images/frame_00000.jpg', 'transform_matrix': looking_down_x}]}))
    scene = read_transforms_json(tmp_path)
    c2w = scene.extrinsics[0]
    assert torch.allclose(c2w[:3, 2], torch.tensor([1.0, 0.0, 0.0]))   # OpenCV +z looks along world +x
    assert torch.allclose(c2w[:3, 1], torch.tensor([0.0, -1.0, 0.0]))  # OpenCV +y (down) = OpenGL -y
    assert torch.allclose(c2w[:3, 3], torch.tensor([2.0, 3.0, 4.0]))
    assert scene.cameras[0].fy == scene.cameras[0].fx == 8 and scene.cameras[0].cx == 4


LENSES = [('opencv', (-0.25, 0.06, 0.004, -0.003), 'OPENCV'), ('opencv', (-0.2,), 'SIMPLE_RADIAL'),
          ('opencv', (-0.2, 0.05), 'RADIAL'), ('fisheye', (0.1, -0.05, 0.01, 0.0), 'OPENCV_FISHEYE'),
          ('opencv', (-0.2, 0.05, 0.001, 0.002, 0.01, 0.02, 0.01, 0.005), 'FULL_OPENCV')]


@pytest.mark.parametrize('model, coefficients, colmap_model', LENSES)
def test_distorted_images_are_undistorted_onto_the_pinhole(tmp_path, model, coefficients, colmap_model):
    """A smooth pattern seen through a distorting lens, read through COLMAP and transforms.json,
    matches the pattern seen by the pinhole with the same intrinsics (to within 8-bit rounding and
    resampling, far below the half-pixel level)."""
    h, w = 36, 48
    single_focal = colmap_model in ('SIMPLE_RADIAL', 'RADIAL')
    fx, fy, cx, cy = 40.0, 40.0 if single_focal else 41.0, 25.3, 17.1
    cv_coefficients = coefficients + (0.0,) * (4 - len(coefficients)) if len(coefficients) < 4 else coefficients
    distorted = distorted_pattern(h, w, fx, fy, cx, cy, model, cv_coefficients)
    pinhole = pinhole_pattern(h, w, fx, fy, cx, cy)
    half_pixel_off = pinhole_pattern(h, w, fx, fy, cx + 0.5, cy + 0.5)
    images = png_bytes(distorted[None])
    extrinsics = torch.eye(4)[None]
    intrinsics = torch.tensor([[[fx / w, 0, cx / w], [0, fy / h, cy / h], [0, 0, 1]]])

    sources = {}
    if colmap_model in ('OPENCV', 'OPENCV_FISHEYE'):
        k1, k2, third, fourth = coefficients
        lens = (dict(k1=k1, k2=k2, k3=third, k4=fourth) if model == 'fisheye'
                else dict(k1=k1, k2=k2, p1=third, p2=fourth))
        write_images(tmp_path / 'transforms' / 'images', images, names=['frame_00000.png'])
        frame = {'file_path': 'images/frame_00000.png', 'transform_matrix': torch.eye(4).tolist()}
        (tmp_path / 'transforms' / 'transforms.json').write_text(json.dumps(dict(
            camera_model=colmap_model, fl_x=fx, fl_y=fy, cx=cx, cy=cy, w=w, h=h, **lens, frames=[frame])))
        sources['transforms'] = ImageFileSource([read_transforms_json(tmp_path / 'transforms')])
    params = ((fx, cx, cy) if single_focal else (fx, fy, cx, cy)) + coefficients
    write_colmap(tmp_path / 'colmap', images, extrinsics, torch.zeros(0, 3, dtype=torch.float64),
                 (colmap_model, w, h, params), binary=True, names=['frame_00000.png'])
    sources['colmap'] = ImageFileSource([read_colmap_scene(tmp_path / 'colmap')[0]])

    inner = (slice(None), slice(4, -4), slice(4, -4))  # pixels whose source lies inside the distorted image
    raw_error = (distorted - pinhole)[inner].abs().mean()
    for name, source in sources.items():
        key = source.keys[0]
        assert torch.allclose(source.cameras(key)[1], intrinsics, atol=1e-6), name
        undistorted = source.images(key, [0])[0]
        error = (undistorted - pinhole)[inner].abs().mean()
        assert error < 0.006 and error < 0.1 * raw_error, (name, float(error), float(raw_error))
        assert error < 0.5 * (undistorted - half_pixel_off)[inner].abs().mean(), name


def test_video_source_samples_frames_at_equal_intervals(scene):
    root, recording = scene
    dataset = VideoDataset(root / 'videos', view_sampler=dict(type='fixed', context=[0, 4], target=[0, 1, 2, 3, 4]),
                           num_frames=5, near=NEAR, far=FAR)
    frames = [0, 2, 4, 7, 9]  # 5 of 10 at equal intervals of 9 / 4
    assert dataset.source.videos[KEY].frames == frames
    assert dataset.source.url(KEY) == 'https://example.com/video'
    sample = dataset[0]
    assert torch.allclose(sample['target']['extrinsics'], recording.extrinsics[frames], atol=2e-5)
    assert torch.allclose(sample['target']['intrinsics'], recording.intrinsics[frames], atol=1e-6)
    error = (sample['target']['image'] - recording.images[frames]).abs().mean(dim=(1, 2, 3))
    shifted = (sample['target']['image'][1:] - recording.images[frames][:-1]).abs().mean(dim=(1, 2, 3))
    assert error.max() < 0.06 and (error[1:] < shifted).all()  # H.264 is lossy, but each frame is the right one


@pytest.mark.parametrize('width', [16, 24, 40])
def test_video_frames_decode_at_widths_where_decord_pads_rows(tmp_path, width):
    """decord 0.6 folds row padding into extra channels at widths 16 and 24 (not 40)."""
    frames = torch.nn.functional.interpolate(torch.rand(3, 3, 3, 3, generator=torch.Generator().manual_seed(width)),
                                             size=(16, width), mode='bilinear', align_corners=True)
    save_video(tmp_path / 'clip.mp4', frames, quality=10)
    decoded = read_video_frames(tmp_path / 'clip.mp4', [2, 0])
    assert decoded.shape == (2, 3, 16, width)
    assert (decoded - frames[[2, 0]]).abs().mean() < 0.04 < (decoded - frames[[0, 2]]).abs().mean()


def test_video_shorter_than_the_frames_asked_for_is_an_error(scene):
    root, _ = scene
    with pytest.raises(ValueError, match=r'room.mp4: has 10 frames, fewer than the 49 frames asked for'):
        VideoDataset(root / 'videos', view_sampler=dict(type='fixed', context=[0, 1], target=[0]), num_frames=49)


def test_video_without_poses_is_an_error(scene, tmp_path):
    root, _ = scene
    (tmp_path / 'clip.mp4').write_bytes((root / 'videos' / f'{KEY}.mp4').read_bytes())
    with pytest.raises(FileNotFoundError, match='clip.txt does not exist'):
        VideoDataset(tmp_path, view_sampler=dict(type='fixed', context=[0, 1], target=[0]), num_frames=5)


def test_image_pair_with_cameras_matches_the_chunk_context(scene, tmp_path):
    root, recording = scene
    jpegs = jpeg_bytes(recording.images)
    last = SPEC.frames - 1
    write_images(tmp_path / KEY, [jpegs[0], jpegs[last]], names=['a.jpg', 'b.jpg'])
    cameras = {'intrinsics': recording.intrinsics[0].tolist(), 'extrinsics': recording.extrinsics[[0, last]].tolist()}
    (tmp_path / KEY / 'cameras.json').write_text(json.dumps(cameras))
    dataset = ImagePairDataset(tmp_path / KEY, near=NEAR, far=FAR)
    reference = RE10KDataset(root / 'chunks', 'test', near=NEAR, far=FAR)[0]['context']
    sample = dataset[0]
    assert dataset.reports == {} and sample['context']['index'].tolist() == [0, 1]
    assert_same_views(sample['context'], {**reference, 'index': torch.tensor([0, 1])}, 'pair context')
    assert torch.equal(sample['target']['image'], sample['context']['image'])


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_image_pair_without_cameras_estimates_the_relative_pose(tmp_path):
    spec = SyntheticSpec(num_scenes=1, frames=40, height=120, width=160, num_eval_targets=3, seed=2, mean_step=0.03)
    recording = render_scene(spec, 0)
    first, last = 0, spec.frames - 1
    write_images(tmp_path / 'pair', jpeg_bytes(recording.images[[first, last]]), names=['0.jpg', '1.jpg'])
    (tmp_path / 'pair' / 'cameras.json').write_text(json.dumps({'intrinsics': recording.intrinsics[0].tolist()}))
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        dataset = ImagePairDataset(tmp_path / 'pair')
    finally:
        logger.removeHandler(records)
    report = dataset.reports['pair']
    assert report.pose_inliers >= 20
    assert report.model == 'essential' and report.confidence >= 0.9
    assert any(report.summary() in message for message in records.messages)
    context = dataset[0]['context']
    truth = torch.linalg.inv(recording.extrinsics[first].double()) @ recording.extrinsics[last].double()
    estimate = context['extrinsics'].double()
    assert torch.allclose(estimate[0], torch.eye(4, dtype=torch.float64), atol=1e-6)
    angle = so3_log(estimate[1, :3, :3].T @ truth[:3, :3]).norm()
    direction = torch.nn.functional.cosine_similarity(estimate[1, :3, 3], truth[:3, 3], dim=0)
    assert math.degrees(angle) < 2.0 and math.degrees(math.acos(min(1.0, float(direction)))) < 5.0
    assert abs(float(estimate[1, :3, 3].norm()) - 1.0) < 1e-5  # unit baseline


def test_unmatchable_pair_is_refused_naming_the_files(tmp_path):
    textured = torch.rand(3, 64, 64, generator=torch.Generator().manual_seed(0))
    write_images(tmp_path / 'pair', jpeg_bytes(torch.stack([textured, torch.full((3, 64, 64), 0.5)])),
                 names=['left.jpg', 'right.jpg'])
    with pytest.raises(PoseEstimationError, match=r"left\.jpg' and '.*right\.jpg'"):
        ImagePairDataset(tmp_path / 'pair')


def test_converted_scenes_read_back_identically(scene, tmp_path):
    """transforms.json and COLMAP scenes converted to chunks read back with the same cameras and
    the same (passed-through) JPEG images."""
    root, _ = scene
    datasets = build_all(root)
    for name in ('transforms', 'colmap binary'):
        out = tmp_path / name.replace(' ', '_')
        convert_to_chunks(datasets[name].source, out, 'test', num_eval_targets=3)
        converted = RE10KDataset(out, 'test', near=NEAR, far=FAR)
        original, again = datasets[name][0], converted[0]
        for part in ('context', 'target'):
            assert_same_views(again[part], original[part], f'{name} {part}')
        index = json.loads((out / 'evaluation_index_test.json').read_text())
        assert index == {KEY: {'context': [0, SPEC.frames - 1], 'target': [2, 4, 7]}}
