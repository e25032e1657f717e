"""Batched 3D Gaussians, the hand-off between reconstructors and renderers, with PLY export/import.

The PLY layout is the one of the original 3D Gaussian splatting code, which common viewers read:
binary little-endian float32 vertices with the properties ``x y z``, ``nx ny nz`` (zeros),
``f_dc_0..2``, ``f_rest_0..`` (channel-major: all of red's higher-degree coefficients, then
green's, then blue's), ``opacity`` (a logit), ``scale_0..2`` (log standard deviations) and
``rot_0..3`` (a unit quaternion, wxyz).
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass, fields

import numpy as np
import torch

from videoscene.geometry.rotations import matrix_to_quaternion, quaternion_to_matrix

__all__ = ['Gaussians']

# Opacities are clamped to [eps, 1 - eps] before the logit so that 0 and 1 stay finite.
_OPACITY_EPS = 1e-6
# Eigenvalues of a covariance are clamped to this before the log scale (degenerate Gaussians).
_MIN_VARIANCE = 1e-20


@dataclass
class Gaussians:
    """A batch of 3D Gaussians in world space (OpenCV convention, see docs/architecture.md).

    Attributes:
        means: ``[B, G, 3]`` centres.
        covariances: ``[B, G, 3, 3]`` world-space covariance matrices.
        harmonics: ``[B, G, 3, (d+1)^2]`` spherical-harmonic colour coefficients, RGB-major,
            degree-major within each channel, in world space, in the real basis of 3D Gaussian
            splatting (see :mod:`videoscene.renderers.spherical_harmonics`).
        opacities: ``[B, G]`` opacities in [0, 1].
    """

    means: torch.Tensor
    covariances: torch.Tensor
    harmonics: torch.Tensor
    opacities: torch.Tensor

    @property
    def sh_degree(self) -> int:
        return int(round(self.harmonics.shape[-1] ** 0.5)) - 1

    def to(self, *args, **kwargs) -> Gaussians:
        return Gaussians(**{f.name: getattr(self, f.name).to(*args, **kwargs) for f in fields(self)})

    def check_shapes(self) -> None:
        """Raise ``ValueError`` naming the field whose shape breaks the ``[B, G, ...]`` layout."""
        if self.means.dim() != 3 or self.means.shape[-1] != 3:
            raise ValueError(f'Gaussians.means must be [B, G, 3], got {list(self.means.shape)}')
        batch, count = self.means.shape[:2]
        num_sh = self.harmonics.shape[-1] if self.harmonics.dim() == 4 else 0
        expected = {'covariances': (batch, count, 3, 3),
                    'harmonics': (batch, count, 3, num_sh),
                    'opacities': (batch, count)}
        for name, shape in expected.items():
            actual = tuple(getattr(self, name).shape)
            if actual != shape:
                raise ValueError(f'Gaussians.{name} must be {list(shape)} (from means [B, G, 3] = '
                                 f'{list(self.means.shape)}), got {list(actual)}')
        if num_sh == 0 or math.isqrt(num_sh) ** 2 != num_sh:
            raise ValueError(f'Gaussians.harmonics must hold (d+1)^2 coefficients per channel, got {num_sh}')

    def non_finite(self) -> dict[str, int]:
        """How many Gaussians hold a NaN or infinite value, per field (fields with none omitted)."""
        counts = {}
        for f in fields(self):
            value = getattr(self, f.name)
            bad = int((~torch.isfinite(value)).reshape(*value.shape[:2], -1).any(-1).sum())
            if bad:
                counts[f.name] = bad
        return counts

    def check_finite(self) -> None:
        """Raise ``ValueError`` listing, per field, how many Gaussians are not finite."""
        counts = self.non_finite()
        if counts:
            total = self.means.shape[0] * self.means.shape[1]
            listing = ', '.join(f'{name}: {count}' for name, count in counts.items())
            raise ValueError(f'Gaussians hold non-finite values (Gaussians affected per field, of {total}): '
                             f'{listing}')

    def save_ply(self, path: str | os.PathLike, batch_index: int = 0) -> None:
        """Write batch element ``batch_index`` as a 3D Gaussian splatting PLY file.

        Scales and rotations come from the eigendecomposition of each covariance (the eigenvector
        basis is made right-handed); opacities are clamped to ``[1e-6, 1 - 1e-6]`` before the logit.
        """
        self.check_shapes()
        if not -self.means.shape[0] <= batch_index < self.means.shape[0]:
            raise IndexError(f'batch_index {batch_index} is out of range for a batch of {self.means.shape[0]}')
        with torch.no_grad():
            covariances = self.covariances[batch_index].double()
            covariances = 0.5 * (covariances + covariances.transpose(-1, -2))
            variances, axes = torch.linalg.eigh(covariances)
            handedness = torch.linalg.det(axes).sign()
            axes = torch.cat([axes[..., :2], axes[..., 2:] * handedness[:, None, None]], dim=-1)
            log_scales = 0.5 * variances.clamp_min(_MIN_VARIANCE).log()
            opacities = self.opacities[batch_index].double().clamp(_OPACITY_EPS, 1 - _OPACITY_EPS)
            harmonics = self.harmonics[batch_index].double()
            columns = [self.means[batch_index].double(), torch.zeros_like(log_scales), harmonics[..., 0],
                       harmonics[..., 1:].flatten(1), torch.logit(opacities)[:, None], log_scales,
                       matrix_to_quaternion(axes)]
            values = torch.cat(columns, dim=1).float().cpu().numpy()
        names = _ply_property_names(self.sh_degree)
        header = ['ply', 'format binary_little_endian 1.0', f'element vertex {values.shape[0]}',
                  *[f'property float {name}' for name in names], 'end_header']
        with open(path, 'wb') as file:
            file.write(('\n'.join(header) + '\n').encode('ascii'))
            file.write(values.astype('<f4').tobytes())

    @classmethod
    def load_ply(cls, path: str | os.PathLike) -> Gaussians:
        """Read a 3D Gaussian splatting PLY file as a batch of one (float32, on the CPU).

        The SH degree follows from the number of ``f_rest_*`` properties; normals and properties
        other than the standard ones are optional and ignored.
        """
        with open(path, 'rb') as file:
            names, types, count = _read_ply_header(file, path)
            data = np.fromfile(file, dtype=np.dtype(list(zip(names, types))), count=count)
        if data.shape[0] != count:
            raise ValueError(f'{path}: the header announces {count} vertices but the file holds {data.shape[0]}')
        rest = sum(name.startswith('f_rest_') for name in names)
        num_sh = rest // 3 + 1
        if rest % 3 or math.isqrt(num_sh) ** 2 != num_sh:
            raise ValueError(f'{path}: {rest} f_rest properties do not make 3 * ((d+1)^2 - 1) for any degree d')
        required = _ply_property_names(math.isqrt(num_sh) - 1, normals=False)
        missing = [name for name in required if name not in names]
        if missing:
            raise ValueError(f'{path}: missing PLY properties {missing}')

        def column(*keys: str) -> torch.Tensor:
            values = np.empty((count, len(keys)), dtype=np.float64)
            for i, key in enumerate(keys):
                values[:, i] = data[key]
            return torch.from_numpy(values)

        means = column('x', 'y', 'z')
        dc = column('f_dc_0', 'f_dc_1', 'f_dc_2')
        higher = column(*[f'f_rest_{i}' for i in range(rest)]).reshape(count, 3, num_sh - 1)
        harmonics = torch.cat([dc[..., None], higher], dim=-1)
        opacities = torch.sigmoid(column('opacity')[:, 0])
        scales = column('scale_0', 'scale_1', 'scale_2').exp()
        rotations = quaternion_to_matrix(column('rot_0', 'rot_1', 'rot_2', 'rot_3'))
        covariances = rotations @ torch.diag_embed(scales ** 2) @ rotations.transpose(-1, -2)
        return cls(means=means[None].float(), covariances=covariances[None].float(),
                   harmonics=harmonics[None].float(), opacities=opacities[None].float())


def _ply_property_names(sh_degree: int, normals: bool = True) -> list[str]:
    rest = 3 * ((sh_degree + 1) ** 2 - 1)
    return ['x', 'y', 'z', *(['nx', 'ny', 'nz'] if normals else []), 'f_dc_0', 'f_dc_1', 'f_dc_2',
            *[f'f_rest_{i}' for i in range(rest)], 'opacity', 'scale_0', 'scale_1', 'scale_2',
            'rot_0', 'rot_1', 'rot_2', 'rot_3']


_PLY_TYPES = {'float': '<f4', 'float32': '<f4', 'double': '<f8', 'float64': '<f8', 'uchar': 'u1',
              'uint8': 'u1', 'char': 'i1', 'int8': 'i1', 'short': '<i2', 'int16': '<i2', 'ushort': '<u2',
              'uint16': '<u2', 'int': '<i4', 'int32': '<i4', 'uint': '<u4', 'uint32': '<u4'}


def _read_ply_header(file, path) -> tuple[list[str], list[str], int]:
    """Property names, numpy types and vertex count of a binary little-endian PLY with one element."""
    if file.readline().strip() != b'ply':
        raise ValueError(f'{path} is not a PLY file (no "ply" magic line)')
    names, types, count = [], [], None
    for raw in iter(file.readline, b''):
        words = raw.decode('ascii').split()
        if not words or words[0] in ('comment', 'obj_info'):
            continue
        if words[0] == 'end_header':
            break
        if words[0] == 'format' and words[1] != 'binary_little_endian':
            raise ValueError(f'{path}: PLY format {words[1]!r} is not supported, expected binary_little_endian')
        if words[0] == 'element':
            if words[1] != 'vertex':
                raise ValueError(f'{path}: PLY element {words[1]!r} is not supported, expected only "vertex"')
            count = int(words[2])
        if words[0] == 'property':
            if words[1] == 'list' or words[1] not in _PLY_TYPES:
                raise ValueError(f'{path}: PLY property type {" ".join(words[1:-1])!r} is not supported')
            names.append(words[2])
            types.append(_PLY_TYPES[words[1]])
    else:
        raise ValueError(f'{path}: PLY header has no end_header line')
    if count is None:
        raise ValueError(f'{path}: PLY header declares no vertex element')
    return names, types, count
