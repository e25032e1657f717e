"""MVSplat re-implementation: official state dict, golden outputs, checkpoint loading and
conversion, input validation, and the shared Gaussian adapter / SH rotation."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from videoscene.reconstructors import CheckpointMismatchError, MVSplat
from videoscene.reconstructors.mvsplat.cost_volume import (correlation_volume, disparity_candidates,
                                                      warp_to_depth_planes)
from videoscene.reconstructors.gaussian_adapter import (GaussianAdapter, quaternion_to_matrix,
                                                        subpixel_coordinates)
from videoscene.reconstructors.sh_rotation import real_spherical_harmonics, rotate_sh, wigner_d
from videoscene.registry import RECONSTRUCTORS

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REPO.parent / 'shared' / 'fixtures' / 'mvsplat'


@pytest.fixture(scope='module')
def golden() -> dict:
    path = FIXTURES / 'golden_re10k_64x64.pt'
    if not path.is_file():
        pytest.skip(f'MVSplat golden fixture absent: {path}')
    return torch.load(path, map_location='cpu', weights_only=True)


@pytest.fixture(scope='module')
def model(golden) -> MVSplat:
    return MVSplat().load_official(golden['state_dict']).eval()


def random_rotations(count: int, seed: int, dtype=torch.float64) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(count, 3, 3, generator=generator, dtype=dtype))
    q = q * torch.sign(torch.diagonal(r, dim1=-2, dim2=-1))[:, None, :]
    return q * torch.det(q)[:, None, None]  # proper rotations


def make_context(batch: int, views: int, size: int, seed: int) -> dict[str, torch.Tensor]:
    """Smooth random images and cameras translating sideways, looking roughly along +z."""
    generator = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch * views, 3, size // 8, size // 8, generator=generator)
    images = torch.nn.functional.interpolate(coarse, size=(size, size), mode='bilinear')
    extrinsics = torch.eye(4).repeat(batch, views, 1, 1)
    angles = 0.08 * torch.randn(batch, views, generator=generator)
    extrinsics[..., 0, 0] = extrinsics[..., 2, 2] = torch.cos(angles)
    extrinsics[..., 0, 2], extrinsics[..., 2, 0] = torch.sin(angles), -torch.sin(angles)
    extrinsics[..., 0, 3] = 0.3 * torch.arange(views) + 0.05 * torch.randn(batch, views, generator=generator)
    intrinsics = torch.tensor([[0.9, 0.0, 0.5], [0.0, 0.9, 0.5], [0.0, 0.0, 1.0]]).repeat(batch, views, 1, 1)
    return {'image': images.reshape(batch, views, 3, size, size), 'extrinsics': extrinsics,
            'intrinsics': intrinsics, 'near': torch.ones(batch, views),
            'far': torch.full((batch, views), 100.0)}


def per_gaussian_relative_error(actual: torch.Tensor, expected: torch.Tensor) -> torch.Tensor:
    """``|a - e| / |e|`` per Gaussian (Frobenius norm over the trailing dims)."""
    return (actual - expected).flatten(2).norm(dim=-1) / expected.flatten(2).norm(dim=-1)


# ----------------------------------------------------------------------------- official weights

def test_state_dict_keys_and_shapes_match_official():
    path = FIXTURES / 'state_dict_shapes_re10k.json'
    if not path.is_file():
        pytest.skip(f'MVSplat state-dict shape list absent: {path}')
    official = json.loads(path.read_text())
    ours = {f'encoder.{key}': list(value.shape) for key, value in MVSplat().state_dict().items()}
    assert ours == official['state_dict']
    assert len(ours) == 471
    assert sum(p.numel() for p in MVSplat().parameters()) == official['num_parameters'] == 11_955_734


def test_reproduces_golden_outputs(model, golden):
    with torch.no_grad():
        output = model.predict(golden['inputs'])
    gaussians, expected = output.gaussians, golden['outputs']

    means = per_gaussian_relative_error(gaussians.means, expected['means'])
    covariances = per_gaussian_relative_error(gaussians.covariances, expected['covariances'])
    harmonics = (gaussians.harmonics - expected['harmonics']).abs()
    opacities = (gaussians.opacities - expected['opacities']).abs()
    print(f"\nmeans: max abs {(gaussians.means - expected['means']).abs().max():.3e}, "
          f'per-Gaussian rel max {means.max():.3e} median {means.median():.3e}')
    print(f"covariances: max abs {(gaussians.covariances - expected['covariances']).abs().max():.3e}, "
          f'per-Gaussian rel max {covariances.max():.3e} median {covariances.median():.3e}')
    print(f'harmonics: max abs {harmonics.max():.3e}; opacities: max abs {opacities.max():.3e}')

    # Tolerances from fixtures/README.md: the reference itself moves this much with 1 vs 2 threads.
    assert means.max() < 1e-2 and means.median() < 1e-4
    assert covariances.max() < 2e-2 and covariances.median() < 1e-3
    assert harmonics.max() < 1e-4
    assert opacities.max() < 1e-5

    # The returned depth is where the means sit: distance from each view's camera centre.
    b, v, h, w = output.depths.shape
    assert (b, v, h, w) == (1, 2, 64, 64)
    centres = golden['inputs']['extrinsics'][:, :, None, :3, 3]
    distance = (gaussians.means.reshape(b, v, h * w, 3) - centres).norm(dim=-1)
    torch.testing.assert_close(distance, output.depths.flatten(2), rtol=1e-4, atol=1e-4)


def test_official_checkpoint_file_and_conversion(golden, tmp_path):
    checkpoint = tmp_path / 're10k.ckpt'
    torch.save({'state_dict': golden['state_dict'], 'epoch': 3, 'global_step': 300000}, checkpoint)
    loaded = MVSplat(checkpoint=checkpoint)
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, golden['state_dict'][f'encoder.{key}']), key

    spec = importlib.util.spec_from_file_location('convert_checkpoint',
                                                  REPO / 'tools' / 'convert_checkpoint.py')
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    output = tool.main(['--arch', 'mvsplat', str(checkpoint), str(tmp_path / 'out.safetensors')])
    converted = load_file(str(output))
    assert set(converted) == {key[len('encoder.'):] for key in golden['state_dict']}
    for key, value in converted.items():
        assert torch.equal(value, golden['state_dict'][f'encoder.{key}']), key
    reloaded = MVSplat(checkpoint=output)
    assert torch.equal(reloaded.depth_predictor.to_disparity[2].weight,
                       golden['state_dict']['encoder.depth_predictor.to_disparity.2.weight'])

    broken = tmp_path / 'broken.ckpt'
    state = dict(golden['state_dict'])
    del state['encoder.depth_predictor.proj_feature.bias']
    torch.save({'state_dict': state}, broken)
    with pytest.raises(CheckpointMismatchError, match='depth_predictor.proj_feature.bias'):
        tool.main(['--arch', 'mvsplat', str(broken), str(tmp_path / 'broken.safetensors')])
    assert not (tmp_path / 'broken.safetensors').exists()


def test_mismatched_checkpoint_lists_missing_and_unexpected_keys(golden):
    state = dict(golden['state_dict'])
    del state['encoder.backbone.backbone.conv1.weight']
    del state['encoder.depth_predictor.to_gaussians.2.bias']
    state['encoder.decoder_extra.weight'] = torch.zeros(3)
    state['losses.0.weight'] = torch.zeros(1)  # no 'encoder.' prefix: unexpected as is
    state['encoder.proj_feature_typo'] = torch.zeros(1)
    state['encoder.depth_predictor.proj_feature.bias'] = torch.zeros(7)
    with pytest.raises(CheckpointMismatchError) as info:
        MVSplat().load_official(state)
    error = info.value
    assert error.missing == ['backbone.backbone.conv1.weight', 'depth_predictor.to_gaussians.2.bias']
    assert error.unexpected == ['decoder_extra.weight', 'losses.0.weight', 'proj_feature_typo']
    assert error.mismatched == [('depth_predictor.proj_feature.bias', (7,), (32,))]
    message = str(error)
    for key in error.missing + error.unexpected + ['depth_predictor.proj_feature.bias']:
        assert key in message


# ----------------------------------------------------------------------------- inputs

@pytest.mark.parametrize('height, width', [(40, 64), (64, 72)])
def test_rejects_sizes_not_multiple_of_16(height, width):
    context = make_context(1, 2, 64, seed=0)
    context['image'] = torch.rand(1, 2, 3, height, width)
    with pytest.raises(ValueError, match=f'multiples of 16.*H={height}, W={width}'):
        MVSplat()(context)


@pytest.mark.parametrize('key', ['image', 'extrinsics', 'near'])
def test_rejects_non_finite_inputs(key):
    context = make_context(1, 2, 32, seed=0)
    context[key] = context[key].clone()
    context[key].view(-1)[0] = float('nan')
    with pytest.raises(ValueError, match=f"context\\['{key}'\\]: contains non-finite"):
        MVSplat()(context)


def test_rejects_bad_context():
    context = make_context(1, 2, 32, seed=0)
    with pytest.raises(KeyError, match='far'):
        MVSplat()({k: v for k, v in context.items() if k != 'far'})
    with pytest.raises(ValueError, match=r"intrinsics'\]: must have shape \[1, 2, 3, 3\]"):
        MVSplat()({**context, 'intrinsics': context['intrinsics'][:, :1]})
    with pytest.raises(ValueError, match='at least 2 context views'):
        MVSplat()({k: v[:, :1] for k, v in context.items()})
    with pytest.raises(ValueError, match='0 < near < far'):
        MVSplat()({**context, 'far': torch.full((1, 2), 0.5)})


# ----------------------------------------------------------------------------- behaviour

def test_batch_elements_and_view_order_are_independent(model):
    first, second = make_context(1, 2, 32, seed=1), make_context(1, 2, 32, seed=2)
    both = {key: torch.cat((first[key], second[key])) for key in first}
    swapped = {key: value.flip(1) for key, value in first.items()}
    with torch.no_grad():
        single = model(first)
        batched = model(both)
        flipped = model(swapped)
        other = model(second)

    g = 2 * 32 * 32
    assert batched.means.shape == (2, g, 3) and batched.covariances.shape == (2, g, 3, 3)
    assert batched.harmonics.shape == (2, g, 3, 25) and batched.opacities.shape == (2, g)
    for name in ('means', 'covariances', 'harmonics', 'opacities'):
        torch.testing.assert_close(getattr(batched, name)[:1], getattr(single, name),
                                   rtol=1e-4, atol=1e-4)
        torch.testing.assert_close(getattr(batched, name)[1:], getattr(other, name),
                                   rtol=1e-4, atol=1e-4)
        # Swapping the two views swaps the two halves of the (view-major) Gaussians.
        swapped_back = getattr(flipped, name).unflatten(1, (2, -1)).flip(1).flatten(1, 2)
        torch.testing.assert_close(swapped_back, getattr(single, name), rtol=1e-3, atol=1e-3)


def test_three_views_and_depth_range(model):
    context = make_context(1, 3, 32, seed=3)
    with torch.no_grad():
        output = model.predict(context)
    assert output.gaussians.means.shape == (1, 3 * 32 * 32, 3)
    assert output.depths.shape == (1, 3, 32, 32)
    assert torch.isfinite(output.gaussians.covariances).all()
    assert output.depths.min() >= 1.0 - 1e-4 and output.depths.max() <= 100.0 + 1e-2
    assert ((output.gaussians.opacities > 0) & (output.gaussians.opacities < 1)).all()


def test_registry_builds_mvsplat_with_official_defaults():
    model = RECONSTRUCTORS.build(dict(type='MVSplat'))
    assert isinstance(model, MVSplat)
    assert model.depth_predictor.num_depth_candidates == 128
    assert model.gaussian_adapter.sh_degree == 4


# ----------------------------------------------------------------------------- SH rotation

def test_rotated_coefficients_equal_evaluation_at_rotated_directions():
    rotations = random_rotations(6, seed=0)
    generator = torch.Generator().manual_seed(1)
    coefficients = torch.randn(6, 25, generator=generator, dtype=torch.float64)
    directions = torch.nn.functional.normalize(
        torch.randn(6, 200, 3, generator=generator, dtype=torch.float64), dim=-1)
    rotated = rotate_sh(coefficients, rotations)
    # f_rotated(R v) == f(v) for every direction v, degree by degree (blocks do not mix).
    value_rotated = (real_spherical_harmonics(directions @ rotations.transpose(-1, -2), 4)
                     * rotated[:, None]).sum(-1)
    value = (real_spherical_harmonics(directions, 4) * coefficients[:, None]).sum(-1)
    torch.testing.assert_close(value_rotated, value, rtol=1e-10, atol=1e-10)


def test_wigner_d_is_a_representation_in_e3nn_basis():
    r1, r2 = random_rotations(4, seed=2), random_rotations(4, seed=3)
    d1, d2, d12 = wigner_d(r1, 4), wigner_d(r2, 4), wigner_d(r1 @ r2, 4)
    torch.testing.assert_close(d12, d1 @ d2, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(d1 @ d1.transpose(-1, -2), torch.eye(25, dtype=torch.float64).expand(4, 25, 25),
                               rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(d1[:, 1:4, 1:4], r1, rtol=1e-10, atol=1e-10)  # l = 1 is (x, y, z)
    torch.testing.assert_close(wigner_d(torch.eye(3), 4), torch.eye(25, dtype=torch.float64))


def test_spherical_harmonics_follow_e3nn_degree_two_polynomials():
    x, y, z = torch.nn.functional.normalize(torch.tensor([0.3, -0.7, 0.5], dtype=torch.float64), dim=0)
    expected = torch.stack([math.sqrt(15) * x * z, math.sqrt(15) * x * y,
                            math.sqrt(5) * (y * y - 0.5 * (x * x + z * z)), math.sqrt(15) * y * z,
                            0.5 * math.sqrt(15) * (z * z - x * x)]) / math.sqrt(4 * math.pi)
    values = real_spherical_harmonics(torch.stack([x, y, z]), 4)
    torch.testing.assert_close(values[4:9], expected)
    torch.testing.assert_close(values[0], torch.tensor(1 / math.sqrt(4 * math.pi), dtype=torch.float64))


# ----------------------------------------------------------------------------- Gaussian adapter

def test_quaternions_are_xyzw():
    angle = 0.7
    q = torch.tensor([0.0, 0.0, math.sin(angle / 2), math.cos(angle / 2)]) * 3.0  # any norm
    expected = torch.tensor([[math.cos(angle), -math.sin(angle), 0.0],
                             [math.sin(angle), math.cos(angle), 0.0], [0.0, 0.0, 1.0]])
    torch.testing.assert_close(quaternion_to_matrix(q), expected, rtol=1e-5, atol=1e-6)


def test_adapter_places_gaussians_on_rays_with_expected_shape():
    h, w = 4, 6
    generator = torch.Generator().manual_seed(0)
    rotation = random_rotations(1, seed=5, dtype=torch.float32)[0]
    extrinsics = torch.eye(4)
    extrinsics[:3, :3], extrinsics[:3, 3] = rotation, torch.tensor([0.5, -1.0, 2.0])
    intrinsics = torch.tensor([[0.8, 0.0, 0.45], [0.0, 1.1, 0.55], [0.0, 0.0, 1.0]])
    offsets = torch.randn(h * w, 2, generator=generator)
    coordinates = subpixel_coordinates(offsets, (h, w))
    depths = 1.0 + 4.0 * torch.rand(h * w, generator=generator)
    raw = torch.randn(h * w, 7 + 75, generator=generator)
    opacities = torch.rand(h * w, generator=generator)
    adapter = GaussianAdapter()
    params = adapter(extrinsics, intrinsics, coordinates, depths, opacities, raw, (h, w))

    # Offsets move centres by less than half a pixel; zero offsets give the pixel centres.
    centres = subpixel_coordinates(torch.zeros(h * w, 2), (h, w))
    assert torch.allclose(centres[w + 2], torch.tensor([2.5 / w, 1.5 / h]))
    assert ((coordinates - centres).abs() < torch.tensor([0.5 / w, 0.5 / h])).all()

    # Means: at distance `depth` from the camera centre, projecting back to their coordinates.
    camera = (params.means - extrinsics[:3, 3]) @ rotation
    torch.testing.assert_close(camera.norm(dim=-1), depths)
    projected = camera @ intrinsics.T
    torch.testing.assert_close(projected[:, :2] / projected[:, 2:], coordinates)

    # Covariances: world-space rotation of R_q diag(s^2) R_q^T, scales bounded by the footprint.
    footprint = 0.1 * (1 / (0.8 * w) + 1 / (1.1 * h))
    scales = (0.5 + 14.5 * raw[:, :3].sigmoid()) * depths[:, None] * footprint
    eigenvalues = torch.linalg.eigvalsh(params.covariances)
    torch.testing.assert_close(eigenvalues, (scales ** 2).sort(dim=-1).values, rtol=1e-4, atol=1e-8)

    # Harmonics: camera-space coefficients damped per degree, then rotated to world space.
    camera_sh = raw[:, 7:].reshape(-1, 3, 25) * adapter.sh_mask
    assert adapter.sh_mask[0] == 1 and torch.allclose(adapter.sh_mask[1:4], torch.tensor(0.025))
    torch.testing.assert_close(params.harmonics, rotate_sh(camera_sh, rotation), rtol=1e-5, atol=1e-6)
    assert params.harmonics.shape == (h * w, 3, 25)
    torch.testing.assert_close(params.opacities, opacities)


# ----------------------------------------------------------------------------- cost volume

def test_plane_sweep_warp_shifts_by_the_plane_disparity():
    # Source camera 0.5 to the right of the reference: a point at depth z appears
    # fx * 0.5 / z pixels further left in the source view.
    generator = torch.Generator().manual_seed(0)
    source = torch.randn(1, 4, 8, 12, generator=generator)
    fx = 10.0
    intrinsics = torch.tensor([[[fx, 0.0, 6.0], [0.0, fx, 4.0], [0.0, 0.0, 1.0]]])
    reference_to_source = torch.eye(4)[None].clone()
    reference_to_source[0, 0, 3] = -0.5  # x_source = x_reference - 0.5
    depths = torch.tensor([[fx * 0.5 / 1.0, fx * 0.5 / 3.0]])  # shifts of 1 and 3 pixels
    warped = warp_to_depth_planes(source, intrinsics, reference_to_source, depths)
    assert warped.shape == (1, 4, 2, 8, 12)
    torch.testing.assert_close(warped[:, :, 0, :, 1:], source[..., :-1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(warped[:, :, 1, :, 3:], source[..., :-3], rtol=1e-4, atol=1e-4)
    assert (warped[:, :, 1, :, :3] == 0).all()  # projects outside the source view: zeros


def test_correlation_volume_does_not_depend_on_chunking():
    context = make_context(2, 3, 32, seed=4)
    features = torch.randn(2, 3, 16, 8, 8, generator=torch.Generator().manual_seed(5))
    disparities = disparity_candidates(context['near'], context['far'], 13)
    assert torch.allclose(disparities[..., 0], 1 / context['far'])
    assert torch.allclose(disparities[..., -1], 1 / context['near'])
    whole = correlation_volume(features, context['intrinsics'], context['extrinsics'], disparities,
                               planes_per_chunk=13)
    chunked = correlation_volume(features, context['intrinsics'], context['extrinsics'],
                                 disparities, planes_per_chunk=4)
    assert whole.shape == (6, 13, 8, 8)
    torch.testing.assert_close(chunked, whole)


def test_every_parameter_receives_a_finite_gradient():
    model = MVSplat(num_depth_candidates=8, costvolume_unet_feat_dim=32, depth_unet_feat_dim=32,
                    feature_channels=32, num_transformer_layers=2)
    gaussians = model(make_context(1, 2, 32, seed=6))
    loss = (gaussians.means.square().mean() + gaussians.covariances.abs().mean()
            + gaussians.harmonics.square().mean() + gaussians.opacities.mean())
    loss.backward()
    for name, parameter in model.named_parameters():
        assert parameter.grad is not None, name
        assert torch.isfinite(parameter.grad).all(), name
    # A float64 forward works too (masks and constants follow the input dtype).
    double = model.double()(({k: v.double() for k, v in make_context(1, 2, 32, seed=6).items()}))
    assert double.means.dtype == torch.float64
