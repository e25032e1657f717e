"""The one camera validator: every reader and consumer of cameras checks them here.

Datasets, converters, reconstructors, renderers and camera paths call these functions on the
cameras they receive, so a camera is judged by the same rules (and the same tolerance) wherever
it enters. A failure raises :class:`~videoscene.errors.CameraError` whose message names the input
(``source``, e.g. a file and frame, or ``"context['extrinsics']"`` with the batch item and view)
and says what was wrong and what was expected.

Rules (conventions in ``cameras``):

* extrinsics ``[..., 4, 4]``: finite; last row ``[0, 0, 0, 1]``; the rotation block a proper
  rotation: orthonormal with det +1. A singular (e.g. all-zero), scaled or mirrored block is named
  as such. Every entry may be off by at most :data:`TOLERANCE`.
* intrinsics ``[..., 3, 3]``: finite; ``[[fx, s, cx], [0, fy, cy], [0, 0, 1]]`` with ``fx, fy > 0``;
  **normalised** (row 0 / W, row 1 / H): ``fx`` or ``fy`` above :data:`MAX_NORMALISED_FOCAL`
  (a field of view under 3 degrees) or a principal point outside ``[-1, 2]`` is refused as pixel units.
* near and far ``[...]``: finite with ``0 < near < far``.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor

from videoscene.errors import CameraError

__all__ = ['TOLERANCE', 'MAX_NORMALISED_FOCAL', 'check_extrinsics', 'check_intrinsics', 'check_near_far',
           'check_camera_tensors', 'camera_namer']

TOLERANCE = 1e-3
"""Largest accepted deviation of a rotation from orthonormal with det +1 (entries of ``R^T R - I``
and ``det R - 1``) and of the last extrinsics row from ``[0, 0, 0, 1]``."""

MAX_NORMALISED_FOCAL = 20.0
"""Largest accepted normalised focal length (a horizontal field of view of 2.9 degrees); larger
values are taken for pixel units."""

Namer = Callable[[tuple[int, ...]], str]


def camera_namer(source: str, dims: Sequence[str] = ()) -> Namer:
    """How errors name one camera of a batch: ``source`` followed by the leading indices, e.g.
    ``camera_namer("context['extrinsics']", ('batch item', 'view'))((0, 1))`` gives
    ``"context['extrinsics'] (batch item 0, view 1)"``; without ``dims`` the indices are listed
    as ``camera (i, j)``."""

    def name(index: tuple[int, ...]) -> str:
        if not index:
            return source
        if dims:
            return f"{source} ({', '.join(f'{dim} {i}' for dim, i in zip(dims, index))})"
        return f"{source}, camera {index[0] if len(index) == 1 else index}"

    return name


def _as_namer(source: str | Namer) -> Namer:
    return camera_namer(source) if isinstance(source, str) else source


def _first(bad: Tensor) -> tuple[int, ...] | None:
    """Leading index of the first True entry of ``bad``, or None."""
    if not bool(bad.any()):
        return None
    return tuple(int(i) for i in bad.nonzero()[0])


def _check_shape(tensor: Tensor, shape: tuple[int, ...], name: Namer, what: str) -> None:
    if not isinstance(tensor, Tensor):
        raise CameraError(name(()), f'{what} must be a tensor [..., {", ".join(map(str, shape))}], '
                                    f'got {type(tensor).__name__}')
    if tensor.dim() < len(shape) or tuple(tensor.shape[-len(shape):]) != shape:
        raise CameraError(name(()), f'{what} must have shape [..., {", ".join(map(str, shape))}], '
                                    f'got {list(tensor.shape)}')


def check_extrinsics(extrinsics: Tensor, source: str | Namer) -> None:
    """Check OpenCV camera-to-world matrices ``[..., 4, 4]`` (rules in the module docstring).

    Args:
        extrinsics: the matrices.
        source: how errors name them: a string (the index of a bad camera is appended) or a
            function of the leading index (see :func:`camera_namer`).

    Raises:
        CameraError: naming the first bad camera and what is wrong with it.
    """
    name = _as_namer(source)
    _check_shape(extrinsics, (4, 4), name, 'extrinsics')
    matrices = extrinsics.detach().double()
    finite = torch.isfinite(matrices).flatten(-2).all(-1)
    index = _first(~finite)
    if index is not None:
        raise CameraError(name(index), f'non-finite extrinsics (NaN or inf): {matrices[index].tolist()}')
    last_row = (matrices[..., 3, :] - matrices.new_tensor([0.0, 0.0, 0.0, 1.0])).abs().amax(-1)
    index = _first(last_row > TOLERANCE)
    if index is not None:
        raise CameraError(name(index), f'the last row of the 4x4 extrinsics is {matrices[index][3].tolist()}; '
                                       'expected [0, 0, 0, 1] (a rigid camera-to-world matrix)')
    rotation = matrices[..., :3, :3]
    eye = torch.eye(3, dtype=torch.float64, device=rotation.device)
    orthogonality = (rotation.transpose(-1, -2) @ rotation - eye).abs().amax((-1, -2))
    determinant = torch.linalg.det(rotation)
    index = _first((orthogonality > TOLERANCE) | ((determinant - 1).abs() > TOLERANCE))
    if index is not None:
        raise CameraError(name(index), _rotation_problem(rotation[index]))


def _rotation_problem(rotation: Tensor) -> str:
    """What is wrong with a 3x3 block that is not a proper rotation."""
    singular_values = torch.linalg.svdvals(rotation)
    determinant = float(torch.linalg.det(rotation))
    largest, smallest = float(singular_values[0]), float(singular_values[-1])
    expected = 'expected a proper rotation (orthonormal columns, det +1) in OpenCV camera-to-world extrinsics'
    if smallest <= TOLERANCE * max(largest, 1.0):
        return (f'the rotation block {rotation.tolist()} is singular (det = {determinant:.3g}, '
                f'e.g. all zeros); {expected}')
    uniform = largest - smallest <= TOLERANCE * largest
    if determinant < 0:
        scale = f' and scaled by {largest:.4g}' if uniform and abs(largest - 1) > TOLERANCE else ''
        return (f'the rotation block is mirrored (det = {determinant:.4g}){scale}: a left-handed camera, '
                f'e.g. from a mix-up of axis conventions or a flip applied to one side only; {expected}')
    if uniform:
        return (f'the rotation block is scaled by {largest:.4g} (its columns have length {largest:.4g}); '
                f'remove the scale from the camera matrix; {expected}')
    return (f'the rotation block is not orthonormal (singular values {smallest:.4g} to {largest:.4g}, '
            f'det = {determinant:.4g}); {expected}')


def check_intrinsics(intrinsics: Tensor, source: str | Namer) -> None:
    """Check normalised pinhole intrinsics ``[..., 3, 3]`` (rules in the module docstring).

    Raises:
        CameraError: naming the first bad camera and what is wrong with it.
    """
    name = _as_namer(source)
    _check_shape(intrinsics, (3, 3), name, 'intrinsics')
    k = intrinsics.detach().double()
    index = _first(~torch.isfinite(k).flatten(-2).all(-1))
    if index is not None:
        raise CameraError(name(index), f'non-finite intrinsics (NaN or inf): {k[index].tolist()}')
    lower = torch.stack([k[..., 1, 0], k[..., 2, 0], k[..., 2, 1], k[..., 2, 2] - 1], -1).abs().amax(-1)
    index = _first(lower > TOLERANCE)
    if index is not None:
        raise CameraError(name(index), f'intrinsics {k[index].tolist()} are not a pinhole matrix '
                                       '[[fx, s, cx], [0, fy, cy], [0, 0, 1]]')
    fx, fy, cx, cy = k[..., 0, 0], k[..., 1, 1], k[..., 0, 2], k[..., 1, 2]
    index = _first((fx <= 0) | (fy <= 0))
    if index is not None:
        raise CameraError(name(index), f'focal lengths must be positive, got fx = {float(fx[index]):.4g}, '
                                       f'fy = {float(fy[index]):.4g}')
    pixel_units = (fx > MAX_NORMALISED_FOCAL) | (fy > MAX_NORMALISED_FOCAL)
    pixel_units |= (cx < -1) | (cx > 2) | (cy < -1) | (cy > 2)
    index = _first(pixel_units)
    if index is not None:
        raise CameraError(name(index), f'intrinsics {k[index].tolist()} look like pixel units (fx = '
                                       f'{float(fx[index]):.4g}, cx = {float(cx[index]):.4g}); expected normalised '
                                       'intrinsics: row 0 divided by the image width, row 1 by its height '
                                       f'(fx, fy at most {MAX_NORMALISED_FOCAL:g}, principal point in [-1, 2])')


def check_near_far(near: Tensor, far: Tensor, source: str | Namer) -> None:
    """Check depth bounds ``near`` and ``far`` (same shape ``[...]``): finite, ``0 < near < far``.

    Raises:
        CameraError: naming the first bad camera.
    """
    name = _as_namer(source)
    if not (isinstance(near, Tensor) and isinstance(far, Tensor)) or near.shape != far.shape:
        raise CameraError(name(()), f'near and far must be tensors of one shape, got {_describe(near)} and '
                                    f'{_describe(far)}')
    near, far = near.detach().double(), far.detach().double()
    index = _first(~(torch.isfinite(near) & torch.isfinite(far) & (near > 0) & (far > near)))
    if index is not None:
        raise CameraError(name(index), f'need finite depth bounds with 0 < near < far, got near = '
                                       f'{float(near[index]):.4g}, far = {float(far[index]):.4g}')


def _describe(value: object) -> str:
    return str(list(value.shape)) if isinstance(value, Tensor) else type(value).__name__


def check_camera_tensors(cameras: dict, source: str, dims: Sequence[str] = ('batch item', 'view')) -> None:
    """Check the camera entries of a view dict (``extrinsics``, ``intrinsics``, ``near``/``far``,
    each where present): shapes agree on the leading dims and every rule above holds. Errors
    name ``source['key']`` and the index along ``dims``."""
    extrinsics, intrinsics = cameras.get('extrinsics'), cameras.get('intrinsics')
    lead = None
    for key, tail in (('extrinsics', (4, 4)), ('intrinsics', (3, 3)), ('near', ()), ('far', ())):
        value = cameras.get(key)
        if value is None:
            continue
        if not isinstance(value, Tensor):
            raise CameraError(f"{source}['{key}']", f'must be a tensor, got {type(value).__name__}')
        shape = tuple(value.shape[:value.dim() - len(tail)])
        if lead is None:
            lead = shape
        elif shape != lead:
            raise CameraError(f"{source}['{key}']", f'has leading shape {list(shape)}, but the other cameras '
                                                    f'{list(lead)}')
    if extrinsics is not None:
        check_extrinsics(extrinsics, camera_namer(f"{source}['extrinsics']", dims))
    if intrinsics is not None:
        check_intrinsics(intrinsics, camera_namer(f"{source}['intrinsics']", dims))
    if 'near' in cameras or 'far' in cameras:
        check_near_far(cameras.get('near'), cameras.get('far'), camera_namer(f"{source}['near'/'far']", dims))
