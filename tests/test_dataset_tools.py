"""tools/convert_scenes.py, tools/browse_dataset.py and the top-down camera-path plot."""
from __future__ import annotations

import json
import os.path as osp
import runpy
import sys

import cv2
import decord
import pytest
import torch

from _scene_writers import jpeg_bytes, pixel_intrinsics, write_colmap, write_video
from videoscene.datasets import COLMAPDataset, RE10KDataset
from videoscene.datasets.synthetic import SyntheticSpec, render_scene
from videoscene.datasets.video import read_video_frames
from videoscene.visualization import plot_path, top_down_axes

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
SPEC = SyntheticSpec(num_scenes=1, frames=9, height=24, width=32, num_eval_targets=3)


def run_tool(name: str, *args: str, monkeypatch) -> None:
    monkeypatch.setattr(sys, 'argv', [name, *map(str, args)])
    runpy.run_path(osp.join(REPO, 'tools', name), run_name='__main__')


@pytest.fixture(scope='module')
def recording():
    return render_scene(SPEC, 0)


def test_convert_scenes_writes_readable_chunks(tmp_path, recording, monkeypatch, capsys):
    h, w = SPEC.height, SPEC.width
    camera = ('PINHOLE', w, h, pixel_intrinsics(recording.intrinsics[0], h, w))
    points = recording.extrinsics[:, :3, 3].double() + recording.extrinsics[:, :3, 2].double() * 2.0
    for key in ('first', 'second'):
        write_colmap(tmp_path / 'colmap' / key, jpeg_bytes(recording.images), recording.extrinsics, points, camera,
                     binary=True)
    run_tool('convert_scenes.py', 'colmap', tmp_path / 'colmap' / 'first', tmp_path / 'colmap' / 'second',
             '--out', tmp_path / 'out', '--scenes-per-chunk', '1', monkeypatch=monkeypatch)
    assert '7 targets per scene' in capsys.readouterr().out  # 9 frames: 7 between the first and the last
    index = json.loads((tmp_path / 'out' / 'evaluation_index_test.json').read_text())
    assert sorted(index) == ['first', 'second'] and index['first']['context'] == [0, 8]
    assert json.loads((tmp_path / 'out' / 'test' / 'index.json').read_text()) == {'first': '000000.torch',
                                                                                  'second': '000001.torch'}
    converted = RE10KDataset(tmp_path / 'out', 'test', near=0.5, far=20.0)[1]
    original = COLMAPDataset(tmp_path / 'colmap' / 'second', near=0.5, far=20.0,
                             view_sampler=dict(type='fixed', **index['second']))[0]
    assert converted['scene'] == original['scene'] == 'second'
    assert torch.equal(converted['target']['image'], original['target']['image'])
    assert torch.allclose(converted['target']['extrinsics'], original['target']['extrinsics'], atol=1e-5)


def test_convert_scenes_samples_video_frames(tmp_path, recording, monkeypatch):
    write_video(tmp_path / 'videos', 'clip', recording.images, recording.extrinsics, recording.intrinsics)
    run_tool('convert_scenes.py', 'video', tmp_path / 'videos', '--out', tmp_path / 'out', '--frames', '5',
             '--num-eval-targets', '2', monkeypatch=monkeypatch)
    dataset = RE10KDataset(tmp_path / 'out', 'test', near=0.5, far=20.0,
                           view_sampler=dict(type='fixed', context=[0, 4], target=[0, 1, 2, 3, 4]))
    sample = dataset[0]
    frames = [0, 2, 4, 6, 8]
    assert torch.allclose(sample['target']['extrinsics'], recording.extrinsics[frames], atol=2e-5)
    assert (sample['target']['image'] - recording.images[frames]).abs().mean() < 0.06
    stored = dataset.source.load_scene('clip')
    assert stored['url'] == 'https://example.com/video'
    assert stored['timestamps'].tolist() == [f * 1_000_000 // 30 for f in frames]


def test_convert_scenes_refuses_several_video_folders(tmp_path, monkeypatch):
    with pytest.raises(SystemExit, match='video: give one folder'):
        run_tool('convert_scenes.py', 'video', tmp_path / 'a', tmp_path / 'b', '--out', tmp_path / 'out',
                 monkeypatch=monkeypatch)


def check_outputs(out, frames: int, height: int, width: int, with_depth: bool) -> None:
    sheet = cv2.imread(str(out / 'contact_sheet.png'))
    assert sheet is not None and sheet.shape[0] > (2 if with_depth else 1) * height
    assert len(decord.VideoReader(str(out / 'targets.mp4'))) == frames
    assert read_video_frames(out / 'targets.mp4', [0]).shape == (1, 3, height, width * (2 if with_depth else 1))
    plot = cv2.imread(str(out / 'camera_path.png'))
    assert plot is not None and (plot < 200).any()  # something was drawn


def test_browse_synthetic_writes_a_sheet_a_video_and_a_path(tmp_path, monkeypatch, capsys):
    run_tool('browse_dataset.py', '--synthetic', '--size', 32, '--frames', 5, '--cache-dir', tmp_path / 'cache',
             '--out', tmp_path / 'out', monkeypatch=monkeypatch)
    assert 'SyntheticScenes: 1 items' in capsys.readouterr().out
    check_outputs(tmp_path / 'out', frames=5, height=32, width=32, with_depth=True)


def test_browse_a_config(tmp_path, recording, monkeypatch):
    write_video(tmp_path / 'videos', 'clip', recording.images, recording.extrinsics, recording.intrinsics)
    config = tmp_path / 'config.py'
    config.write_text(f'''train_dataloader = dict(dataset=dict(
    type='VideoDataset', root={str(tmp_path / 'videos')!r}, num_frames=9, image_shape=(16, 16),
    view_sampler=dict(type='fixed', context=[0, 8], target=[1, 2, 3, 4, 5, 6, 7])))
''')
    run_tool('browse_dataset.py', config, '--out', tmp_path / 'out', monkeypatch=monkeypatch)
    check_outputs(tmp_path / 'out', frames=7, height=16, width=16, with_depth=False)
    with pytest.raises(SystemExit, match='no test_dataloader.dataset'):
        run_tool('browse_dataset.py', config, '--split', 'test', monkeypatch=monkeypatch)


def test_top_down_axes_are_horizontal_whatever_the_worlds_up(recording):
    """Synthetic rooms have world +y down; nerfstudio worlds have +z up: the plot plane is horizontal in both."""
    for extrinsics, up in ((recording.extrinsics, torch.tensor([0.0, -1.0, 0.0])), (
            # cameras looking along world +y, +z up (camera y = down = world -z)
            torch.stack([torch.tensor([[1.0, 0, 0, t], [0, 0, 1, 0], [0, -1, 0, 1], [0, 0, 0, 1]]) for t in range(3)]),
            torch.tensor([0.0, 0.0, 1.0]))):
        right, forward = top_down_axes(extrinsics)
        assert abs(float(right @ up.double())) < 0.1 and abs(float(forward @ up.double())) < 0.1
        mean_view = extrinsics[:, :3, 2].mean(0).double()
        assert float(forward @ mean_view) > 0.9 * float(mean_view.norm())


def test_plot_path_writes_a_png(tmp_path, recording):
    cameras = {'extrinsics': recording.extrinsics}
    path = plot_path(tmp_path / 'deep' / 'path.png', cameras, cameras, {'extrinsics': recording.extrinsics[[0, -1]]})
    image = cv2.imread(str(path))
    assert path.is_file() and image.shape[0] > 100 and (image < 200).any()
