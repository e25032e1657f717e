"""pixelSplat re-implementation: official state dict, golden outputs (float64 and float32),
checkpoint loading and conversion, depth sampling, epipolar geometry, bounds and input checks."""
from __future__ import annotations

import contextlib
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videoscene.reconstructors import CheckpointMismatchError, PixelSplat
from videoscene.reconstructors.pixelsplat.backbone import dino_position_embeddings
from videoscene.reconstructors.pixelsplat.bounds import baseline_near_far
from videoscene.reconstructors.pixelsplat.depth_predictor import (
    DepthPredictor, depth_to_relative_disparity, relative_disparity_to_depth)
from videoscene.reconstructors.pixelsplat.epipolar_geometry import (project_ray_segments,
                                                                    ray_depths)
from videoscene.reconstructors.pixelsplat.epipolar_sampler import sample_epipolar_lines
from videoscene.reconstructors.pixelsplat.positional_encoding import SinusoidalEncoding
from videoscene.registry import RECONSTRUCTORS

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / 'shared' / 'fixtures'
PIXELSPLAT = FIXTURES / 'pixelsplat'
PREFIX = 'encoder.'


def load_fixture(name: str):
    path = PIXELSPLAT / name
    if not path.is_file():
        pytest.skip(f'pixelSplat fixture absent: {path}')
    if path.suffix == '.json':
        return json.loads(path.read_text())
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def official_state_dict() -> dict[str, torch.Tensor]:
    """The fixture weights: ``fixture_state_dict`` of the official key/shape list (prefixed)."""
    shapes = load_fixture('state_dict_shapes_re10k.json')['state_dict']
    path = FIXTURES / 'fixture_weights.py'
    if not path.is_file():
        pytest.skip(f'fixture weight builder absent: {path}')
    spec = importlib.util.spec_from_file_location('fixture_weights', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.fixture_state_dict(shapes)


@pytest.fixture(scope='module')
def model(official_state_dict) -> PixelSplat:
    """Built once (119M parameters); the golden case feeds near/far directly (no bounds shim)."""
    return PixelSplat(bounds_from_baseline=False).load_official(official_state_dict).eval()


@contextlib.contextmanager
def configured(model: PixelSplat, dtype: torch.dtype = torch.float32, **attributes):
    """Temporarily cast the shared model and set attributes (float32 -> 64 -> 32 is exact)."""
    previous = {name: getattr(model, name) for name in attributes}
    model.to(dtype)
    for name, value in attributes.items():
        setattr(model, name, value)
    try:
        yield model
    finally:
        model.float()
        for name, value in previous.items():
            setattr(model, name, value)


def make_context(size: int = 32, seed: int = 0, dtype=torch.float32) -> dict[str, torch.Tensor]:
    """Smooth random images; camera 2 moved sideways and turned slightly, both looking along +z."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(2, 3, size // 8, size // 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode='bilinear')
    extrinsics = torch.eye(4).repeat(1, 2, 1, 1)
    angle = 0.08
    extrinsics[0, 1, :3, :3] = torch.tensor([[math.cos(angle), 0.0, math.sin(angle)],
                                             [0.0, 1.0, 0.0],
                                             [-math.sin(angle), 0.0, math.cos(angle)]])
    extrinsics[0, 1, :3, 3] = torch.tensor([0.3, 0.02, 0.05])
    intrinsics = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]])
    intrinsics = intrinsics.repeat(1, 2, 1, 1)
    context = {'image': images[None], 'extrinsics': extrinsics, 'intrinsics': intrinsics,
               'near': torch.ones(1, 2), 'far': torch.full((1, 2), 100.0)}
    return {key: value.to(dtype) for key, value in context.items()}


def per_gaussian_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """``|a - e| / |e|`` per Gaussian (norm over the trailing dims; opacities elementwise)."""
    if actual.ndim == 2:
        return (actual - expected).abs() / expected.abs()
    return (actual - expected).flatten(2).norm(dim=-1) / expected.flatten(2).norm(dim=-1)


def compare(gaussians, expected: dict) -> dict[str, torch.Tensor]:
    errors = {}
    for name in ('means', 'covariances', 'harmonics', 'opacities'):
        actual, reference = getattr(gaussians, name), expected[name]
        assert actual.shape == reference.shape and actual.dtype == reference.dtype, name
        errors[name] = per_gaussian_relative_error(actual, reference)
        print(f'{name}: max abs {(actual - reference).abs().max():.3e}, per-Gaussian relative '
              f'max {errors[name].max():.3e}, median {errors[name].median():.3e}')
    return errors


# ----------------------------------------------------------------------------- official weights

def test_state_dict_keys_and_shapes_match_official(model):
    official = load_fixture('state_dict_shapes_re10k.json')
    ours = {PREFIX + key: list(value.shape) for key, value in model.state_dict().items()}
    assert ours == official['state_dict']
    assert len(ours) == official['num_state_dict_keys'] == 574
    assert sum(p.numel() for p in model.parameters()) == official['num_parameters'] == 118_979_412
    assert RECONSTRUCTORS.get('pixelSplat') is PixelSplat


def test_reproduces_float64_golden_tightly(model):
    golden = load_fixture('golden_re10k_64x64_float64.pt')
    with configured(model, torch.float64), torch.no_grad():
        gaussians = model(golden['inputs'])
    print()
    errors = compare(gaussians, golden['outputs'])
    # Float64 kernels still differ between CPUs in their last bits, and the fixture weights make
    # many pixels' depth distributions nearly flat, which amplifies that: below 1e-10 on the
    # AVX2 machine the goldens were checked on, up to 2e-9 (covariances 3.4e-7) on an AVX-512
    # Xeon. A wrong formula or layout shows up as errors of order 1e-3 or more.
    assert errors['means'].max() < 1e-8
    assert errors['covariances'].max() < 1e-6
    assert errors['opacities'].max() < 1e-7
    # The reference rotates harmonics with e3nn's Wigner-D built from float32-stored constants,
    # ~1e-8 relative even in float64; ours are exact.
    assert errors['harmonics'].max() < 1e-6


def test_reproduces_float32_golden_up_to_depth_bucket_flips(model):
    golden = load_fixture('golden_re10k_64x64.pt')
    with torch.no_grad():
        gaussians = model(golden['inputs'])
    print()
    errors = compare(gaussians, golden['outputs'])
    # A pixel whose top-1 bucket flips (the float32 depth encoding is sensitive) moves its mean
    # by about a bucket and changes its opacity. The fixture weights are random and untrained:
    # they amplify last-bit differences between CPUs' float32 kernels by about 1e4 (the float64
    # test above shows the same factor on float64's last bits), so the tolerances are per
    # CPU class: on the AVX2 machine the goldens were checked on, under 1% of pixels flipped and
    # every other one agreed to 1e-4 (means, opacities) and 1e-3 (covariances, harmonics); on an
    # AVX-512 Xeon 30% flip and the rest agree to medians of 8e-6 (means), 1.2e-3 (covariances),
    # 9e-4 (harmonics), 3e-4 (opacities). What this still catches: a wrong layer, key or
    # formula moves typical errors to 1e-1 or more and flips most pixels.
    flipped = (errors['means'] > 1e-3) | (errors['opacities'] > 1e-3)
    print(f'depth-bucket flips: {int(flipped.sum())} of {flipped.numel()}')
    assert flipped.float().mean() < 0.5
    kept = ~flipped
    median = {name: errors[name][kept].median().item() for name in errors}
    print('kept medians', median)
    assert median['means'] < 1e-4
    assert median['covariances'] < 1e-2
    assert median['harmonics'] < 1e-2
    assert median['opacities'] < 1e-3


def test_mismatched_checkpoint_names_missing_unexpected_and_misshaped_keys(model,
                                                                           official_state_dict):
    broken = dict(official_state_dict)
    del broken[PREFIX + 'to_gaussians.1.bias']
    broken[PREFIX + 'view_embeddings.weight'] = torch.zeros(3, 128)  # as in 3-view checkpoints
    broken[PREFIX + 'depth_predictor.projection.1.weight'] = torch.zeros(128, 128)
    with pytest.raises(CheckpointMismatchError) as info:
        model.load_official({'state_dict': broken})
    assert info.value.missing == ['to_gaussians.1.bias']
    assert info.value.unexpected == ['view_embeddings.weight']
    assert info.value.mismatched == [('depth_predictor.projection.1.weight', (128, 128), (64, 128))]
    message = str(info.value)
    assert 'to_gaussians.1.bias' in message and 'view_embeddings.weight' in message
    # Nothing was loaded: the model still holds the official tensors.
    assert torch.equal(model.to_gaussians[1].bias,
                       official_state_dict[PREFIX + 'to_gaussians.1.bias'])


def test_official_checkpoint_file_and_conversion(official_state_dict, tmp_path):
    checkpoint = tmp_path / 're10k.ckpt'
    torch.save({'state_dict': official_state_dict, 'global_step': 300000}, checkpoint)
    spec = importlib.util.spec_from_file_location('convert_checkpoint',
                                                  REPO / 'tools' / 'convert_checkpoint.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    output = tool.main(['--arch', 'pixelsplat', str(checkpoint), str(tmp_path / 'out.safetensors')])
    converted = load_file(str(output))
    assert set(converted) == {key[len(PREFIX):] for key in official_state_dict}
    for key in ('backbone.dino.pos_embed', 'epipolar_transformer.depth_encoding.1.weight',
                'backbone.resnet_backbone.model.layer4.2.bn3.running_var'):
        assert torch.equal(converted[key], official_state_dict[PREFIX + key]), key


# ----------------------------------------------------------------------------- model behaviour

def test_training_mode_samples_three_gaussians_per_pixel_and_backpropagates(model):
    context = make_context()
    # Restore BatchNorm statistics and gradients afterwards: the model is shared by the module.
    statistics = {key: value.clone() for key, value in model.state_dict().items()
                  if 'running_' in key or 'num_batches_tracked' in key}
    try:
        model.train()
        torch.manual_seed(0)
        output = model.predict(context)
        gaussians, depths = output.gaussians, output.depths.detach()
        loss = gaussians.means.square().mean() + gaussians.opacities.mean()
        loss.backward()
        gradients = {name: model.get_parameter(name).grad for name in (
            'backbone.dino.blocks.11.mlp.fc2.weight',
            'backbone.resnet_backbone.projections.layer3.weight',
            'epipolar_transformer.depth_encoding.1.weight', 'depth_predictor.projection.1.weight',
            'to_gaussians.1.weight')}
    finally:
        model.eval().zero_grad(set_to_none=True)
        model.load_state_dict(statistics, strict=False)

    for name, gradient in gradients.items():
        assert gradient is not None and gradient.abs().sum() > 0, name
    assert depths.shape == (1, 2, 32, 32, 3)
    assert gaussians.means.shape == (1, 2 * 32 * 32 * 3, 3)
    gaussians.check_shapes()
    # Opacity is the sampled bucket's probability / 3; depths lie between near and far.
    assert (gaussians.opacities > 0).all() and (gaussians.opacities <= 1 / 3 + 1e-6).all()
    assert depths.min() >= 1.0 - 1e-4 and depths.max() <= 100.0 * (1 + 1e-4)
    # Each mean is its pixel's depth away from its camera centre.
    centres = context['extrinsics'][:, :, None, :3, 3]
    distance = (gaussians.means.detach().reshape(1, 2, -1, 3) - centres).norm(dim=-1)
    torch.testing.assert_close(distance, depths.reshape(1, 2, -1), rtol=1e-4, atol=1e-5)
    # Sampled, not top-1: the three samples of a pixel differ somewhere.
    assert (depths[..., 0] != depths[..., 1]).any()


def test_bounds_from_baseline_replace_context_bounds(model):
    context = make_context(seed=1)
    near, far = baseline_near_far(context['extrinsics'], context['intrinsics'], (32, 32))
    other = dict(context, near=torch.full((1, 2), 0.5), far=torch.full((1, 2), 7.0))
    with configured(model, bounds_from_baseline=True), torch.no_grad():
        first, second = model.predict(context), model.predict(other)
    torch.testing.assert_close(first.gaussians.means, second.gaussians.means, rtol=0, atol=0)
    assert first.depths.min() >= near.item() * (1 - 1e-5)
    assert first.depths.max() <= far.item() * (1 + 1e-5)


def test_baseline_bounds_match_their_pixel_disparities():
    size, focal, baseline = 64, 0.9, 0.3
    extrinsics = torch.eye(4, dtype=torch.float64).repeat(1, 2, 1, 1)
    extrinsics[0, 1, 0, 3] = baseline
    intrinsics = torch.tensor([[focal, 0.0, 0.5], [0.0, focal, 0.5], [0.0, 0.0, 1.0]],
                              dtype=torch.float64).repeat(1, 2, 1, 1)
    near, far = baseline_near_far(extrinsics, intrinsics, (size, size), 3.0, 0.5)
    # Two parallel cameras a baseline apart see a point at depth z shifted by f * b / z pixels.
    focal_pixels = focal * size
    torch.testing.assert_close(focal_pixels * baseline / near,
                               torch.tensor([3.0 * size], dtype=torch.float64))
    torch.testing.assert_close(focal_pixels * baseline / far,
                               torch.tensor([0.5], dtype=torch.float64))


def test_rejects_bad_context(model):
    context = make_context()
    with pytest.raises(ValueError, match='exactly 2 context views'):
        model(dict(context, image=torch.rand(1, 3, 3, 32, 32)))
    with pytest.raises(ValueError, match='multiples of 16'):
        model(dict(context, image=torch.rand(1, 2, 3, 40, 32)))
    with pytest.raises(KeyError, match='far'):
        model({key: value for key, value in context.items() if key != 'far'})
    with pytest.raises(ValueError, match='near < far'):
        model(dict(context, far=torch.full((1, 2), 0.5)))


# ----------------------------------------------------------------------------- components

def test_depth_predictor_top1_and_sampling():
    torch.manual_seed(0)
    predictor = DepthPredictor(channels=6, num_buckets=4)
    features = torch.randn(2, 5, 6, dtype=torch.float64)
    predictor.double()
    near, far = torch.tensor(1.0, dtype=torch.float64), torch.tensor(20.0, dtype=torch.float64)

    top = predictor(features, near, far, num_samples=None)
    raw = predictor.projection(features)
    probabilities = raw[..., 0::2].softmax(-1)
    assert torch.equal(top.buckets[..., 0], probabilities.argmax(-1))
    torch.testing.assert_close(top.probabilities[..., 0], probabilities.amax(-1), rtol=1e-6,
                               atol=0)
    # The depth lies inside the chosen bucket (buckets uniform in relative disparity).
    disparity = depth_to_relative_disparity(top.depths, near, far) * 4
    assert ((disparity >= top.buckets) & (disparity <= top.buckets + 1)).all()

    draws = predictor(features[:1, :1], near, far, num_samples=20000)
    frequencies = torch.bincount(draws.buckets.flatten(), minlength=4).double() / 20000
    torch.testing.assert_close(frequencies, probabilities[0, 0], rtol=0, atol=0.02)
    torch.testing.assert_close(draws.probabilities[0, 0], probabilities[0, 0, draws.buckets[0, 0]],
                               rtol=1e-6, atol=0)


def test_relative_disparity_round_trip():
    near, far = torch.tensor(0.5, dtype=torch.float64), torch.tensor(40.0, dtype=torch.float64)
    disparity = torch.linspace(0, 1, 11, dtype=torch.float64)
    depth = relative_disparity_to_depth(disparity, near, far)
    torch.testing.assert_close(depth[[0, -1]], torch.stack((near, far)))
    assert (depth.diff() > 0).all()
    # Uniform in inverse depth.
    torch.testing.assert_close((1 / depth).diff(), torch.full((10,), (1 / far - 1 / near) / 10,
                                                              dtype=torch.float64))
    torch.testing.assert_close(depth_to_relative_disparity(depth, near, far), disparity)


def two_cameras(dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """Camera-to-world matrices of camera A (identity) and B (moved right, turned left)."""
    extrinsics = torch.eye(4, dtype=dtype).repeat(2, 1, 1)
    angle = -0.15
    extrinsics[1, :3, :3] = torch.tensor([[math.cos(angle), 0, math.sin(angle)], [0, 1, 0],
                                          [-math.sin(angle), 0, math.cos(angle)]], dtype=dtype)
    extrinsics[1, :3, 3] = torch.tensor([0.4, 0.05, 0.0], dtype=dtype)
    intrinsics = torch.tensor([[0.8, 0, 0.5], [0, 0.8, 0.5], [0, 0, 1]], dtype=dtype)
    return extrinsics, intrinsics


def project(points: torch.Tensor, extrinsics: torch.Tensor,
            intrinsics: torch.Tensor) -> torch.Tensor:
    """World points ``[N, 3]`` -> normalised image points ``[N, 2]`` of a camera."""
    camera = torch.linalg.inv(extrinsics)
    local = points @ camera[:3, :3].T + camera[:3, 3]
    return (local / local[..., 2:]) @ intrinsics.T[..., :2]


def test_epipolar_segment_contains_projected_points_and_depths_invert_them():
    extrinsics, intrinsics = two_cameras()
    direction = torch.linalg.inv(intrinsics) @ torch.tensor([0.4, 0.55, 1.0], dtype=torch.float64)
    direction = direction / direction.norm()
    origin = torch.zeros(3, dtype=torch.float64)
    near, far = torch.tensor(1.0, dtype=torch.float64), torch.tensor(50.0, dtype=torch.float64)

    segment = project_ray_segments(origin, direction, extrinsics[1], intrinsics, near, far)
    assert segment.overlaps
    depths = torch.tensor([1.5, 3.0, 10.0], dtype=torch.float64)
    xy = project(origin + depths[:, None] * direction, extrinsics[1], intrinsics)
    # Each projected point lies on the segment, between its ends.
    along = segment.end - segment.start
    fraction = ((xy - segment.start) @ along) / along.dot(along)
    torch.testing.assert_close(segment.start + fraction[:, None] * along, xy)
    assert ((fraction >= 0) & (fraction <= 1)).all() and (fraction.diff() > 0).all()
    # Both ends lie in the image.
    assert (segment.end >= -1e-9).all() and (segment.end <= 1 + 1e-9).all()

    torch.testing.assert_close(ray_depths(origin, direction, xy, extrinsics[1], intrinsics), depths)


def test_epipolar_segment_behind_other_camera_does_not_overlap():
    extrinsics, intrinsics = two_cameras()
    facing_back = extrinsics[1].clone()
    facing_back[:3, :3] = torch.diag(torch.tensor([-1.0, 1.0, -1.0], dtype=torch.float64))
    direction = torch.tensor([0.0, 0.0, 1.0], dtype=torch.float64)
    segment = project_ray_segments(torch.zeros(3, dtype=torch.float64), direction, facing_back,
                                   intrinsics, torch.tensor(1.0, dtype=torch.float64),
                                   torch.tensor(50.0, dtype=torch.float64))
    assert not segment.overlaps


def test_epipolar_sampler_reads_features_at_the_sample_positions():
    extrinsics, intrinsics = two_cameras(torch.float32)
    h = w = 16
    ys, xs = torch.meshgrid((torch.arange(h) + 0.5) / h, (torch.arange(w) + 0.5) / w, indexing='ij')
    ramps = torch.stack((xs, ys))  # a feature map whose value is its own position
    features = ramps.expand(1, 2, 2, h, w)
    samples = sample_epipolar_lines(features, extrinsics[None], intrinsics.expand(1, 2, 3, 3),
                                    torch.ones(1, 2), torch.full((1, 2), 50.0), num_samples=8)
    assert samples.features.shape == (1, 2, 1, h * w, 8, 2)
    assert samples.valid.any() and not samples.valid.all()
    # Bilinear reads of a linear ramp are exact away from the half-pixel border band.
    inside = ((samples.xy > 0.5 / w) & (samples.xy < 1 - 0.5 / w)).all(-1)
    inside &= samples.valid[..., None]
    assert inside.sum() > 1000
    torch.testing.assert_close(samples.features[inside], samples.xy[inside], rtol=0, atol=1e-5)
    assert (samples.features[~samples.valid] == 0).all()


def test_sinusoidal_encoding_layout():
    encoding = SinusoidalEncoding(num_octaves=3)
    values = torch.tensor([[0.1, 0.7]])
    encoded = encoding(values)
    assert encoded.shape == (1, encoding.out_channels(2)) == (1, 12)
    for d in range(2):
        for k in range(3):
            angle = 2 * math.pi * 2 ** k * values[0, d]
            block = encoded[0, 6 * d + 2 * k: 6 * d + 2 * k + 2]
            torch.testing.assert_close(block, torch.stack((torch.sin(angle), torch.cos(angle))),
                                       rtol=0, atol=1e-5)


def test_dino_position_embeddings_follow_dino_not_output_size():
    generator = torch.Generator().manual_seed(0)
    table = torch.randn(1, 1 + 28 * 28, 4, generator=generator)
    assert dino_position_embeddings(table, 28, 28) is table
    resized = dino_position_embeddings(table, 8, 12)
    assert resized.shape == (1, 1 + 8 * 12, 4)
    assert torch.equal(resized[:, 0], table[:, 0])
    grid = table[:, 1:].reshape(1, 28, 28, 4).permute(0, 3, 1, 2)
    by_size = torch.nn.functional.interpolate(grid, size=(8, 12), mode='bicubic')
    # Same output grid, different sampling positions: the scale factor is (n + 0.1) / 28.
    assert not torch.allclose(resized[:, 1:], by_size.flatten(2).transpose(1, 2), atol=1e-3)
