"""Video to 3D: the Gaussian parameterisation, the held-out split, and a fit that explains held-out
frames better than its initialisation (tools/video_to_3d.py on an infer-like folder)."""
from __future__ import annotations

import importlib.util
import json

import cv2
import pytest
import torch
from mmengine.dataset import default_collate

from videoscene.models.views import scene_views
from videoscene.pipelines.inputs import write_camera_file
from videoscene.pipelines.video_to_3d import GaussianParameters, held_out_frames
from videoscene.registry import DATASETS, RECONSTRUCTORS, RENDERERS
from videoscene.structures import Gaussians
from videoscene.visualization import save_png

from _pipeline_setup import REPO_ROOT, SIZE

SPEC = importlib.util.spec_from_file_location('video_to_3d_tool', REPO_ROOT / 'tools/video_to_3d.py')
tool = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(tool)


@pytest.fixture(scope='module')
def scene():
    dataset = DATASETS.build(dict(type='SyntheticScenes', num_scenes=1, frames=24, height=SIZE, width=SIZE,
                                  num_eval_targets=7, view_sampler=dict(type='video', num_frames=9)))
    sample = default_collate([dataset[0]])
    views = scene_views(sample['context'], sample['target'])
    gaussians = RECONSTRUCTORS.build(dict(type='DepthUnprojection'))(sample['context'])
    return gaussians, {key: views[key][0] for key in ('extrinsics', 'intrinsics', 'near', 'far')}


def test_held_out_frames_skip_the_input_views():
    assert held_out_frames(9, 4) == [4]
    assert held_out_frames(9, 3) == [3, 6]
    assert held_out_frames(17, 4) == [4, 8, 12]
    with pytest.raises(ValueError, match='k >= 2'):
        held_out_frames(9, 1)


def test_parameters_reproduce_the_gaussians_they_start_from(scene):
    gaussians, _ = scene
    rotated = torch.linalg.qr(torch.randn(gaussians.means.shape[1], 3, 3))[0]
    scales = torch.rand(gaussians.means.shape[1], 3) * 0.05 + 0.01
    covariances = (rotated @ torch.diag_embed(scales ** 2) @ rotated.transpose(-1, -2))[None]
    anisotropic = Gaussians(gaussians.means, covariances, gaussians.harmonics, gaussians.opacities * 0.5)
    rebuilt = GaussianParameters(anisotropic)()
    for name in ('means', 'covariances', 'harmonics', 'opacities'):
        torch.testing.assert_close(getattr(rebuilt, name), getattr(anisotropic, name), rtol=1e-4, atol=1e-7)
    assert {name for name, _ in GaussianParameters(anisotropic).named_parameters()} == {
        'means', 'harmonics', 'opacity_logits', 'log_scales', 'rotations'}


def test_fitting_a_video_improves_its_held_out_frames(scene, tmp_path, capsys):
    """The video is the true scene's render along its path; the initialisation is a corrupted copy
    (moved, blurred, recoloured, more transparent): the fit must explain held-out frames better."""
    gaussians, cameras = scene
    with torch.no_grad():
        video = RENDERERS.build(dict(type='torch', views_per_chunk=9)).render(
            gaussians, *(cameras[k][None] for k in ('extrinsics', 'intrinsics')), (SIZE, SIZE),
            cameras['near'][None], cameras['far'][None]).color[0].clamp(0, 1)
    generator = torch.Generator().manual_seed(0)
    corrupted = Gaussians(
        means=gaussians.means + 0.03 * torch.randn(gaussians.means.shape, generator=generator),
        covariances=gaussians.covariances * 4,
        harmonics=gaussians.harmonics + 0.5 * torch.randn(gaussians.harmonics.shape, generator=generator),
        opacities=gaussians.opacities * 0.7)
    folder = tmp_path / 'infer_out'
    names = [f'frames/{i:05d}.png' for i in range(len(video))]
    for name, frame in zip(names, video):
        save_png(folder / name, frame)
    write_camera_file(folder / 'cameras.json', names, cameras['extrinsics'], cameras['intrinsics'],
                      cameras['near'], cameras['far'], (SIZE, SIZE))
    corrupted.save_ply(folder / 'gaussians.ply')

    argv = [str(folder), '--every', '3', '--iterations', '25', '--views-per-step', '2']
    assert tool.main(argv) == 0
    stdout = capsys.readouterr().out
    metrics = json.loads((folder / 'video_to_3d' / 'metrics.json').read_text())
    assert metrics['held_out_frames'] == [3, 6] and 3 not in metrics['train_frames']
    assert metrics['after']['psnr'] > metrics['before']['psnr'] + 2.0
    assert metrics['after']['ssim'] > metrics['before']['ssim']
    assert 'LPIPS: unavailable' in stdout and metrics['lpips'].startswith('unavailable')
    fitted = Gaussians.load_ply(folder / 'video_to_3d' / 'gaussians.ply')
    assert fitted.means.shape == gaussians.means.shape
    assert not torch.allclose(fitted.means, corrupted.means, atol=1e-4)
    sheet = cv2.imread(str(folder / 'video_to_3d' / 'contact_sheet.png'))
    assert sheet.shape[1] > 2 * SIZE and sheet.shape[0] > 3 * SIZE      # 2 held-out frames x 3 rows

    assert tool.main(argv) == 2                                # the output folder exists
    assert 'pass --overwrite' in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert tool.main(argv + ['--overwrite', '--renderer', 'gsplat']) == 2
        assert '--renderer: gsplat renders on CUDA only' in capsys.readouterr().err
