"""VBench-style scores of generated videos: subject / background consistency, aesthetic quality.

Computed as Vchitect/VBench computes them (``vbench/subject_consistency.py``,
``background_consistency.py``, ``aesthetic_quality.py``) on the ``pred`` video of each data sample
(``[F, 3, H, W]`` in [0, 1], the samples ``NovelViewPSNR`` reads), with the encoders and
preprocessing of :mod:`videoscene.evaluation.vbench_encoders`:

* consistency: unit-normalised per-frame features ``f_0 .. f_{F-1}``; frame ``i >= 1`` scores
  ``(max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2`` and the score is the mean over all
  scored frames of all videos (VBench's ``sim / cnt``: longer videos weigh more);
* aesthetic: ``head(normalize(clip_embedding)) / 10`` averaged over the frames of a video, then
  over videos.

Written by hand: these formulas and the averaging. The encoders come from maintained packages
(timm for DINO, open_clip or transformers for CLIP). Features are extracted in batches, without
gradients, on the device of ``pred``.
"""
from __future__ import annotations

import os
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from mmengine.evaluator import BaseMetric
from torch import Tensor, nn

from videoscene.errors import CheckpointError, InputError
from videoscene.registry import METRICS

from .vbench_encoders import (AESTHETIC_HEAD_HOW_TO_GET, CLIP_HOW_TO_GET, DINO_HOW_TO_GET,
                              ClipImageEncoder, DinoViTEncoder, load_aesthetic_head,
                              require_weight_file)

__all__ = ['consistency_scores', 'SubjectConsistency', 'BackgroundConsistency',
           'AestheticQuality']


def consistency_scores(features: Tensor) -> Tensor:
    """VBench's per-frame consistency of features ``[F, D]`` (F >= 2) -> ``[F - 1]``.

    Score of frame ``i``: ``(max(0, cos(f_{i-1}, f_i)) + max(0, cos(f_0, f_i))) / 2``.
    """
    if features.dim() != 2 or len(features) < 2:
        raise ValueError(f'consistency needs features [F >= 2, D], got {tuple(features.shape)}')
    unit = F.normalize(features.double(), dim=-1)
    to_previous = F.cosine_similarity(unit[:-1], unit[1:], dim=-1).clamp(min=0)
    to_first = F.cosine_similarity(unit[:1], unit[1:], dim=-1).clamp(min=0)
    return (to_previous + to_first) / 2


class _VideoFeatureMetric(BaseMetric):
    """Runs ``self.encoder`` over the frames of every ``pred`` video, ``batch_size`` at a time."""

    default_prefix = 'vbench'
    encoder: nn.Module

    def __init__(self, batch_size: int, collect_device: str, prefix: str | None) -> None:
        super().__init__(collect_device=collect_device, prefix=prefix)
        if batch_size < 1:
            raise InputError('batch_size', f'must be >= 1, got {batch_size}')
        self.batch_size = batch_size

    @torch.no_grad()
    def video_features(self, video: Tensor, min_frames: int = 1) -> Tensor:
        """``[F, 3, H, W]`` in [0, 1] -> per-frame features ``[F, D]`` (float32)."""
        if video.dim() != 4 or video.shape[1] != 3 or len(video) < min_frames:
            raise InputError(f'{type(self).__name__} pred', 'expected a video [F, 3, H, W] with '
                             f'F >= {min_frames}, got {tuple(video.shape)}')
        self.encoder.to(video.device)
        return torch.cat([self.encoder(self.encoder.preprocess(chunk)).float()
                          for chunk in video.split(self.batch_size)])


class _ConsistencyMetric(_VideoFeatureMetric):
    score_name: str

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            scores = consistency_scores(self.video_features(sample['pred'], min_frames=2))
            self.results.append((scores.sum().item(), len(scores)))

    def compute_metrics(self, results: list) -> dict:
        total = sum(score for score, _ in results)
        count = sum(n for _, n in results)
        return {self.score_name: total / count}


@METRICS.register_module()
class SubjectConsistency(_ConsistencyMetric):
    """VBench subject consistency: DINO ViT-B/16 CLS features (higher is more consistent).

    Args:
        dino_checkpoint: local DINO backbone state dict, ``dino_vitbase16_pretrain.pth``; the
            architecture is read from the file (see :class:`DinoViTEncoder`). Required.
        batch_size: frames per forward pass.
        collect_device, prefix: as for :class:`mmengine.evaluator.BaseMetric`.

    Maintained: timm's ``vit_base_patch16_224.dino`` network and torchvision's resize.
    Written by hand: the DINO position-embedding resize for non-square frames, VBench's formula.
    Result key ``vbench/subject_consistency``.
    """

    score_name = 'subject_consistency'

    def __init__(self, dino_checkpoint: str | os.PathLike | None = None, batch_size: int = 32,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(batch_size, collect_device, prefix)
        self.encoder = DinoViTEncoder(require_weight_file(
            dino_checkpoint, 'SubjectConsistency.dino_checkpoint', DINO_HOW_TO_GET))


@METRICS.register_module()
class BackgroundConsistency(_ConsistencyMetric):
    """VBench background consistency: CLIP ViT-B/32 image features (higher is more consistent).

    Args:
        clip_checkpoint: OpenAI's ``ViT-B-32.pt`` or a transformers CLIP folder; the architecture
            is read from the file / folder config (see :class:`ClipImageEncoder`). Required.
        batch_size, collect_device, prefix: as for :class:`SubjectConsistency`.

    Maintained: open_clip (OpenAI files, as VBench's ``clip.load``) or transformers, torchvision's
    resize and crop. Written by hand: VBench's formula. Result key
    ``vbench/background_consistency``.
    """

    score_name = 'background_consistency'

    def __init__(self, clip_checkpoint: str | os.PathLike | None = None, batch_size: int = 32,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(batch_size, collect_device, prefix)
        self.encoder = ClipImageEncoder(require_weight_file(
            clip_checkpoint, 'BackgroundConsistency.clip_checkpoint',
            CLIP_HOW_TO_GET.format(name='ViT-B-32', hf_name='clip-vit-base-patch32'),
            folder_ok=True))


@METRICS.register_module()
class AestheticQuality(_VideoFeatureMetric):
    """VBench aesthetic quality: the LAION aesthetic head on CLIP ViT-L/14 embeddings, / 10.

    Per video: the mean over frames of ``head(normalize(embedding)) / 10``; the score is the mean
    over videos (about 0.4-0.7 for real footage).

    Args:
        clip_checkpoint: OpenAI's ``ViT-L-14.pt`` or a transformers CLIP folder (see
            :class:`ClipImageEncoder`). Required.
        head_checkpoint: ``sa_0_4_vit_l_14_linear.pth`` (``weight [1, 768]``, ``bias [1]``); its
            input size must equal the CLIP embedding size. Required.
        batch_size, collect_device, prefix: as for :class:`SubjectConsistency`.

    Maintained: open_clip or transformers (CLIP), ``nn.Linear`` (head). Written by hand: the
    normalisation, scaling and averaging. Result key ``vbench/aesthetic_quality``.
    """

    def __init__(self, clip_checkpoint: str | os.PathLike | None = None,
                 head_checkpoint: str | os.PathLike | None = None, batch_size: int = 32,
                 collect_device: str = 'cpu', prefix: str | None = None) -> None:
        super().__init__(batch_size, collect_device, prefix)
        head_path = require_weight_file(head_checkpoint, 'AestheticQuality.head_checkpoint',
                                        AESTHETIC_HEAD_HOW_TO_GET)
        self.encoder = ClipImageEncoder(require_weight_file(
            clip_checkpoint, 'AestheticQuality.clip_checkpoint',
            CLIP_HOW_TO_GET.format(name='ViT-L-14', hf_name='clip-vit-large-patch14'),
            folder_ok=True))
        self.head = load_aesthetic_head(head_path)
        if self.encoder.embed_dim != self.head.in_features:
            raise CheckpointError(head_path, f'head takes {self.head.in_features}-d embeddings but '
                                  f'{self.encoder.path} gives {self.encoder.embed_dim}-d ones')

    @torch.no_grad()
    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            embeddings = F.normalize(self.video_features(sample['pred']), dim=-1)
            scores = self.head.to(embeddings.device)(embeddings).squeeze(-1) / 10
            self.results.append(scores.mean().item())

    def compute_metrics(self, results: list) -> dict:
        return dict(aesthetic_quality=sum(results) / len(results))
