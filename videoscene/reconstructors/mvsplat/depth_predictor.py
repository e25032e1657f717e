"""MVSplat's depth predictor: cost volume -> coarse depth -> refined full-resolution depth, opacity
and raw Gaussian channels.

State-dict names follow the official checkpoint (``depth_predictor.corr_refine_net``,
``regressor_residual``, ``depth_head_lowres``, ``upsampler``, ``proj_feature``, ``refine_unet``,
``to_gaussians``, ``to_disparity``).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .cost_volume import correlation_volume, disparity_candidates
from .unet import UNet

__all__ = ['DepthPrediction', 'DepthPredictor']


@dataclass
class DepthPrediction:
    """Per-pixel outputs at full resolution.

    Attributes:
        depths: ``[B, V, H, W]`` distances along the unit rays.
        opacities: ``[B, V, H, W]`` in (0, 1).
        raw_gaussians: ``[B, V, H*W, K]`` raw Gaussian channels (2 offset + the adapter's channels).
    """

    depths: torch.Tensor
    opacities: torch.Tensor
    raw_gaussians: torch.Tensor


class _RefineNet(nn.Sequential):
    """conv -> GroupNorm -> GELU -> :class:`UNet` [-> conv]: a Sequential whose U-Net needs the view count."""

    def forward(self, x: torch.Tensor, num_views: int) -> torch.Tensor:
        for layer in self:
            x = layer(x, num_views) if isinstance(layer, UNet) else layer(x)
        return x


class DepthPredictor(nn.Module):
    """Predicts depth, opacity and raw Gaussian channels from multi-view features.

    Args:
        feature_channels: backbone feature width ``C``.
        upscale_factor: feature resolution is 1/``upscale_factor`` of the image.
        num_depth_candidates: depth planes ``D`` of the cost volume.
        costvolume_unet_feat_dim: width of the cost-volume U-Net.
        costvolume_unet_channel_mult: level multipliers of the cost-volume U-Net.
        costvolume_unet_attn_res: attention factors of the cost-volume U-Net.
        depth_unet_feat_dim: width of the depth-refinement U-Net.
        depth_unet_channel_mult: level multipliers of the depth-refinement U-Net.
        depth_unet_attn_res: attention factors of the depth-refinement U-Net.
        gaussian_raw_channels: channels per Gaussian (2 offset + adapter channels).
    """

    def __init__(self, feature_channels: int, upscale_factor: int, num_depth_candidates: int,
                 costvolume_unet_feat_dim: int, costvolume_unet_channel_mult: Sequence[int],
                 costvolume_unet_attn_res: Sequence[int], depth_unet_feat_dim: int,
                 depth_unet_channel_mult: Sequence[int], depth_unet_attn_res: Sequence[int],
                 gaussian_raw_channels: int) -> None:
        super().__init__()
        self.num_depth_candidates = num_depth_candidates
        self.upscale_factor = upscale_factor

        # Cost-volume refinement (U-Net) with a 1x1 residual from its input.
        volume_channels = num_depth_candidates + feature_channels
        width = costvolume_unet_feat_dim
        self.corr_refine_net = _RefineNet(
            nn.Conv2d(volume_channels, width, 3, padding=1), nn.GroupNorm(8, width), nn.GELU(),
            UNet(width, costvolume_unet_channel_mult, costvolume_unet_attn_res),
            nn.Conv2d(width, num_depth_candidates, 3, padding=1))
        self.regressor_residual = nn.Conv2d(volume_channels, num_depth_candidates, 1)

        # Logits over the depth planes at feature resolution.
        self.depth_head_lowres = nn.Sequential(
            nn.Conv2d(num_depth_candidates, 2 * num_depth_candidates, 3, padding=1), nn.GELU(),
            nn.Conv2d(2 * num_depth_candidates, num_depth_candidates, 3, padding=1))

        # Transformer + CNN features upsampled to full resolution.
        self.upsampler = nn.Sequential(
            nn.Conv2d(2 * feature_channels, feature_channels, 3, padding=1),
            nn.Upsample(scale_factor=upscale_factor, mode='bilinear', align_corners=True),
            nn.GELU())
        self.proj_feature = nn.Conv2d(feature_channels, depth_unet_feat_dim, 3, padding=1)

        # Depth refinement on image + features + coarse disparity + confidence.
        width = depth_unet_feat_dim
        self.refine_unet = _RefineNet(
            nn.Conv2d(3 + width + 1 + 1, width, 3, padding=1), nn.GroupNorm(4, width), nn.GELU(),
            UNet(width, depth_unet_channel_mult, depth_unet_attn_res))

        self.to_gaussians = nn.Sequential(
            nn.Conv2d(width + 3 + feature_channels, 2 * gaussian_raw_channels, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(2 * gaussian_raw_channels, gaussian_raw_channels, 3, padding=1))
        # Disparity residual and opacity logit.
        self.to_disparity = nn.Sequential(
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.GELU(),
            nn.Conv2d(2 * width, 2, 3, padding=1))

    def forward(self, features: torch.Tensor, cnn_features: torch.Tensor, images: torch.Tensor,
                intrinsics: torch.Tensor, extrinsics: torch.Tensor, near: torch.Tensor,
                far: torch.Tensor) -> DepthPrediction:
        """
        Args:
            features: ``[B, V, C, h, w]`` transformer features (``h = H / upscale_factor``).
            cnn_features: ``[B, V, C, h, w]`` CNN features.
            images: ``[B, V, 3, H, W]`` in [0, 1].
            intrinsics: ``[B, V, 3, 3]`` normalised.
            extrinsics: ``[B, V, 4, 4]`` camera-to-world.
            near, far: ``[B, V]``.
        """
        b, v = features.shape[:2]
        h, w = images.shape[-2:]
        disparities = disparity_candidates(near, far, self.num_depth_candidates)  # [B, V, D]
        plane_disparities = disparities.flatten(0, 1)[:, :, None, None]
        volume = correlation_volume(features, intrinsics, extrinsics, disparities)
        reference = features.flatten(0, 1)
        volume = torch.cat((volume, reference), dim=1)
        volume = self.corr_refine_net(volume, v) + self.regressor_residual(volume)

        # Coarse disparity = expectation over the planes; its confidence = the peak probability.
        probabilities = self.depth_head_lowres(volume).softmax(dim=1)
        coarse = (plane_disparities * probabilities).sum(1, keepdim=True)
        confidence = F.interpolate(probabilities.amax(1, keepdim=True),
                                   scale_factor=self.upscale_factor, mode='nearest')
        coarse = F.interpolate(coarse, scale_factor=self.upscale_factor, mode='bilinear',
                               align_corners=True)

        fullres_features = self.upsampler(torch.cat((reference, cnn_features.flatten(0, 1)), dim=1))
        flat_images = images.flatten(0, 1)
        refined = self.refine_unet(torch.cat(
            (flat_images, self.proj_feature(fullres_features), coarse, confidence), dim=1), v)

        raw_gaussians = self.to_gaussians(torch.cat((refined, flat_images, fullres_features), dim=1))
        delta, opacity_logits = self.to_disparity(refined).split(1, dim=1)
        low = 1.0 / far.flatten(0, 1)[:, None, None, None]
        high = 1.0 / near.flatten(0, 1)[:, None, None, None]
        disparity = (coarse + delta).clamp(low, high)

        return DepthPrediction(
            depths=(1.0 / disparity).reshape(b, v, h, w),
            opacities=opacity_logits.sigmoid().reshape(b, v, h, w),
            raw_gaussians=raw_gaussians.reshape(b, v, -1, h * w).transpose(-1, -2))
