"""FVD: the Frechet distance against closed forms and scipy, the I3D loaders against a functional
I3D written here from TensorFlow's 'SAME' rules (and a TorchScript file of it), and the metric."""
import math

import numpy as np
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoscene.errors import CheckpointError, InputError
from videoscene.evaluation.fvd import FVD, frechet_distance, gaussian_stats
from videoscene.evaluation.i3d import I3D, load_i3d
from videoscene.registry import METRICS

pytestmark = [pytest.mark.filterwarnings('ignore::torch.jit.TracerWarning'),
              pytest.mark.filterwarnings('ignore:`torch.jit.*:FutureWarning')]

# ----------------------------------------------------------------------------- Frechet distance


def _wishart(rng: np.random.Generator, d: int, n: int) -> np.ndarray:
    a = rng.standard_normal((n, d))
    return a.T @ a / n


def test_diagonal_gaussians_match_closed_form():
    rng = np.random.default_rng(0)
    mu1, mu2 = rng.standard_normal(32), rng.standard_normal(32)
    a, b = rng.uniform(1e-6, 4, 32), rng.uniform(1e-6, 4, 32)
    expected = np.sum((mu1 - mu2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    assert frechet_distance(mu1, np.diag(a), mu2, np.diag(b)) == pytest.approx(expected, rel=1e-10)


def test_mean_shift_adds_its_squared_norm_and_full_covariances_match_scipy():
    rng = np.random.default_rng(1)
    s1, s2 = _wishart(rng, 24, 60), _wishart(rng, 24, 60)
    mu, shift = rng.standard_normal(24), rng.standard_normal(24)
    base = frechet_distance(mu, s1, mu, s2)
    shifted = frechet_distance(mu + shift, s1, mu, s2)
    assert shifted - base == pytest.approx(shift @ shift, rel=1e-10)
    root = scipy.linalg.sqrtm(s1 @ s2)  # the usual FID route, well-conditioned here
    expected = np.trace(s1) + np.trace(s2) - 2 * np.trace(root).real
    assert base == pytest.approx(expected, rel=1e-8)
    assert base > 0.1


def test_identical_feature_sets_give_zero():
    features = np.random.default_rng(2).standard_normal((50, 40)) * 3 + 1
    mu, sigma = gaussian_stats(features)
    np.testing.assert_allclose(mu, features.mean(0))
    np.testing.assert_allclose(sigma, np.cov(features, rowvar=False, bias=True))
    assert abs(frechet_distance(mu, sigma, mu, sigma)) < 1e-9 * np.trace(sigma)


def test_near_singular_covariances_stay_finite():
    rng = np.random.default_rng(3)
    # Fewer samples than features (rank 4 of 64), as at small N, and a diagonal near 0.
    s1 = gaussian_stats(rng.standard_normal((5, 64)))[1]
    s2 = gaussian_stats(rng.standard_normal((5, 64)) + 0.5)[1]
    tiny = np.diag(np.full(64, 1e-15))
    for a, b in ((s1, s2), (s1, tiny), (tiny, tiny)):
        value = frechet_distance(np.zeros(64), a, np.zeros(64), b)
        assert np.isfinite(value) and value > -1e-9 * (np.trace(a) + np.trace(b) + 1e-12)
    # Continuous at the singular point: a ridge of 1e-10 moves it by about nothing.
    ridge = frechet_distance(np.zeros(64), s1 + 1e-10 * np.eye(64), np.zeros(64), s2)
    assert frechet_distance(np.zeros(64), s1, np.zeros(64), s2) == pytest.approx(ridge, rel=1e-4)
    with pytest.raises(ValueError, match='finite'):
        frechet_distance(np.zeros(2), np.diag([1.0, np.nan]), np.zeros(2), np.eye(2))


# ------------------------------------------------- independent functional I3D (TensorFlow 'SAME')

EPS = 1e-3  # DeepMind's (sonnet) and pytorch-i3d's BatchNorm epsilon
STEM = (('unit', 'Conv3d_1a_7x7', 2), ('pool', (1, 3, 3), (1, 2, 2)),
        ('unit', 'Conv3d_2b_1x1', 1), ('unit', 'Conv3d_2c_3x3', 1), ('pool', (1, 3, 3), (1, 2, 2)))
BODY = (('mixed', 'Mixed_3b'), ('mixed', 'Mixed_3c'), ('pool', (3, 3, 3), (2, 2, 2)),
        ('mixed', 'Mixed_4b'), ('mixed', 'Mixed_4c'), ('mixed', 'Mixed_4d'), ('mixed', 'Mixed_4e'),
        ('mixed', 'Mixed_4f'), ('pool', (2, 2, 2), (2, 2, 2)), ('mixed', 'Mixed_5b'),
        ('mixed', 'Mixed_5c'))
# Inception-v1 widths (Szegedy et al. 2015, Table 1): b0, b1a, b1b, b2a, b2b, b3b.
WIDTHS = {'Mixed_3b': (64, 96, 128, 16, 32, 32), 'Mixed_3c': (128, 128, 192, 32, 96, 64),
          'Mixed_4b': (192, 96, 208, 16, 48, 64), 'Mixed_4c': (160, 112, 224, 24, 64, 64),
          'Mixed_4d': (128, 128, 256, 24, 64, 64), 'Mixed_4e': (112, 144, 288, 32, 64, 64),
          'Mixed_4f': (256, 160, 320, 32, 128, 128), 'Mixed_5b': (256, 160, 320, 32, 128, 128),
          'Mixed_5c': (384, 192, 384, 48, 128, 128)}


def tf_same_pad(x: Tensor, kernel, stride, value: float = 0.0) -> Tensor:
    pads = []
    for size, k, s in zip(x.shape[2:], kernel, stride):
        total = max((math.ceil(size / s) - 1) * s + k - size, 0)
        pads.append((total // 2, total - total // 2))
    return F.pad(x, [p for pair in reversed(pads) for p in pair], value=value)


def ref_unit(x, sd, name, stride=1, eps=EPS, symmetric=False):
    weight = sd[f'{name}.conv3d.weight']
    kernel = tuple(weight.shape[2:])
    if symmetric:  # the PyTorch-style padding the layout does NOT use (sensitivity check)
        x = F.conv3d(x, weight, sd.get(f'{name}.conv3d.bias'), stride,
                     padding=tuple(k // 2 for k in kernel))
    else:
        x = F.conv3d(tf_same_pad(x, kernel, (stride,) * 3), weight,
                     sd.get(f'{name}.conv3d.bias'), stride)
    if f'{name}.bn.weight' not in sd:
        return x
    return F.relu(F.batch_norm(x, sd[f'{name}.bn.running_mean'], sd[f'{name}.bn.running_var'],
                               sd[f'{name}.bn.weight'], sd[f'{name}.bn.bias'], False, 0.0, eps))


def ref_pool(x, kernel, stride):
    return F.max_pool3d(tf_same_pad(x, kernel, stride, value=-math.inf), kernel, stride)


def reference_i3d(x: Tensor, sd: dict, taps: dict | None = None, **unit_kwargs) -> Tensor:
    """[B, 3, T, 224, 224] in [-1, 1] -> Kinetics logits averaged over time, from plain ops."""
    for kind, *args in STEM + BODY:
        if kind == 'pool':
            x = ref_pool(x, *args)
            continue
        name = args[0]
        if kind == 'unit':
            x = ref_unit(x, sd, name, args[1], **unit_kwargs)
        else:
            def u(branch, inp, name=name):
                return ref_unit(inp, sd, f'{name}.{branch}', **unit_kwargs)
            x = torch.cat([u('b0', x), u('b1b', u('b1a', x)), u('b2b', u('b2a', x)),
                           u('b3b', ref_pool(x, (3, 3, 3), (1, 1, 1)))], 1)
        if taps is not None:
            taps[name] = x
    x = ref_unit(F.avg_pool3d(x, (2, 7, 7), stride=1), sd, 'logits')
    if taps is not None:
        taps['logits'] = x
    return x[..., 0, 0].mean(2)


def reference_features(clips: Tensor, sd: dict) -> Tensor:
    """StyleGAN-V's path from [B, 3, T, H, W] 8-bit levels: rescale, resize (trilinear, T kept)."""
    x = clips / 255 * 2 - 1
    x = F.interpolate(x, size=(x.shape[2], 224, 224), mode='trilinear', align_corners=False)
    return reference_i3d(x, sd)


class StyleGANVLikeDetector(nn.Module):
    """The call interface of StyleGAN-V's i3d_torchscript.pt, around a traced reference."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: Tensor, rescale: bool = False, resize: bool = False,
                return_features: bool = False) -> Tensor:
        if rescale:
            x = x / 255.0 * 2 - 1
        if resize:
            x = F.interpolate(x, size=[x.shape[2], 224, 224], mode='trilinear',
                              align_corners=False)
        logits = self.network(x)
        return logits if return_features else F.softmax(logits, dim=1)


class _Reference(nn.Module):
    def __init__(self, sd):
        super().__init__()
        self.sd = sd

    def forward(self, x):
        return reference_i3d(x, self.sd)


DIVISOR = 8  # a narrow I3D of the same layout keeps these tests fast
FRAMES = 10


def _clips(seed: int, n: int, h: int = 36, w: int = 44, frames: int = FRAMES) -> Tensor:
    """Smooth random videos [n, F, 3, h, w] in [0, 1]."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n * frames, 3, 6, 6, generator=g)
    smooth = F.interpolate(coarse, size=(h, w), mode='bilinear', align_corners=False)
    return smooth.reshape(n, frames, 3, h, w)


@pytest.fixture(scope='module')
def seeded(tmp_path_factory):
    """A seeded narrow I3D saved as a pytorch-i3d state dict and as a TorchScript reference."""
    torch.manual_seed(0)
    net = I3D(channel_divisor=DIVISOR)
    with torch.no_grad():
        for name, p in net.named_parameters():
            if name.endswith('conv3d.weight'):  # small weights: BN eps 1e-3 matters
                p.copy_(torch.randn_like(p) * 0.1 / math.sqrt(p[0].numel()))
        # Calibrate the BatchNorm statistics on real activations, then perturb the affine terms.
        bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm3d)]
        for m in bns:
            m.reset_running_stats()
            m.momentum = None
        net.train()
        net(F.interpolate(_clips(99, 2).permute(0, 2, 1, 3, 4) * 2 - 1,
                          size=(FRAMES, 224, 224), mode='trilinear'))
        net.eval()
        for m in bns:
            m.weight.uniform_(0.5, 1.5)
            m.bias.normal_(0, 0.2)
        net.logits.conv3d.bias.normal_(0, 0.5)
    sd = {k: v.clone() for k, v in net.state_dict().items()}
    root = tmp_path_factory.mktemp('i3d')
    state_path = root / 'rgb_imagenet_narrow.pt'
    torch.save(sd, state_path)
    example = torch.zeros(1, 3, FRAMES, 224, 224)
    traced = torch.jit.trace(_Reference(sd), example, check_trace=False)
    script_path = root / 'i3d_torchscript_narrow.pt'
    torch.jit.save(torch.jit.script(StyleGANVLikeDetector(traced)), str(script_path))
    var = torch.cat([v for k, v in sd.items() if k.endswith('running_var')])
    assert var.median() < 0.1  # the eps of BatchNorm is not negligible in this network
    return sd, state_path, script_path


def _levels(videos: Tensor) -> Tensor:
    """[n, F, 3, H, W] in [0, 1] -> [n, 3, F, H, W] 8-bit levels, as StyleGAN-V feeds I3D."""
    return torch.floor(videos * 255 + 0.5).permute(0, 2, 1, 3, 4)


# ------------------------------------------------------------------------------------ the network


def test_full_width_state_dict_has_the_pytorch_i3d_layout():
    sd = I3D().state_dict()
    expected = {'Conv3d_1a_7x7.conv3d.weight': (64, 3, 7, 7, 7),
                'Conv3d_2b_1x1.conv3d.weight': (64, 64, 1, 1, 1),
                'Conv3d_2c_3x3.conv3d.weight': (192, 64, 3, 3, 3),
                'logits.conv3d.weight': (400, 1024, 1, 1, 1), 'logits.conv3d.bias': (400,)}
    c_in = 192
    for name, (b0, b1a, b1b, b2a, b2b, b3b) in WIDTHS.items():
        for branch, shape in (('b0', (b0, c_in, 1, 1, 1)), ('b1a', (b1a, c_in, 1, 1, 1)),
                              ('b1b', (b1b, b1a, 3, 3, 3)), ('b2a', (b2a, c_in, 1, 1, 1)),
                              ('b2b', (b2b, b2a, 3, 3, 3)), ('b3b', (b3b, c_in, 1, 1, 1))):
            expected[f'{name}.{branch}.conv3d.weight'] = shape
        c_in = b0 + b1b + b2b + b3b
    units = [k[:-len('.conv3d.weight')] for k in expected if k.endswith('.conv3d.weight')]
    for unit in units:
        if unit != 'logits':
            n = expected[f'{unit}.conv3d.weight'][0]
            for stat in ('weight', 'bias', 'running_mean', 'running_var'):
                expected[f'{unit}.bn.{stat}'] = (n,)
            expected[f'{unit}.bn.num_batches_tracked'] = ()
    assert {k: tuple(v.shape) for k, v in sd.items()} == expected
    assert len(sd) == 57 * 6 + 2


def test_state_dict_path_matches_functional_reference(seeded):
    sd, state_path, _ = seeded
    extractor = load_i3d(state_path, channel_divisor=DIVISOR)
    assert extractor.kind == 'state_dict' and 'pytorch-i3d' in extractor.describe()
    frames = 19  # odd, and long enough to leave 2 time steps to average after the head pool
    clips = _levels(_clips(1, 2, frames=frames))
    taps, ours = {}, {}
    hooks = [getattr(extractor.network, name).register_forward_hook(
        lambda _m, _i, out, name=name: ours.__setitem__(name, out))
        for name in ('Conv3d_1a_7x7', 'Conv3d_2c_3x3', 'Mixed_3b', 'Mixed_4b', 'Mixed_5c')]
    with torch.no_grad():
        features = extractor(clips)
        x = F.interpolate(clips / 255 * 2 - 1, size=(frames, 224, 224), mode='trilinear',
                          align_corners=False)
        expected = reference_i3d(x, sd, taps)
        eps_wrong = reference_i3d(x, sd, eps=1e-5)
        pad_wrong = reference_i3d(x, sd, symmetric=True)
    for hook in hooks:
        hook.remove()
    assert features.shape == (2, 400) and taps['logits'].shape == (2, 400, 2, 1, 1)
    for name, out in ours.items():
        torch.testing.assert_close(out, taps[name], rtol=1e-4, atol=1e-4 * taps[name].abs().max())
    scale = expected.abs().max()
    torch.testing.assert_close(features, expected, rtol=1e-4, atol=1e-4 * scale)
    # The check is sensitive to the layout's semantics: eps 1e-5 or PyTorch padding both miss.
    for wrong in (eps_wrong, pad_wrong):
        assert (wrong - expected).abs().max() > 1e-2 * scale


def test_torchscript_path_agrees_with_state_dict_path(seeded):
    _, state_path, script_path = seeded
    scripted = load_i3d(script_path)
    assert scripted.kind == 'torchscript' and 'StyleGAN-V' in scripted.describe()
    state = load_i3d(state_path, channel_divisor=DIVISOR)
    clips = _levels(_clips(2, 3, h=50, w=30))
    with torch.no_grad():
        a, b = scripted(clips), state(clips)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4 * a.abs().max())
    assert (a[0] - a[1]).abs().max() > 1e-2 * a.abs().max()  # features depend on the video


def test_loader_refuses_missing_or_mismatched_files(seeded, tmp_path):
    sd, _, _ = seeded
    with pytest.raises(CheckpointError, match='i3d_torchscript.pt.*rgb_imagenet.pt'):
        load_i3d(None)
    with pytest.raises(CheckpointError, match='nowhere.pt.*not found.*i3d_torchscript.pt'):
        load_i3d(tmp_path / 'nowhere.pt')
    garbage = tmp_path / 'garbage.pt'
    garbage.write_bytes(b'not a weight file')
    with pytest.raises(CheckpointError, match='garbage.pt'):
        load_i3d(garbage)
    broken = dict(sd)
    del broken['Mixed_4c.b1b.conv3d.weight']
    broken['Mixed_4c.extra.weight'] = torch.zeros(1)
    broken['Conv3d_1a_7x7.bn.running_var'] = torch.ones(3)
    path = tmp_path / 'broken.pt'
    torch.save(broken, path)
    with pytest.raises(CheckpointError) as info:
        load_i3d(path, channel_divisor=DIVISOR)
    message = str(info.value)
    for part in ('broken.pt', 'Mixed_4c.b1b.conv3d.weight', 'Mixed_4c.extra.weight',
                 'Conv3d_1a_7x7.bn.running_var: expected [8], got [3]'):
        assert part in message
    # A Charades head (157 logits, pytorch-i3d's rgb_charades.pt) is not the FVD network.
    charades = dict(sd, **{'logits.conv3d.weight': torch.zeros(157, 128, 1, 1, 1),
                           'logits.conv3d.bias': torch.zeros(157)})
    torch.save(charades, path)
    with pytest.raises(CheckpointError, match=r'logits.conv3d.weight: expected \[400'):
        load_i3d(path, channel_divisor=DIVISOR)
    # pytorch-i3d's files predate PyTorch 0.4 (no num_batches_tracked) and the zip format: they
    # load, with the same weights.
    torch.save({k: v for k, v in sd.items() if 'num_batches' not in k}, path,
               _use_new_zipfile_serialization=False)
    loaded = load_i3d(path, channel_divisor=DIVISOR)
    assert loaded.kind == 'state_dict'
    torch.testing.assert_close(loaded.network.Mixed_5c.b2b.bn.running_var,
                               sd['Mixed_5c.b2b.bn.running_var'], rtol=0, atol=0)


def test_torchscript_with_another_output_is_refused(tmp_path):
    class Other(nn.Module):
        def forward(self, x: Tensor, rescale: bool = False, resize: bool = False,
                    return_features: bool = False) -> Tensor:
            return x.flatten(1)[:, :10]

    path = tmp_path / 'inception.pt'
    torch.jit.save(torch.jit.script(Other()), str(path))
    with pytest.raises(CheckpointError, match=r'inception.pt.*\(2, 10\).*400'):
        load_i3d(path)(torch.zeros(2, 3, FRAMES, 8, 8))


# ------------------------------------------------------------------------------------- the metric


def _samples(pred: Tensor, gt: Tensor) -> list[dict]:
    return [dict(pred=p, gt=g) for p, g in zip(pred, gt)]


def test_fvd_metric_matches_reference_on_both_weight_files(seeded):
    sd, state_path, script_path = seeded
    pred, gt = _clips(3, 3, frames=12), _clips(4, 3, frames=12) * 0.8
    # What StyleGAN-V computes: first num_frames frames, 8-bit levels, reference I3D, 1/N stats.
    with torch.no_grad():
        fp = reference_features(_levels(pred[:, :FRAMES]), sd).double().numpy()
        fg = reference_features(_levels(gt[:, :FRAMES]), sd).double().numpy()
    mu_p, mu_g = fp.mean(0), fg.mean(0)
    s_p, s_g = np.cov(fp, rowvar=False, bias=True), np.cov(fg, rowvar=False, bias=True)
    expected = frechet_distance(mu_g, s_g, mu_p, s_p)
    assert expected > 1.0

    scores = {}
    for name, path, divisor in (('state', state_path, DIVISOR), ('script', script_path, 1)):
        metric = METRICS.build(dict(type='FVD', i3d_checkpoint=str(path), num_frames=FRAMES,
                                    batch_size=2, device='cpu', i3d_channel_divisor=divisor))
        metric.process({}, _samples(pred[:2], gt[:2]))
        metric.process({}, _samples(pred[2:], gt[2:]))
        result = metric.evaluate(3)
        assert result['video/fvd_num_samples'] == 3
        assert 'biased at small N' in result['video/fvd_note']
        assert f'first {FRAMES} frames' in result['video/fvd_variant']
        scores[name] = result
    assert 'NOT FVD' in scores['state']['video/fvd_variant']
    assert 'TorchScript' in scores['script']['video/fvd_variant']
    for result in scores.values():
        assert result['video/fvd'] == pytest.approx(expected, rel=1e-3)


def test_fvd_metric_refuses_bad_configs_and_videos(seeded, tmp_path):
    _, state_path, _ = seeded
    with pytest.raises(CheckpointError, match='not configured.*i3d_torchscript.pt'):
        FVD()
    with pytest.raises(CheckpointError, match='missing.pt'):
        FVD(i3d_checkpoint=str(tmp_path / 'missing.pt'))
    with pytest.raises(InputError, match='num_frames.*>= 10, got 9'):
        FVD(i3d_checkpoint=str(state_path), num_frames=9, i3d_channel_divisor=DIVISOR)
    metric = FVD(i3d_checkpoint=str(state_path), num_frames=FRAMES, device='cpu',
                 i3d_channel_divisor=DIVISOR)
    video = _clips(5, 1)[0]
    bad = {'has 9 frames.*num_frames=10': video[:9],
           r'\[F, 3, H, W\].*\(3, 10, 36, 44\)': video.transpose(0, 1),
           r'values in \[0, 1\], got \[0.*, 2[0-9]{2}': video * 255}
    for pattern, pred in bad.items():
        with pytest.raises(InputError, match=f"data sample 0 'pred'.*{pattern}"):
            metric.process({}, [dict(pred=pred, gt=video)])
    assert metric.results == []
    metric.process({}, [dict(pred=video, gt=video)])
    with pytest.raises(InputError, match='at least 2 videos.*got 1'):
        metric.compute_metrics(metric.results)
