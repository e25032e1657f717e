"""tools/infer.py end to end on tiny models ((a)-(d)), and every kind of bad input it must refuse
clearly or convert as documented (videoscene/pipelines/inputs.py)."""
from __future__ import annotations

import importlib.util
import json
import math
import subprocess
import sys

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from videoscene.errors import CameraError, InputError
from videoscene.pipelines.inputs import read_camera_file, read_image, views_from_camera_file
from videoscene.structures import Gaussians

from _pipeline_setup import REPO_ROOT, SIZE, TINY_MVSPLAT, tiny_config
from _scene_writers import pixel_intrinsics, write_colmap, write_transforms

SPEC = importlib.util.spec_from_file_location('infer_tool', REPO_ROOT / 'tools/infer.py')
infer = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(infer)

WIDTH, HEIGHT, SHIFT = 190, 150, 16        # photo size (not a multiple of 16) and crop shift
FX = 0.5 / math.tan(math.radians(30))     # 60 degree horizontal field of view


def camera(x: float) -> list:
    return [[1, 0, 0, x], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]


@pytest.fixture(scope='module')
def config(tmp_path_factory):
    return str(tiny_config(tmp_path_factory.mktemp('infer'), reconstructor=TINY_MVSPLAT))


@pytest.fixture(scope='module')
def photos(tmp_path_factory):
    """Three photos of a textured wall: crops shifted by 16 pixels, as a camera moving right by 1
    per photo sees it, and the camera file of all three."""
    folder = tmp_path_factory.mktemp('photos')
    rng = np.random.default_rng(0)
    wall = cv2.resize((rng.random((HEIGHT // 4, 60, 3)) * 255).astype(np.uint8), (WIDTH + 2 * SHIFT, HEIGHT),
                      interpolation=cv2.INTER_CUBIC)
    for _ in range(80):
        cv2.circle(wall, (int(rng.integers(0, wall.shape[1])), int(rng.integers(0, HEIGHT))),
                   int(rng.integers(3, 14)), tuple(int(c) for c in rng.integers(0, 255, 3)), -1)
    paths = []
    for i in range(3):
        paths.append(folder / f'photo_{i}.jpg')
        cv2.imwrite(str(paths[-1]), wall[:, i * SHIFT:i * SHIFT + WIDTH])
    intrinsics = [[FX, 0, 0.5], [0, FX * WIDTH / HEIGHT, 0.5], [0, 0, 1]]
    (folder / 'cameras.json').write_text(json.dumps(
        {'images': [p.name for p in paths], 'intrinsics': intrinsics, 'extrinsics': [camera(i) for i in range(3)]}))
    (folder / 'pair.json').write_text(json.dumps({'intrinsics': intrinsics, 'extrinsics': [camera(0), camera(1)]}))
    return folder


def run(capsys, *argv) -> tuple[int, str, str]:
    code = infer.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def video_size(path) -> tuple[int, int]:
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    reader.close()
    return tuple(meta['size'])


# ----------------------------------------------------------------------------- (a) - (d)
def test_two_images_with_a_camera_file(config, photos, tmp_path, capsys):
    out = tmp_path / 'a'
    code, stdout, stderr = run(capsys, photos / 'photo_0.jpg', photos / 'photo_1.jpg', '--cameras',
                               photos / 'pair.json', '--config', config, '--policy', 'fixed', '--leap-t', 300,
                               '--out', out)
    assert code == 0, stderr
    frames = sorted((out / 'frames').glob('*.png'))
    assert len(frames) == 9 and read_image(frames[0]).shape == (3, SIZE, SIZE)
    for name in ('generated.mp4', 'render.mp4'):
        assert video_size(out / name) == (SIZE, SIZE)
    assert video_size(out / 'side_by_side.mp4') == (2 * SIZE, SIZE)        # render | generated
    assert Gaussians.load_ply(out / 'gaussians.ply').means.shape == (1, 2 * SIZE * SIZE, 3)
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mode'] == 'images with cameras' and summary['leap_t'] == [300]
    for stage in ('reconstruct', 'render', 'encode', 'denoise', 'decode'):
        assert summary['timings_s'][stage] > 0 and f'{stage} ' in stdout
    assert summary['peak_memory_mib']['cpu_max_rss_mib'] > 100 and 'peak memory' in stdout

    # cameras.json is the camera-file format: it reads back, and the path ends at both inputs
    cameras = read_camera_file(out / 'cameras.json')
    views = views_from_camera_file(cameras.images, cameras, 1.0, 100.0)
    assert len(views) == 9 and views.images.shape[-2:] == (SIZE, SIZE)
    torch.testing.assert_close(views.extrinsics[[0, -1]], torch.tensor([camera(0), camera(1)]).float(),
                               rtol=0, atol=1e-5)
    # the photos were resized to cover 16 x 16 and centre-cropped: the intrinsics follow
    resized_width = round(WIDTH * SIZE / HEIGHT)              # height 150 -> 16, width 190 -> 20
    assert views.intrinsics[0, 0, 0] == pytest.approx(FX * resized_width / SIZE, rel=1e-5)
    assert views.intrinsics[0, 1, 1] == pytest.approx(FX * WIDTH / HEIGHT, rel=1e-5)

    # an existing output folder is refused unless --overwrite
    argv = [photos / 'photo_0.jpg', photos / 'photo_1.jpg', '--cameras', photos / 'pair.json', '--config',
            config, '--policy', 'fixed', '--out', out]
    code, _, stderr = run(capsys, *argv)
    assert code == 2 and 'exists and is not empty; pass --overwrite' in stderr
    (out / 'frames' / '00099.png').write_bytes(b'stale')
    code, _, stderr = run(capsys, *argv, '--overwrite')
    assert code == 0, stderr
    assert len(list((out / 'frames').glob('*.png'))) == 9
    assert json.loads((out / 'summary.json').read_text())['leap_t'] == [549]


def test_two_images_without_cameras_use_the_estimated_pose(config, photos, tmp_path, capsys):
    out = tmp_path / 'b'
    code, stdout, stderr = run(capsys, photos / 'photo_0.jpg', photos / 'photo_1.jpg', '--config', config,
                               '--policy', 'random', '--out', out)
    assert code == 0, stderr
    assert 'SIFT matches' in stdout and 'pose estimation confidence: 1.00' in stdout
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mode'] == 'images, estimated cameras'
    assert summary['pose_estimation']['confidence'] >= 0.5
    extrinsics = torch.tensor(json.loads((out / 'cameras.json').read_text())['extrinsics'])
    # the camera moved right by the baseline (normalised to 1) with no rotation
    torch.testing.assert_close(extrinsics[-1, :3, 3], torch.tensor([1.0, 0.0, 0.0]), rtol=0, atol=0.05)

    rng = np.random.default_rng(1)
    for name in ('noise_0.png', 'noise_1.png'):
        Image.fromarray((rng.random((96, 96, 3)) * 255).astype(np.uint8)).save(tmp_path / name)
    code, _, stderr = run(capsys, tmp_path / 'noise_0.png', tmp_path / 'noise_1.png', '--config', config,
                          '--policy', 'fixed', '--out', tmp_path / 'unreliable')
    assert code == 2 and 'noise_0.png' in stderr and 'cannot estimate the relative pose' in stderr
    assert not (tmp_path / 'unreliable').exists()


def test_a_dataset_scene_with_its_ground_truth(config, tmp_path, capsys):
    out = tmp_path / 'c'
    code, stdout, stderr = run(capsys, '--scene', '1', '--config', config, '--policy', 'fixed', '--out', out)
    assert code == 0, stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mode'] == 'dataset scene' and summary['inputs'][0].startswith('synthetic_test_s0_000001')
    assert set(summary['metrics_vs_ground_truth']) == {'generated', 'render'}
    assert 'render vs ground truth: PSNR' in stdout
    assert video_size(out / 'side_by_side.mp4') == (3 * SIZE, SIZE)        # render | generated | truth
    code, _, stderr = run(capsys, '--scene', 'no_such_scene', '--config', config, '--policy', 'fixed',
                          '--out', tmp_path / 'missing')
    assert code == 2 and "'no_such_scene' is neither a scene key nor an index below 2" in stderr


def test_more_than_two_images_are_chained_into_one_video(config, photos, tmp_path, capsys):
    out = tmp_path / 'd'
    code, stdout, stderr = run(capsys, '--cameras', photos / 'cameras.json', '--config', config,
                               '--policy', 'fixed', '--out', out)
    assert code == 0, stderr
    summary = json.loads((out / 'summary.json').read_text())
    assert summary['mode'] == 'chained clips' and summary['clips'] == 2 and summary['frames'] == 17
    assert len(list((out / 'frames').glob('*.png'))) == 17
    extrinsics = torch.tensor(json.loads((out / 'cameras.json').read_text())['extrinsics'])
    for frame, x in ((0, 0.0), (8, 1.0), (16, 2.0)):       # each input camera once, at the clip bounds
        torch.testing.assert_close(extrinsics[frame], torch.tensor(camera(x)), rtol=0, atol=1e-5)

    code, _, stderr = run(capsys, *[photos / f'photo_{i}.jpg' for i in range(3)], '--config', config,
                          '--out', tmp_path / 'three')
    assert code == 2 and 'pose estimation takes exactly two' in stderr


def test_transforms_json_and_colmap_pose_the_images_as_the_camera_file_does(photos, tmp_path):
    jpegs = [torch.frombuffer(bytearray((photos / f'photo_{i}.jpg').read_bytes()), dtype=torch.uint8)
             for i in range(2)]
    extrinsics = torch.tensor([camera(0), camera(1)]).float()
    intrinsics = torch.tensor(json.loads((photos / 'pair.json').read_text())['intrinsics']).expand(2, 3, 3)
    write_transforms(tmp_path / 'ngp', jpegs, extrinsics, intrinsics, HEIGHT, WIDTH)
    points = torch.rand(200, 3, generator=torch.Generator().manual_seed(0)) * 4 + torch.tensor([-2.0, -2.0, 3.0])
    write_colmap(tmp_path / 'colmap', jpegs, extrinsics, points,
                 ('PINHOLE', WIDTH, HEIGHT, pixel_intrinsics(intrinsics[0], HEIGHT, WIDTH)), binary=False)

    def views(*argv):
        return infer.read_views(infer.parse_args([str(a) for a in argv] + ['--out', 'unused']), (SIZE, SIZE))

    reference, mode, _ = views(photos / 'photo_0.jpg', photos / 'photo_1.jpg', '--cameras', photos / 'pair.json')
    assert mode == 'images with cameras'
    for folder, source in (('ngp', '--transforms'), ('colmap', '--colmap')):
        argument = tmp_path / folder / ('transforms.json' if folder == 'ngp' else '')
        posed, mode, report = views(*sorted((tmp_path / folder / 'images').glob('*.jpg')), source, argument)
        assert mode == 'images with cameras' and report is None
        torch.testing.assert_close(posed.extrinsics, reference.extrinsics, rtol=0, atol=1e-5)
        torch.testing.assert_close(posed.intrinsics, reference.intrinsics, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(posed.images, reference.images)
    assert 0 < float(posed.near[0]) < 3 and float(posed.far[0]) > 7        # COLMAP: from its points
    with pytest.raises(InputError, match='photo_0.jpg: is not a frame of'):
        views(photos / 'photo_0.jpg', photos / 'photo_1.jpg', '--colmap', tmp_path / 'colmap')


# ----------------------------------------------------------------------------- images
def test_image_conversions(tmp_path):
    grey = np.arange(48, dtype=np.uint8).reshape(6, 8) * 5
    Image.fromarray(grey).save(tmp_path / 'grey.png')
    image = read_image(tmp_path / 'grey.png')
    assert image.shape == (3, 6, 8)
    torch.testing.assert_close(image, torch.from_numpy(grey / 255.0).float().expand(3, -1, -1))

    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[...] = (200, 100, 50, 128)
    Image.fromarray(rgba, 'RGBA').save(tmp_path / 'rgba.png')
    expected = torch.tensor([200, 100, 50]) / 255 * (128 / 255)            # over black
    torch.testing.assert_close(read_image(tmp_path / 'rgba.png')[:, 0, 0], expected.float())

    deep = np.array([[0, 32768, 65535]], np.uint16)
    cv2.imwrite(str(tmp_path / 'grey16.png'), deep)
    torch.testing.assert_close(read_image(tmp_path / 'grey16.png')[0, 0],
                               torch.tensor([0, 32768 / 65535, 1.0]).float())
    colour = np.zeros((2, 2, 3), np.uint16)
    colour[..., 2] = 0xABCD                                   # red in OpenCV's BGR order
    cv2.imwrite(str(tmp_path / 'rgb16.png'), colour)
    assert read_image(tmp_path / 'rgb16.png')[:, 0, 0].tolist() == pytest.approx([0xAB / 255, 0, 0])

    # EXIF orientation 6: stored 8 wide, 4 high, shown rotated 90 degrees clockwise (4 wide, 8 high)
    stored = np.zeros((4, 8, 3), np.uint8)
    stored[:, :4] = 255                                     # left half white
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(stored).save(tmp_path / 'rotated.jpg', exif=exif.tobytes(), quality=100)
    shown = read_image(tmp_path / 'rotated.jpg')
    assert shown.shape == (3, 8, 4)
    assert shown[:, :4].mean() > 0.9 and shown[:, 4:].mean() < 0.1     # the white half is on top


def test_unreadable_images_are_refused_naming_the_file(config, photos, tmp_path, capsys):
    (tmp_path / 'empty.png').write_bytes(b'')
    (tmp_path / 'text.png').write_text('not an image')
    data = (photos / 'photo_1.jpg').read_bytes()
    (tmp_path / 'truncated.jpg').write_bytes(data[:len(data) // 2])
    png = tmp_path / 'whole.png'
    Image.open(photos / 'photo_1.jpg').save(png)
    (tmp_path / 'truncated.png').write_bytes(png.read_bytes()[:len(png.read_bytes()) // 2])
    cases = {'empty.png': 'the file is empty \\(0 bytes\\)', 'text.png': 'cannot be read as an image',
             'truncated.jpg': 'cannot be read as an image.*truncated',
             'truncated.png': 'cannot be read as an image', 'missing.png': 'no such image file'}
    for name, problem in cases.items():
        with pytest.raises(InputError, match=f'{name}: {problem}'):
            read_image(tmp_path / name)
    code, _, stderr = run(capsys, photos / 'photo_0.jpg', tmp_path / 'truncated.jpg', '--cameras',
                          photos / 'pair.json', '--config', config, '--out', tmp_path / 'out')
    assert code == 2 and 'truncated.jpg' in stderr and 'Traceback' not in stderr


def test_images_of_different_sizes_and_identical_images_are_refused(config, photos, tmp_path, capsys):
    Image.open(photos / 'photo_1.jpg').resize((100, 80)).save(tmp_path / 'small.png')
    code, _, stderr = run(capsys, photos / 'photo_0.jpg', tmp_path / 'small.png', '--cameras',
                          photos / 'pair.json', '--config', config, '--out', tmp_path / 'o1')
    assert code == 2 and 'images of different sizes' in stderr and '100 x 80' in stderr
    for cameras in ([], ['--cameras', photos / 'pair.json']):      # estimated or given cameras
        code, _, stderr = run(capsys, photos / 'photo_0.jpg', photos / 'photo_0.jpg', *cameras,
                              '--config', config, '--out', tmp_path / 'o2')
        assert code == 2 and 'the two images are identical' in stderr


@pytest.mark.parametrize('extrinsics, problem', [
    ([camera(0), camera(float('nan'))], 'view 1.*non-finite extrinsics'),
    ([camera(0), [[-1, 0, 0, 1], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]], 'view 1.*mirrored'),
    ([camera(0), [[2, 0, 0, 1], [0, 2, 0, 0], [0, 0, 2, 0], [0, 0, 0, 1]]], 'scaled by 2'),
    ([camera(0), camera(0)], 'identical cameras'),
    ([camera(0), [[0, -1, 0, 0], [1, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]], 'share one centre'),
])
def test_improper_cameras_are_refused_naming_the_file(photos, tmp_path, extrinsics, problem):
    path = tmp_path / 'bad.json'
    path.write_text(json.dumps({'intrinsics': [[FX, 0, 0.5], [0, FX, 0.5], [0, 0, 1]],
                                'extrinsics': extrinsics}))
    with pytest.raises(CameraError, match=f'bad.json.*{problem}'):
        views_from_camera_file([photos / 'photo_0.jpg', photos / 'photo_1.jpg'], read_camera_file(path), 1, 100)


def test_malformed_camera_files_are_refused(photos, tmp_path):
    cases = {'not json': 'is not valid JSON', '[1, 2]': 'expected a JSON object',
             json.dumps({'extrinsics': [camera(0), camera(1)]}): 'no "intrinsics"',
             json.dumps({'intrinsics': [[FX, 0, 0.5], [0, FX, 0.5]], 'extrinsics': [camera(0), camera(1)]}):
                 '"intrinsics": expected \\[3, 3\\]',
             json.dumps({'intrinsics': [[800, 0, 95], [0, 800, 75], [0, 0, 1]], 'extrinsics': [camera(0), camera(1)]}):
                 'look like pixel units',
             json.dumps({'intrinsics': [[FX, 0, 0.5], [0, FX, 0.5], [0, 0, 1]], 'extrinsics': [camera(0), camera(1)],
                         'near': 5.0, 'far': 2.0}): '0 < near < far'}
    for i, (text, problem) in enumerate(cases.items()):
        path = tmp_path / f'cameras_{i}.json'
        path.write_text(text)
        with pytest.raises(InputError, match=f'cameras_{i}.json.*{problem}'):
            views_from_camera_file([photos / 'photo_0.jpg', photos / 'photo_1.jpg'], read_camera_file(path), 1, 100)
    with pytest.raises(InputError, match='gives 3 cameras for 2 images'):
        views_from_camera_file([photos / 'photo_0.jpg', photos / 'photo_1.jpg'],
                               read_camera_file(photos / 'cameras.json'), 1, 100)


def test_sizes_and_frame_counts_the_models_cannot_take(config, photos, tmp_path, capsys):
    pair = [photos / 'photo_0.jpg', photos / 'photo_1.jpg', '--cameras', photos / 'pair.json', '--config', config,
            '--policy', 'fixed']
    code, _, stderr = run(capsys, *pair, '--frames', 8, '--out', tmp_path / 'o1')
    assert code == 2 and 'num_frames' in stderr and '8k+1' in stderr
    code, _, stderr = run(capsys, *pair, '--size', 24, 24, '--out', tmp_path / 'o2')
    assert code == 2 and 'MVSplat needs height and width divisible by 16, got 24 x 24' in stderr
    code, _, stderr = run(capsys, *pair, '--size', 20, 20, '--out', tmp_path / 'o3')
    assert code == 2 and 'divisible by 8' in stderr
    code, _, stderr = run(capsys, *pair, '--reconstructor', 'DepthUnprojection', '--out', tmp_path / 'o4')
    assert code == 2 and 'DepthUnprojection places Gaussians at known per-pixel depth' in stderr
    assert not any((tmp_path / name).exists() for name in ('o1', 'o2', 'o3', 'o4'))


def test_the_command_line_exits_with_a_message_not_a_traceback(tmp_path):
    (tmp_path / 'empty.jpg').write_bytes(b'')
    (tmp_path / 'other.jpg').write_bytes(b'')
    result = subprocess.run([sys.executable, 'tools/infer.py', str(tmp_path / 'empty.jpg'), str(tmp_path / 'other.jpg'),
                             '--out', str(tmp_path / 'out')], cwd=REPO_ROOT, capture_output=True, text=True)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (f'error: {tmp_path / "empty.jpg"}: the file is empty (0 bytes); '
                                                      'expected an image (PNG, JPEG, ...)')
