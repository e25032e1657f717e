"""Full-size figures on one GPU: CogVideoX-5B-I2V with random weights, honest for time and memory.

    python benchmarks/bench_gpu.py [--config configs/distillation/cogvideox5b_re10k_8gpu_fsdp.py]
        [--arch configs/_base_/models/cogvideox5b_i2v] [--frames 49] [--size 480 720]
        [--device cuda] [--repeats 2] [--json OUT.json]

The model folder is written from the architecture files (``--arch``: ``config.json`` files only):
the transformer and VAE are built with diffusers' ``from_config`` (random initial weights) on
``--device``, saved, and loaded back through the config's backbone as a real checkpoint would be;
the prompt embeddings are random.  MVSplat and DDPNet are the config's, with random weights.  One
synthetic scene of ``--frames`` frames at ``--size`` is the input.  Measured, each after a warm-up,
minimum over ``--repeats``, peak memory reset before each (``torch.cuda.max_memory_allocated``;
on the CPU the process's ``VmHWM``):

* ``one step``: ``VideoScenePipeline(context, target, steps=1)`` (reconstruct, render, encode,
  DDPNet, one denoiser step, decode), without and with VAE tiling;
* ``distillation iteration``: ``LeapFlowDistillation.train_step`` on the same scene (student
  AdamW on the trained tensors, teacher and target through the shared weights, DDPNet's
  REINFORCE step), with the config's activation checkpointing, in one process (no strategy);
* ``renderer``: gsplat against the CPU renderer on the reconstructor's Gaussians of the scene
  (PSNR of the images, largest depth difference), when CUDA is there.

``--device cpu --config configs/distillation/tiny_cogvideox_synthetic.py --arch TINY_FOLDER
--frames 9 --size 32 32 --no-tiling`` runs the same code at toy scale (the test).
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch
from mmengine.config import Config
from mmengine.dataset import default_collate
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from videoscene.backbones.base import resolve_dtype  # noqa: E402
from videoscene.evaluation.image_metrics import psnr  # noqa: E402
from videoscene.models.views import scene_views  # noqa: E402
from videoscene.pipelines import VideoScenePipeline  # noqa: E402
from videoscene.registry import DATASETS, MODELS, OPTIM_WRAPPER_CONSTRUCTORS, RENDERERS  # noqa: E402

GiB = 2 ** 30


def random_model_folder(arch: Path, out: Path, device: str, dtype: torch.dtype) -> Path:
    """A CogVideoX model folder with random weights from ``arch``'s ``config.json`` files."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    for sub, cls in (('transformer', CogVideoXTransformer3DModel), ('vae', AutoencoderKLCogVideoX)):
        with torch.device(device):
            network = cls.from_config(cls.load_config(arch / sub)).to(dtype)
        network.save_pretrained(out / sub)
        del network
    shutil.copytree(arch / 'scheduler', out / 'scheduler')
    config = json.loads((arch / 'transformer' / 'config.json').read_text())
    for name in ('prompt_embeds', 'negative_prompt_embeds'):
        embedding = torch.randn(1, config['max_text_seq_length'], config['text_embed_dim'])
        save_file({'prompt_embeds': embedding}, out / f'{name}.safetensors')
    return out


def peak_memory(device: str) -> float:
    """Peak bytes since the last :func:`reset_peak`."""
    if device.startswith('cuda'):
        return float(torch.cuda.max_memory_allocated(device))
    for line in Path('/proc/self/status').read_text().splitlines():
        if line.startswith('VmHWM:'):
            return int(line.split()[1]) * 1024.0
    raise SystemExit('bench_gpu.py reads VmHWM from /proc/self/status on the CPU (Linux only)')


def reset_peak(device: str) -> None:
    if device.startswith('cuda'):
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    else:
        Path('/proc/self/clear_refs').write_text('5')


def timed(call, device: str, repeats: int) -> dict[str, float]:
    """Warm-up, then the minimum wall seconds over ``repeats`` and the peak memory."""
    call()
    best = float('inf')
    reset_peak(device)
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        if device.startswith('cuda'):
            torch.cuda.synchronize(device)
        best = min(best, time.perf_counter() - start)
    return dict(seconds=best, peak_gib=peak_memory(device) / GiB)


def build(args: argparse.Namespace, folder: Path):
    dtype = resolve_dtype(args.dtype or ('bfloat16' if args.device.startswith('cuda') else 'float32'))
    model_folder = random_model_folder(Path(args.arch), folder / 'model', args.device, dtype)
    cfg = Config.fromfile(args.config)
    cfg.model.backbone.update(pretrained=str(model_folder), dtype=str(dtype).split('.')[-1],
                              prompt_embedding=str(model_folder / 'prompt_embeds.safetensors'),
                              negative_prompt_embedding=str(model_folder /
                                                            'negative_prompt_embeds.safetensors'),
                              vae_tiling=False, vae_slicing=False)
    cfg.model.reconstructor.pop('checkpoint', None)
    cfg.model.reconstructor_checkpoint = None
    cfg.model.renderer = dict(type='gsplat' if args.device.startswith('cuda') else 'torch')
    model = MODELS.build(cfg.model.to_dict()).to(args.device)
    frames, (height, width) = args.frames, args.size
    dataset = DATASETS.build(dict(
        type='SyntheticScenes', stage='test', num_scenes=1, frames=frames, height=height,
        width=width, num_eval_targets=frames - 2, cache_dir=str(folder / 'scenes'),
        view_sampler=dict(type='fixed', context=[0, frames - 1], target=list(range(1, frames - 1)))))
    batch = default_collate([dataset[0]])
    data = model.data_preprocessor(batch, True)
    return cfg, model, data, batch


def measure(args: argparse.Namespace) -> dict:
    results: dict = dict(device=args.device, config=args.config, arch=args.arch,
                         frames=args.frames, size=list(args.size))
    with tempfile.TemporaryDirectory() as tmp:
        cfg, model, data, batch = build(args, Path(tmp))
        backbone = model.backbone
        results['parameters'] = {'denoiser': sum(p.numel() for p in backbone.denoiser().parameters()),
                                 'trained': sum(p.numel() for p in backbone.trained_tensors().values())}
        pipeline = VideoScenePipeline.from_model(model)
        context, target = data['context'], data['target']
        model.eval()
        with torch.no_grad():
            results['one step'] = timed(lambda: pipeline(context, target, steps=1), args.device,
                                        args.repeats)
            if args.tiling:
                backbone.vae.enable_tiling()
                results['one step, VAE tiling'] = timed(lambda: pipeline(context, target, steps=1),
                                                        args.device, args.repeats)
                backbone.vae.disable_tiling()
        model.train()
        optim_cfg = {k: v for k, v in cfg.optim_wrapper.items() if k != 'constructor'}
        optim = OPTIM_WRAPPER_CONSTRUCTORS.build(dict(type=cfg.optim_wrapper.constructor,
                                                      optim_wrapper_cfg=optim_cfg))(model)
        results['distillation iteration'] = timed(lambda: model.train_step(batch, optim),
                                                  args.device, args.repeats)
        results['distillation iteration']['gradient_checkpointing'] = \
            bool(cfg.model.get('gradient_checkpointing'))
        if args.device.startswith('cuda'):
            results['renderer'] = compare_renderers(model, context, target)
    return results


@torch.no_grad()
def compare_renderers(model, context: dict, target: dict) -> dict[str, float]:
    """gsplat against the CPU renderer on the same Gaussians and cameras."""
    views = scene_views(context, target)
    gaussians = model.reconstructor(context)
    shape = tuple(views['image'].shape[-2:])
    outputs = {}
    for name in ('gsplat', 'torch'):
        renderer = RENDERERS.build(dict(type=name))
        outputs[name] = renderer.render(gaussians, views['extrinsics'], views['intrinsics'], shape,
                                        views['near'], views['far'])
    color = {k: v.color.clamp(0, 1).flatten(0, 1).float() for k, v in outputs.items()}
    depth = {k: v.depth.flatten(0, 1).float() for k, v in outputs.items()}
    return dict(psnr_db=float(psnr(color['gsplat'], color['torch']).mean()),
                depth_max_abs=float((depth['gsplat'] - depth['torch']).abs().max()),
                depth_mean_abs=float((depth['gsplat'] - depth['torch']).abs().mean()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('--config', default='configs/distillation/cogvideox5b_re10k_8gpu_fsdp.py')
    parser.add_argument('--arch', default='configs/_base_/models/cogvideox5b_i2v')
    parser.add_argument('--frames', type=int, default=49)
    parser.add_argument('--size', type=int, nargs=2, default=(480, 720), metavar=('H', 'W'))
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--dtype', help='default: bfloat16 on CUDA, float32 on the CPU')
    parser.add_argument('--repeats', type=int, default=2)
    parser.add_argument('--no-tiling', dest='tiling', action='store_false',
                        help="skip the VAE-tiling row (diffusers' tiles need frames larger than "
                        "the VAE's tile size: toy models)")
    parser.add_argument('--json', help='also write the figures to this file')
    args = parser.parse_args(argv)
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        parser.error('--device cuda: no CUDA device here (use --device cpu at toy scale)')
    torch.manual_seed(0)
    results = measure(args)
    for key, value in results.items():
        print(f'{key}: {value}')
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == '__main__':
    main()
