"""SVD backbone: real from_pretrained loading of a tiny random model, its pipeline's conditioning,
the interpolation variant, EDM timesteps, trainable selection and clear errors."""
import shutil

import pytest
import torch
from diffusers import EulerDiscreteScheduler
from diffusers.models.attention_processor import Attention
from diffusers.models.transformers.transformer_temporal import TransformerSpatioTemporalModel

from videoscene.backbones import SVD
from videoscene.backbones.tiny import save_tiny_svd
from videoscene.registry import VIDEO_BACKBONES
from videoscene.schedulers import EulerScheduler


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
    return save_tiny_svd(tmp_path_factory.mktemp('svd') / 'model', image_size=32)


def build(folder, **kwargs) -> SVD:
    return VIDEO_BACKBONES.build(dict(type='SVD', pretrained=str(folder), **kwargs))


@pytest.fixture(scope='module')
def backbone(folder):
    return build(folder, noise_aug_strength=0.0)


def test_builds_with_the_folders_euler_schedule(folder, backbone):
    assert backbone.prediction_type == 'v_prediction'
    scheduler = backbone.build_scheduler()
    assert isinstance(scheduler, EulerScheduler)
    reference = EulerDiscreteScheduler.from_pretrained(folder, subfolder='scheduler')
    reference.set_timesteps(10)
    torch.testing.assert_close(scheduler.sigmas[scheduler.timesteps(10)].float(), reference.sigmas[:-1],
                               rtol=1e-5, atol=0)


def test_first_frame_conditioning_matches_the_pipeline(backbone):
    torch.manual_seed(0)
    first = torch.rand(2, 3, 16, 16)
    conditioning = backbone.condition(first, None, num_frames=5)
    latents = conditioning['image_latents']
    assert latents.shape == (2, 5, 4, 8, 8)
    with torch.no_grad():  # unscaled VAE mode of the frame, on every frame
        expected = backbone.encode(first[:, None]) / backbone.scaling_factor
    for frame in range(5):
        torch.testing.assert_close(latents[:, frame:frame + 1], expected)
    assert conditioning['image_embeds'].shape == (2, 1, 32)
    torch.testing.assert_close(conditioning['added_time_ids'],
                               torch.tensor([[6.0, 127.0, 0.0]]).repeat(2, 1))


def test_first_last_variant_puts_the_frames_at_the_ends(backbone):
    first, last = torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16)
    conditioning = backbone.condition(first, last, num_frames=6)
    latents = conditioning['image_latents']
    with torch.no_grad():
        torch.testing.assert_close(latents[:, :1], backbone.encode(first[:, None]) / backbone.scaling_factor)
        torch.testing.assert_close(latents[:, -1:], backbone.encode(last[:, None]) / backbone.scaling_factor)
    assert latents[:, 1:-1].abs().max() == 0
    embeds = conditioning['image_embeds']
    assert embeds.shape == (1, 2, 32)
    torch.testing.assert_close(embeds[:, :1], backbone.condition(first, None, 6)['image_embeds'])
    torch.testing.assert_close(embeds[:, 1:], backbone.condition(last, None, 6)['image_embeds'])


def test_noise_augmentation_strength_enters_the_time_ids(folder):
    backbone = build(folder, noise_aug_strength=0.02, fps=9, motion_bucket_id=60)
    first = torch.rand(3, 3, 16, 16)
    fixed = backbone.condition(first, None, 4)['added_time_ids']
    torch.testing.assert_close(fixed, torch.tensor([[8.0, 60.0, 0.02]]).repeat(3, 1))
    drawn = backbone.condition(first, None, 4, augment=True)['added_time_ids'][:, 2]
    assert (drawn > 0).all() and len(set(drawn.tolist())) == 3  # one strength per sample


def test_predict_feeds_the_unet_edm_inputs(backbone):
    seen = {}
    hook = backbone.unet.register_forward_pre_hook(
        lambda module, args, kwargs: seen.update(sample=args[0], timestep=args[1], **kwargs),
        with_kwargs=True)
    try:
        conditioning = backbone.condition(torch.rand(2, 3, 16, 16), torch.rand(2, 3, 16, 16), 4)
        x_t, t = torch.randn(2, 4, 4, 8, 8), torch.tensor([0, 999])
        output = backbone.predict(x_t, t, conditioning)
    finally:
        hook.remove()
    assert output.shape == x_t.shape and output.dtype == torch.float32
    torch.testing.assert_close(seen['sample'][:, :, :4], x_t)
    torch.testing.assert_close(seen['sample'][:, :, 4:], conditioning['image_latents'])
    sigmas = torch.tensor([0.002, 700.0])
    torch.testing.assert_close(seen['timestep'], 0.25 * sigmas.log(), rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(seen['added_time_ids'], conditioning['added_time_ids'])
    torch.testing.assert_close(seen['encoder_hidden_states'], conditioning['image_embeds'])


def test_attention_selection_is_every_attention_layer_of_the_unet(folder):
    backbone = build(folder)
    selection = backbone.select_trainable('attention')
    attention = [m for m in backbone.unet.modules() if isinstance(m, Attention)]
    transformers = [m for m in backbone.unet.modules() if isinstance(m, TransformerSpatioTemporalModel)]
    assert len(attention) == 4 * len(transformers) > 0  # (spatial, temporal) x (self, cross) each
    assert selection.trainable == sum(p.numel() for m in attention for p in m.parameters())
    for network in (backbone.vae, backbone.image_encoder):
        assert not any(p.requires_grad for p in network.parameters())
    names = [name for name, p in backbone.named_parameters() if p.requires_grad]
    assert all('.attn1.' in name or '.attn2.' in name for name in names)


@pytest.mark.parametrize('frames', [49, 13])
def test_round_trip_shapes(backbone, frames):
    video = torch.rand(1, frames, 3, 16, 16)
    with torch.no_grad():
        latents = backbone.encode(video)
        assert latents.shape == (1, frames, 4, 8, 8)
        assert backbone.decode(latents).shape == video.shape


def test_chunked_and_sliced_decoding_keep_shapes(folder):
    backbone = build(folder, decode_chunk_size=2, vae_slicing=True)
    with torch.no_grad():
        assert backbone.decode(torch.randn(2, 5, 4, 8, 8)).shape == (2, 5, 3, 16, 16)


def test_errors(folder, backbone, tmp_path):
    with pytest.raises(ValueError, match='no tiled mode'):
        build(folder, vae_tiling=True)
    with pytest.raises(ValueError, match='divisible by 4'):
        backbone.encode(torch.rand(1, 3, 3, 18, 16))
    copy = tmp_path / 'model'
    shutil.copytree(folder, copy)
    shutil.rmtree(copy / 'image_encoder')
    with pytest.raises(FileNotFoundError, match="subfolder 'image_encoder/' is missing"):
        build(copy)
    shutil.copytree(folder / 'image_encoder', copy / 'image_encoder')
    (copy / 'unet' / 'diffusion_pytorch_model.safetensors').unlink()
    with pytest.raises(FileNotFoundError, match='no weight file'):
        build(copy)
    with pytest.raises(ValueError, match='cannot run on cpu'):
        backbone.set_dtype('float8_e5m2')


def test_image_embedding_matches_the_diffusers_pipeline(tmp_path):
    from diffusers import StableVideoDiffusionPipeline
    from PIL import Image
    from transformers import CLIPImageProcessor

    folder = save_tiny_svd(tmp_path / 'clip224', image_size=224)  # the pipeline resizes to 224
    backbone = build(folder)
    pipeline = StableVideoDiffusionPipeline(
        vae=backbone.vae, image_encoder=backbone.image_encoder, unet=backbone.unet,
        scheduler=EulerDiscreteScheduler.from_pretrained(folder, subfolder='scheduler'),
        feature_extractor=CLIPImageProcessor.from_pretrained(folder, subfolder='feature_extractor'))
    torch.manual_seed(4)
    pixels = (torch.rand(3, 48, 64) * 255).round().to(torch.uint8)  # what a PIL image holds
    image = Image.fromarray(pixels.permute(1, 2, 0).numpy())
    with torch.no_grad():
        expected = pipeline._encode_image(image, torch.device('cpu'), 1, False)
    ours = backbone.condition(pixels[None].float() / 255, None, 2)['image_embeds']
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-5)
