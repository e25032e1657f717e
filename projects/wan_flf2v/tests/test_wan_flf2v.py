"""The Wan FLF2V plugin against diffusers 0.42.1: ``FlowMatchEuler`` against
``FlowMatchEulerDiscreteScheduler``, and ``WanFLF2V`` sampling through the project's ``denoise``
against ``WanImageToVideoPipeline`` with ``last_image``, on a tiny seeded model saved in the
diffusers folder layout."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import (FlowMatchEulerDiscreteScheduler, UniPCMultistepScheduler,
                       WanImageToVideoPipeline)
from mmengine import Config
from mmengine.dataset import default_collate
from mmengine.optim import OptimWrapper
from PIL import Image
from safetensors.torch import load_file
from transformers import CLIPImageProcessor, CLIPVisionModel

from projects.wan_flf2v import FlowMatchEulerScheduler, WanFLF2V
from projects.wan_flf2v.backbone import read_flow_shift
from projects.wan_flf2v.tiny import save_tiny_wan_flf2v
from videoscene.pipelines.sampling import Guidance, denoise
from videoscene.registry import (DATASETS, MODELS, NOISE_SCHEDULERS, OPTIM_WRAPPER_CONSTRUCTORS,
                                 VIDEO_BACKBONES)

SHIFT, T = 3.0, 1000
PLUGIN = Path(__file__).resolve().parents[1]


def diffusers_on_grid(ours: FlowMatchEulerScheduler, grid: torch.Tensor):
    """diffusers' scheduler set to our index grid: it shifts the ``sigmas`` it is given, so it gets
    the unshifted ``(t + 1) / T``."""
    reference = FlowMatchEulerDiscreteScheduler(num_train_timesteps=T, shift=ours.shift)
    reference.set_timesteps(sigmas=((grid + 1) / T).tolist())
    return reference


def test_training_table_and_timestep_input_match_diffusers():
    ours, reference = FlowMatchEulerScheduler(T, SHIFT), FlowMatchEulerDiscreteScheduler(T, SHIFT)
    t = torch.arange(T)
    torch.testing.assert_close(ours.sigma(t, torch.zeros(T)), reference.sigmas.flip(0))
    torch.testing.assert_close(ours.noise_condition(t), reference.timesteps.flip(0))
    assert ours.sigma(-1, torch.zeros(1)).item() == 0.0


@pytest.mark.parametrize('steps', [1, 4, 7])
def test_inference_grid_is_nearest_to_diffusers(steps):
    ours = FlowMatchEulerScheduler(T, SHIFT)
    reference = FlowMatchEulerDiscreteScheduler(T, SHIFT)
    reference.set_timesteps(steps)
    table = ours.sigma(torch.arange(T), torch.zeros(T)).flatten()
    nearest = (table[None] - reference.sigmas[:-1, None]).abs().argmin(1)
    assert ours.timesteps(steps).tolist() == nearest.tolist()


def test_add_noise_and_euler_steps_match_diffusers():
    ours = NOISE_SCHEDULERS.build(dict(type='FlowMatchEuler', num_train_timesteps=T, shift=SHIFT))
    grid = ours.timesteps(5)
    reference = diffusers_on_grid(ours, grid)
    generator = torch.Generator().manual_seed(0)
    x0, noise = (torch.randn(2, 3, 4, 5, generator=generator) for _ in range(2))
    for t, value in zip(grid.tolist(), reference.timesteps):
        torch.testing.assert_close(ours.add_noise(x0, noise, t),
                                   reference.scale_noise(x0, value.reshape(1), noise))
    x = noise.clone()
    reference.set_begin_index(0)
    for i, (t, value) in enumerate(zip(grid.tolist(), reference.timesteps)):
        velocity = torch.randn(x.shape, generator=generator)
        t_prev = grid[i + 1].item() if i + 1 < len(grid) else -1
        expected = reference.step(velocity, value, x, return_dict=False)[0]
        x = ours.ddim_step(velocity, x, t, t_prev)
        torch.testing.assert_close(x, expected, rtol=0, atol=1e-5)


def test_velocity_target_inverts_to_clean_and_noise():
    ours = FlowMatchEulerScheduler(T, SHIFT)
    x0, noise = torch.randn(3, 4), torch.randn(3, 4)
    t = torch.tensor([0, 400, 999])
    x_t = ours.add_noise(x0, noise, t)
    target = ours.training_target(x0, noise, t)
    torch.testing.assert_close(ours.to_x0(target, x_t, t), x0)
    torch.testing.assert_close(ours.to_eps(target, x_t, t), noise)
    c_skip, c_out = ours.consistency_scalings(torch.tensor([0, 999]), x0[:2])
    assert c_skip.flatten().tolist()[0] == 1.0 and c_out.flatten().tolist()[0] == 0.0
    assert ours.solver_timesteps(4).tolist() == [249, 499, 749, 999]
    with pytest.raises(ValueError, match='eta must be 0'):
        ours.ddim_update(x0, noise, 10, 5, eta=0.5, noise=noise)


def test_shift_is_read_from_either_diffusers_flow_scheduler(tmp_path):
    FlowMatchEulerDiscreteScheduler(shift=5.0).save_pretrained(tmp_path / 'euler')
    UniPCMultistepScheduler(use_flow_sigmas=True, prediction_type='flow_prediction',
                            flow_shift=16.0).save_pretrained(tmp_path / 'unipc')
    assert read_flow_shift(tmp_path / 'euler') == dict(num_train_timesteps=1000, shift=5.0)
    assert read_flow_shift(tmp_path / 'unipc') == dict(num_train_timesteps=1000, shift=16.0)
    UniPCMultistepScheduler().save_pretrained(tmp_path / 'ddpm')       # a beta schedule
    with pytest.raises(ValueError, match='use_flow_sigmas'):
        read_flow_shift(tmp_path / 'ddpm')


@pytest.fixture(scope='module')
def tiny(tmp_path_factory):
    folder = save_tiny_wan_flf2v(tmp_path_factory.mktemp('wan') / 'model', shift=SHIFT)
    backbone = VIDEO_BACKBONES.build(dict(
        type='WanFLF2V', pretrained=str(folder),
        prompt_embedding=str(folder / 'prompt_embeds.safetensors'),
        negative_prompt_embedding=str(folder / 'negative_prompt_embeds.safetensors')))
    # the reference pipeline shares the loaded transformer and VAE (whose loading is checked
    # against the files below) and loads its own CLIP encoder, processor and scheduler
    pipeline = WanImageToVideoPipeline(
        tokenizer=None, text_encoder=None, transformer=backbone.transformer, vae=backbone.vae,
        image_encoder=CLIPVisionModel.from_pretrained(folder / 'image_encoder'),
        image_processor=CLIPImageProcessor.from_pretrained(folder / 'image_processor'),
        scheduler=FlowMatchEulerDiscreteScheduler.from_pretrained(folder / 'scheduler'))
    pipeline.set_progress_bar_config(disable=True)
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    return folder, backbone, pipeline, pixels


def test_loading_reads_the_saved_weights(tiny):
    folder, backbone, _, _ = tiny
    saved = load_file(folder / 'transformer' / 'diffusion_pytorch_model.safetensors')
    state = backbone.transformer.state_dict()
    assert set(saved) == set(state)
    for name, tensor in saved.items():
        assert torch.equal(state[name], tensor), name
    assert backbone.scheduler_config() == dict(type='FlowMatchEuler', num_train_timesteps=T,
                                               shift=SHIFT)


@pytest.mark.parametrize('guidance_scale', [1.0, 2.5])
def test_sampling_matches_wan_image_to_video_pipeline(tiny, guidance_scale):
    _, backbone, pipeline, pixels = tiny
    steps, frames = 3, 5
    first, last = (torch.from_numpy(p).permute(2, 0, 1)[None].float() / 255 for p in pixels)
    noise = torch.randn(1, *backbone.latent_shape(frames, 32, 32),
                        generator=torch.Generator().manual_seed(1))
    scheduler = backbone.build_scheduler()
    grid = scheduler.timesteps(steps)
    on_grid = diffusers_on_grid(scheduler, grid)   # diffusers' own set_timesteps(n) is double-shifted
    pipeline.scheduler.set_timesteps = lambda n, device=None: on_grid.set_timesteps.__func__(
        pipeline.scheduler, sigmas=((grid + 1) / T).tolist(), device=device)
    with torch.no_grad():
        expected = pipeline(
            image=Image.fromarray(pixels[0]), last_image=Image.fromarray(pixels[1]),
            prompt_embeds=backbone.prompt_embeds, negative_prompt_embeds=backbone.negative_prompt_embeds,
            height=32, width=32, num_frames=frames, num_inference_steps=steps,
            guidance_scale=guidance_scale, latents=noise.permute(0, 2, 1, 3, 4),
            output_type='latent').frames.permute(0, 2, 1, 3, 4)
        conditioning = backbone.condition(first, last, frames)
        guidance = (Guidance(guidance_scale, backbone.unconditional(conditioning))
                    if guidance_scale != 1 else None)
        latents = denoise(backbone, scheduler, noise, grid, conditioning, guidance=guidance)
        torch.testing.assert_close(latents, expected, rtol=0, atol=1e-4)
        assert (latents - noise).abs().mean() > 0.1   # the sampler moved
        if guidance_scale == 1.0:
            vae = pipeline.vae.config
            mean = torch.tensor(vae.latents_mean).view(1, -1, 1, 1, 1)
            std = torch.tensor(vae.latents_std).view(1, -1, 1, 1, 1)
            video = pipeline.vae.decode(expected.permute(0, 2, 1, 3, 4) * std + mean).sample
            video = pipeline.video_processor.postprocess_video(video, output_type='pt')
            torch.testing.assert_close(backbone.decode(latents), video, rtol=0, atol=1e-4)


def test_batched_conditioning_matches_single_samples(tiny):
    _, backbone, _, pixels = tiny
    images = torch.from_numpy(pixels).permute(0, 3, 1, 2).float() / 255
    first, last = images, images.flip(0)             # two samples: (a, b) and (b, a)
    with torch.no_grad():
        batch = backbone.condition(first, last, 5)
        x_t = torch.randn(2, *backbone.latent_shape(5, 32, 32))
        t = torch.tensor([700, 700])
        together = backbone.predict(x_t, t, batch)
        for i in range(2):
            single = backbone.condition(first[i:i + 1], last[i:i + 1], 5)
            for key, value in single.items():
                torch.testing.assert_close(batch[key][i:i + 1], value, rtol=0, atol=1e-5)
            torch.testing.assert_close(together[i:i + 1], backbone.predict(x_t[i:i + 1], t[:1], single),
                                       rtol=0, atol=1e-5)
    assert not torch.allclose(together[0], together[1])


def test_bad_inputs_are_refused(tiny):
    _, backbone, _, _ = tiny
    frame = torch.rand(1, 3, 32, 32)
    with pytest.raises(ValueError, match='last=None'):
        backbone.condition(frame, None, 5)
    with pytest.raises(ValueError, match='noise augmentation'):
        backbone.condition(frame, frame, 5, augment=True)
    with pytest.raises(ValueError, match='4k\\+1 frames'):
        backbone.condition(frame, frame, 6)
    with pytest.raises(ValueError, match='divisible by 16'):
        backbone.latent_size(40, 32)


def test_tiny_teacher_config_takes_a_training_step_on_wan(tiny):
    folder = tiny[0]
    cfg = Config.fromfile(f'{PLUGIN}/configs/tiny_wan_flf2v_teacher.py')
    assert cfg.model.backbone.type == 'WanFLF2V' and cfg.model.trainable == 'all'
    cfg.model.backbone.update(pretrained=str(folder),
                              prompt_embedding=str(folder / 'prompt_embeds.safetensors'))
    teacher = MODELS.build(cfg.model)
    dataset = DATASETS.build({**cfg.train_dataloader.dataset, 'num_scenes': 2})
    batch = default_collate([dataset[0], dataset[1]])
    torch.manual_seed(0)
    before = {n: p.clone() for n, p in teacher.backbone.trained_tensors().items()}
    optim = OptimWrapper(torch.optim.AdamW(teacher.parameters(), lr=1e-3))
    assert torch.isfinite(teacher.train_step(batch, optim)['loss'])
    assert all(not torch.equal(p, before[n]) for n, p in teacher.backbone.trained_tensors().items())


def test_tiny_distillation_config_takes_a_training_step_on_wan(tiny):
    folder = tiny[0]
    cfg = Config.fromfile(f'{PLUGIN}/configs/tiny_wan_flf2v_distillation.py')
    assert cfg.model.backbone.type == 'WanFLF2V'
    cfg.model.backbone.update(pretrained=str(folder),
                              prompt_embedding=str(folder / 'prompt_embeds.safetensors'))
    # no stage-1 checkpoint here: a parameter-free reconstructor stands in for MVSplat
    config = {**cfg.model.to_dict(), 'reconstructor': dict(type='DepthUnprojection'),
              'reconstructor_checkpoint': None,
              'policy': dict(type='DDPNet', max_timestep=799, channels=(8, 8, 8, 8), groups=4)}
    torch.manual_seed(0)
    model = MODELS.build(config)
    assert isinstance(model.scheduler, FlowMatchEulerScheduler)
    dataset = DATASETS.build({**cfg.train_dataloader.dataset, 'num_scenes': 2})
    batch = default_collate([dataset[0], dataset[1]])
    student = {n: p.clone() for n, p in model.backbone.trained_tensors().items()}
    optim = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(
        type='DistillationOptimWrapperConstructor', optim_wrapper_cfg=dict(
            student=dict(type='OptimWrapper', optimizer=dict(type='AdamW', lr=1e-3)),
            policy=dict(type='OptimWrapper', optimizer=dict(type='Adam', lr=1e-2)))))(model)
    log = model.train_step(batch, optim)
    assert torch.isfinite(log['loss_consistency']) and 0 <= log['leap_t'] <= 799
    assert any(not torch.equal(p, student[n]) for n, p in model.backbone.trained_tensors().items())


def test_save_pretrained_reloads_the_same_model(tiny, tmp_path):
    folder, backbone, _, pixels = tiny
    with torch.no_grad():
        backbone.transformer.proj_out.bias.add_(0.5)      # a "trained" change the copy must carry
        try:
            out = backbone.save_pretrained(tmp_path / 'export')
        finally:
            backbone.transformer.proj_out.bias.sub_(0.5)
    reloaded = WanFLF2V(out, out / 'prompt_embeds.safetensors',
                        out / 'negative_prompt_embeds.safetensors')
    torch.testing.assert_close(reloaded.transformer.proj_out.bias,
                               backbone.transformer.proj_out.bias + 0.5)
    torch.testing.assert_close(reloaded.negative_prompt_embeds, backbone.negative_prompt_embeds)
    assert reloaded.scheduler_config() == backbone.scheduler_config()


def test_prompt_embedding_equals_the_pipelines_encode_prompt(tiny, tmp_path):
    """``projects.wan_flf2v.encode_prompt`` on a tiny UMT5 + tokenizer saved like Wan's equals
    ``WanImageToVideoPipeline.encode_prompt`` (cleaning, mask, zeros after the prompt), and the
    backbone loads the file."""
    from tokenizers import Tokenizer, models, pre_tokenizers, processors
    from transformers import PreTrainedTokenizerFast, UMT5Config, UMT5EncoderModel

    from projects.wan_flf2v.encode_prompt import main

    folder, backbone, _, _ = tiny
    words = ['<pad>', '</s>', '<unk>'] + [f'\u2581{w}' for w in 'a static room & chair'.split()]
    tokenizer = Tokenizer(models.Unigram([(w, 0.0 if i < 3 else -1.0) for i, w in enumerate(words)],
                                         unk_id=2))
    tokenizer.pre_tokenizer = pre_tokenizers.Metaspace()
    tokenizer.post_processor = processors.TemplateProcessing(single='$A </s>',
                                                             special_tokens=[('</s>', 1)])
    PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token='<pad>', eos_token='</s>',
                            unk_token='<unk>').save_pretrained(tmp_path / 'tokenizer')
    width = backbone.prompt_embeds.shape[-1]
    torch.manual_seed(0)
    UMT5EncoderModel(UMT5Config(vocab_size=len(words), d_model=width, d_kv=8, d_ff=32,
                                num_layers=2, num_heads=2)).save_pretrained(tmp_path / 'text_encoder')
    prompt, length = '  a   room &amp; ', backbone.prompt_embeds.shape[1]      # 6 tokens
    out = tmp_path / 'prompt.safetensors'
    main(['--model', str(tmp_path), '--prompt', prompt, '--max-length', str(length),
          '--out', str(out)])
    ours = load_file(out)['prompt_embeds']
    pipeline = WanImageToVideoPipeline(
        tokenizer=PreTrainedTokenizerFast.from_pretrained(tmp_path / 'tokenizer'),
        text_encoder=UMT5EncoderModel.from_pretrained(tmp_path / 'text_encoder'),
        transformer=None, vae=None, image_encoder=None, image_processor=None,
        scheduler=FlowMatchEulerDiscreteScheduler())
    reference, _ = pipeline.encode_prompt(prompt, do_classifier_free_guidance=False,
                                          max_sequence_length=length, device='cpu')
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    assert ours[0, 4:].abs().sum() == 0 and ours[0, :4].abs().sum() > 0   # a room & </s>
    loaded = VIDEO_BACKBONES.build(dict(type='WanFLF2V', pretrained=str(folder),
                                        prompt_embedding=str(out)))
    torch.testing.assert_close(loaded.prompt_embeds, ours)
