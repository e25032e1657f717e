"""VBench-style scores: the consistency formula on hand-made features, each loader on a tiny
seeded model saved in its standard on-disk format and matched against the maintained package's
own model (with VBench's preprocessing redone here independently of torchvision), the LAION head
against ../shared/fixtures/laion_aesthetic, and the unavailable-weights errors."""
from __future__ import annotations

import math
import os.path as osp
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from videoscene.errors import CheckpointError, InputError
from videoscene.evaluation import (AestheticQuality, BackgroundConsistency, SubjectConsistency,
                                   consistency_scores, load_aesthetic_head)
from videoscene.registry import METRICS

AESTHETIC = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '..', 'shared', 'fixtures',
                     'laion_aesthetic')
IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
OPENAI_CLIP = ((0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711))


# ---------------------------------------------------------------- VBench's preprocessing, redone

def _resize_shorter_uint8(frames: torch.Tensor, size: int, mode: str) -> torch.Tensor:
    """8-bit frames, shorter side to ``size`` (long side truncated), no antialiasing, back to 8 bits
    (bicubic clamped first), as torchvision does on uint8 tensors."""
    u8 = (frames.clamp(0, 1) * 255).round()
    h, w = frames.shape[-2:]
    out = (size, int(size * w / h)) if h <= w else (int(size * h / w), size)
    x = F.interpolate(u8, size=out, mode=mode, align_corners=False)
    return x.clamp(0, 255).round() if mode == 'bicubic' else x.round()


def _normalised(x: torch.Tensor, stats) -> torch.Tensor:
    mean, std = (torch.tensor(v).view(1, 3, 1, 1) for v in stats)
    return (x / 255 - mean) / std


def dino_input(frames: torch.Tensor) -> torch.Tensor:
    return _normalised(_resize_shorter_uint8(frames, 224, 'bilinear'), IMAGENET)


def clip_input(frames: torch.Tensor) -> torch.Tensor:
    x = _resize_shorter_uint8(frames, 224, 'bicubic')
    top, left = round((x.shape[-2] - 224) / 2), round((x.shape[-1] - 224) / 2)
    return _normalised(x[..., top:top + 224, left:left + 224], OPENAI_CLIP)


def vbench_consistency(features: torch.Tensor) -> list[float]:
    """VBench's loop, scalar by scalar."""
    unit = F.normalize(features.double(), dim=-1)
    scores = []
    for i in range(1, len(unit)):
        previous = max(0.0, F.cosine_similarity(unit[i - 1:i], unit[i:i + 1]).item())
        first = max(0.0, F.cosine_similarity(unit[:1], unit[i:i + 1]).item())
        scores.append((previous + first) / 2)
    return scores


def video(seed: int, frames: int, height: int, width: int) -> torch.Tensor:
    """A smooth moving pattern in [0, 1] (correlated frames, so consistency is not trivial)."""
    g = torch.Generator().manual_seed(seed)
    base = torch.rand(1, 3, height // 8, width // 8, generator=g)
    base = F.interpolate(base, size=(height, width), mode='bilinear', align_corners=False)
    shifts = [torch.roll(base, shifts=3 * i, dims=-1) for i in range(frames)]
    noise = 0.1 * torch.rand(frames, 3, height, width, generator=g)
    return (torch.cat(shifts) + noise).clamp(0, 1)


def run_metric(metric, videos) -> dict:
    metric.process(None, [dict(pred=v, gt=v) for v in videos])
    return metric.compute_metrics(metric.results)


# ---------------------------------------------------------------- the formula

def test_consistency_formula_known_values():
    s = math.sqrt(0.5)
    features = torch.tensor([[1.0, 0.0], [s, s], [0.0, 2.0], [-1.0, 0.0]])
    # frame 1: (cos45 + cos45)/2; frame 2: (cos45 + cos90)/2; frame 3: previous cos -> 0,
    # first cos = -1 -> clipped to 0.
    expected = torch.tensor([s, s / 2, 0.0], dtype=torch.float64)
    torch.testing.assert_close(consistency_scores(features), expected)
    torch.testing.assert_close(consistency_scores(features), torch.tensor(
        vbench_consistency(features), dtype=torch.float64))
    # Scale does not matter; identical frames score exactly 1.
    torch.testing.assert_close(consistency_scores(features * 3), expected)
    torch.testing.assert_close(consistency_scores(torch.ones(4, 5)), torch.ones(3, dtype=torch.float64))
    # Only negative cosines: clipped to 0, not averaged into negatives.
    torch.testing.assert_close(consistency_scores(torch.tensor([[1.0, 0.0], [-1.0, 0.1]])),
                               torch.zeros(1, dtype=torch.float64))
    with pytest.raises(ValueError, match='F >= 2'):
        consistency_scores(torch.ones(1, 4))


# ---------------------------------------------------------------- DINO (subject consistency)

def tiny_dino(path):
    """A tiny ViT of DINO's layout (patch 16, 224, width 64 -> 1 head), seeded, saved as the
    flat state dict of ``dino_vitbase16_pretrain.pth``."""
    import timm
    torch.manual_seed(0)
    model = timm.create_model('vit_base_patch16_224.dino', pretrained=False, num_classes=0,
                              embed_dim=64, depth=2, num_heads=1).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))  # pos_embed / cls_token start at ~0
    torch.save(model.state_dict(), path)
    return model


def test_subject_consistency_matches_timm_dino(tmp_path):
    reference = tiny_dino(tmp_path / 'dino.pth')
    metric = SubjectConsistency(dino_checkpoint=tmp_path / 'dino.pth', batch_size=3)
    assert isinstance(METRICS.build(dict(type='SubjectConsistency',
                                         dino_checkpoint=str(tmp_path / 'dino.pth'))),
                      SubjectConsistency)
    videos = [video(1, 5, 256, 256), video(2, 3, 240, 240)]
    with torch.no_grad():
        features = [metric.video_features(v) for v in videos]
        expected = [reference(dino_input(v)) for v in videos]
    for got, want in zip(features, expected):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)
    scores = [s for f in expected for s in vbench_consistency(f)]
    result = run_metric(metric, videos)
    assert result['subject_consistency'] == pytest.approx(sum(scores) / len(scores), abs=1e-5)
    # Frame-weighted (VBench's sim / cnt), not a mean of per-video means.
    per_video = [np.mean(vbench_consistency(f)) for f in expected]
    assert abs(np.mean(per_video) - sum(scores) / len(scores)) > 1e-4


def test_dino_non_square_frames_use_dino_position_resize(tmp_path):
    """256 x 448 frames -> 224 x 392 -> 14 x 24 patches: the position grid is resized as DINO does
    (bicubic, scale_factor (rows + 0.1) / 14); the reference is timm's own ViT built for 224 x 384
    with that embedding."""
    import timm
    reference = tiny_dino(tmp_path / 'dino.pth')
    metric = SubjectConsistency(dino_checkpoint=tmp_path / 'dino.pth')
    frames = video(3, 2, 256, 448)
    pixels = dino_input(frames)
    assert pixels.shape[-2:] == (224, 392)
    grid = reference.pos_embed[:, 1:].reshape(1, 14, 14, -1).permute(0, 3, 1, 2)
    dino_grid = F.interpolate(grid, scale_factor=(14.1 / 14, 24.1 / 14), mode='bicubic')
    exact_grid = F.interpolate(grid, size=(14, 24), mode='bicubic', antialias=True)
    assert (dino_grid - exact_grid).abs().max() > 1e-3  # the test tells the two resizes apart
    wide = timm.create_model('vit_base_patch16_224.dino', pretrained=False, num_classes=0,
                             embed_dim=64, depth=2, num_heads=1, img_size=(224, 384)).eval()
    state = dict(reference.state_dict())
    state['pos_embed'] = torch.cat([reference.pos_embed[:, :1],
                                    dino_grid.flatten(2).transpose(1, 2)], dim=1)
    wide.load_state_dict(state)
    with torch.no_grad():
        want = wide(pixels[..., :384])  # DINO's conv drops the last 8 columns (392 = 24.5 x 16)
        got = metric.video_features(frames)
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_dino_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match='not configured.*dino_vitbase16_pretrain.pth'):
        SubjectConsistency()
    missing = tmp_path / 'absent' / 'dino_vitbase16_pretrain.pth'
    with pytest.raises(CheckpointError, match=f'{missing}.*not found.*facebookresearch/dino'):
        SubjectConsistency(dino_checkpoint=missing)
    model = tiny_dino(tmp_path / 'dino.pth')
    state = dict(model.state_dict(), **{'head.weight': torch.zeros(3, 64)})
    del state['norm.bias']
    torch.save(state, tmp_path / 'bad.pth')
    with pytest.raises(CheckpointError, match=r"bad.pth.*missing keys \['norm.bias'\], "
                                              r"unexpected keys \['head.weight'\]"):
        SubjectConsistency(dino_checkpoint=tmp_path / 'bad.pth')
    torch.save({'module.' + k: v for k, v in model.state_dict().items()}, tmp_path / 'ddp.pth')
    with pytest.raises(CheckpointError, match=r'ddp.pth.*not a DINO ViT backbone'):
        SubjectConsistency(dino_checkpoint=tmp_path / 'ddp.pth')
    metric = SubjectConsistency(dino_checkpoint=tmp_path / 'dino.pth')
    with pytest.raises(InputError, match=r'F >= 2, got \(1, 3, 32, 32\)'):
        metric.process(None, [dict(pred=torch.rand(1, 3, 32, 32))])


# ---------------------------------------------------------------- CLIP (background consistency)

def tiny_openai_clip(embed_dim: int = 16, patch: int = 32):
    """A tiny open_clip CLIP (QuickGELU, width 64 -> 1 head, 224 input) with fp16-exact weights,
    as OpenAI's files store them; returns the model and its OpenAI-layout state dict."""
    from open_clip.model import CLIP, CLIPTextCfg, CLIPVisionCfg
    torch.manual_seed(1)
    model = CLIP(embed_dim, CLIPVisionCfg(layers=2, width=64, patch_size=patch, image_size=224),
                 CLIPTextCfg(context_length=4, vocab_size=10, width=64, heads=1, layers=1),
                 quick_gelu=True).eval()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_((p + 0.02 * torch.randn_like(p)).half().float())
    return model, {k: v.half() for k, v in model.state_dict().items()}


def save_torchscript(model, path) -> None:
    """A traced archive like OpenAI's (its text mask a constant, not a buffer)."""
    model.attn_mask = model._buffers.pop('attn_mask')
    with warnings.catch_warnings():
        warnings.simplefilter('ignore')
        torch.jit.trace(model, (torch.zeros(1, 3, 224, 224), torch.zeros(1, 4, dtype=torch.long)),
                        check_trace=False).save(str(path))


@pytest.mark.parametrize('layout', ['torchscript', 'state_dict'])
def test_background_consistency_openai_file_matches_open_clip(tmp_path, layout):
    model, state = tiny_openai_clip()
    path = tmp_path / 'ViT-B-32.pt'
    if layout == 'torchscript':
        save_torchscript(model, path)
    else:
        torch.save(state, path)
    metric = BackgroundConsistency(clip_checkpoint=path, batch_size=4)
    assert metric.encoder.backend == 'open_clip'
    videos = [video(4, 6, 256, 320), video(5, 3, 200, 180)]
    with torch.no_grad():
        expected = [model.encode_image(clip_input(v)) for v in videos]
        for v, want in zip(videos, expected):
            torch.testing.assert_close(metric.video_features(v), want, rtol=1e-4, atol=1e-5)
    scores = [s for f in expected for s in vbench_consistency(f)]
    result = run_metric(metric, videos)
    assert result['background_consistency'] == pytest.approx(sum(scores) / len(scores), abs=1e-5)


def tiny_transformers_clip(path, projection_dim: int = 16):
    from transformers import CLIPConfig, CLIPModel
    config = CLIPConfig(
        text_config=dict(vocab_size=10, hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                         num_attention_heads=1, max_position_embeddings=8),
        vision_config=dict(hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                           num_attention_heads=1, image_size=224, patch_size=32),
        projection_dim=projection_dim)
    torch.manual_seed(2)
    model = CLIPModel(config).eval()
    model.save_pretrained(path)
    return model


def test_background_consistency_transformers_folder_matches_clip_model(tmp_path):
    model = tiny_transformers_clip(tmp_path / 'clip')
    metric = BackgroundConsistency(clip_checkpoint=tmp_path / 'clip')
    assert metric.encoder.backend == 'transformers'
    frames = video(6, 4, 240, 320)
    with torch.no_grad():
        want = model.get_image_features(pixel_values=clip_input(frames))
        want = want if torch.is_tensor(want) else want.pooler_output
        torch.testing.assert_close(metric.video_features(frames), want, rtol=1e-4, atol=1e-5)
    scores = vbench_consistency(want)
    result = run_metric(metric, [frames])
    assert result['background_consistency'] == pytest.approx(np.mean(scores), abs=1e-5)


def test_clip_checkpoint_errors(tmp_path):
    with pytest.raises(CheckpointError, match='not configured.*ViT-B-32.pt'):
        BackgroundConsistency()
    with pytest.raises(CheckpointError, match='nowhere/ViT-B-32.pt.*not found.*clip-vit-base'):
        BackgroundConsistency(clip_checkpoint=tmp_path / 'nowhere' / 'ViT-B-32.pt')
    torch.save({'weight': torch.zeros(1, 4)}, tmp_path / 'other.pt')
    with pytest.raises(CheckpointError, match='other.pt.*not an OpenAI CLIP file'):
        BackgroundConsistency(clip_checkpoint=tmp_path / 'other.pt')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(CheckpointError, match='empty.*not a transformers CLIP folder'):
        BackgroundConsistency(clip_checkpoint=tmp_path / 'empty')


# ---------------------------------------------------------------- aesthetic quality

def test_aesthetic_quality_matches_open_clip_and_head(tmp_path):
    model, state = tiny_openai_clip(embed_dim=24, patch=14)  # the ViT-L/14 family, tiny
    torch.save(state, tmp_path / 'ViT-L-14.pt')
    torch.manual_seed(3)
    head = nn.Linear(24, 1)
    torch.save(head.state_dict(), tmp_path / 'head.pth')
    metric = AestheticQuality(clip_checkpoint=tmp_path / 'ViT-L-14.pt',
                              head_checkpoint=tmp_path / 'head.pth')
    videos = [video(7, 3, 224, 256), video(8, 5, 256, 256)]
    with torch.no_grad():
        per_video = [(head(F.normalize(model.encode_image(clip_input(v)), dim=-1)) / 10).mean()
                     for v in videos]
    result = run_metric(metric, videos)
    assert result['aesthetic_quality'] == pytest.approx(torch.stack(per_video).mean().item(),
                                                        abs=1e-6)

    torch.save(nn.Linear(32, 1).state_dict(), tmp_path / 'head32.pth')
    with pytest.raises(CheckpointError, match=r'head32.pth.*32-d embeddings.*24-d'):
        AestheticQuality(clip_checkpoint=tmp_path / 'ViT-L-14.pt',
                         head_checkpoint=tmp_path / 'head32.pth')
    with pytest.raises(CheckpointError, match='head_checkpoint.*not configured.*sa_0_4'):
        AestheticQuality(clip_checkpoint=tmp_path / 'ViT-L-14.pt')
    torch.save({'weight': torch.zeros(1, 24), 'bias': torch.zeros(1), 'scale': torch.ones(1)},
               tmp_path / 'extra.pth')
    with pytest.raises(CheckpointError, match=r"unexpected keys \['scale'\]"):
        load_aesthetic_head(tmp_path / 'extra.pth')


def test_laion_head_reproduces_reference_ratings():
    head_path = osp.join(AESTHETIC, 'sa_0_4_vit_l_14_linear.pth')
    if not osp.isfile(head_path):
        pytest.skip(f'LAION aesthetic fixture absent: {head_path}')
    embeddings = torch.from_numpy(np.concatenate([
        np.load(osp.join(AESTHETIC, 'vit_l_14_embeddings', f'rating{r}.npy')) for r in range(10)]))
    plain = nn.Linear(768, 1)
    plain.load_state_dict(torch.load(head_path, map_location='cpu', weights_only=True))
    with torch.no_grad():
        got = load_aesthetic_head(head_path)(embeddings).squeeze(-1)
        want = plain(embeddings).squeeze(-1)
    torch.testing.assert_close(got, want, rtol=0, atol=0)
    assert torch.all(got[1:] > got[:-1]), f'ratings 0..9 not scored in order: {got.tolist()}'
