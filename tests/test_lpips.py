"""LPIPS-VGG from local weights: equals the reference ``lpips`` package; as a metric and a loss."""
from __future__ import annotations

import importlib.util

import pytest
import torch
from torch import nn

from videoscene.evaluation import LPIPS, NovelViewLPIPS
from videoscene.evaluation import lpips as lpips_module
from videoscene.models import GaussianReconstruction
from videoscene.models import reconstruction as reconstruction_module
from videoscene.registry import METRICS
from videoscene.structures import Gaussians

SIZE = 32
# Index of every VGG16 feature convolution in torchvision's ``vgg16().features``.
CONV_INDICES = (0, 2, 5, 7, 10, 12, 14, 17, 19, 21, 24, 26, 28)


def random_vgg_features() -> dict[str, torch.Tensor]:
    """A randomly initialised torchvision VGG16 ``features`` state dict (keys ``features.N.*``)."""
    torchvision = pytest.importorskip('torchvision')
    features = torchvision.models.vgg.make_layers(torchvision.models.vgg.cfgs['D'])
    return {f'features.{key}': value for key, value in features.state_dict().items()}


@pytest.fixture(scope='module')
def vgg_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    state = random_vgg_features()
    # A real torchvision checkpoint also holds the classifier, which LPIPS does not use.
    state['classifier.6.bias'] = torch.zeros(1000)
    return state


@pytest.fixture(scope='module')
def vgg_file(vgg_state, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp('vgg') / 'vgg16_random.pth'
    torch.save(vgg_state, path)
    return str(path)


@pytest.fixture(scope='module')
def shipped_linear_weights() -> str:
    path = lpips_module.default_linear_weights()
    if path is None:
        pytest.skip('the lpips package (pip install lpips==0.1.4) supplies the linear weights')
    return path


@pytest.fixture(scope='module')
def ours(vgg_file, shipped_linear_weights) -> LPIPS:
    return LPIPS(vgg_file)


def reference_lpips(vgg_state: dict[str, torch.Tensor]) -> nn.Module:
    """The lpips package's LPIPS-VGG with its shipped linear layers and our VGG16 weights."""
    lpips = pytest.importorskip('lpips')
    reference = lpips.LPIPS(net='vgg', pretrained=True, pnet_rand=True, verbose=False)
    slice_starts = (0, 4, 9, 16, 23)  # the lpips package cuts features into five slices
    mapped = {}
    for key, value in vgg_state.items():
        if key.startswith('features.'):
            index = int(key.split('.')[1])
            slice_number = sum(index >= start for start in slice_starts)
            mapped[f'net.slice{slice_number}.{key.removeprefix("features.")}'] = value
    result = reference.load_state_dict(mapped, strict=False)
    assert not result.unexpected_keys
    assert all(k.startswith(('lin', 'scaling_layer')) for k in result.missing_keys)
    return reference


# The reference builds torchvision's VGG16 with the deprecated ``pretrained=False``.
@pytest.mark.filterwarnings('ignore::UserWarning')
def test_equals_reference_lpips_package(ours, vgg_state):
    reference = reference_lpips(vgg_state)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(2, 2, 3, SIZE, SIZE, generator=generator)
    # Row 0 against unrelated images, row 1 against slightly noisy copies.
    y = torch.stack([torch.rand(x[0].shape, generator=generator),
                     (x[1] + 0.05 * torch.randn(x[1].shape, generator=generator)).clamp(0, 1)])
    x_ref = x.flatten(0, 1).clone().requires_grad_(True)
    expected = reference(x_ref, y.flatten(0, 1), normalize=True).flatten()
    x_ours = x.clone().requires_grad_(True)
    got = ours(x_ours, y)
    assert got.shape == (2, 2)
    torch.testing.assert_close(got.flatten(), expected, rtol=1e-5, atol=1e-7)
    assert got[1].max() < got[0].min()
    expected.sum().backward()
    got.sum().backward()
    torch.testing.assert_close(x_ours.grad.flatten(0, 1), x_ref.grad, rtol=1e-4, atol=1e-8)


def test_zero_for_identical_images_and_symmetric(ours):
    generator = torch.Generator().manual_seed(2)
    x, y = torch.rand(2, 2, 3, SIZE, SIZE, generator=generator)
    assert torch.equal(ours(x, x), torch.zeros(2))
    assert (ours(x, y) > 0).all()
    torch.testing.assert_close(ours(x, y), ours(y, x))


def test_frozen_and_outside_the_state_dict(ours):
    assert list(ours.parameters()) == []
    assert ours.state_dict() == {}
    assert not ours.training


def test_missing_checkpoint_names_the_file(tmp_path):
    missing = tmp_path / 'vgg16-397923af.pth'
    with pytest.raises(FileNotFoundError, match='vgg16-397923af.pth'):
        LPIPS(missing, linear_weights=missing)


def test_mismatched_checkpoint_lists_missing_unexpected_and_wrong_keys(vgg_state, tmp_path,
                                                                      shipped_linear_weights):
    state = dict(vgg_state)
    del state['features.28.bias']
    state['features.30.weight'] = torch.zeros(1)
    state['features.0.weight'] = torch.zeros(64, 3, 5, 5)
    path = tmp_path / 'not_vgg16.pth'
    torch.save(state, path)
    with pytest.raises(ValueError) as error:
        LPIPS(path, shipped_linear_weights)
    message = str(error.value)
    for part in ('not_vgg16.pth', 'features.28.bias', 'features.30.weight', 'features.0.weight'):
        assert part in message
    assert 'classifier' not in message


def test_negative_linear_weights_are_rejected(vgg_file, tmp_path):
    linear = {f'lin{i}.model.1.weight': torch.rand(1, c, 1, 1)
              for i, c in enumerate((64, 128, 256, 512, 512))}
    linear['lin2.model.1.weight'][0, 0] = -1.0
    path = tmp_path / 'linear.pth'
    torch.save(linear, path)
    with pytest.raises(ValueError, match='lin2 has negative'):
        LPIPS(vgg_file, linear_weights=path)


def test_linear_weights_required_without_the_lpips_package(vgg_file, monkeypatch):
    monkeypatch.setattr(importlib.util, 'find_spec', lambda name: None)
    with pytest.raises(FileNotFoundError, match='linear_weights'):
        LPIPS(vgg_file)


def test_rejects_bad_image_shapes(ours):
    with pytest.raises(ValueError, match='same shape'):
        ours(torch.rand(3, SIZE, SIZE), torch.rand(3, SIZE, SIZE + 16))
    with pytest.raises(ValueError, match='H, W >= 16'):
        ours(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


def test_metric_requires_a_checkpoint():
    with pytest.raises(ValueError, match='unavailable.*vgg_checkpoint'):
        METRICS.build(dict(type='NovelViewLPIPS'))


def test_metric_is_the_mean_over_views(ours, vgg_file):
    metric = METRICS.build(dict(type='NovelViewLPIPS', vgg_checkpoint=vgg_file))
    assert isinstance(metric, NovelViewLPIPS)
    generator = torch.Generator().manual_seed(3)
    samples = [dict(pred=torch.rand(f, 3, SIZE, SIZE, generator=generator),
                    gt=torch.rand(f, 3, SIZE, SIZE, generator=generator)) for f in (2, 3)]
    metric.process({}, samples)
    values = torch.cat([ours(s['pred'], s['gt']) for s in samples])
    result = metric.compute_metrics(metric.results)
    assert result['lpips'] == pytest.approx(values.mean().item(), rel=1e-6)


class LearnableColours(nn.Module):
    """A reconstructor: a fixed 8 x 8 grid of Gaussians in front of the camera, learned colours."""

    def __init__(self) -> None:
        super().__init__()
        self.harmonics = nn.Parameter(torch.randn(64, 3, 1))

    def forward(self, context: dict) -> Gaussians:
        batch = context['image'].shape[0]
        xy = torch.stack(torch.meshgrid(*[torch.linspace(-0.9, 0.9, 8)] * 2, indexing='xy'), -1)
        means = torch.cat([xy.reshape(-1, 2), torch.full((64, 1), 2.0)], -1)
        return Gaussians(means=means.expand(batch, -1, -1),
                         covariances=(0.15 ** 2 * torch.eye(3)).expand(batch, 64, 3, 3),
                         harmonics=self.harmonics.expand(batch, -1, -1, -1),
                         opacities=torch.full((batch, 64), 0.9))


def scene_batch(views: int = 2) -> tuple[dict, dict]:
    generator = torch.Generator().manual_seed(4)
    intrinsics = torch.tensor([[1.0, 0, 0.5], [0, 1.0, 0.5], [0, 0, 1]])

    def cameras(n: int) -> dict:
        return dict(image=torch.rand(1, n, 3, SIZE, SIZE, generator=generator),
                    extrinsics=torch.eye(4).expand(1, n, 4, 4),
                    intrinsics=intrinsics.expand(1, n, 3, 3),
                    near=torch.full((1, n), 0.5), far=torch.full((1, n), 10.0))

    return cameras(2), cameras(views)


def test_model_with_lpips_returns_both_losses_and_trains_only_the_reconstructor(vgg_file, ours):
    model = GaussianReconstruction(reconstructor=dict(type=LearnableColours),
                                   lpips=dict(vgg_checkpoint=vgg_file, weight=0.05))
    context, target = scene_batch()
    losses = model(context, target, mode='loss')
    assert set(losses) == {'loss_mse', 'loss_lpips'}
    rendered = model(context, target, mode='tensor').color
    torch.testing.assert_close(losses['loss_lpips'],
                               0.05 * ours(rendered, target['image']).mean())

    losses['loss_lpips'].backward()
    grad = model.reconstructor.harmonics.grad
    assert grad is not None and torch.isfinite(grad).all() and grad.abs().sum() > 0
    assert all(name.startswith('reconstructor.') for name, _ in model.named_parameters())
    assert not any('lpips' in key for key in model.state_dict())


def test_model_without_lpips_logs_once_and_trains_on_mse(monkeypatch, vgg_file,
                                                         shipped_linear_weights):
    messages = []
    monkeypatch.setattr(reconstruction_module, '_lpips_off_logged', False)
    monkeypatch.setattr(reconstruction_module, 'print_log',
                        lambda message, **kwargs: messages.append(message))
    first = GaussianReconstruction(reconstructor=dict(type=LearnableColours))
    GaussianReconstruction(reconstructor=dict(type=LearnableColours))
    assert len(messages) == 1
    assert 'LPIPS' in messages[0] and 'vgg_checkpoint' in messages[0]
    context, target = scene_batch()
    assert set(first(context, target, mode='loss')) == {'loss_mse'}

    monkeypatch.setattr(reconstruction_module, '_lpips_off_logged', False)
    GaussianReconstruction(reconstructor=dict(type=LearnableColours),
                           lpips=dict(vgg_checkpoint=vgg_file))
    assert len(messages) == 1


def test_ssim_matches_the_mvsplat_formula_on_known_cases():
    from skimage.metrics import structural_similarity

    from videoscene.evaluation import ssim
    torch.manual_seed(0)
    image = torch.rand(2, 3, 3, 24, 24)
    assert torch.allclose(ssim(image, image), torch.ones(2, 3))
    noisy = (image + 0.2 * torch.randn_like(image)).clamp(0, 1)
    values = ssim(noisy, image)
    assert values.shape == (2, 3) and (values < 0.95).all() and (values > 0.3).all()
    # independent evaluation of one image with the settings spelled out per channel
    x, y = noisy[1, 2].double().numpy(), image[1, 2].double().numpy()
    per_channel = [structural_similarity(x[c], y[c], win_size=11, gaussian_weights=True,
                                         sigma=1.5, use_sample_covariance=True, data_range=1.0)
                   for c in range(3)]
    assert abs(values[1, 2].item() - sum(per_channel) / 3) < 1e-6
