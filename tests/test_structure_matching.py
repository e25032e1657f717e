"""Structure matching: rigid videos keep their matches, per-frame non-rigid warps lose them."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from videoscene.datasets.synthetic import SyntheticSpec, render_scene
from videoscene.errors import InputError
from videoscene.evaluation.structure_matching import StructureMatching, frame_pairs, match_video
from videoscene.registry import METRICS

# A textured room of the synthetic default (256 x 256; scene 0 of this seed is a bare room).
SPEC = SyntheticSpec(num_scenes=3, frames=8, num_eval_targets=2, stage='test')


@pytest.fixture(scope='module')
def rigid() -> torch.Tensor:
    return render_scene(SPEC, 2).images


def warped(video: torch.Tensor, pixels: float, seed: int = 0) -> torch.Tensor:
    """Each frame resampled through its own random smooth displacement field (a 5 x 5 grid of
    N(0, pixels) offsets, upsampled bicubically): non-rigid, different per frame."""
    generator = torch.Generator().manual_seed(seed)
    frames, _, height, width = video.shape
    offsets = torch.randn(frames, 2, 5, 5, generator=generator) * pixels
    offsets = F.interpolate(offsets, size=(height, width), mode='bicubic', align_corners=True)
    ys, xs = torch.meshgrid(torch.arange(height), torch.arange(width), indexing='ij')
    x = (xs + offsets[:, 0] + 0.5) / width * 2 - 1
    y = (ys + offsets[:, 1] + 0.5) / height * 2 - 1
    grid = torch.stack([x, y], -1)
    return F.grid_sample(video, grid, mode='bilinear', padding_mode='border', align_corners=False)


def score(video: torch.Tensor, **options) -> dict:
    metric = StructureMatching(**options)
    metric.process({}, [dict(pred=video)])
    return metric.compute_metrics(metric.results)


def test_rigid_video_scores_far_above_per_frame_non_rigid_warps(rigid):
    rigid_score = score(rigid)
    warped_score = score(warped(rigid, pixels=6.0))
    assert rigid_score['matches'] > 20                     # the warp leaves matches to test ...
    assert warped_score['matches'] > 0.5 * rigid_score['matches']
    assert rigid_score['inlier_ratio'] > 0.7                # ... but few obey one epipolar geometry
    assert rigid_score['inliers'] > 3 * warped_score['inliers']
    assert rigid_score['inlier_ratio'] > 2 * warped_score['inlier_ratio']


def test_shuffled_rigid_frames_still_match(rigid):
    """Any two views of a rigid scene obey a fundamental matrix: a frame shuffle is no negative."""
    shuffled = rigid[torch.tensor([0, 3, 1, 4, 2, 5, 6, 7])]
    assert score(shuffled)['inlier_ratio'] > 0.7


def test_a_translated_texture_keeps_every_match():
    """A pure image translation is a valid two-view geometry: all ratio-test matches are inliers."""
    rng = np.random.default_rng(0)
    texture = torch.from_numpy(rng.random((1, 3, 24, 24))).float()
    texture = F.interpolate(texture, size=(144, 144), mode='bicubic', align_corners=False).clamp(0, 1)
    video = torch.stack([texture[0, :, 3 * i:3 * i + 128, 2 * i:2 * i + 128] for i in range(4)])
    pairs = match_video(video)
    assert all(p.matches >= 30 for p in pairs)
    assert all(p.inliers >= 0.95 * p.matches for p in pairs)


def test_grey_video_gives_zero_matches():
    result = score(torch.full((5, 3, 64, 64), 0.5))
    assert result == dict(inliers=0.0, matches=0.0, inlier_ratio=0.0)
    one_blob = torch.full((3, 3, 64, 64), 0.5)
    one_blob[1, :, 20:30, 20:30] = 1.0                   # a few keypoints in one frame only
    assert [p.matches for p in match_video(one_blob)] == [0, 0]


def test_seeded_and_repeatable(rigid):
    video = warped(rigid, pixels=2.0, seed=1)
    for method in ('ransac', 'magsac'):
        first = match_video(video, method=method, seed=3)
        match_video(rigid, method=method, seed=7)      # moves OpenCV's RNG in between
        assert match_video(video, method=method, seed=3) == first


def test_pair_schedules():
    assert frame_pairs(4, 'consecutive') == [(0, 1), (1, 2), (2, 3)]
    assert frame_pairs(5, 'every_k', k=2) == [(0, 2), (1, 3), (2, 4)]
    assert frame_pairs(4, 'first_to_all') == [(0, 1), (0, 2), (0, 3)]
    pairs = match_video(torch.full((4, 3, 32, 32), 0.5), schedule='first_to_all')
    assert [(p.first, p.second) for p in pairs] == [(0, 1), (0, 2), (0, 3)]


def test_scores_average_videos_equally():
    metric = StructureMatching()
    results = [(np.array([10, 30]), np.array([10, 20])), (np.array([4]), np.array([0]))]
    assert metric.compute_metrics(results) == dict(inliers=(15 + 0) / 2, matches=(20 + 4) / 2,
                                                   inlier_ratio=30 / 44)


def test_registered_with_prefix():
    metric = METRICS.build(dict(type='StructureMatching', schedule='every_k', k=2))
    assert metric.prefix == 'structure' and metric.options['k'] == 2


@pytest.mark.parametrize('video, message', [
    (torch.zeros(3, 32, 32), r'expected a video \[F, 3, H, W\].*got \(3, 32, 32\)'),
    (torch.zeros(2, 4, 3, 32, 32), r'expected a video \[F, 3, H, W\].*got \(2, 4, 3, 32, 32\)'),
    (torch.zeros(4, 1, 32, 32), r'expected a video \[F, 3, H, W\].*got \(4, 1, 32, 32\)'),
    (torch.zeros(4, 3, 32, 32, dtype=torch.uint8), 'expected a float video'),
    (torch.full((4, 3, 32, 32), float('nan')), 'NaN'),
    (torch.zeros(1, 3, 32, 32), 'at least 2 frames'),
])
def test_bad_videos_are_refused_by_name(video, message):
    with pytest.raises(InputError, match=message):
        match_video(video)
    with pytest.raises(InputError, match="data sample 'pred'"):
        score(video)


def test_bad_options_are_refused_by_name():
    with pytest.raises(InputError, match=r"schedule: must be one of .*'every_k'"):
        StructureMatching(schedule='sliding')
    with pytest.raises(InputError, match=r"method: must be one of \('ransac', 'magsac'\)"):
        StructureMatching(method='lmeds')
    with pytest.raises(InputError, match='k: 4 leaves no pair in a 4-frame video'):
        match_video(torch.zeros(4, 3, 32, 32), schedule='every_k', k=4)
    with pytest.raises(InputError, match="has no 'pred' video"):
        StructureMatching().process({}, [dict(video=torch.zeros(4, 3, 32, 32))])
