"""Tiny distillation configs for the pipeline, inference and video-to-3D tests.

A tiny random CogVideoX folder (``save_tiny_cogvideox``) stands in for the exported teacher, and
the distillation config of the synthetic default is pointed at it, at 16 x 16 frames (9 a video).
"""
from __future__ import annotations

from pathlib import Path

from mmengine.config import Config

from videoscene.backbones.tiny import save_tiny_cogvideox

REPO_ROOT = Path(__file__).resolve().parents[1]
DISTILLATION_CONFIG = REPO_ROOT / 'configs/distillation/tiny_cogvideox_synthetic.py'
SIZE = 16

# A slim MVSplat (random weights): image inputs need a reconstructor that does not read depth.
TINY_MVSPLAT = dict(type='MVSplat', feature_channels=16, num_transformer_layers=1, num_depth_candidates=8,
                    costvolume_unet_feat_dim=16, costvolume_unet_channel_mult=(1, 1),
                    costvolume_unet_attn_res=(), depth_unet_feat_dim=8, depth_unet_channel_mult=(1, 1, 1),
                    depth_unet_attn_res=(), sh_degree=0)
SMALL_DDPNET = dict(type='DDPNet', max_timestep=799, channels=(8, 8, 8, 8), groups=4)


def tiny_backbone(root: Path) -> Path:
    folder = root / 'tiny_cogvideox'
    if not folder.exists():
        save_tiny_cogvideox(folder, height=SIZE, width=SIZE)
    return folder


def tiny_config(root: Path, name: str = 'config.py', reconstructor: dict | None = None,
                policy: dict | None = None) -> Path:
    """A distillation config file in ``root``: the synthetic-default config with the tiny backbone,
    ``reconstructor`` (default ``DepthUnprojection``, ground-truth depth), no reconstructor
    checkpoint and 16 x 16 datasets of 2 scenes."""
    folder = tiny_backbone(root)
    cfg = Config.fromfile(str(DISTILLATION_CONFIG))
    cfg.model.backbone.pretrained = str(folder)
    cfg.model.backbone.prompt_embedding = str(folder / 'prompt_embeds.safetensors')
    cfg.model.reconstructor = reconstructor or dict(type='DepthUnprojection')
    cfg.model.reconstructor_checkpoint = None
    cfg.model.renderer = dict(type='torch', views_per_chunk=9)
    cfg.model.policy = policy or SMALL_DDPNET
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        if cfg.get(loader):
            cfg[loader].dataset.update(num_scenes=2, frames=24, height=SIZE, width=SIZE)
    path = root / name
    cfg.dump(str(path))
    return path
