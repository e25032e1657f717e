"""View-dependent colour from real spherical harmonics, in the basis of 3D Gaussian splatting.

The basis is the one of the original 3DGS code, gsplat, MVSplat and pixelSplat: degree-major,
orthonormal real harmonics whose signs follow the ``(-y, z, -x)`` order of degree one. It is not
the e3nn basis of :mod:`videoscene.reconstructors.sh_rotation`.
"""
from __future__ import annotations

import torch
from torch import Tensor

__all__ = ['MAX_SH_DEGREE', 'sh_basis', 'sh_to_rgb']

MAX_SH_DEGREE = 4


def sh_basis(directions: Tensor, degree: int) -> Tensor:
    """Harmonics ``[..., (degree+1)^2]`` evaluated at unit ``directions [..., 3]``."""
    if not 0 <= degree <= MAX_SH_DEGREE:
        raise ValueError(f'SH degree must be in [0, {MAX_SH_DEGREE}], got {degree}')
    if directions.shape[-1] != 3:
        raise ValueError(f'directions must be [..., 3], got {list(directions.shape)}')
    x, y, z = directions.unbind(-1)
    terms = [torch.full_like(x, 0.28209479177387814)]
    if degree >= 1:
        terms += [-0.4886025119029199 * y, 0.4886025119029199 * z, -0.4886025119029199 * x]
    if degree >= 2:
        xx, yy, zz = x * x, y * y, z * z
        terms += [1.0925484305920792 * x * y, -1.0925484305920792 * y * z,
                  0.31539156525252005 * (2 * zz - xx - yy), -1.0925484305920792 * x * z,
                  0.5462742152960396 * (xx - yy)]
    if degree >= 3:
        terms += [-0.5900435899266435 * y * (3 * xx - yy), 2.890611442640554 * x * y * z,
                  -0.4570457994644658 * y * (4 * zz - xx - yy), 0.3731763325901154 * z * (2 * zz - 3 * xx - 3 * yy),
                  -0.4570457994644658 * x * (4 * zz - xx - yy), 1.445305721320277 * z * (xx - yy),
                  -0.5900435899266435 * x * (xx - 3 * yy)]
    if degree >= 4:
        terms += [2.5033429417967046 * x * y * (xx - yy), -1.7701307697799304 * y * z * (3 * xx - yy),
                  0.9461746957575601 * x * y * (7 * zz - 1), -0.6690465435572892 * y * z * (7 * zz - 3),
                  0.10578554691520431 * (zz * (35 * zz - 30) + 3), -0.6690465435572892 * x * z * (7 * zz - 3),
                  0.47308734787878004 * (xx - yy) * (7 * zz - 1), -1.7701307697799304 * x * z * (xx - 3 * yy),
                  0.6258357354491761 * (xx * (xx - 3 * yy) - yy * (3 * xx - yy))]
    return torch.stack(terms, dim=-1)


def sh_to_rgb(harmonics: Tensor, directions: Tensor) -> Tensor:
    """Colours ``[..., 3]`` of ``harmonics [..., 3, (d+1)^2]`` seen along ``directions [..., 3]``.

    ``directions`` (from the camera to the Gaussian) need not be normalised. As in 3DGS and
    gsplat, the colour is ``max(sum_k c_k Y_k(direction) + 0.5, 0)``.
    """
    num_sh = harmonics.shape[-1]
    degree = round(num_sh ** 0.5) - 1
    if harmonics.shape[-2] != 3 or (degree + 1) ** 2 != num_sh:
        raise ValueError(f'harmonics must be [..., 3, (d+1)^2], got {list(harmonics.shape)}')
    basis = sh_basis(torch.nn.functional.normalize(directions, dim=-1), degree)
    return (torch.einsum('...ck,...k->...c', harmonics, basis) + 0.5).clamp_min(0.0)
