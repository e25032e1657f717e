"""Frozen image encoders of the VBench scores, loaded from the standard local weight files.

Each encoder takes video frames ``[N, 3, H, W]`` in [0, 1], applies VBench's preprocessing
(``vbench/utils.py``) and returns one embedding per frame ``[N, D]``. VBench reads 8-bit frames
from a video file and resizes the ``uint8`` tensor with torchvision, so the frames are first
rounded to 8 bits (as saving the video would, without codec loss) and go through the same
torchvision calls:

* DINO (``dino_transform(224)``): shorter side to 224, bilinear, no antialiasing, no crop;
  ``/255``; ImageNet mean / std.
* CLIP (``clip_transform(224)``): shorter side to 224, bicubic, no antialiasing; centre crop
  224 x 224; ``/255``; OpenAI CLIP mean / std.

The size is the model's own input size (224 for every file VBench uses). Nothing is downloaded
and no weight is ever random: a path that is not configured or not found raises
:class:`~videoscene.errors.CheckpointError` naming the path and where the file comes from.
"""
from __future__ import annotations

import math
import os
import os.path as osp
import re
import warnings
from collections.abc import Mapping

import torch
import torch.nn.functional as F
import torchvision.transforms.functional as TF
from torch import Tensor, nn
from torchvision.transforms import InterpolationMode

from videoscene.errors import CheckpointError

__all__ = ['DinoViTEncoder', 'ClipImageEncoder', 'load_aesthetic_head', 'require_weight_file',
           'DINO_HOW_TO_GET', 'CLIP_HOW_TO_GET', 'AESTHETIC_HEAD_HOW_TO_GET']

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)

DINO_HOW_TO_GET = ("the official DINO ViT-B/16 backbone 'dino_vitbase16_pretrain.pth' (the "
                   "'backbone only' download of facebookresearch/dino; VBench keeps it as "
                   "~/.cache/vbench/dino_model/dino_vitbase16_pretrain.pth)")
CLIP_HOW_TO_GET = ("OpenAI's CLIP file ('{name}.pt', the TorchScript archive the 'clip' package "
                   "downloads; VBench keeps it as ~/.cache/vbench/clip_model/{name}.pt) or a local "
                   "transformers CLIP folder (e.g. a saved copy of openai/{hf_name})")
AESTHETIC_HEAD_HOW_TO_GET = ("'sa_0_4_vit_l_14_linear.pth' from LAION-AI/aesthetic-predictor "
                             "(VBench keeps it in ~/.cache/vbench/aesthetic_model/emb_reader/)")


def require_weight_file(path: str | os.PathLike | None, setting: str, how_to_get: str,
                        folder_ok: bool = False) -> str:
    """``path`` as a string if it exists; otherwise raise naming ``setting``/``path`` and the source."""
    if path is None:
        raise CheckpointError(setting, 'not configured, and weights are never downloaded: set it '
                                       f'to a local copy of {how_to_get}')
    path = os.fspath(path)
    if not (osp.isfile(path) or (folder_ok and osp.isdir(path))):
        raise CheckpointError(path, f'not found (looked for it as {setting}); get {how_to_get}')
    return path


def to_uint8(frames: Tensor) -> Tensor:
    """Frames in [0, 1] rounded to 8 bits, as a saved video holds them."""
    return (frames.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)


def _normalise(frames: Tensor, mean, std) -> Tensor:
    return TF.normalize(frames.float().div(255.0), mean, std)


class DinoViTEncoder(nn.Module):
    """DINO ViT CLS features (VBench subject consistency), from a DINO backbone state dict.

    The file is the flat state dict of ``dino_vitbase16_pretrain.pth`` (keys ``cls_token``,
    ``pos_embed``, ``patch_embed.proj.*``, ``blocks.N.{norm1,attn.qkv,attn.proj,norm2,mlp.fc1,
    mlp.fc2}.*``, ``norm.*``): the key names of timm's ``vit_base_patch16_224.dino``, so it loads
    unchanged (strictly). The architecture is read from the file: width from ``cls_token``, patch
    size from ``patch_embed.proj.weight``, grid from ``pos_embed``, depth from the blocks, MLP width
    from ``fc1``, and ``width / 64`` heads (the DINO ViT-S/B convention; 12 for ViT-B/16).

    Maintained: timm builds the network (patch embedding, blocks, final norm). Written by hand:
    the token assembly, so that a non-square input gets DINO's own position-embedding resize
    (bicubic with ``scale_factor=((rows + 0.1) / grid, (cols + 0.1) / grid)``, as
    ``torch.hub``'s ``dino_vitb16`` which VBench runs), which timm's dynamic-size path does not
    reproduce (it resizes to the exact size with antialiasing).
    """

    def __init__(self, checkpoint: str | os.PathLike) -> None:
        super().__init__()
        import timm

        self.checkpoint = os.fspath(checkpoint)
        state = _load_state_dict(self.checkpoint, 'DINO ViT backbone state dict')
        required = ('cls_token', 'pos_embed', 'patch_embed.proj.weight', 'blocks.0.mlp.fc1.weight')
        absent = [k for k in required if k not in state]
        if absent:
            raise CheckpointError(self.checkpoint, f'is not a DINO ViT backbone state dict: missing '
                                  f'keys {absent}; found {sorted(state)[:8]}... Expected '
                                  f'{DINO_HOW_TO_GET}')
        width = state['cls_token'].shape[-1]
        self.patch_size = state['patch_embed.proj.weight'].shape[-1]
        self.grid = math.isqrt(state['pos_embed'].shape[1] - 1)
        depth = 1 + max(int(m.group(1)) for k in state
                        if (m := re.match(r'blocks\.(\d+)\.', k)))
        self.vit = timm.create_model(
            'vit_base_patch16_224.dino', pretrained=False, num_classes=0,
            img_size=self.patch_size * self.grid, patch_size=self.patch_size, embed_dim=width,
            depth=depth, num_heads=max(width // 64, 1),
            mlp_ratio=state['blocks.0.mlp.fc1.weight'].shape[0] / width)
        _load_strict(self.vit, state, self.checkpoint, 'DINO ViT backbone')
        self.input_size = self.patch_size * self.grid
        self.eval().requires_grad_(False)

    def preprocess(self, frames: Tensor) -> Tensor:
        """``[N, 3, H, W]`` in [0, 1] -> DINO input (shorter side ``input_size``, no crop)."""
        resized = TF.resize(to_uint8(frames), [self.input_size],
                            interpolation=InterpolationMode.BILINEAR, antialias=False)
        return _normalise(resized, IMAGENET_MEAN, IMAGENET_STD)

    def position_embedding(self, height: int, width: int) -> Tensor:
        """DINO's ``interpolate_pos_encoding`` for an input of ``height x width`` pixels."""
        pos = self.vit.pos_embed
        rows, cols = height // self.patch_size, width // self.patch_size
        if rows * cols == self.grid ** 2 and height == width:
            return pos
        grid = pos[:, 1:].reshape(1, self.grid, self.grid, -1).permute(0, 3, 1, 2)
        grid = F.interpolate(grid, mode='bicubic', scale_factor=((rows + 0.1) / self.grid,
                                                                 (cols + 0.1) / self.grid))
        return torch.cat([pos[:, :1], grid.flatten(2).transpose(1, 2)], dim=1)

    def forward(self, pixels: Tensor) -> Tensor:
        """Preprocessed images ``[N, 3, H, W]`` -> CLS features after the final norm ``[N, D]``."""
        vit = self.vit
        tokens = vit.patch_embed.proj(pixels).flatten(2).transpose(1, 2)
        tokens = torch.cat([vit.cls_token.expand(len(tokens), -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(*pixels.shape[-2:])
        return vit.norm(vit.blocks(vit.norm_pre(tokens)))[:, 0]


class ClipImageEncoder(nn.Module):
    """CLIP image embeddings (before L2 normalisation), from OpenAI's file or a transformers folder.

    * A file: OpenAI's CLIP release (``ViT-B-32.pt``, ``ViT-L-14.pt``: TorchScript archives), or
      a plain state dict of the same layout. open_clip's ``load_openai_model`` loads it as VBench's
      ``clip.load`` does: the architecture (width, depth, patch, image size, heads = width / 64,
      QuickGELU) is inferred from the state dict; here in float32 (VBench on a GPU runs the fp16
      weights in fp16, which moves scores by about 1e-3).
    * A folder: a transformers CLIP checkpoint (``CLIPModel`` or ``CLIPVisionModelWithProjection``
      ``save_pretrained``), loaded with ``CLIPVisionModelWithProjection``; the output is
      ``image_embeds``. Missing or mis-shaped vision weights are an error (never initialised).

    Maintained: open_clip / transformers supply the networks and loaders. Written by hand: the
    format dispatch, the checks and VBench's preprocessing (through torchvision).
    """

    def __init__(self, path: str | os.PathLike) -> None:
        super().__init__()
        self.path = os.fspath(path)
        if osp.isdir(self.path):
            self.model, self.input_size, self.embed_dim = self._load_transformers(self.path)
            self.backend = 'transformers'
        else:
            self.model, self.input_size, self.embed_dim = self._load_openai(self.path)
            self.backend = 'open_clip'
        self.eval().requires_grad_(False)

    @staticmethod
    def _load_openai(path: str) -> tuple[nn.Module, int, int]:
        import open_clip

        try:
            with warnings.catch_warnings():  # open_clip reads OpenAI's TorchScript archives
                warnings.filterwarnings('ignore', message='`torch.jit.load` is deprecated')
                model = open_clip.load_openai_model(path, precision='fp32', device='cpu')
        except Exception as error:  # torch.load / open_clip raise many types for a wrong file
            raise CheckpointError(path, 'is not an OpenAI CLIP file (TorchScript archive or state '
                                  'dict with keys visual.conv1.weight, visual.proj, '
                                  f'text_projection, ...): {error}') from error
        if not isinstance(model.visual, open_clip.transformer.VisionTransformer):
            raise CheckpointError(path, 'holds a ResNet CLIP; VBench uses the ViT ones')
        size = model.visual.image_size
        return model, size[0] if isinstance(size, tuple) else size, model.visual.output_dim

    @staticmethod
    def _load_transformers(path: str) -> tuple[nn.Module, int, int]:
        from transformers import AutoConfig, CLIPConfig, CLIPVisionConfig
        from transformers import CLIPVisionModelWithProjection

        try:
            config = AutoConfig.from_pretrained(path, local_files_only=True)
        except (OSError, ValueError) as error:
            raise CheckpointError(path, f'is not a transformers CLIP folder: {error}') from error
        if isinstance(config, CLIPConfig):  # a full CLIPModel: the projection size is top-level
            vision = config.vision_config
            vision.projection_dim = config.projection_dim
            config = vision
        if not isinstance(config, CLIPVisionConfig):
            raise CheckpointError(path, f'holds a {type(config).__name__}, expected a CLIP '
                                        '(CLIPConfig or CLIPVisionConfig) checkpoint')
        try:
            model, info = CLIPVisionModelWithProjection.from_pretrained(
                path, config=config, local_files_only=True, dtype=torch.float32,
                output_loading_info=True)
        except (OSError, RuntimeError, ValueError) as error:
            raise CheckpointError(path, f'CLIP vision weights do not load: {error}') from error
        if info['missing_keys'] or info['mismatched_keys']:
            raise CheckpointError(path, 'CLIP vision weights incomplete: missing '
                                  f'{sorted(info["missing_keys"])}, wrong shapes '
                                  f'{sorted(info["mismatched_keys"])}')
        return model, config.image_size, config.projection_dim

    def preprocess(self, frames: Tensor) -> Tensor:
        """``[N, 3, H, W]`` in [0, 1] -> CLIP input ``[N, 3, S, S]`` (``S = input_size``)."""
        resized = TF.resize(to_uint8(frames), [self.input_size],
                            interpolation=InterpolationMode.BICUBIC, antialias=False)
        return _normalise(TF.center_crop(resized, [self.input_size]), CLIP_MEAN, CLIP_STD)

    def forward(self, pixels: Tensor) -> Tensor:
        if self.backend == 'transformers':
            return self.model(pixel_values=pixels).image_embeds
        return self.model.encode_image(pixels)


def load_aesthetic_head(path: str | os.PathLike) -> nn.Linear:
    """The LAION aesthetic predictor's linear head (``weight [1, D]``, ``bias [1]``) as
    ``nn.Linear(D, 1)``, loaded strictly (``sa_0_4_vit_l_14_linear.pth``: D = 768)."""
    path = os.fspath(path)
    state = _load_state_dict(path, 'LAION aesthetic head state dict')
    weight = state.get('weight')
    if weight is None or weight.dim() != 2 or weight.shape[0] != 1:
        raise CheckpointError(path, "expected the LAION aesthetic linear head: 'weight' [1, D] "
                                    f"and 'bias' [1], got keys {sorted(state)}")
    head = nn.Linear(weight.shape[1], 1)
    _load_strict(head, state, path, 'LAION aesthetic head')
    return head.eval().requires_grad_(False)


def _load_state_dict(path: str, what: str) -> Mapping[str, Tensor]:
    try:
        state = torch.load(path, map_location='cpu', weights_only=True)
    except Exception as error:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointError(path, f'cannot be read as a {what}: {error}') from error
    if not isinstance(state, Mapping) or not all(isinstance(v, Tensor) for v in state.values()):
        raise CheckpointError(path, f'expected a {what} (name -> tensor), got '
                                    f'{type(state).__name__}')
    return state


def _load_strict(module: nn.Module, state: Mapping[str, Tensor], path: str, what: str) -> None:
    expected = module.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [f'{k}: expected {list(v.shape)}, got {list(state[k].shape)}'
             for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or wrong:
        raise CheckpointError(path, f'does not match the {what}: missing keys {missing}, '
                                    f'unexpected keys {unexpected}, wrong shapes {wrong}')
    module.load_state_dict({k: v.float() for k, v in state.items()})
