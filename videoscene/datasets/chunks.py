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
``index.json``) that looks complete; a failed write removes its temporary folder and, when it
had to create ``root``, ``root`` too.

Reading: a chunk that does not load (truncated, not a ``torch.save`` file, not a list of scene
dicts) raises :class:`CorruptChunkError` and image bytes that do not decode
:class:`CorruptImageError`, both :class:`~videoscene.errors.CorruptInputError` naming the file,
which datasets skip and count; a malformed ``index.json`` raises :class:`~videoscene.errors.InputError`.
Non-JPEG images with an alpha channel are decoded to their colour channels (alpha dropped, not
composited) with a warning, once per file, when any pixel is transparent.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import cv2
import numpy as np
import torch
from mmengine.logging import print_log
from torch import Tensor
from tqdm import tqdm

from videoscene.errors import CorruptInputError, InputError
from videoscene.geometry.cameras import c2w_to_w2c_rows, w2c_rows_to_c2w
from .view_samplers import evenly_spaced_between

__all__ = ['DEPTH_SCALE', 'CorruptImageError', 'CorruptChunkError', 'encode_cameras', 'decode_cameras', 'encode_image',
           'decode_image', 'encode_depth', 'decode_depth', 'encode_example',
           'load_index', 'load_chunk', 'check_scene', 'evaluation_index', 'new_partial_dir', 'write_dataset']

DEPTH_SCALE = 1000.0  # stored depth PNG value = round(depth * DEPTH_SCALE)
_JPEG_START, _JPEG_END = b'\xff\xd8', b'\xff\xd9'
_WARNED_ALPHA: set[str] = set()  # files already warned about for transparency (per process)


class CorruptImageError(CorruptInputError):
    """Image bytes that do not decode to a complete image (datasets skip such examples)."""


class CorruptChunkError(CorruptInputError):
    """A chunk file that does not load, or whose scene dicts lack what the format needs."""


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
    if not (isinstance(quality, int) and 1 <= quality <= 100):
        raise InputError('jpeg_quality', f'must be an integer from 1 to 100, got {quality!r}')
    pixels = (image.detach().clamp(0.0, 1.0) * 255.0).round().to(torch.uint8).permute(1, 2, 0).flip(-1)
    ok, data = cv2.imencode('.jpg', np.ascontiguousarray(pixels.cpu().numpy()),
                            [cv2.IMWRITE_JPEG_QUALITY, quality,
                             cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444])
    if not ok:
        raise RuntimeError('OpenCV failed to encode a JPEG')
    return torch.from_numpy(data.reshape(-1))


def decode_image(data: Tensor, source: str = 'image data', path: str | None = None) -> Tensor:
    """uint8 1-D tensor of image bytes (JPEG, PNG, ...) -> float32 RGB image ``[3, H, W]`` in [0, 1].

    JPEGs are decoded by OpenCV with their EXIF orientation; other formats keep their bit depth
    (16-bit channels are divided by 65535) and an alpha channel is dropped, with a warning naming
    ``source`` (once per file) when any pixel is transparent.

    Raises:
        CorruptImageError: empty bytes, bytes OpenCV cannot decode, or bytes that start as a JPEG but
            lack its end-of-image marker (a truncated file, which OpenCV would silently fill with
            grey). The message names ``source``; ``path`` (default ``source``) is the file it is in.
    """
    array = data.numpy()
    raw = array.tobytes()
    if not raw:
        raise CorruptImageError(source, '0 bytes: an empty image', path)
    if raw.startswith(_JPEG_START):
        if not raw.rstrip(b'\x00').endswith(_JPEG_END):
            raise CorruptImageError(source, f'truncated JPEG ({len(raw)} bytes without an end-of-image marker)', path)
        pixels = cv2.imdecode(array, cv2.IMREAD_COLOR)
    else:
        pixels = cv2.imdecode(array, cv2.IMREAD_UNCHANGED)
    if pixels is None:
        raise CorruptImageError(source, f'{len(raw)} bytes do not decode as an image', path)
    scale = 65535.0 if pixels.dtype == np.uint16 else 255.0
    if pixels.ndim == 3 and pixels.shape[-1] in (2, 4):  # grey or BGR with alpha
        alpha = pixels[..., -1]
        transparent = float((alpha < np.iinfo(alpha.dtype).max).mean())
        if transparent and (path or source) not in _WARNED_ALPHA:
            _WARNED_ALPHA.add(path or source)
            print_log(f'{source}: {transparent:.0%} of the pixels are (partly) transparent; the alpha channel is '
                      'dropped and the colour channels are used as they are (composite the image onto a background '
                      'first if that is not what it shows)', logger='current', level=logging.WARNING)
        pixels = pixels[..., :-1]
    if pixels.ndim == 2 or pixels.shape[-1] == 1:
        pixels = np.repeat(pixels.reshape(*pixels.shape[:2], 1), 3, axis=-1)
    rgb = np.ascontiguousarray(pixels[..., ::-1]).astype(np.float32) / scale
    return torch.from_numpy(rgb).permute(2, 0, 1).contiguous()


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


def decode_depth(data: Tensor, source: str = 'depth data', path: str | None = None) -> Tensor:
    """uint8 1-D tensor of 16-bit PNG bytes -> float32 z-depth ``[H, W]`` in scene units (0 = none).

    Raises:
        CorruptImageError: the bytes are not a 16-bit grayscale PNG (names ``source``, in file ``path``).
    """
    depth = cv2.imdecode(data.numpy(), cv2.IMREAD_UNCHANGED) if data.numel() else None
    if depth is None or depth.dtype != np.uint16 or depth.ndim != 2:
        raise CorruptImageError(source, 'depth data is not a 16-bit grayscale PNG', path)
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
            raise InputError(f"scene '{key}'", f'expected images [N, 3, H, W], got {list(images.shape)}')
        encoded = [encode_image(image, jpeg_quality) for image in images]
    else:
        encoded = list(images)
        if not all(data.dtype == torch.uint8 and data.dim() == 1 for data in encoded):
            raise InputError(f"scene '{key}'", 'encoded images must be uint8 1-D tensors of JPEG bytes')
    n = len(encoded)
    if len(extrinsics) != n:
        raise InputError(f"scene '{key}'", f'{n} images but {len(extrinsics)} cameras')
    if not (bool(torch.isfinite(extrinsics).all()) and bool(torch.isfinite(intrinsics).all())):
        bad = (~torch.isfinite(extrinsics.flatten(1)).all(1) | ~torch.isfinite(intrinsics.flatten(1)).all(1))
        raise InputError(f"scene '{key}'", f'non-finite cameras at frames {bad.nonzero().flatten().tolist()}')
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
            raise InputError(f"scene '{key}'", f'expected depths [N, H, W] matching {n} images, got '
                                               f'{list(depths.shape)}')
        example['depths'] = [encode_depth(depth) for depth in depths.cpu()]
    return example


def load_index(root: str | Path, stage: str) -> dict[str, Path]:
    """``{root}/{stage}/index.json`` as ``{scene key: chunk path}``.

    Raises:
        FileNotFoundError: no index file.
        InputError: the file is not a JSON object mapping scene keys to chunk file names.
    """
    path = Path(root).expanduser() / stage / 'index.json'
    if not path.is_file():
        raise FileNotFoundError(f'no chunk index at {path}: expected a dataset in the RE10K chunk format '
                                f'with a {stage}/ folder')
    try:
        content = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise InputError(path, f'not valid JSON ({error}); expected {{scene key: chunk file name}}') from None
    if not isinstance(content, dict) or not all(isinstance(name, str) for name in content.values()):
        raise InputError(path, f'expected a JSON object {{scene key: chunk file name}}, got '
                               f'{type(content).__name__}' + (' with non-string file names' if isinstance(content, dict) else ''))
    return {key: path.parent / name for key, name in content.items()}


_SCENE_FIELDS = ('key', 'cameras', 'images')


def load_chunk(path: str | Path) -> list[dict]:
    """The list of scene dicts in a ``.torch`` chunk file.

    Raises:
        CorruptChunkError: the file does not load with ``torch.load`` (truncated, not a chunk) or
            does not hold a list of dicts with ``key``, ``cameras`` and ``images``.
    """
    try:
        scenes = torch.load(path, weights_only=True)
    except Exception as error:  # noqa: BLE001  whatever torch.load fails with, the file is not a readable chunk
        message = str(error).strip().splitlines()[0] if str(error).strip() else ''
        raise CorruptChunkError(path, f'does not load as a chunk ({type(error).__name__}: {message[:200]}); '
                                      'expected a torch.save\'d list of scene dicts') from None
    if not isinstance(scenes, list) or not all(isinstance(scene, dict) and 'key' in scene for scene in scenes):
        raise CorruptChunkError(path, f'holds a {type(scenes).__name__}, not a list of scene dicts with a key')
    return scenes


def check_scene(scene: dict, source: str, path: str | Path) -> None:
    """Check that a chunk's scene dict has ``cameras [N, 18]`` and N images of uint8 bytes.

    Raises:
        CorruptChunkError: naming ``source`` (the scene) and, as the file, ``path``.
    """
    missing = [field for field in _SCENE_FIELDS if field not in scene]
    if missing:
        raise CorruptChunkError(source, f'lacks {missing}; a chunk scene needs {list(_SCENE_FIELDS)}', path)
    cameras, images = scene['cameras'], scene['images']
    if not isinstance(cameras, Tensor) or cameras.dim() != 2 or cameras.shape[1] != 18:
        shape = list(cameras.shape) if isinstance(cameras, Tensor) else type(cameras).__name__
        raise CorruptChunkError(source, f'camera rows must be a tensor [N, 18], got {shape}', path)
    if not isinstance(images, (list, tuple)) or len(images) != len(cameras):
        count = len(images) if isinstance(images, (list, tuple)) else type(images).__name__
        raise CorruptChunkError(source, f'has {count} images but {len(cameras)} cameras', path)
    if not all(isinstance(data, Tensor) and data.dtype == torch.uint8 and data.dim() == 1 for data in images):
        raise CorruptChunkError(source, 'images must be uint8 1-D tensors of encoded image bytes', path)


def evaluation_index(num_frames: Mapping[str, int], num_targets: int = 49,
                     context_gap: int | None = None) -> dict[str, dict[str, list[int]]]:
    """An evaluation index: per scene, a context pair ``[0, gap]`` and ``num_targets`` targets
    strictly between at (near-)equal intervals.

    Args:
        num_frames: frames of every scene.
        num_targets: targets per scene.
        context_gap: frames between the context views; None spans the whole scene.
    """
    if num_targets < 1:
        raise InputError('num_eval_targets', f'an evaluation index needs at least 1 target per scene, got {num_targets}')
    index = {}
    for key, frames in num_frames.items():
        gap = frames - 1 if context_gap is None else context_gap
        if gap > frames - 1 or gap < num_targets + 1:
            raise InputError(f"scene '{key}'", f'has {frames} frames: cannot hold a context gap of {gap} with '
                                               f'{num_targets} targets strictly between (need a gap of at least '
                                               f'{num_targets + 1})')
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
    if scenes_per_chunk < 1:
        raise InputError('scenes_per_chunk', f'must be at least 1, got {scenes_per_chunk}')
    if num_eval_targets is not None and num_eval_targets < 1:
        raise InputError('num_eval_targets', f'must be at least 1 (or None for no evaluation index), '
                                             f'got {num_eval_targets}')
    created = [folder for folder in (root, *root.parents) if not folder.exists()]  # removed again on failure
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
                raise InputError(f"scene '{key}'", 'the key appears twice')
            frames[key] = len(example['images'])
            chunk.append(example)
            if len(chunk) == scenes_per_chunk:
                flush()
        if chunk:
            flush()
        if not index:
            raise InputError(final, 'no scenes to write')
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
        for folder in created:  # innermost first; only while empty
            try:
                folder.rmdir()
            except OSError:
                break
        raise
    return final
