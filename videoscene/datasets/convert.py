"""Writing any scene source (``transforms.json``, COLMAP, videos with poses, ...) as RE10K chunks."""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from videoscene.geometry.camera_validation import check_extrinsics, check_intrinsics
from .base import SceneSource
from .chunks import encode_example, write_dataset

__all__ = ['source_examples', 'convert_to_chunks']


def source_examples(source: SceneSource, jpeg_quality: int = 95) -> Iterator[dict]:
    """Chunk-format scene dicts of every scene of ``source`` (all frames, undistorted), made lazily.
    JPEG files that need no change are stored byte for byte (see ``SceneSource.encoded_images``).
    Cameras are checked by ``geometry.camera_validation`` (``CameraError`` naming the frame)."""
    for key in source.keys:
        extrinsics, intrinsics = source.cameras(key)

        def name(index: tuple[int, ...], key: str = key) -> str:
            return source.describe(key, index[0]) if index else f"scene '{key}'"

        check_extrinsics(extrinsics, name)
        check_intrinsics(intrinsics, name)
        yield encode_example(key, source.encoded_images(key, jpeg_quality), extrinsics, intrinsics,
                             timestamps=source.timestamps(key), url=source.url(key))


def convert_to_chunks(source: SceneSource, root: str | Path, stage: str, *, num_eval_targets: int | None = 49,
                      eval_context_gap: int | None = None, scenes_per_chunk: int = 16, jpeg_quality: int = 95,
                      overwrite: bool = False) -> Path:
    """Write ``source`` as ``{root}/{stage}`` chunks with ``index.json`` and, unless
    ``num_eval_targets`` is None, ``{root}/evaluation_index_{stage}.json`` (context pair
    ``[0, gap]``, ``num_eval_targets`` targets between; see ``chunks.evaluation_index``).
    Returns the stage folder."""
    return write_dataset(root, stage, source_examples(source, jpeg_quality), scenes_per_chunk=scenes_per_chunk,
                         num_eval_targets=num_eval_targets, eval_context_gap=eval_context_gap, overwrite=overwrite,
                         total=len(source.keys))
