"""The pixel-unshuffle "VAE" of tiny CogVideoX models: exact inverse, latents that carry every
frame, loading through the CogVideoX model folder (tools/make_tiny_backbone.py --vae)."""
import importlib.util
import json
import os.path as osp

import pytest
import torch

from videoscene.backbones import CogVideoX
from videoscene.backbones.pixel_unshuffle_vae import PixelUnshuffleVAE
from videoscene.errors import InputError
from videoscene.registry import VIDEO_BACKBONES

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))


def make_tiny_backbone():
    spec = importlib.util.spec_from_file_location('make_tiny_backbone',
                                                  osp.join(REPO, 'tools', 'make_tiny_backbone.py'))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    out = tmp_path_factory.mktemp('cogvideox_px') / 'model'
    make_tiny_backbone().main(['--arch', 'cogvideox', '--vae', 'pixel-unshuffle', '--out', str(out),
                               '--height', '16', '--width', '16', '--layers', '1'])
    return out


def build(folder, **kwargs) -> CogVideoX:
    return VIDEO_BACKBONES.build(dict(type='CogVideoX', pretrained=str(folder),
                                      prompt_embedding=str(folder / 'prompt_embeds.safetensors'),
                                      **kwargs))


def test_latents_are_the_pixel_blocks_of_every_frame_and_decode_back_exactly(folder):
    backbone = build(folder)
    assert isinstance(backbone.vae, PixelUnshuffleVAE)
    assert backbone.latent_shape(9, 16, 16) == (9, 12, 8, 8)
    torch.manual_seed(0)
    video = torch.rand(2, 9, 3, 16, 16)
    latents = backbone.encode(video)
    assert latents.shape == (2, 9, 12, 8, 8)
    # channel c*4 + i*2 + j of latent pixel (y, x) is pixel (2y + i, 2x + j) of channel c,
    # brought to [-1, 1]
    for c, i, j in [(0, 0, 0), (1, 0, 1), (2, 1, 1)]:
        torch.testing.assert_close(latents[:, :, c * 4 + i * 2 + j],
                                   video[:, :, c, i::2, j::2] * 2 - 1)
    torch.testing.assert_close(backbone.decode(latents), video, atol=1e-6, rtol=0)
    # frames that differ give latent frames that differ by exactly as much
    still = video[:, :1].expand(-1, 9, -1, -1, -1)
    moved = backbone.encode(still)
    assert (moved[:, 1:] - moved[:, :1]).abs().max() == 0
    assert (latents[:, 1:] - latents[:, :1]).abs().amax(dim=(2, 3, 4)).min() > 0.5


def test_conditions_sit_on_the_first_and_last_frames(folder):
    backbone = build(folder)
    first, last = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    image_latents = backbone.condition(first, last, num_frames=9)['image_latents']
    assert image_latents.shape == (1, 9, 12, 8, 8)
    torch.testing.assert_close(image_latents[:, 0], backbone.encode(first[:, None])[:, 0])
    torch.testing.assert_close(image_latents[:, -1], backbone.encode(last[:, None])[:, 0])
    assert image_latents[:, 1:-1].abs().max() == 0


def test_the_folder_holds_a_config_only_and_exports_and_reloads(folder, tmp_path):
    assert sorted(p.name for p in (folder / 'vae').iterdir()) == ['config.json']
    backbone = build(folder)
    x, t = torch.randn(1, 9, 12, 8, 8), torch.tensor([500])
    conditioning = backbone.condition(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16), 9)
    with torch.no_grad():
        expected = backbone(x, t, conditioning)
        reloaded = build(backbone.save_pretrained(tmp_path / 'export'))
        torch.testing.assert_close(reloaded(x, t, conditioning), expected)


def test_clear_errors(folder, tmp_path):
    with pytest.raises(ValueError, match='vae_tiling and vae_slicing do not apply'):
        build(folder, vae_tiling=True)
    config = tmp_path / 'config.json'
    config.write_text(json.dumps({'_class_name': 'PixelUnshuffleVAE', 'factor': 2}))
    with pytest.raises(InputError, match="unknown PixelUnshuffleVAE entries \\['factor'\\]"):
        PixelUnshuffleVAE.from_pretrained(tmp_path)
    vae = PixelUnshuffleVAE()
    with pytest.raises(ValueError, match='H and W multiples of 2'):
        vae.encode(torch.rand(1, 3, 2, 15, 16))
    with pytest.raises(ValueError, match='takes \\[B, 12, F, h, w\\]'):
        vae.decode(torch.rand(1, 4, 2, 8, 8))
