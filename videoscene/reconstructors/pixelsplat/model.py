"""pixelSplat: two posed images -> 3D Gaussians via epipolar attention (Charatan et al., CVPR 2024).

A re-implementation of the official ``EncoderEpipolar`` (``re10k`` experiment: DINO ViT-B/8 +
ResNet-50 backbone) that loads the official checkpoints unchanged: backbone -> epipolar
transformer -> high-resolution skip -> per-pixel distribution over disparity buckets -> Gaussians
whose opacity is the chosen bucket's probability.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from ...registry import RECONSTRUCTORS
from ...structures import Gaussians
from ..gaussian_adapter import GaussianAdapter, subpixel_coordinates
from ..base import FeedForwardReconstructor
from .backbone import DinoResNetBackbone
from .bounds import baseline_near_far
from .depth_predictor import DepthPredictor
from .epipolar_transformer import EpipolarTransformer

__all__ = ['PixelSplat', 'PixelSplatOutput']

#: The official checkpoints are two-view models (more views need learned view embeddings).
NUM_VIEWS = 2


@dataclass
class PixelSplatOutput:
    """Gaussians plus the depths they were placed at.

    Attributes:
        gaussians: ``G = V * H * W * S`` Gaussians, view-major, then row-major pixels, then the
            ``S`` depth samples of a pixel.
        depths: ``[B, V, H, W, S]`` distance along each pixel's unit ray.
    """

    gaussians: Gaussians
    depths: torch.Tensor


@RECONSTRUCTORS.register_module(name='pixelSplat')
class PixelSplat(FeedForwardReconstructor):
    """pixelSplat's encoder; defaults are the official ``re10k`` experiment configuration.

    Depth choice: in training mode ``gaussians_per_pixel`` buckets are sampled per pixel (``S = 3``
    Gaussians per pixel). In evaluation mode the most likely bucket is taken (``S = 1``) when
    ``deterministic``, else buckets are sampled as in training (what the official test script
    does). Opacity is the bucket's probability divided by ``gaussians_per_pixel`` in every mode
    (the official probability-to-opacity schedule is the identity in the re10k and acid
    configurations, so it is not modelled).

    Args:
        backbone_channels: width of the DINO + ResNet features.
        feature_channels: width after the backbone projection.
        num_depth_buckets: disparity buckets between near and far.
        gaussians_per_pixel: buckets sampled per pixel when sampling.
        epipolar_transformer: keyword arguments of
            :class:`~videoscene.reconstructors.pixelsplat.epipolar_transformer.EpipolarTransformer`
            (its defaults are the official ones).
        sh_degree: degree of the colour harmonics.
        gaussian_scale_min: smallest Gaussian scale factor.
        gaussian_scale_max: largest Gaussian scale factor.
        bounds_from_baseline: replace the context's ``near``/``far`` by
            :func:`~videoscene.reconstructors.pixelsplat.bounds.baseline_near_far` (the official
            "bounds shim", used in the official training and evaluation). Render with the same
            bounds.
        near_disparity: near-plane disparity of the bounds, in units of ``min(H, W)`` pixels.
        deterministic: in evaluation mode, take the most likely bucket instead of sampling.
        checkpoint: optional official ``.ckpt`` (or converted ``.safetensors``) to load strictly.

    Input ``context`` (see :meth:`forward`): ``image [B, 2, 3, H, W]`` in [0, 1] with H and W
    multiples of 16, ``extrinsics [B, 2, 4, 4]`` OpenCV camera-to-world, ``intrinsics
    [B, 2, 3, 3]`` normalised, ``near``, ``far`` ``[B, 2]``.
    """

    name = 'pixelSplat'

    def __init__(self, backbone_channels: int = 512, feature_channels: int = 128,
                 num_depth_buckets: int = 32, gaussians_per_pixel: int = 3,
                 epipolar_transformer: dict | None = None, sh_degree: int = 4,
                 gaussian_scale_min: float = 0.5, gaussian_scale_max: float = 15.0,
                 bounds_from_baseline: bool = True, near_disparity: float = 3.0,
                 deterministic: bool = True, checkpoint: str | Path | None = None) -> None:
        super().__init__()
        self.gaussians_per_pixel = gaussians_per_pixel
        self.bounds_from_baseline = bounds_from_baseline
        self.near_disparity = near_disparity
        self.deterministic = deterministic

        self.backbone = DinoResNetBackbone(backbone_channels)
        self.backbone_projection = nn.Sequential(nn.ReLU(),
                                                 nn.Linear(backbone_channels, feature_channels))
        self.epipolar_transformer = EpipolarTransformer(feature_channels,
                                                        **(epipolar_transformer or {}))
        self.high_resolution_skip = nn.Sequential(nn.Conv2d(3, feature_channels, 7, 1, 3),
                                                  nn.ReLU())
        self.depth_predictor = DepthPredictor(feature_channels, num_depth_buckets)
        self.gaussian_adapter = GaussianAdapter(sh_degree, gaussian_scale_min, gaussian_scale_max)
        self.to_gaussians = nn.Sequential(
            nn.ReLU(), nn.Linear(feature_channels, 2 + self.gaussian_adapter.raw_channels))
        if checkpoint is not None:
            self.load_official(checkpoint)

    @property
    def size_multiple(self) -> int:
        return self.epipolar_transformer.size_multiple

    def predict(self, context: Mapping[str, torch.Tensor]) -> PixelSplatOutput:
        """Like :meth:`forward`, also returning the depths ``[B, V, H, W, S]``."""
        images, extrinsics, intrinsics, near, far = self.check_context(
            context, self.size_multiple,
            'the epipolar transformer downscales the features and attends over patches of them',
            min_views=NUM_VIEWS, max_views=NUM_VIEWS)
        b, v, _, h, w = images.shape
        if self.bounds_from_baseline:
            near, far = baseline_near_far(extrinsics, intrinsics, (h, w), self.near_disparity)
            near, far = near[:, None].expand(b, v), far[:, None].expand(b, v)

        features = self.backbone(images)
        features = self.backbone_projection(features.movedim(2, -1)).movedim(-1, 2)
        features = self.epipolar_transformer(features, extrinsics, intrinsics, near, far)
        features = features + self.high_resolution_skip(images.flatten(0, 1)).unflatten(0, (b, v))
        features = features.flatten(3).transpose(2, 3)  # [B, V, H*W, C]

        sample = not self.deterministic or self.training
        depth = self.depth_predictor(features, near[:, :, None], far[:, :, None],
                                     self.gaussians_per_pixel if sample else None)
        raw = self.to_gaussians(features)  # [B, V, H*W, 2 + adapter channels]
        coordinates = subpixel_coordinates(raw[..., :2], (h, w))
        params = self.gaussian_adapter(
            extrinsics[:, :, None, None], intrinsics[:, :, None, None], coordinates[..., None, :],
            depth.depths, depth.probabilities / self.gaussians_per_pixel, raw[..., None, 2:],
            (h, w))
        gaussians = Gaussians(means=params.means.flatten(1, 3),
                              covariances=params.covariances.flatten(1, 3),
                              harmonics=params.harmonics.flatten(1, 3),
                              opacities=params.opacities.flatten(1, 3))
        return PixelSplatOutput(gaussians=gaussians, depths=depth.depths.unflatten(2, (h, w)))
