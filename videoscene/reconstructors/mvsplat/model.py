"""MVSplat: two (or more) posed images -> one 3D Gaussian per pixel (Chen et al., ECCV 2024).

A re-implementation of the official ``EncoderCostVolume`` that loads the official checkpoints
unchanged: backbone (UniMatch CNN + multi-view transformer) -> plane-sweep cost volume refined by a
U-Net -> coarse depth -> depth-refinement U-Net -> per-pixel Gaussians.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from ...registry import RECONSTRUCTORS
from ...structures import Gaussians
from ..gaussian_adapter import GaussianAdapter, subpixel_coordinates
from ..base import FeedForwardReconstructor
from .backbone import MultiViewBackbone
from .depth_predictor import DepthPredictor

__all__ = ['MVSplat', 'MVSplatOutput']

#: Image height and width must be multiples of this: features are at 1/4 resolution, split into
#: 2x2 attention windows, and the U-Nets downsample the 1/4-resolution cost volume by 4 and the
#: full-resolution depth by 16.
SIZE_MULTIPLE = 16


@dataclass
class MVSplatOutput:
    """Gaussians plus the per-pixel depth they were placed at.

    Attributes:
        gaussians: ``G = V * H * W`` Gaussians, view-major then row-major.
        depths: ``[B, V, H, W]`` distance along each pixel's unit ray.
    """

    gaussians: Gaussians
    depths: torch.Tensor


@RECONSTRUCTORS.register_module(name='MVSplat')
class MVSplat(FeedForwardReconstructor):
    """MVSplat's encoder; defaults are the official ``re10k`` experiment configuration.

    Args:
        feature_channels: backbone feature width.
        num_transformer_layers: multi-view transformer blocks.
        attn_splits: attention windows per side in the transformer.
        num_depth_candidates: cost-volume depth planes (uniform in inverse depth, near to far).
        costvolume_unet_feat_dim: width of the cost-volume U-Net.
        costvolume_unet_channel_mult: its level multipliers.
        costvolume_unet_attn_res: its attention factors.
        depth_unet_feat_dim: width of the depth-refinement U-Net.
        depth_unet_channel_mult: its level multipliers.
        depth_unet_attn_res: its attention factors.
        sh_degree: degree of the colour harmonics.
        gaussian_scale_min: smallest Gaussian scale factor.
        gaussian_scale_max: largest Gaussian scale factor.
        checkpoint: optional official ``.ckpt`` (or converted ``.safetensors``) to load strictly.

    Input ``context`` (see :meth:`forward`): ``image [B, V, 3, H, W]`` in [0, 1] with H and W
    multiples of 16, ``extrinsics [B, V, 4, 4]`` OpenCV camera-to-world, ``intrinsics [B, V, 3, 3]``
    normalised, ``near``, ``far`` ``[B, V]``; V >= 2.
    """

    name = 'MVSplat'
    size_multiple = SIZE_MULTIPLE

    def __init__(self, feature_channels: int = 128, num_transformer_layers: int = 6,
                 attn_splits: int = 2, num_depth_candidates: int = 128,
                 costvolume_unet_feat_dim: int = 128,
                 costvolume_unet_channel_mult: Sequence[int] = (1, 1, 1),
                 costvolume_unet_attn_res: Sequence[int] = (4,),
                 depth_unet_feat_dim: int = 32,
                 depth_unet_channel_mult: Sequence[int] = (1, 1, 1, 1, 1),
                 depth_unet_attn_res: Sequence[int] = (16,),
                 sh_degree: int = 4, gaussian_scale_min: float = 0.5,
                 gaussian_scale_max: float = 15.0, checkpoint: str | Path | None = None) -> None:
        super().__init__()
        self.attn_splits = attn_splits
        self.backbone = MultiViewBackbone(feature_channels, num_transformer_layers)
        self.gaussian_adapter = GaussianAdapter(sh_degree, gaussian_scale_min, gaussian_scale_max)
        self.depth_predictor = DepthPredictor(
            feature_channels=feature_channels, upscale_factor=4,
            num_depth_candidates=num_depth_candidates,
            costvolume_unet_feat_dim=costvolume_unet_feat_dim,
            costvolume_unet_channel_mult=tuple(costvolume_unet_channel_mult),
            costvolume_unet_attn_res=tuple(costvolume_unet_attn_res),
            depth_unet_feat_dim=depth_unet_feat_dim,
            depth_unet_channel_mult=tuple(depth_unet_channel_mult),
            depth_unet_attn_res=tuple(depth_unet_attn_res),
            gaussian_raw_channels=2 + self.gaussian_adapter.raw_channels)
        if checkpoint is not None:
            self.load_official(checkpoint)

    def predict(self, context: Mapping[str, torch.Tensor]) -> MVSplatOutput:
        """Like :meth:`forward`, also returning the per-pixel depth ``[B, V, H, W]``."""
        images, extrinsics, intrinsics, near, far = self.check_context(
            context, self.size_multiple, 'MVSplat works at 1/4 resolution with 2x2 attention windows '
            'and U-Nets that downsample 16x')
        b, v, _, h, w = images.shape

        features, cnn_features = self.backbone(images, self.attn_splits)
        prediction = self.depth_predictor(features, cnn_features, images, intrinsics, extrinsics,
                                          near, far)

        raw = prediction.raw_gaussians  # [B, V, H*W, 2 + adapter channels]
        coordinates = subpixel_coordinates(raw[..., :2], (h, w))
        params = self.gaussian_adapter(
            extrinsics[:, :, None], intrinsics[:, :, None], coordinates,
            prediction.depths.flatten(2), prediction.opacities.flatten(2), raw[..., 2:], (h, w))
        gaussians = Gaussians(
            means=params.means.flatten(1, 2),
            covariances=params.covariances.flatten(1, 2),
            harmonics=params.harmonics.flatten(1, 2),
            opacities=params.opacities.flatten(1, 2))
        return MVSplatOutput(gaussians=gaussians, depths=prediction.depths)
