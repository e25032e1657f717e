"""pixelSplat's probabilistic depth: a distribution over disparity buckets per pixel.

Depth buckets are uniform in *relative disparity* ``r`` between a view's near (``r = 0``) and far
(``r = 1``) planes. Per pixel the head predicts bucket logits and a sub-bucket offset per bucket;
a bucket is taken (most likely one, or sampled), its depth is the bucket start plus the offset, and
its probability becomes the Gaussian's opacity.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

__all__ = ['relative_disparity_to_depth', 'depth_to_relative_disparity', 'DepthSamples',
           'DepthPredictor']

#: Guards the reciprocals (as in the official code).
_EPS = 1e-10
#: Added to the probability sum before normalising (float32 machine epsilon, as officially).
_PDF_EPS = float(torch.finfo(torch.float32).eps)


def relative_disparity_to_depth(disparity: torch.Tensor, near: torch.Tensor,
                                far: torch.Tensor) -> torch.Tensor:
    """Relative disparity (0 at ``near``, 1 at ``far``) -> depth; arguments broadcast."""
    near_disparity, far_disparity = 1 / (near + _EPS), 1 / (far + _EPS)
    return 1 / ((1 - disparity) * (near_disparity - far_disparity) + far_disparity + _EPS)


def depth_to_relative_disparity(depth: torch.Tensor, near: torch.Tensor,
                                far: torch.Tensor) -> torch.Tensor:
    """Depth -> relative disparity (0 at ``near``, 1 at ``far``); arguments broadcast."""
    near_disparity, far_disparity = 1 / (near + _EPS), 1 / (far + _EPS)
    disparity = 1 / (depth + _EPS)
    return 1 - (disparity - far_disparity) / (near_disparity - far_disparity + _EPS)


@dataclass
class DepthSamples:
    """Depths chosen per pixel, ``S`` per pixel.

    Attributes:
        depths: ``[..., S]`` depths (distance along the unit ray).
        probabilities: ``[..., S]`` the chosen buckets' probabilities.
        buckets: ``[..., S]`` the chosen bucket indices (int64).
    """

    depths: torch.Tensor
    probabilities: torch.Tensor
    buckets: torch.Tensor


class DepthPredictor(nn.Module):
    """Per-pixel features -> bucket distribution -> depths.

    The projection's output channels interleave: even channels are the ``num_buckets`` logits,
    odd channels the matching offsets (as in the official checkpoints).

    Args:
        channels: feature width.
        num_buckets: disparity buckets.
    """

    def __init__(self, channels: int = 128, num_buckets: int = 32) -> None:
        super().__init__()
        self.num_buckets = num_buckets
        self.projection = nn.Sequential(nn.ReLU(), nn.Linear(channels, 2 * num_buckets))

    def forward(self, features: torch.Tensor, near: torch.Tensor, far: torch.Tensor,
                num_samples: int | None) -> DepthSamples:
        """Choose depths.

        Args:
            features: ``[..., C]`` per-pixel features.
            near, far: broadcastable against ``features.shape[:-1]``.
            num_samples: ``None`` takes the most likely bucket (``S = 1``); an integer draws that
                many buckets from the distribution, with replacement.
        """
        raw = self.projection(features)
        probabilities = raw[..., 0::2].softmax(dim=-1)
        offsets = raw[..., 1::2].sigmoid()
        if num_samples is None:
            buckets = probabilities.argmax(dim=-1, keepdim=True)
        else:
            buckets = torch.multinomial(probabilities.detach().flatten(0, -2), num_samples,
                                        replacement=True).unflatten(0, probabilities.shape[:-1])
        normalised = probabilities / (probabilities.sum(dim=-1, keepdim=True) + _PDF_EPS)
        disparity = (buckets + offsets.gather(-1, buckets)) / self.num_buckets
        depths = relative_disparity_to_depth(disparity, near[..., None], far[..., None])
        return DepthSamples(depths=depths, probabilities=normalised.gather(-1, buckets),
                            buckets=buckets)
