"""LPIPS (VGG16, v0.1) from local weight files, as a training loss and a novel-view metric.

LPIPS compares two images through a frozen VGG16: both go through a fixed scaling layer, their
features after relu1_2, relu2_2, relu3_3, relu4_3 and relu5_3 are unit-normalised over channels,
and the squared differences are weighted per channel by a non-negative linear layer, averaged over
space and summed over the five layers (Zhang et al. 2018, the ``lpips`` package's ``net='vgg'``).

Two local files are needed; nothing is ever downloaded and no weight is ever random:

* ``vgg_checkpoint``: torchvision's ImageNet VGG16 state dict (``vgg16-397923af.pth``, keys
  ``features.N.weight`` / ``features.N.bias``; its ``classifier.*`` keys are ignored);
* ``linear_weights``: the LPIPS linear layers (keys ``lin0.model.1.weight`` ... ``lin4``, each
  ``[1, C, 1, 1]``). The ``lpips`` PyPI package ships them as ``lpips/weights/v0.1/vgg.pth``, which
  is the default when that package is installed.
"""
from __future__ import annotations

import importlib.util
import os
import os.path as osp
from collections.abc import Mapping, Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from torch import Tensor, nn

from videoscene.registry import METRICS

__all__ = ['LPIPS', 'NovelViewLPIPS', 'default_linear_weights']

# VGG16's convolutions per stage (a 2x2 max pool opens every stage but the first); LPIPS taps the
# ReLU output that closes each stage. Indices below are those of torchvision's ``vgg16().features``.
_VGG16_STAGES = ((64, 64), (128, 128), (256, 256, 256), (512, 512, 512), (512, 512, 512))
# The scaling layer of LPIPS v0.1 (applied to images in [-1, 1]).
_SHIFT = (-0.030, -0.088, -0.188)
_SCALE = (0.458, 0.448, 0.450)
_NORM_EPS = 1e-10
_MIN_SIZE = 2 ** (len(_VGG16_STAGES) - 1)  # relu5_3 is 1/16 of the input


def _conv_layout() -> list[list[tuple[int, int, int]]]:
    """``(torchvision index, in channels, out channels)`` of every convolution, per stage."""
    layout, index, channels = [], 0, 3
    for stage, widths in enumerate(_VGG16_STAGES):
        index += stage > 0  # the max pool
        convs = []
        for width in widths:
            convs.append((index, channels, width))
            index, channels = index + 2, width  # the convolution and its ReLU
        layout.append(convs)
    return layout


def default_linear_weights() -> str | None:
    """The LPIPS-VGG linear weights inside the installed ``lpips`` package, else ``None``."""
    spec = importlib.util.find_spec('lpips')
    if spec is None or not spec.submodule_search_locations:
        return None
    path = osp.join(spec.submodule_search_locations[0], 'weights', 'v0.1', 'vgg.pth')
    return path if osp.isfile(path) else None


def _load_state_dict(path: str | os.PathLike, what: str) -> Mapping[str, Tensor]:
    if not osp.isfile(path):
        raise FileNotFoundError(f'{what} file not found: {path}')
    state = torch.load(path, map_location='cpu', weights_only=True)
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise ValueError(f'{what} file {path} must hold a state dict (name -> tensor), '
                         f'got {type(state).__name__}')
    return state


def _check_keys(state: Mapping[str, Tensor], expected: Mapping[str, tuple[int, ...]], path,
                what: str, ignored_prefix: str | None = None) -> None:
    """Raise naming the file, the missing and unexpected keys and any wrong shapes."""
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(k for k in set(state) - set(expected)
                        if ignored_prefix is None or not k.startswith(ignored_prefix))
    wrong = [f'{k}: expected {list(shape)}, got {list(state[k].shape)}'
             for k, shape in expected.items() if k in state and tuple(state[k].shape) != shape]
    if missing or unexpected or wrong:
        raise ValueError(f'{what} file {path} does not match LPIPS-VGG16: missing keys {missing}, '
                         f'unexpected keys {unexpected}, wrong shapes {wrong}')


class LPIPS(nn.Module):
    """Frozen LPIPS-VGG16 distance between images in [0, 1].

    Args:
        vgg_checkpoint: local torchvision VGG16 state dict file (``vgg16-397923af.pth``).
        linear_weights: local LPIPS linear-layer file; ``None`` takes ``lpips/weights/v0.1/vgg.pth``
            from the installed ``lpips`` package and raises if that package is absent.

    ``forward(x, y)``: images ``[..., 3, H, W]`` in [0, 1] (``H, W >= 16``) -> distance ``[...]``
    (0 for identical images). Differentiable in the images.

    The module has no parameters: its weights are non-persistent buffers, so an optimiser never
    sees them and they stay out of ``state_dict`` (they are reloaded from the files on
    construction). It has no train/eval-dependent layers.
    """

    def __init__(self, vgg_checkpoint: str | os.PathLike,
                 linear_weights: str | os.PathLike | None = None) -> None:
        super().__init__()
        if linear_weights is None:
            linear_weights = default_linear_weights()
            if linear_weights is None:
                raise FileNotFoundError(
                    'LPIPS needs its linear-layer weights: pass linear_weights=<path to vgg.pth> '
                    '(the file lpips/weights/v0.1/vgg.pth of the lpips PyPI package) or install '
                    'the package (pip install lpips==0.1.4) to use its copy')
        self._stages = _conv_layout()
        vgg = _load_state_dict(vgg_checkpoint, 'VGG16 checkpoint')
        expected = {}
        for index, c_in, c_out in (conv for stage in self._stages for conv in stage):
            expected[f'features.{index}.weight'] = (c_out, c_in, 3, 3)
            expected[f'features.{index}.bias'] = (c_out,)
        _check_keys(vgg, expected, vgg_checkpoint, 'VGG16 checkpoint', ignored_prefix='classifier.')
        for index, _, _ in (conv for stage in self._stages for conv in stage):
            for kind in ('weight', 'bias'):
                self.register_buffer(f'conv{index}_{kind}', vgg[f'features.{index}.{kind}'].float(),
                                     persistent=False)

        linear = _load_state_dict(linear_weights, 'LPIPS linear weights')
        expected = {f'lin{i}.model.1.weight': (1, stage[-1][2], 1, 1)
                    for i, stage in enumerate(self._stages)}
        _check_keys(linear, expected, linear_weights, 'LPIPS linear weights')
        for i in range(len(self._stages)):
            weight = linear[f'lin{i}.model.1.weight'].float().flatten()
            if (weight < 0).any():
                raise ValueError(f'LPIPS linear weights file {linear_weights}: lin{i} has negative '
                                 'weights; LPIPS linear layers are non-negative')
            self.register_buffer(f'linear{i}', weight, persistent=False)

        shift, scale = torch.tensor(_SHIFT), torch.tensor(_SCALE)
        # [0, 1] -> [-1, 1] -> scaling layer, folded into one affine map per channel.
        self.register_buffer('input_scale', (2 / scale).view(3, 1, 1), persistent=False)
        self.register_buffer('input_shift', ((-1 - shift) / scale).view(3, 1, 1), persistent=False)
        self.eval()

    def features(self, images: Tensor) -> list[Tensor]:
        """VGG16 activations after relu1_2 ... relu5_3 of images ``[N, 3, H, W]`` in [0, 1]."""
        x = images * self.input_scale + self.input_shift
        taps = []
        for stage, convs in enumerate(self._stages):
            if stage:
                x = F.max_pool2d(x, 2)
            for index, _, _ in convs:
                x = F.relu(F.conv2d(x, getattr(self, f'conv{index}_weight'),
                                    getattr(self, f'conv{index}_bias'), padding=1))
            taps.append(x)
        return taps

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        if x.shape != y.shape:
            raise ValueError(f'LPIPS inputs must have the same shape, got {tuple(x.shape)} and '
                             f'{tuple(y.shape)}')
        if x.dim() < 3 or x.shape[-3] != 3 or min(x.shape[-2:]) < _MIN_SIZE:
            raise ValueError(f'LPIPS expects images [..., 3, H, W] with H, W >= {_MIN_SIZE}, '
                             f'got {tuple(x.shape)}')
        leading = x.shape[:-3]
        pair = torch.cat([x.reshape(-1, *x.shape[-3:]), y.reshape(-1, *y.shape[-3:])])
        distance = 0
        for i, feature in enumerate(self.features(pair)):
            # vector_norm, unlike sqrt(sum(f^2)), has a finite gradient where all channels are 0.
            unit = feature / (torch.linalg.vector_norm(feature, dim=1, keepdim=True) + _NORM_EPS)
            fx, fy = unit.chunk(2)
            weighted = torch.einsum('nchw,c->nhw', (fx - fy) ** 2, getattr(self, f'linear{i}'))
            distance = distance + weighted.mean((-2, -1))
        return distance.reshape(leading)


@METRICS.register_module()
class NovelViewLPIPS(BaseMetric):
    """Mean LPIPS-VGG over every rendered target view (lower is better).

    Reads the data samples of ``NovelViewPSNR``: ``pred`` and ``gt`` ``[F, 3, H, W]`` in [0, 1];
    predictions are clamped to [0, 1]. LPIPS runs on the device of ``pred``.

    Args:
        vgg_checkpoint: local torchvision VGG16 state dict (see :class:`LPIPS`). Required: the
            metric is unavailable without it and says so at construction.
        linear_weights: local LPIPS linear weights; ``None`` uses the ``lpips`` package's copy.
        collect_device, prefix: as for :class:`mmengine.evaluator.BaseMetric`.
    """

    default_prefix = 'novel_view'

    def __init__(self, vgg_checkpoint: str | os.PathLike | None = None,
                 linear_weights: str | os.PathLike | None = None, collect_device: str = 'cpu',
                 prefix: str | None = None) -> None:
        if vgg_checkpoint is None:
            raise ValueError(
                'NovelViewLPIPS is unavailable: no VGG16 backbone weights are configured and they '
                'are never downloaded. Set vgg_checkpoint to a local copy of torchvision\'s '
                'vgg16-397923af.pth, or drop NovelViewLPIPS from the evaluator')
        super().__init__(collect_device=collect_device, prefix=prefix)
        self.lpips = LPIPS(vgg_checkpoint, linear_weights)

    @torch.no_grad()
    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            pred = sample['pred'].float()
            self.lpips.to(pred.device)
            self.results.append(
                self.lpips(pred.clamp(0, 1), sample['gt'].to(pred).float()).cpu())

    def compute_metrics(self, results: list) -> dict:
        return dict(lpips=torch.cat(results).mean().item())
