"""Every bad input a user can hand videoscene, in one table: each is refused at the boundary that
reads it with the project's own exception type and a message that names the input (file, frame,
argument or tensor), or, for corrupt stored data, skipped with a warning naming the file and counted.

A case is ``(id, action, expected, pattern)``: ``action(tmp_path, recording)`` does what a user
would do; ``expected`` is the exception type (or ``SKIPPED`` / ``REFUSED_BY_ARGPARSE``);
``pattern`` is a regex the message must match, where ``{tmp}`` stands for the escaped ``tmp_path``.
"""
from __future__ import annotations

import functools
import importlib.util
import json
import logging
import math
import os.path as osp
import re
import struct

import cv2
import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

from _scene_writers import jpeg_bytes, pixel_intrinsics, write_colmap, write_images, write_pose_file, write_transforms
from videoscene.camera_paths import GroundTruthPath, InterpolatedPath
from videoscene.datasets import COLMAPDataset, ImagePairDataset, RE10KDataset, TransformsJSONDataset, VideoDataset
from videoscene.datasets import chunks
from videoscene.datasets.synthetic import SyntheticSpec, render_scene
from videoscene.errors import CameraError, InputError
from videoscene.geometry.pose_estimation import PoseEstimationError, estimate_relative_pose
from videoscene.reconstructors.depth_unprojection import DepthUnprojection
from videoscene.reconstructors.mvsplat import MVSplat
from videoscene.renderers.torch_renderer import TorchRenderer
from videoscene.structures import Gaussians
from videoscene.visualization import save_video

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
_SPEC = importlib.util.spec_from_file_location('convert_scenes', osp.join(REPO, 'tools', 'convert_scenes.py'))
convert_scenes = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(convert_scenes)

SPEC = SyntheticSpec(num_scenes=1, frames=6, height=16, width=24, num_eval_targets=2)
SAMPLER = dict(type='fixed', context=[0, 5], target=[2, 3])
SKIPPED = 'skipped and counted'
REFUSED_BY_ARGPARSE = 'refused by argparse'


@pytest.fixture(scope='module')
def recording():
    return render_scene(SPEC, 0)


# ----------------------------------------------------------------------------- writers of bad inputs

def transforms_scene(tmp_path, recording, edit=None):
    """``{tmp}/room/transforms.json`` with frame ``images/frame_0000i.jpg``; ``edit(content)`` changes it."""
    folder = write_transforms(tmp_path / 'room', jpeg_bytes(recording.images), recording.extrinsics,
                              recording.intrinsics, SPEC.height, SPEC.width)
    if edit is not None:
        content = json.loads((folder / 'transforms.json').read_text())
        edit(content)
        (folder / 'transforms.json').write_text(json.dumps(content))
    return folder


def frame_matrix(index: int, change):
    """An edit of frame ``index``'s transform_matrix (a numpy array ``m`` changed in place by ``change(m)``)."""
    def edit(content):
        matrix = np.array(content['frames'][index]['transform_matrix'])
        change(matrix)
        content['frames'][index]['transform_matrix'] = matrix.tolist()
    return edit


def read_transforms_file(text: str):
    def action(tmp_path, recording):
        folder = transforms_scene(tmp_path, recording)
        (folder / 'transforms.json').write_text(text)
        return TransformsJSONDataset(folder, view_sampler=SAMPLER)
    return action


def read_transforms(edit):
    return lambda tmp_path, recording: TransformsJSONDataset(transforms_scene(tmp_path, recording, edit),
                                                             view_sampler=SAMPLER)


def colmap_scene(tmp_path, recording, binary=False, camera=None):
    h, w = SPEC.height, SPEC.width
    camera = camera or ('PINHOLE', w, h, pixel_intrinsics(recording.intrinsics[0], h, w))
    points = torch.tensor([[0.0, 0.0, 3.0], [0.5, 0.2, 4.0], [-0.5, 0.1, 5.0]], dtype=torch.float64)
    return write_colmap(tmp_path / 'scene', jpeg_bytes(recording.images), recording.extrinsics, points, camera,
                        binary=binary)


def edit_text(path, old_pattern: str, new: str) -> None:
    text = path.read_text()
    changed = re.sub(old_pattern, new, text, count=1, flags=re.MULTILINE)
    assert changed != text, f'{old_pattern} not in {path}'
    path.write_text(changed)


def read_colmap_with(edit, binary=False, camera=None):
    def action(tmp_path, recording):
        folder = colmap_scene(tmp_path, recording, binary, camera)
        edit(folder / 'sparse' / '0')
        return COLMAPDataset(folder, view_sampler=SAMPLER, near=0.5, far=20.0)
    return action


def zero_quaternion_txt(model):
    edit_text(model / 'images.txt', r'^4 \S+ \S+ \S+ \S+ ', '4 0.0 0.0 0.0 0.0 ')


def zero_quaternion_bin(model):
    path = model / 'images.bin'
    data = bytearray(path.read_bytes())
    offset = 8  # count, then per image: id (int32), 7 doubles, camera id, name\0, 2D points
    for _ in range(3):  # skip images 1-3
        offset += 4 + 56 + 4
        offset = data.index(b'\x00', offset) + 1
        offset += 8 + 24 * struct.unpack_from('<Q', data, offset)[0]
    struct.pack_into('<4d', data, offset + 4, 0.0, 0.0, 0.0, 0.0)
    path.write_bytes(bytes(data))


def chunk_root(tmp_path, recording, damage=None, scenes='abcd'):
    """Four scenes ``a b c d`` in two chunks (``000000.torch``: a, b; ``000001.torch``: c, d), with an
    evaluation index; ``damage(root)`` spoils something afterwards."""
    examples = [chunks.encode_example(key, jpeg_bytes(recording.images), recording.extrinsics, recording.intrinsics)
                for key in scenes]
    chunks.write_dataset(tmp_path / 'data', 'test', examples, num_eval_targets=2, scenes_per_chunk=2)
    if damage is not None:
        damage(tmp_path / 'data')
    return tmp_path / 'data'


def read_chunks(damage, **options):
    return lambda tmp_path, recording: RE10KDataset(chunk_root(tmp_path, recording, damage), 'test',
                                                    **{'view_sampler': SAMPLER, **options})


def rewrite_chunk(name, change):
    """Replace chunk ``name``'s scene list by ``change(scenes)``."""
    def damage(root):
        path = root / 'test' / name
        path.write_bytes(b'') if change is None else torch.save(change(torch.load(path)), path)
    return damage


def edit_index(entry_of_a):
    def damage(root):
        path = root / 'evaluation_index_test.json'
        index = json.loads(path.read_text())
        index['a'] = entry_of_a
        path.write_text(json.dumps(index))
    return damage


def two_scenes_one_with(damage):
    """transforms.json scenes ``room`` (damaged) and ``other``."""
    def action(tmp_path, recording):
        room = transforms_scene(tmp_path, recording)
        damage(room)
        other = write_transforms(tmp_path / 'other', jpeg_bytes(recording.images), recording.extrinsics,
                                 recording.intrinsics, SPEC.height, SPEC.width)
        return TransformsJSONDataset([room, other], view_sampler=SAMPLER)
    return action


def sample_first(make):
    def action(tmp_path, recording):
        return make(tmp_path, recording)[0]
    return action


def pose_file_with(line_edit):
    def action(tmp_path, recording):
        folder = tmp_path / 'videos'
        folder.mkdir()
        save_video(folder / 'clip.mp4', recording.images, fps=30.0, quality=10)
        timestamps = torch.arange(len(recording.images), dtype=torch.int64) * 33_333
        path = write_pose_file(folder / 'clip.txt', recording.extrinsics, recording.intrinsics, timestamps)
        lines = path.read_text().splitlines()
        lines[3] = line_edit(lines[3])
        path.write_text('\n'.join(lines) + '\n')
        return VideoDataset(folder, view_sampler=SAMPLER, num_frames=None)
    return action


def identical_timestamps(tmp_path, recording):
    """11 copies of frame 0 in a video whose pose file gives them all the timestamp 0."""
    folder = tmp_path / 'videos'
    folder.mkdir()
    save_video(folder / 'clip.mp4', recording.images[[0] * 11], fps=30.0, quality=10)
    write_pose_file(folder / 'clip.txt', recording.extrinsics[[0] * 11], recording.intrinsics[[0] * 11],
                    torch.zeros(11, dtype=torch.int64))
    return VideoDataset(folder, view_sampler=SAMPLER, num_frames=None)


def replace_field(index: int, value: str):
    def edit(line: str) -> str:
        fields = line.split()
        fields[index] = value
        return ' '.join(fields)
    return edit


# ----------------------------------------------------------------------------- tensors handed to models

def context(batch: int = 1, size: int = 32, dtype=torch.float32) -> dict:
    """Two valid context views: smooth images, camera 1 moved 0.3 sideways."""
    generator = torch.Generator().manual_seed(0)
    coarse = torch.rand(batch * 2, 3, size // 8, size // 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode='bilinear').reshape(batch, 2, 3, size, size)
    extrinsics = torch.eye(4).repeat(batch, 2, 1, 1)
    extrinsics[:, 1, 0, 3] = 0.3
    intrinsics = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]]).repeat(batch, 2, 1, 1)
    views = {'image': images, 'extrinsics': extrinsics, 'intrinsics': intrinsics, 'near': torch.ones(batch, 2),
             'far': torch.full((batch, 2), 100.0), 'depth': torch.full((batch, 2, size, size), 3.0)}
    return {key: value.to(dtype) for key, value in views.items()}


def changed(key: str, change, **context_options) -> dict:
    views = context(**context_options)
    views[key] = views[key].clone()
    change(views[key])
    return views


_TINY_MVSPLAT = {}


def mvsplat(views):
    def action(tmp_path, recording):
        if 'model' not in _TINY_MVSPLAT:
            _TINY_MVSPLAT['model'] = MVSplat(num_depth_candidates=8, costvolume_unet_feat_dim=32, depth_unet_feat_dim=32,
                                             feature_channels=32, num_transformer_layers=1).eval()
        with torch.no_grad():
            _TINY_MVSPLAT['model'](views() if callable(views) else views)
    return action


def render(**cameras):
    def action(tmp_path, recording):
        gaussians = Gaussians(means=torch.tensor([[[0.0, 0.0, 3.0]]]), covariances=0.01 * torch.eye(3)[None, None],
                              harmonics=torch.zeros(1, 1, 3, 1), opacities=torch.ones(1, 1))
        views = {**{key: value[:, :1] for key, value in context().items()}, **cameras}
        TorchRenderer().render(gaussians, views['extrinsics'], views['intrinsics'], (8, 8), views['near'], views['far'])
    return action


def mirrored(m):
    m[:3, 0] *= -1


def scaled(m):
    m[:3, :3] *= 2


# ----------------------------------------------------------------------------- pose estimation inputs

@functools.lru_cache(maxsize=1)
def photos():
    """A 96 x 128 walk of 24 frames: large enough for SIFT to find matches."""
    return render_scene(SyntheticSpec(num_scenes=1, frames=24, height=96, width=128, num_eval_targets=2, seed=2,
                                      mean_step=0.03), 0)


def estimated_pair(second, intrinsics=None):
    def action(tmp_path, recording):
        estimate_relative_pose(photos().images[0], second(photos()), intrinsics, names=('left.jpg', 'right.jpg'))
    return action


def image_pair(jpegs_of, cameras=None):
    def action(tmp_path, recording):
        folder = tmp_path / 'pair'
        write_images(folder, jpegs_of(photos()), names=['left.jpg', 'right.jpg'])
        if cameras is not None:
            (folder / 'cameras.json').write_text(json.dumps(cameras(photos())))
        return ImagePairDataset(folder)
    return action


def convert(*arguments):
    return lambda tmp_path, recording: convert_scenes.parse_args(['transforms', str(tmp_path), '--out',
                                                                  str(tmp_path / 'out'), *arguments])


CASES = [
    # transforms.json cameras (Found 7)
    ('transforms all-zero rotation', read_transforms(frame_matrix(2, lambda m: m.__setitem__((slice(0, 3), slice(0, 3)), 0))),
     CameraError, r'{tmp}/room/transforms\.json, frame images/frame_00002\.jpg: the rotation block .* is singular'),
    ('transforms scaled rotation', read_transforms(frame_matrix(1, scaled)),
     CameraError, r'transforms\.json, frame images/frame_00001\.jpg: the rotation block is scaled by 2'),
    ('transforms mirrored rotation', read_transforms(frame_matrix(3, mirrored)),
     CameraError, r'transforms\.json, frame images/frame_00003\.jpg: the rotation block is mirrored \(det = -1'),
    ('transforms bad last row', read_transforms(frame_matrix(0, lambda m: m.__setitem__((3, 2), 1.0))),
     CameraError, r'frame images/frame_00000\.jpg: the last row of the 4x4 extrinsics is \[0\.0, 0\.0, 1\.0, 1\.0\]'),
    ('transforms NaN translation', read_transforms(frame_matrix(4, lambda m: m.__setitem__((0, 3), math.nan))),
     CameraError, r'frame images/frame_00004\.jpg: non-finite extrinsics'),
    ('transforms camera_angle_x 0', read_transforms(lambda c: (c.pop('fl_x'), c.pop('fl_y'), c.update(camera_angle_x=0))),
     InputError, r'{tmp}/room/transforms\.json, frame images/frame_00000\.jpg: camera_angle_x must lie in \(0, pi\) '
                 r'radians, got 0'),
    ('transforms camera_angle_x 4', read_transforms(lambda c: (c.pop('fl_x'), c.pop('fl_y'), c.update(camera_angle_x=4))),
     InputError, r'camera_angle_x must lie in \(0, pi\) radians, got 4'),
    ('transforms matrix "identity"', read_transforms(lambda c: c['frames'][2].update(transform_matrix='identity')),
     InputError, r"frame images/frame_00002\.jpg: transform_matrix must be a 4x4 or 3x4 list of numbers, got 'identity'"),
    ('transforms 2x2 matrix', read_transforms(lambda c: c['frames'][2].update(transform_matrix=[[1, 0], [0, 1]])),
     InputError, r'frame images/frame_00002\.jpg: transform_matrix must be a 4x4 or 3x4 list of numbers, got '
                 r'\[\[1, 0\], \[0, 1\]\]'),
    ('transforms negative fl_x', read_transforms(lambda c: c.update(fl_x=-20.0)),
     CameraError, r'frame images/frame_00000\.jpg: focal lengths must be positive'),
    ('transforms w "wide"', read_transforms(lambda c: c.update(w='wide')),
     InputError, r'frame images/frame_00000\.jpg: w and h must be positive integers \(pixels\), got w=.wide.'),
    ('transforms not JSON', read_transforms_file('{"frames": ['),
     InputError, r'{tmp}/room/transforms\.json: not valid JSON'),
    ('transforms frame without file_path', read_transforms(lambda c: c['frames'][1].pop('file_path')),
     InputError, r"{tmp}/room/transforms\.json: frame 1 needs 'file_path' and 'transform_matrix'"),

    # COLMAP models (Found 7)
    ('COLMAP text zero quaternion', read_colmap_with(zero_quaternion_txt),
     CameraError, r'{tmp}/scene/sparse/0/images\.txt, image 4 \(frame_00003\.jpg\): zero or non-finite quaternion'),
    ('COLMAP binary zero quaternion', read_colmap_with(zero_quaternion_bin, binary=True),
     CameraError, r'{tmp}/scene/sparse/0/images\.bin, image 4 \(frame_00003\.jpg\): zero or non-finite quaternion'),
    ('COLMAP images.txt short line', read_colmap_with(lambda m: edit_text(m / 'images.txt', r'^2 (\S+ ){7}', '2 1 0 ')),
     InputError, r'{tmp}/scene/sparse/0/images\.txt, line \d+: expected IMAGE_ID QW QX QY QZ TX TY TZ CAMERA_ID NAME'),
    ('COLMAP cameras.txt text for a number', read_colmap_with(lambda m: edit_text(m / 'cameras.txt', r'PINHOLE (\d+) (\d+) \S+',
                                                                                   r'PINHOLE \1 \2 abc')),
     InputError, r'{tmp}/scene/sparse/0/cameras\.txt, line \d+: .*abc'),
    ('COLMAP cameras.txt parameter count', read_colmap_with(lambda m: edit_text(m / 'cameras.txt', r'(PINHOLE .*)$', r'\1 7.0')),
     InputError, r'cameras\.txt, camera 1: a PINHOLE camera has 4 parameters, got 5'),
    ('COLMAP unknown camera id', read_colmap_with(lambda m: edit_text(m / 'images.txt', r'^(3 (?:\S+ ){7})1 ', r'\g<1>7 ')),
     InputError, r'{tmp}/scene/sparse/0: image frame_00002\.jpg refers to camera 7'),
    ('COLMAP truncated images.bin', read_colmap_with(lambda m: (m / 'images.bin').write_bytes((m / 'images.bin').read_bytes()[:-30]),
                                                     binary=True),
     InputError, r'{tmp}/scene/sparse/0/images\.bin: ends early'),
    ('COLMAP FOV camera', read_colmap_with(lambda m: None, camera=('FOV', 24, 16, (20.0, 20.0, 12.0, 8.0, 0.9))),
     InputError, r'{tmp}/scene/sparse/0: COLMAP camera 1 uses the FOV model'),
    ('COLMAP zero focal length', read_colmap_with(lambda m: None, camera=('PINHOLE', 24, 16, (0.0, 20.0, 12.0, 8.0))),
     CameraError, r'{tmp}/scene/sparse/0/cameras\.txt, camera 1: focal lengths must be positive'),

    # evaluation indices and dataset arguments (Found 7)
    ('evaluation frame 5.7', read_chunks(edit_index({'context': [0, 5], 'target': [2, 5.7]}), view_sampler=None),
     InputError, r"evaluation index {tmp}/data/evaluation_index_test\.json: entry of 'a': frames must be non-negative "
                 r'integers, got 5\.7'),
    ('evaluation frame "3"', read_chunks(edit_index({'context': [0, 5], 'target': ['3']}), view_sampler=None),
     InputError, r"evaluation_index_test\.json: entry of 'a': frames must be non-negative integers, got '3'"),
    ('evaluation frame true', read_chunks(edit_index({'context': [0, True], 'target': [2]}), view_sampler=None),
     InputError, r"evaluation_index_test\.json: entry of 'a': frames must be non-negative integers, got True"),
    ('evaluation frame -1', read_chunks(edit_index({'context': [0, 5], 'target': [-1]}), view_sampler=None),
     InputError, r"evaluation_index_test\.json: entry of 'a': frames must be non-negative integers, got -1"),
    ('evaluation three context frames', read_chunks(edit_index({'context': [0, 2, 5], 'target': [1]}), view_sampler=None),
     InputError, r"evaluation_index_test\.json: entry of 'a' must be \{\"context\": \[a, b\]"),
    ('evaluation frame beyond the scene', sample_first(read_chunks(edit_index({'context': [0, 5], 'target': [99]}),
                                                                   view_sampler=None)),
     InputError, r"evaluation index {tmp}/data/evaluation_index_test\.json: scene 'a' has 6 frames; frames \[0, 5, 99\] "
                 r'reach outside them'),
    ('evaluation index not JSON', read_chunks(lambda root: (root / 'evaluation_index_test.json').write_text('{'),
                                              view_sampler=None),
     InputError, r'evaluation index {tmp}/data/evaluation_index_test\.json: not valid JSON'),
    ('image_shape (-4, 8)', read_chunks(None, image_shape=(-4, 8)),
     InputError, r'image_shape: must be two positive integers \(height, width\), got \(-4, 8\)'),
    ('image_shape (16.5, 8)', read_chunks(None, image_shape=(16.5, 8)),
     InputError, r'image_shape: must be two positive integers \(height, width\), got \(16\.5, 8\)'),
    ('near 0', read_chunks(None, near=0.0, far=10.0),
     InputError, r'near/far: need 0 < near < far'),
    ('flip_probability 1.5', read_chunks(None, flip_probability=1.5),
     InputError, r'flip_probability: must lie in \[0, 1\], got 1\.5'),

    # chunks (Found 6): corrupt data is skipped, a malformed index refused
    ('truncated chunk', read_chunks(lambda root: (root / 'test' / '000000.torch').write_bytes(
        (root / 'test' / '000000.torch').read_bytes()[:300])),
     SKIPPED, r'{tmp}/data/test/000000\.torch'),
    ('text file as a chunk', read_chunks(lambda root: (root / 'test' / '000000.torch').write_text('hello, not a chunk\n')),
     SKIPPED, r'{tmp}/data/test/000000\.torch'),
    ('empty chunk file', read_chunks(rewrite_chunk('000000.torch', None)),
     SKIPPED, r'{tmp}/data/test/000000\.torch'),
    ('chunk holding a dict', read_chunks(rewrite_chunk('000000.torch', lambda scenes: {'a': 1})),
     SKIPPED, r'{tmp}/data/test/000000\.torch'),
    ('chunk scene without cameras', read_chunks(rewrite_chunk('000000.torch', lambda scenes: [
        {k: v for k, v in scene.items() if k != 'cameras'} for scene in scenes])),
     SKIPPED, r"scene 'a' in {tmp}/data/test/000000\.torch"),
    ('chunk camera rows [N, 17]', read_chunks(rewrite_chunk('000000.torch', lambda scenes: [
        {**scene, 'cameras': scene['cameras'][:, :17]} for scene in scenes])),
     SKIPPED, r"scene 'a' in {tmp}/data/test/000000\.torch"),
    ('zero-byte JPEG in a chunk', read_chunks(rewrite_chunk('000000.torch', lambda scenes: [
        {**scene, 'images': [torch.zeros(0, dtype=torch.uint8)] * len(scene['images'])} for scene in scenes])),
     SKIPPED, r"frame 0 of scene 'a' in {tmp}/data/test/000000\.torch"),
    ('chunk without its listed scene', read_chunks(rewrite_chunk('000000.torch', lambda scenes: scenes[1:])),
     SKIPPED, r"scene 'a' .*{tmp}/data/test/000000\.torch"),
    ('zero-byte image file', two_scenes_one_with(lambda room: (room / 'images' / 'frame_00000.jpg').write_bytes(b'')),
     SKIPPED, r'{tmp}/room/images/frame_00000\.jpg'),
    ('malformed index.json', read_chunks(lambda root: (root / 'test' / 'index.json').write_text('{"a": ')),
     InputError, r'{tmp}/data/test/index\.json: not valid JSON'),
    ('index.json holding a list', read_chunks(lambda root: (root / 'test' / 'index.json').write_text('["a"]')),
     InputError, r'{tmp}/data/test/index\.json: expected a JSON object'),

    # pose estimation (Found 4)
    ('identical images', estimated_pair(lambda r: r.images[0].clone()),
     PoseEstimationError, r"'left\.jpg' and 'right\.jpg': cannot estimate the relative pose"),
    ('unrelated images', estimated_pair(lambda r: render_scene(SyntheticSpec(num_scenes=1, frames=2, height=96, width=128,
                                                                             seed=5), 0).images[0]),
     PoseEstimationError, r"'left\.jpg' and 'right\.jpg': cannot estimate the relative pose"),
    ('mirrored pair', estimated_pair(lambda r: r.images[12].flip(-1)),
     PoseEstimationError, r"'left\.jpg' and 'right\.jpg': cannot estimate the relative pose"),
    ('NaN intrinsics', estimated_pair(lambda r: r.images[5], torch.full((3, 3), math.nan)),
     CameraError, r'intrinsics: non-finite intrinsics'),
    ('pixel-unit intrinsics', estimated_pair(lambda r: r.images[5], torch.tensor([[300.0, 0, 12], [0, 300, 8], [0, 0, 1]])),
     CameraError, r'intrinsics: .*look like pixel units'),
    ('fx = 0 intrinsics', estimated_pair(lambda r: r.images[5], torch.tensor([[0.0, 0, 0.5], [0, 1, 0.5], [0, 0, 1]])),
     CameraError, r'intrinsics: focal lengths must be positive'),
    ('image pair of identical JPEGs', image_pair(lambda r: jpeg_bytes(r.images[[12, 12]])),
     PoseEstimationError, r"'{tmp}/pair/left\.jpg' and '{tmp}/pair/right\.jpg': cannot estimate the relative pose"),
    ('image pair pixel intrinsics', image_pair(lambda r: jpeg_bytes(r.images[[0, 5]]),
                                               lambda r: {'intrinsics': [[300, 0, 64], [0, 300, 48], [0, 0, 1]]}),
     CameraError, r'{tmp}/pair/cameras\.json intrinsics, camera 0: .*look like pixel units'),
    ('image pair mirrored extrinsics', image_pair(lambda r: jpeg_bytes(r.images[[0, 5]]), lambda r: {
        'intrinsics': r.intrinsics[0].tolist(), 'extrinsics': [np.eye(4).tolist(), np.diag([-1.0, 1, 1, 1]).tolist()]}),
     CameraError, r'{tmp}/pair/cameras\.json extrinsics, camera 1: the rotation block is mirrored'),

    # reconstructors (Found 8)
    ('float image in [0, 255]', mvsplat(changed('image', lambda x: x.mul_(255))),
     InputError, r"context\['image'\]: values must lie in \[0, 1\], got \[.*\] \(divide 8-bit images by 255\)"),
    ('fx < 0', mvsplat(changed('intrinsics', lambda x: x[0, 1, 0, 0].neg_())),
     CameraError, r"context\['intrinsics'\] \(batch item 0, view 1\): focal lengths must be positive"),
    ('fx = 0', mvsplat(changed('intrinsics', lambda x: x[0, 0, 0, 0].zero_())),
     CameraError, r"context\['intrinsics'\] \(batch item 0, view 0\): focal lengths must be positive"),
    ('pixel-unit context intrinsics', mvsplat(changed('intrinsics', lambda x: x[:, :, :2].mul_(32))),
     CameraError, r"context\['intrinsics'\] \(batch item 0, view 0\): .*look like pixel units"),
    ('non-rigid extrinsics', mvsplat(changed('extrinsics', lambda x: x[0, 1, :3, :3].mul_(3))),
     CameraError, r"context\['extrinsics'\] \(batch item 0, view 1\): the rotation block is scaled by 3"),
    ('singular rotation', mvsplat(changed('extrinsics', lambda x: x[0, 0, :3, :3].zero_())),
     CameraError, r"context\['extrinsics'\] \(batch item 0, view 0\): the rotation block .* is singular"),
    ('identical context cameras', mvsplat(changed('extrinsics', lambda x: x[0, 1].copy_(x[0, 0]))),
     InputError, r"context\['extrinsics'\] \(batch item 0\): views 0 and 1 have camera centres 0 apart"),
    ('float16 context', mvsplat(lambda: context(dtype=torch.float16)),
     InputError, r"context\['image'\]: dtype torch\.float16 differs from MVSplat's parameters \(torch\.float32\)"),
    ('float64 context', mvsplat(lambda: context(dtype=torch.float64)),
     InputError, r"context\['image'\]: dtype torch\.float64 differs from MVSplat's parameters \(torch\.float32\)"),
    ('batch of 0', mvsplat(lambda: context(batch=0)),
     InputError, r"context\['image'\]: the batch is empty \(B = 0, images \(0, 2, 3, 32, 32\)\)"),
    ('depth unprojection with a mirrored camera',
     lambda tmp_path, recording: DepthUnprojection()(changed('extrinsics', lambda x: mirrored(x[0, 1]))),
     CameraError, r"context\['extrinsics'\] \(batch item 0, view 1\): the rotation block is mirrored"),

    # renderers and camera paths
    ('render from a mirrored camera', render(extrinsics=torch.diag(torch.tensor([-1.0, 1, 1, 1]))[None, None]),
     CameraError, r"cameras\['extrinsics'\] \(batch item 0, view 0\): the rotation block is mirrored"),
    ('render with pixel intrinsics', render(intrinsics=torch.tensor([[[[300.0, 0, 4], [0, 300, 4], [0, 0, 1]]]])),
     CameraError, r"cameras\['intrinsics'\] \(batch item 0, view 0\): .*look like pixel units"),
    ('render with near > far', render(near=torch.full((1, 1), 5.0), far=torch.full((1, 1), 2.0)),
     CameraError, r"cameras\['near'/'far'\] \(batch item 0, view 0\): need finite depth bounds with 0 < near < far"),
    ('interpolate a scaled camera', lambda tmp_path, recording: InterpolatedPath()(
        changed('extrinsics', lambda x: x[0, 0, :3, :3].mul_(1.1)), None, 5),
     CameraError, r"context\['extrinsics'\] \(batch item 0, view 0\): the rotation block is scaled by 1\.1"),
    ('ground truth path with NaN intrinsics', lambda tmp_path, recording: GroundTruthPath()(
        None, changed('intrinsics', lambda x: x[0, 1, 0, 0].fill_(math.nan)), 2),
     CameraError, r"target\['intrinsics'\] \(batch item 0, view 1\): non-finite intrinsics"),

    # convert_scenes.py arguments and videos (Found 9)
    ('--num-eval-targets 0', convert('--num-eval-targets', '0'), REFUSED_BY_ARGPARSE, r'--num-eval-targets: .*at least 1, got 0'),
    ('--num-eval-targets -3', convert('--num-eval-targets', '-3'), REFUSED_BY_ARGPARSE, r'--num-eval-targets: .*at least 1, got -3'),
    ('--jpeg-quality 500', convert('--jpeg-quality', '500'), REFUSED_BY_ARGPARSE, r'--jpeg-quality: .*between 1 and 100, got 500'),
    ('--scenes-per-chunk 0', convert('--scenes-per-chunk', '0'), REFUSED_BY_ARGPARSE, r'--scenes-per-chunk: .*at least 1, got 0'),
    ('--frames 0', convert('--frames', '0'), REFUSED_BY_ARGPARSE, r'--frames: .*at least 1, got 0'),
    ('--eval-context-gap -1', convert('--eval-context-gap', '-1'), REFUSED_BY_ARGPARSE, r'--eval-context-gap: .*at least 2'),
    ('pose file with text for a number', pose_file_with(replace_field(4, 'abc')),
     InputError, r'{tmp}/videos/clip\.txt, line 4: .*abc'),
    ('pose file with a mirrored rotation', pose_file_with(replace_field(7, str(-1.0))),
     CameraError, r'{tmp}/videos/clip\.txt, line 4'),
    ('pose file with 11 identical timestamps', identical_timestamps,
     InputError, r'{tmp}/videos/clip\.txt: 11 posed lines fall on only 1 video frames of {tmp}/videos/clip\.mp4: the '
                 r'timestamps 0 and 0 us'),
]


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.INFO)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def log_records():
    handler = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield handler.records
    logger.removeHandler(handler)


def test_there_are_at_least_40_distinct_bad_inputs():
    names = [case[0] for case in CASES]
    assert len(names) == len(set(names)) >= 40


@pytest.mark.parametrize('name, action, expected, pattern', CASES, ids=[case[0] for case in CASES])
def test_bad_input(tmp_path, recording, log_records, capsys, name, action, expected, pattern):
    pattern = pattern.replace('{tmp}', re.escape(str(tmp_path)))
    if expected is SKIPPED:
        dataset = action(tmp_path, recording)
        sample = dataset[0]  # item 0 is bad: a later one is served (scenes in the same bad chunk are skipped too)
        skipped = dataset.skipped
        assert sample['scene'] != dataset.scenes[0] and skipped >= 1
        warnings = [r.getMessage() for r in log_records if r.levelno >= logging.WARNING]
        assert len(warnings) == 1 and re.search(pattern, warnings[0]), warnings
        assert 'skipped item 0' in warnings[0] and '1 examples skipped so far' in warnings[0]
        assert dataset[0]['scene'] == sample['scene']  # the same bad file again: counted, not warned about again
        assert dataset.skipped == 2 * skipped
        assert len([r for r in log_records if r.levelno >= logging.WARNING]) == 1
    elif expected is REFUSED_BY_ARGPARSE:
        with pytest.raises(SystemExit) as exit_info:
            action(tmp_path, recording)
        assert exit_info.value.code == 2
        assert re.search(pattern, capsys.readouterr().err)
    else:
        with pytest.raises(expected) as error_info:
            action(tmp_path, recording)
        assert type(error_info.value) is expected, f'{type(error_info.value).__name__}: {error_info.value}'
        assert re.search(pattern, str(error_info.value)), str(error_info.value)


def test_failed_conversion_leaves_no_output_folder(tmp_path, recording):
    """A conversion that fails before writing (a frame with a mirrored camera, a missing scene) or
    while writing (an image that does not decode) leaves neither an empty --out nor a hidden
    .partial folder behind."""
    room = transforms_scene(tmp_path, recording, frame_matrix(2, mirrored))
    out = tmp_path / 'new' / 'out'
    with pytest.raises(CameraError, match='frame_00002.jpg'):
        convert_scenes.main(['transforms', str(room), '--out', str(out)])
    with pytest.raises(FileNotFoundError):
        convert_scenes.main(['colmap', str(tmp_path / 'nowhere'), '--out', str(out)])
    fine = write_transforms(tmp_path / 'fine', jpeg_bytes(recording.images), recording.extrinsics,
                            recording.intrinsics, SPEC.height, SPEC.width)
    (fine / 'images' / 'frame_00004.jpg').write_bytes(b'\xff\xd8 truncated')
    with pytest.raises(chunks.CorruptImageError, match=r'fine/images/frame_00004\.jpg: truncated JPEG'):
        convert_scenes.main(['transforms', str(fine), '--out', str(out), '--scenes-per-chunk', '1'])
    assert sorted(p.name for p in tmp_path.iterdir()) == ['fine', 'room']  # no new/, no .partial


def test_failed_write_keeps_an_existing_out_and_leaves_no_partial(tmp_path, recording):
    out = tmp_path / 'out'
    out.mkdir()
    (out / 'notes.txt').write_text('mine')

    def failing():
        yield chunks.encode_example('a', recording.images, recording.extrinsics, recording.intrinsics)
        raise RuntimeError('source failed')

    with pytest.raises(RuntimeError, match='source failed'):
        chunks.write_dataset(out, 'test', failing(), num_eval_targets=2, scenes_per_chunk=1)
    assert sorted(p.name for p in out.iterdir()) == ['notes.txt']


def test_transparent_rgba_image_warns_naming_the_file(tmp_path, recording, log_records):
    folder = transforms_scene(tmp_path, recording)
    path = folder / 'images' / 'frame_00002.png'
    rgba = np.concatenate([np.full((SPEC.height, SPEC.width, 3), 128, np.uint8),
                           np.full((SPEC.height, SPEC.width, 1), 40, np.uint8)], axis=-1)
    cv2.imwrite(str(path), rgba)
    content = json.loads((folder / 'transforms.json').read_text())
    content['frames'][2]['file_path'] = 'images/frame_00002.png'
    (folder / 'transforms.json').write_text(json.dumps(content))
    image = TransformsJSONDataset(folder, view_sampler=dict(type='fixed', context=[0, 5], target=[2]))[0]['target']['image'][0]
    warnings = [r.getMessage() for r in log_records if r.levelno >= logging.WARNING]
    assert any(str(path) in m and 'transparen' in m and 'alpha' in m for m in warnings), warnings
    assert torch.allclose(image, torch.full_like(image, 128 / 255))  # the colour channels, alpha dropped
    opaque = folder / 'images' / 'frame_00003.png'
    cv2.imwrite(str(opaque), np.concatenate([rgba[..., :3], np.full_like(rgba[..., :1], 255)], axis=-1))
    content['frames'][3]['file_path'] = 'images/frame_00003.png'
    (folder / 'transforms.json').write_text(json.dumps(content))
    log_records.clear()
    TransformsJSONDataset(folder, view_sampler=dict(type='fixed', context=[0, 5], target=[3]))[0]
    assert not [r for r in log_records if r.levelno >= logging.WARNING]  # opaque alpha: nothing lost
