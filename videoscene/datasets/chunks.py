"""Reading and writing RealEstate10K / ACID chunk files (pixelSplat's format, used by MVSplat).

Layout of a dataset root::

    {root}/{stage}/000000.torch, 000001.torch, ...   # torch.save'd lists of scene dicts
    {root}/{stage}/index.json                        # {scene key: chunk file name}
    {root}/evaluation_index_{stage}.json             # {scene key: {"context": [a, b], "target": [...]} | null}

A scene dict holds:

* ``url`` (str), ``key`` (str);
* ``timestamps``: int64 ``[N]`` (microseconds);
* ``cameras``: float32 ``[N, 18]``, each row ``fx/W, fy/H, cx/W, cy/H, 0, 0`` followed by the
  row-major 3x4 OpenCV **world-to-camera** matrix;
* ``images``: a list of N uint8 1-D tensors, each the bytes of a JPEG file;
* ``depths`` (optional, written by videoscene's synthetic generator, ignored by other readers):
  a list of N uint8 1-D tensors, each the bytes of a 16-bit grayscale PNG holding the frame's
  z-depth (along the camera's +z axis) in thousandths of a scene unit (millimetres for metric
  scenes, so at most 65.535 units); 0 marks pixels without depth.

Writing is atomic: everything goes to a hidden temporary folder beside the target and is moved
into place by renames at the end, so an interrupted write never leaves a stage folder (or an
``index.json``) that looks complete.
"""
from __future__ import annotations

import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import Tensor
from tqdm import tqdm

from videoscene.geometry.cameras import c2w_to_w2c_rows, w2c_rows_to_c2w
from .view_samplers import evenly_spaced_between

__all__ = ['DEPTH_SCALE', 'CorruptImageError', 'encode_cameras', 'decode_cameras', 'encode_image', 'decode_image',
           'encode_depth', 'decode_depth', 'encode_example',
           'load_index', 'load_chunk', 'evaluation_index', 'new_partial_dir', 'write_dataset']

DEPTH_SCALE = 1000.0  # stored depth PNG value = round(depth * DEPTH_SCALE)
_JPEG_START, _JPEG_END = b'\xff\xd8', b'\xff\xd9'


class CorruptImageError(ValueError):
    """Image bytes that do not decode to a complete image (datasets skip such examples)."""


def encode_cameras(extrinsics: Tensor, intrinsics: Tensor) -> Tensor:
    """Camera-to-world ``[N, 4, 4]`` and normalised intrinsics ``[N, 3, 3]`` -> camera rows ``[N, 18]`` float32."""
    if extrinsics.dim() != 3 or extrinsics.shape[1:] != (4, 4) or intrinsics.shape != (len(extrinsics), 3, 3):
        raise ValueError(f'expected extrinsics [N, 4, 4] and intrinsics [N, 3, 3], got '
                         f'{list(extrinsics.shape)} and {list(intrinsics.shape)}')
    k = intrinsics.to(torch.float64)
    head = torch.stack([k[:, 0, 0], k[:, 1, 1], k[:, 0, 2], k[:, 1, 2]], dim=-1)
    rows = c2w_to_w2c_rows(extrinsics.to(torch.float64))
    return torch.cat([head, torch.zeros_like(head[:, :2]), rows], dim=-1).to(torch.float32)


def decode_cameras(cameras: Tensor) -> tuple[Tensor, Tensor]:
    """Camera rows ``[N, 18]`` -> camera-to-world ``[N, 4, 4]`` and normalised intrinsics ``[N, 3, 3]`` (float32)."""
    if cameras.dim() != 2 or cameras.shape[1] != 18:
        raise ValueError(f'expected camera rows [N, 18], got {list(cameras.shape)}')
    cameras = cameras.to(torch.float32)
    intrinsics = torch.eye(3).repeat(len(cameras), 1, 1)
    intrinsics[:, 0, 0], intrinsics[:, 1, 1] = cameras[:, 0], cameras[:, 1]
    intrinsics[:, 0, 2], intrinsics[:, 1, 2] = cameras[:, 2], cameras[:, 3]
    return w2c_rows_to_c2w(cameras[:, 6:]), intrinsics


def encode_image(image: Tensor, quality: int = 95) -> Tensor:
    """Float image ``[3, H, W]`` in [0, 1] -> uint8 1-D tensor of JPEG bytes (4:4:4 chroma, no subsampling)."""
    if image.dim() != 3 or image.shape[0] != 3:
        raise ValueError(f'expected an image [3, H, W], got {list(image.shape)}')
    pixels = (image.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).flip(-1)
    ok, data = cv2.imencode('.jpg', np.ascontiguousarray(pixels.cpu().numpy()),
                            [cv2.IMWRITE_JPEG_QUALITY, quality,
                             cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise RuntimeError('OpenCV failed to encode a JPEG')
    return torch.from_numpy(data.reshape(-1))


def decode_image(data: Tensor, source: str = 'image data') -> Tensor:
    """uint8 1-D tensor of image bytes (JPEG, PNG, ...) -> float32 RGB image ``[3, H, W]`` in [0, 1].

    Raises:
        CorruptImageError: OpenCV cannot decode the bytes, or they start as a JPEG but lack its
            end-of-image marker (a truncated file, which OpenCV would silently fill with grey).
            The message names ``source``.
    """
    array = data.numpy()
    raw = array.tobytes()
    if raw.startswith(_JPEG_START) and not raw.rstrip(b'\x00').endswith(_JPEG_END):
        raise CorruptImageError(f'{source}: truncated JPEG ({len(raw)} bytes without an end-of-image marker)')
    pixels = cv2.imdecode(array, cv2.IMREAD_COLOR)
    if pixels is None:
        raise CorruptImageError(f'{source}: {len(raw)} bytes do not decode as an image')
    return torch.from_numpy(np.ascontiguousarray(pixels[..., ::-1])).permute(2, 0, 1).to(torch.float32) / 255.0


def encode_depth(depth: Tensor) -> Tensor:
    """Z-depth ``[H, W]`` (scene units, 0 = none) -> uint8 1-D tensor of 16-bit PNG bytes."""
    if depth.dim() != 2:
        raise ValueError(f'expected a depth map [H, W], got {list(depth.shape)}')
    scaled = (depth.to(torch.float64) * DEPTH_SCALE).round()
    if not bool(torch.isfinite(scaled).all()) or scaled.min() < 0 or scaled.max() > 65535:
        raise ValueError(f'depths must be finite and within [0, {65535 / DEPTH_SCALE}] scene units to be stored, '
                         f'got [{depth.min().item()}, {depth.max().item()}]')
    ok, data = cv2.imencode('.png', scaled.numpy().astype(np.uint16))
    if not ok:
        raise RuntimeError('OpenCV failed to encode a depth PNG')
    return torch.from_numpy(data.reshape(-1))


def decode_depth(data: Tensor) -> Tensor:
    """uint8 1-D tensor of 16-bit PNG bytes -> float32 z-depth ``[H, W]`` in scene units (0 = none)."""
    depth = cv2.imdecode(data.numpy(), cv2.IMREAD_UNCHANGED)
    if depth is None or depth.dtype != np.uint16 or depth.ndim != 2:
        raise ValueError('depth data is not a 16-bit grayscale PNG')
    return torch.from_numpy(depth.astype(np.float32)) / DEPTH_SCALE


def encode_example(key: str, images: Tensor | Sequence[Tensor], extrinsics: Tensor, intrinsics: Tensor, *,
                   depths: Tensor | None = None, timestamps: Tensor | None = None, url: str = '',
                   jpeg_quality: int = 95) -> dict:
    """A scene dict of the chunk format.

    Args:
        key: scene key.
        images: ``[N, 3, H, W]`` in [0, 1], encoded as JPEGs; or N uint8 1-D tensors of JPEG bytes,
            stored as they are.
        extrinsics: ``[N, 4, 4]`` camera-to-world (OpenCV); must be finite.
        intrinsics: ``[N, 3, 3]`` normalised; must be finite.
        depths: optional ``[N, H, W]`` z-depths, stored as 16-bit PNGs under ``depths``.
        timestamps: optional int64 ``[N]`` microseconds; by default frames 30 fps apart.
        url: source address of the scene.
        jpeg_quality: JPEG quality (1-100).
    """
    if isinstance(images, Tensor):
        if images.dim() != 4 or images.shape[1] != 3:
            raise ValueError(f"scene '{key}': expected images [N, 3, H, W], got {list(images.shape)}")
        encoded = [encode_image(image, jpeg_quality) for image in images]
    else:
        encoded = list(images)
        if not all(data.dtype == torch.uint8 and data.dim() == 1 for data in encoded):
            raise ValueError(f"scene '{key}': encoded images must be uint8 1-D tensors of JPEG bytes")
    n = len(encoded)
    if len(extrinsics) != n:
        raise ValueError(f"scene '{key}': {n} images but {len(extrinsics)} cameras")
    if not (bool(torch.isfinite(extrinsics).all()) and bool(torch.isfinite(intrinsics).all())):
        bad = (~torch.isfinite(extrinsics.flatten(1)).all(1) | ~torch.isfinite(intrinsics.flatten(1)).all(1))
        raise ValueError(f"scene '{key}': non-finite cameras at frames {bad.nonzero().flatten().tolist()}")
    if timestamps is None:
        timestamps = torch.arange(n, dtype=torch.int64) * 1_000_000 // 30
    example = {
        'url': url,
        'timestamps': timestamps.to(torch.int64),
        'cameras': encode_cameras(extrinsics, intrinsics),
        'images': encoded,
        'key': key,
    }
    if depths is not None:
        sizes_differ = isinstance(images, Tensor) and depths.shape[1:] != images.shape[2:]
        if depths.dim() != 3 or len(depths) != n or sizes_differ:
            raise ValueError(f"scene '{key}': expected depths [N, H, W] matching {n} images, got {list(depths.shape)}")
        example['depths'] = [encode_depth(depth) for depth in depths.cpu()]
    return example


def load_index(root: str | Path, stage: str) -> dict[str, Path]:
    """``{root}/{stage}/index.json`` as ``{scene key: chunk path}``."""
    path = Path(root).expanduser() / stage / 'index.json'
    if not path.is_file():
        raise FileNotFoundError(f'no chunk index at {path}: expected a dataset in the RE10K chunk format '
                                f'with a {stage}/ folder')
    with path.open() as file:
        return {key: path.parent / name for key, name in json.load(file).items()}


def load_chunk(path: str | Path) -> list[dict]:
    """The list of scene dicts in a ``.torch`` chunk file."""
    return torch.load(path, weights_only=True)


def evaluation_index(num_frames: Mapping[str, int], num_targets: int = 49,
                     context_gap: int | None = None) -> dict[str, dict[str, list[int]]]:
    """An evaluation index: per scene, a context pair ``[0, gap]`` and ``num_targets`` targets
    strictly between at (near-)equal intervals.

    Args:
        num_frames: frames of every scene.
        num_targets: targets per scene.
        context_gap: frames between the context views; None spans the whole scene.
    """
    index = {}
    for key, frames in num_frames.items():
        gap = frames - 1 if context_gap is None else context_gap
        if gap > frames - 1 or gap < num_targets + 1:
            raise ValueError(f"scene '{key}' has {frames} frames: cannot hold a context gap of {gap} with "
                             f'{num_targets} targets strictly between (need a gap of at least {num_targets + 1})')
        index[key] = {'context': [0, gap], 'target': evenly_spaced_between(0, gap, num_targets)}
    return index


def _write_json(path: Path, content: dict) -> None:
    with path.open('w') as file:
        json.dump(content, file, indent=1)


def new_partial_dir(parent: Path, prefix: str) -> Path:
    """A new empty folder ``{parent}/{prefix}{random suffix}`` with the default permissions
    (``tempfile.mkdtemp`` would make it private to the user, and it becomes the dataset)."""
    path = parent / f'{prefix}{uuid.uuid4().hex[:12]}'
    path.mkdir()
    return path


def write_dataset(root: str | Path, stage: str, examples: Iterable[dict], *, scenes_per_chunk: int = 16,
                  num_eval_targets: int | None = 49, eval_context_gap: int | None = None,
                  overwrite: bool = False, total: int | None = None) -> Path:
    """Write scene dicts (see :func:`encode_example`) as ``{root}/{stage}`` and, unless
    ``num_eval_targets`` is None, ``{root}/evaluation_index_{stage}.json`` (see :func:`evaluation_index`).

    Examples are consumed lazily (at most one chunk is held in memory) behind a progress bar of
    ``total`` scenes. Returns the stage folder.

    Raises:
        FileExistsError: the stage folder exists and ``overwrite`` is False.
    """
    root = Path(root).expanduser()
    final = root / stage
    if final.exists() and not overwrite:
        raise FileExistsError(f'{final} already exists; pass overwrite=True to replace it')
    root.mkdir(parents=True, exist_ok=True)
    partial = new_partial_dir(root, f'.{stage}.partial-')
    try:
        index: dict[str, str] = {}
        frames: dict[str, int] = {}
        chunk: list[dict] = []
        written: list[str] = []

        def flush() -> None:
            name = f'{len(written):06d}.torch'
            torch.save(chunk, partial / name)
            written.append(name)
            index.update({example['key']: name for example in chunk})
            chunk.clear()

        for example in tqdm(examples, total=total, desc=f'writing {stage}', unit='scene'):
            key = example['key']
            if key in frames:
                raise ValueError(f"scene key '{key}' appears twice")
            frames[key] = len(example['images'])
            chunk.append(example)
            if len(chunk) == scenes_per_chunk:
                flush()
        if chunk:
            flush()
        if not index:
            raise ValueError(f'no scenes to write into {final}')
        _write_json(partial / 'index.json', index)

        # Move into place: the evaluation index first, the stage folder (what readers look for) last.
        if num_eval_targets is not None:
            eval_partial = partial / 'evaluation_index.json'
            _write_json(eval_partial, evaluation_index(frames, num_eval_targets, eval_context_gap))
            os.replace(eval_partial, root / f'evaluation_index_{stage}.json')
        if final.exists():  # overwrite: move the old folder aside, then swap
            old = new_partial_dir(root, f'.{stage}.old-')
            os.rename(final, old / stage)
            os.rename(partial, final)
            shutil.rmtree(old)
        else:
            os.rename(partial, final)
    except BaseException:
        shutil.rmtree(partial, ignore_errors=True)
        raise
    return final
