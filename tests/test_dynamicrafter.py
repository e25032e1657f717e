"""DynamiCrafter re-implementation against the official goldens (../shared/fixtures/dynamicrafter).

Every golden was produced by the official code on CPU in float32 (see the fixture README); the
README's tolerances are atol 1e-5 / rtol 1e-4 for components and atol 1e-4 for the sampled
latents and video.  Run with ``-s`` to see the max abs / rel errors.
"""
from __future__ import annotations

import json
import os.path as osp

import pytest
import torch

from videoscene.backbones.dynamicrafter import (TINY_DYNAMICRAFTER, AutoencoderKL, DynamiCrafter,
                                                OpenCLIPImageEncoder, OpenCLIPTextEncoder,
                                                Resampler, UNet3D, empty_prompt_tokens,
                                                save_tiny_dynamicrafter, schedule_buffers)
from videoscene.backbones.dynamicrafter.attention import Attention
from videoscene.backbones.dynamicrafter.openclip import clip_preprocess
from videoscene.pipelines.sampling import Guidance, denoise
from videoscene.reconstructors.official_checkpoint import CheckpointMismatchError
from videoscene.registry import VIDEO_BACKBONES

FIXTURES = osp.join(osp.dirname(osp.dirname(osp.abspath(__file__))), '..', 'shared', 'fixtures',
                    'dynamicrafter')
COMPONENT_TOL = dict(atol=1e-5, rtol=1e-4)


@pytest.fixture(scope='module', autouse=True)
def one_thread():
    """Tiny networks run ~10x faster on one thread than on two busy cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def golden(name: str) -> dict:
    path = osp.join(FIXTURES, name)
    if not osp.isfile(path):
        pytest.skip(f'DynamiCrafter golden fixture {path} is absent')
    return torch.load(path)


def check(name: str, got: torch.Tensor, ref: torch.Tensor, atol: float, rtol: float) -> None:
    """Assert closeness and print the max absolute and relative (to max |ref|) errors."""
    error = (got.detach().float() - ref.float()).abs().max().item()
    print(f'{name}: max abs {error:.3g}, rel to max|ref| {error / ref.abs().max().item():.3g}')
    torch.testing.assert_close(got.detach().float(), ref.float(), atol=atol, rtol=rtol)


@pytest.fixture(scope='module')
def goldens() -> dict:
    return {key: golden(f'golden_{key}_tiny.pt')
            for key in ('unet', 'autoencoder', 'resampler', 'openclip', 'interp_pipeline')}


def tiny_state_dict(goldens: dict) -> dict[str, torch.Tensor]:
    """The official checkpoint layout assembled as the fixture README says."""
    parts = {'model.diffusion_model.': goldens['unet']['state_dict'],
             'first_stage_model.': goldens['autoencoder']['state_dict'],
             'cond_stage_model.': goldens['openclip']['text']['state_dict'],
             'embedder.': goldens['openclip']['image']['state_dict'],
             'image_proj_model.': goldens['resampler']['state_dict']}
    state = {prefix + key: value for prefix, part in parts.items() for key, value in part.items()}
    state.update(schedule_buffers())
    return state


@pytest.fixture(scope='module')
def checkpoint(goldens, tmp_path_factory) -> str:
    path = tmp_path_factory.mktemp('dynamicrafter') / 'model.ckpt'
    torch.save({'state_dict': tiny_state_dict(goldens)}, path)
    return str(path)


@pytest.fixture(scope='module')
def backbone(goldens, checkpoint) -> DynamiCrafter:
    """Loaded through the registry from the official-layout file: the real loading path."""
    return VIDEO_BACKBONES.build(dict(type='DynamiCrafter', checkpoint=checkpoint,
                                      **TINY_DYNAMICRAFTER)).eval()


def test_tiny_config_is_the_golden_architecture(goldens):
    params = goldens['interp_pipeline']['model_params']
    clip = goldens['openclip']['open_clip_model_cfgs']
    assert TINY_DYNAMICRAFTER['unet'] == params['unet_config']['params']
    assert TINY_DYNAMICRAFTER['autoencoder']['ddconfig'] == \
        params['first_stage_config']['params']['ddconfig']
    assert TINY_DYNAMICRAFTER['resampler'] == params['image_proj_stage_config']['params']
    assert TINY_DYNAMICRAFTER['text_encoder'] == clip['DC-tiny-txt']
    assert TINY_DYNAMICRAFTER['image_encoder'] == clip['DC-tiny-img']


def test_random_tiny_checkpoint_reloads_through_a_config(tmp_path):
    path = save_tiny_dynamicrafter(tmp_path / 'tiny' / 'model.ckpt', seed=3)
    saved = torch.load(path)['state_dict']
    model = VIDEO_BACKBONES.build(dict(type='DynamiCrafter', checkpoint=str(path),
                                       **TINY_DYNAMICRAFTER))
    loaded = model.state_dict()
    assert sorted(loaded) == sorted(saved)
    assert all(torch.equal(loaded[key], saved[key]) for key in saved)
    assert all(p.requires_grad for p in model.unet.parameters())


# ----------------------------------------------------------------------------- layout
def test_full_512_interp_keys_and_shapes():
    path = osp.join(FIXTURES, 'state_dict_shapes_512_interp.json')
    if not osp.isfile(path):
        pytest.skip(f'{path} is absent')
    with open(path) as handle:
        reference = json.load(handle)
    with torch.device('meta'):
        model = DynamiCrafter(checkpoint=None)
    shapes = {key: list(value.shape) for key, value in model.state_dict().items()}
    assert len(shapes) == reference['num_state_dict_entries'] == 2520
    assert shapes == reference['state_dict']
    for group, count in reference['num_parameters'].items():
        module = model if group == 'total' else model.get_submodule(group)
        assert sum(p.numel() for p in module.parameters()) == count, group


def test_schedule_buffers_match_the_official_run(goldens):
    schedule = goldens['interp_pipeline']['schedule']
    buffers = schedule_buffers()
    assert sorted(buffers) == sorted(goldens['interp_pipeline']['state_dict_keys'][:13])
    check('alphas_cumprod', buffers['alphas_cumprod'], schedule['alphas_cumprod'], 1e-7, 0)
    check('scale_arr', buffers['scale_arr'], schedule['scale_arr'], 1e-7, 0)
    assert buffers['alphas_cumprod'][-1] == 0


# ----------------------------------------------------------------------------- components
def test_unet_matches_golden_with_intermediates(goldens):
    g = goldens['unet']
    intermediates = golden('golden_unet_tiny_intermediates.pt')['intermediates']
    unet = UNet3D(**g['config']).eval()
    unet.load_state_dict(g['state_dict'], strict=True)
    inputs = g['inputs']
    captured = {}
    for name in intermediates:
        unet.get_submodule(name).register_forward_hook(
            lambda module, args, out, name=name: captured.__setitem__(name, out))
    with torch.no_grad():
        main = unet(inputs['x'], inputs['timesteps'], inputs['context'], inputs['fs'])
        for name, ref in intermediates.items():
            check(f'unet {name}', captured[name], ref, **COMPONENT_TOL)
        check('unet main', main, g['outputs']['main'], **COMPONENT_TOL)
        shared = unet(inputs['x'], inputs['timesteps'], inputs['context_shared'], inputs['fs'])
        check('unet shared context', shared, g['outputs']['shared_context'], **COMPONENT_TOL)
        default_fs = unet(inputs['x'], inputs['timesteps'], inputs['context'], None)
        check('unet default fs', default_fs, g['outputs']['default_fs'], **COMPONENT_TOL)


def test_autoencoder_matches_golden(goldens):
    g = goldens['autoencoder']
    vae = AutoencoderKL(**g['config']).eval()
    vae.load_state_dict(g['state_dict'], strict=True)
    inputs, out = g['inputs'], g['outputs']
    with torch.no_grad():
        posterior = vae.encode(inputs['image'])
        check('vae encoder', vae.encoder(inputs['image']), out['encoder_out'], **COMPONENT_TOL)
        check('vae mean', posterior.mean, out['mean'], **COMPONENT_TOL)
        check('vae logvar', posterior.logvar, out['logvar'], **COMPONENT_TOL)
        check('vae std', posterior.std, out['std'], **COMPONENT_TOL)
        check('vae sample', posterior.sample(inputs['noise']), out['z_sample'], **COMPONENT_TOL)
        check('vae decode(mode)', vae.decode(posterior.mean), out['decode_of_z_mode'],
              **COMPONENT_TOL)
        check('vae decode(z / scale)', vae.decode(inputs['z_dec_in'] / g['scale_factor']),
              out['decode_of_latent'], **COMPONENT_TOL)


def test_resampler_matches_golden(goldens):
    g = goldens['resampler']
    resampler = Resampler(**g['config']).eval()
    resampler.load_state_dict(g['state_dict'], strict=True)
    with torch.no_grad():
        check('resampler', resampler(g['inputs']['x']), g['outputs']['y'], **COMPONENT_TOL)


def test_openclip_encoders_match_golden(goldens):
    g = goldens['openclip']
    configs = g['open_clip_model_cfgs']
    text = OpenCLIPTextEncoder(configs['DC-tiny-txt'], layer=g['text']['kwargs']['layer']).eval()
    text.load_state_dict(g['text']['state_dict'], strict=True)
    image = OpenCLIPImageEncoder(configs['DC-tiny-img']).eval()
    image.load_state_dict(g['image']['state_dict'], strict=True)
    outputs = g['image']['outputs']
    assert torch.equal(empty_prompt_tokens(1), g['text']['tokens'][1:2])   # prompt ''
    with torch.no_grad():
        check('clip text', text(g['text']['tokens']), g['text']['output'], **COMPONENT_TOL)
        for name, pixels in g['image']['inputs_uint8'].items():
            images = (pixels.float() / 255 - 0.5) * 2
            check(f'clip preprocess {name}', clip_preprocess(images),
                  outputs[f'{name}/preprocessed'], **COMPONENT_TOL)
            check(f'clip image {name}', image(images), outputs[f'{name}/tokens'], **COMPONENT_TOL)
        check('clip image zeros', image(torch.zeros(1, 3, 320, 512)),
              outputs['zeros_320x512/tokens'], **COMPONENT_TOL)


# ----------------------------------------------------------------------------- pipeline
def test_interp_pipeline_matches_golden(goldens, backbone, monkeypatch):
    """The official 50-step Interp run (eta 1, CFG 7.5, rescale 0.7, fs 5), its draws replayed
    through the project's one sampling loop."""
    g = goldens['interp_pipeline']
    videos = g['inputs']['videos']                       # [B, 3, T, H, W] in [-1, 1]
    batch, _, frames = videos.shape[:3]
    first, last = (videos[:, :, 0] + 1) / 2, (videos[:, :, -1] + 1) / 2
    draws = g['random_draws']
    # The official run samples the posterior of all B*T frames; only frames 0 and T-1 are used.
    posterior = draws['posterior_noise'][:, 0].unflatten(0, (batch, frames))[:, [0, frames - 1]]
    # Token ids of 'a smiling girl' (in the openclip golden) and 'man walking' (the same BPE words
    # as in its 'man walking in the rain, cinematic'), zero padded.
    tokens = empty_prompt_tokens(batch)
    tokens[0, :5] = torch.tensor([49406, 320, 9200, 1611, 49407])
    tokens[1, :4] = torch.tensor([49406, 786, 3941, 49407])
    assert g['sampling_args']['fs'] == backbone.fps == 5
    with torch.no_grad():
        cond = backbone.condition(first, last, frames, prompt_tokens=tokens, latent_noise=posterior)
        uncond = backbone.unconditional(cond)
    ref = g['conditioning']
    check('cond context', cond['context'], ref['cond_c_crossattn'], **COMPONENT_TOL)
    check('cond concat', cond['concat'], ref['cond_c_concat'].transpose(1, 2), **COMPONENT_TOL)
    check('uncond context', uncond['context'], ref['uc_c_crossattn'], **COMPONENT_TOL)
    assert torch.equal(uncond['concat'], cond['concat']) and torch.equal(cond['fps'], ref['fs'])

    args = g['sampling_args']
    scheduler = backbone.build_scheduler()
    grid = scheduler.timesteps(args['ddim_steps'])
    assert grid.flip(0).tolist() == g['schedule']['ddim_timesteps'].tolist()
    guidance = Guidance(scale=args['unconditional_guidance_scale'], unconditional=uncond,
                        rescale=args['guidance_rescale'])

    def run() -> torch.Tensor:
        with torch.no_grad():
            return denoise(backbone, scheduler, draws['x_T'].transpose(1, 2), grid.tolist(), cond,
                           guidance=guidance, eta=args['ddim_eta'],
                           step_noise=draws['step_noise'].transpose(2, 3))

    # The official sampler leaves its last clean estimate at scale_arr[19]; the project brings it
    # back to the data's scale.  Emulating the official one by a clean scale of scale_arr[19] for
    # the clean sample must reproduce the official run exactly.
    scale_arr = backbone.scale_arr.detach().float()
    last = grid[-1].item()
    monkeypatch.setattr(backbone, 'clean_scale', lambda t: torch.where(
        torch.as_tensor(t).reshape(-1) < 0, scale_arr[last], scale_arr[torch.as_tensor(t).reshape(-1).clamp(min=0)]))
    latents = run()
    check('sampled latents', latents, g['outputs']['samples_latent'].transpose(1, 2), 1e-4, 0)
    with torch.no_grad():
        video = backbone.first_stage_model.decode(latents.flatten(0, 1) / backbone.scale_factor)
    reference_video = g['outputs']['video'][:, 0].transpose(1, 2)          # [B, T, 3, H, W]
    check('video', video.unflatten(0, latents.shape[:2]), reference_video, 1e-4, 0)
    torch.testing.assert_close(backbone.decode(latents), ((reference_video + 1) / 2).clamp(0, 1),
                               atol=1e-4, rtol=0)


def test_clean_scale_is_the_dynamic_rescale(backbone):
    s = backbone.scale_arr.detach().float()
    torch.testing.assert_close(backbone.clean_scale(torch.tensor([0, 300, 549, -1])),
                               torch.stack([s[0], s[300], s[549], torch.tensor(1.0)]))
    # a one-step leap from t = 549 returns the estimate divided by scale_arr[549] = 0.7
    assert abs(s[549].item() - 0.7) < 1e-6


def test_predict_is_the_unet_on_the_official_layout(goldens, backbone):
    g = goldens['unet']['inputs']
    x_t, concat = g['x_noisy'].transpose(1, 2), g['c_concat'].transpose(1, 2)   # [B, F, C, h, w]
    cond = {'context': g['context'], 'concat': concat, 'fps': g['fs']}
    with torch.no_grad():
        output = backbone.predict(x_t, g['timesteps'], cond)
    check('predict', output, goldens['unet']['outputs']['main'].transpose(1, 2), **COMPONENT_TOL)
    with pytest.raises(ValueError, match='does not match x_t'):
        backbone.predict(x_t[:, :2], g['timesteps'], cond)


# ----------------------------------------------------------------------------- interface
def test_condition_layouts(backbone):
    g = torch.Generator().manual_seed(0)
    first, last = torch.rand(2, 3, 64, 96, generator=g), torch.rand(2, 3, 64, 96, generator=g)
    with torch.no_grad():
        interp = backbone.condition(first, last, 4)
        i2v = backbone.condition(first, None, 4)
        encoded = backbone.encode(torch.stack([first, last], dim=1))
    assert interp['concat'].shape == (2, 4, 4, 8, 12)
    torch.testing.assert_close(interp['concat'][:, 0], encoded[:, 0])
    torch.testing.assert_close(interp['concat'][:, -1], encoded[:, 1])
    assert interp['concat'][:, 1:-1].abs().max() == 0
    torch.testing.assert_close(i2v['concat'], encoded[:, :1].expand(-1, 4, -1, -1, -1))
    # 77 text tokens then 16 image tokens per frame of the resampler's 4 frames
    assert interp['context'].shape == (2, 77 + 4 * 16, 32)
    torch.testing.assert_close(interp['context'], i2v['context'])   # the image branch sees frame 0
    with torch.no_grad():
        sampled = backbone.condition(first, last, 4, augment=True)
    assert not torch.allclose(sampled['concat'][:, 0], interp['concat'][:, 0])
    assert sampled['concat'][:, 1:-1].abs().max() == 0


def test_encode_decode_shapes_range_and_slicing(goldens, checkpoint, backbone):
    video = torch.rand(2, 3, 3, 64, 96)
    sliced = DynamiCrafter(checkpoint, vae_slicing=True, **TINY_DYNAMICRAFTER).eval()
    with torch.no_grad():
        latents = backbone.encode(video)
        decoded = backbone.decode(latents)
        torch.testing.assert_close(sliced.encode(video), latents, atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(sliced.decode(latents), decoded, atol=1e-5, rtol=1e-5)
    assert latents.shape == (2, 3, 4, 8, 12) and backbone.latent_shape(3, 64, 96) == (3, 4, 8, 12)
    assert decoded.shape == video.shape and decoded.min() >= 0 and decoded.max() <= 1
    # the posterior mode, scaled: the VAE's mean of the same frames times 0.18215
    with torch.no_grad():
        mean = backbone.first_stage_model.encode(video[0] * 2 - 1).mean
    torch.testing.assert_close(latents[0], mean * 0.18215, atol=1e-6, rtol=1e-5)
    with pytest.raises(ValueError, match='divisible by 32'):
        backbone.latent_size(64, 80)
    with pytest.raises(ValueError, match=r'\[B, F, 3, H, W\]'):
        backbone.encode(video[:, 0])


def test_trainable_selection_and_gradient_checkpointing(goldens, checkpoint):
    model = DynamiCrafter(checkpoint, **TINY_DYNAMICRAFTER)
    attention = sum(p.numel() for m in model.unet.modules() if isinstance(m, Attention)
                    for p in m.parameters())
    selection = model.select_trainable('attention')
    assert selection.trainable == attention
    assert selection.total == sum(p.numel() for p in model.parameters())
    assert all(not p.requires_grad for p in model.first_stage_model.parameters())
    assert model.select_trainable('all').trainable == sum(p.numel() for p in model.unet.parameters())
    assert model.select_trainable(r'temopral_conv').tensors == 2 * 8 * len(
        [m for m in model.unet.modules() if hasattr(m, 'temopral_conv')])

    g = goldens['unet']['inputs']
    cond = {'context': g['context'], 'concat': g['c_concat'].transpose(1, 2), 'fps': g['fs']}
    x_t = g['x_noisy'].transpose(1, 2)
    model.select_trainable('attention')
    model.eval()   # the tiny config's dropout (0.1) off, so both passes compute the same
    results = []
    for enabled in (False, True):
        model.zero_grad()
        model.enable_gradient_checkpointing(enabled)
        output = model.predict(x_t, g['timesteps'], cond)
        output.square().mean().backward()
        results.append((output.detach(), model.unet.middle_block[1].transformer_blocks[0]
                        .attn1.to_q.weight.grad.clone()))
    torch.testing.assert_close(results[0][0], results[1][0])
    torch.testing.assert_close(results[0][1], results[1][1])
    assert results[0][1].abs().max() > 0


def test_bfloat16_runs_and_returns_float32(goldens, checkpoint):
    model = DynamiCrafter(checkpoint, dtype='bfloat16', **TINY_DYNAMICRAFTER).eval()
    assert model.unet.out[2].weight.dtype == torch.bfloat16
    assert model.alphas_cumprod.dtype == model.scale_arr.dtype == torch.float32
    g = goldens['unet']['inputs']
    cond = {'context': g['context'], 'concat': g['c_concat'].transpose(1, 2), 'fps': g['fs']}
    with torch.no_grad():
        output = model.predict(g['x_noisy'].transpose(1, 2), g['timesteps'], cond)
    assert output.dtype == torch.float32
    reference = goldens['unet']['outputs']['main'].transpose(1, 2)
    assert (output - reference).abs().max() < 0.05 * reference.abs().max()


# ----------------------------------------------------------------------------- loading errors
def test_checkpoint_mismatch_names_the_keys(goldens, tmp_path):
    state = tiny_state_dict(goldens)
    del state['image_proj_model.latents']
    state['model.extra.weight'] = torch.zeros(1)
    state['first_stage_model.quant_conv.bias'] = torch.zeros(3)
    path = tmp_path / 'bad.ckpt'
    torch.save({'state_dict': state}, path)
    with pytest.raises(CheckpointMismatchError) as error:
        DynamiCrafter(path, **TINY_DYNAMICRAFTER)
    message = str(error.value)
    assert 'image_proj_model.latents' in message and 'model.extra.weight' in message
    assert 'first_stage_model.quant_conv.bias' in message and '(3,)' in message
    with pytest.raises(FileNotFoundError):
        DynamiCrafter(tmp_path / 'absent.ckpt', **TINY_DYNAMICRAFTER)


def test_schedule_mismatch_is_reported(goldens, tmp_path):
    state = tiny_state_dict(goldens)
    state.update(schedule_buffers(linear_end=0.02))
    path = tmp_path / 'other_schedule.ckpt'
    torch.save({'state_dict': state}, path)
    with pytest.raises(ValueError, match='alphas_cumprod differ'):
        DynamiCrafter(path, **TINY_DYNAMICRAFTER)


def test_unsupported_options_raise():
    with pytest.raises(ValueError, match='use_relative_position'):
        UNet3D(use_relative_position=True)
    with pytest.raises(ValueError, match='attn_resolutions'):
        AutoencoderKL(ddconfig=dict(attn_resolutions=[32]))
    with pytest.raises(ValueError, match='tiled'):
        DynamiCrafter(None, vae_tiling=True)


# ----------------------------------------------------------------------------- scheduler
def test_ddim_eta_step_matches_diffusers():
    """The stochastic DDIM update (eta > 0) DynamiCrafter samples with, against diffusers."""
    from diffusers import DDIMScheduler as DiffusersDDIM

    from videoscene.schedulers import DDIMScheduler
    config = dict(beta_schedule='scaled_linear', beta_start=0.00085, beta_end=0.012,
                  prediction_type='v_prediction', rescale_betas_zero_snr=True,
                  timestep_spacing='trailing', set_alpha_to_one=False)
    ours, ref = DDIMScheduler(**config), DiffusersDDIM(**config, clip_sample=False)
    ref.set_timesteps(10)
    g = torch.Generator().manual_seed(0)
    for t in ref.timesteps.tolist():
        x, out, noise = (torch.randn(2, 3, 4, 4, generator=g) for _ in range(3))
        step = ours.ddim_step(out, x, t, t - 100, eta=1.0, noise=noise)
        if t == 999:
            # Zero SNR: sigma^2 = 1 - ab_prev, so the eps direction vanishes. Diffusers' float32
            # leaves ~6e-8 under its square root there (2e-4 x eps); ours is exactly the limit.
            ab_prev = ours.alphas_cumprod[899].float()
            expected = ab_prev.sqrt() * -out + (1 - ab_prev).sqrt() * noise
        else:
            expected = ref.step(out, t, x, eta=1.0, variance_noise=noise).prev_sample
        torch.testing.assert_close(step, expected, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match='noise'):
        ours.ddim_step(out, x, 999, 899, eta=1.0)
