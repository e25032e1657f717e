"""Gaussians: PLY export/import in the 3D Gaussian splatting layout, shape and finiteness checks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from videoscene.geometry.rotations import quaternion_to_matrix
from videoscene.structures import Gaussians


def random_gaussians(batch: int = 2, count: int = 50, degree: int = 3, seed: int = 0) -> Gaussians:
    gen = torch.Generator().manual_seed(seed)
    rotations = quaternion_to_matrix(torch.randn(batch, count, 4, generator=gen))
    scales = torch.exp(torch.randn(batch, count, 3, generator=gen) - 3)
    covariances = rotations @ torch.diag_embed(scales ** 2) @ rotations.transpose(-1, -2)
    return Gaussians(means=torch.randn(batch, count, 3, generator=gen), covariances=covariances,
                     harmonics=torch.randn(batch, count, 3, (degree + 1) ** 2, generator=gen),
                     opacities=torch.rand(batch, count, generator=gen) * 0.98 + 0.01)


def read_header(path) -> list[str]:
    with open(path, 'rb') as file:
        lines = []
        while not lines or lines[-1] != 'end_header':
            lines.append(file.readline().decode('ascii').strip())
    return lines


@pytest.mark.parametrize('degree', [0, 1, 4])
def test_round_trip_reproduces_the_gaussians(tmp_path, degree):
    gaussians = random_gaussians(degree=degree)
    path = tmp_path / 'scene.ply'
    gaussians.save_ply(path, batch_index=1)
    loaded = Gaussians.load_ply(path)
    assert loaded.means.shape == (1, 50, 3) and loaded.sh_degree == degree
    torch.testing.assert_close(loaded.means[0], gaussians.means[1])
    torch.testing.assert_close(loaded.harmonics[0], gaussians.harmonics[1])
    torch.testing.assert_close(loaded.opacities[0], gaussians.opacities[1], atol=1e-6, rtol=1e-5)
    scale = gaussians.covariances[1].abs().amax(dim=(-1, -2), keepdim=True)
    torch.testing.assert_close(loaded.covariances[0] / scale, gaussians.covariances[1] / scale, atol=1e-5, rtol=0)


def test_header_names_the_standard_properties_in_order(tmp_path):
    path = tmp_path / 'scene.ply'
    random_gaussians(count=7, degree=2).save_ply(path)
    header = read_header(path)
    assert header[:3] == ['ply', 'format binary_little_endian 1.0', 'element vertex 7']
    names = [line.split()[-1] for line in header if line.startswith('property float ')]
    assert names == (['x', 'y', 'z', 'nx', 'ny', 'nz', 'f_dc_0', 'f_dc_1', 'f_dc_2']
                     + [f'f_rest_{i}' for i in range(24)]
                     + ['opacity', 'scale_0', 'scale_1', 'scale_2', 'rot_0', 'rot_1', 'rot_2', 'rot_3'])
    assert path.stat().st_size == len('\n'.join(header)) + 1 + 7 * len(names) * 4


def test_stored_values_follow_the_3dgs_encoding(tmp_path):
    gaussians = random_gaussians(batch=1, count=5, degree=1)
    path = tmp_path / 'scene.ply'
    gaussians.save_ply(path)
    header = read_header(path)
    names = [line.split()[-1] for line in header if line.startswith('property')]
    data = np.frombuffer(path.read_bytes()[len('\n'.join(header)) + 1:], dtype='<f4').reshape(5, len(names))
    column = {name: torch.from_numpy(data[:, i].copy()) for i, name in enumerate(names)}
    torch.testing.assert_close(torch.sigmoid(column['opacity']), gaussians.opacities[0], atol=1e-6, rtol=1e-5)
    # f_rest is channel-major: red's three degree-1 coefficients, then green's, then blue's.
    torch.testing.assert_close(column['f_rest_3'], gaussians.harmonics[0, :, 1, 1])
    torch.testing.assert_close(column['f_dc_2'], gaussians.harmonics[0, :, 2, 0])
    # Scales are log standard deviations: their squares are the covariance eigenvalues.
    variances = torch.stack([column[f'scale_{i}'] for i in range(3)], -1).double().exp().square()
    eigenvalues = torch.linalg.eigvalsh(gaussians.covariances[0].double())
    torch.testing.assert_close(variances.sort(-1).values, eigenvalues, rtol=1e-4, atol=0)
    quaternions = torch.stack([column[f'rot_{i}'] for i in range(4)], -1)
    torch.testing.assert_close(quaternions.norm(dim=-1), torch.ones(5), atol=1e-6, rtol=0)


def test_reflected_eigenvectors_become_a_proper_rotation(tmp_path):
    # eigh may return a left-handed basis; the exported rotation must still rebuild the covariance.
    diagonal = torch.diag(torch.tensor([1e-2, 4e-2, 9e-2]))
    reflected = torch.diag(torch.tensor([-1.0, 1.0, 1.0]))
    covariances = torch.stack([diagonal, reflected @ diagonal @ reflected])[None]
    gaussians = Gaussians(torch.zeros(1, 2, 3), covariances, torch.zeros(1, 2, 3, 1), torch.full((1, 2), 0.5))
    gaussians.save_ply(tmp_path / 'g.ply')
    torch.testing.assert_close(Gaussians.load_ply(tmp_path / 'g.ply').covariances, covariances, atol=1e-7, rtol=1e-5)


def test_load_rejects_files_that_are_not_3dgs(tmp_path):
    path = tmp_path / 'ascii.ply'
    path.write_bytes(b'ply\nformat ascii 1.0\nelement vertex 1\nproperty float x\nend_header\n0\n')
    with pytest.raises(ValueError, match='binary_little_endian'):
        Gaussians.load_ply(path)
    path = tmp_path / 'points.ply'
    path.write_bytes(b'ply\nformat binary_little_endian 1.0\nelement vertex 1\nproperty float x\n'
                     b'property float y\nproperty float z\nend_header\n' + np.zeros(3, '<f4').tobytes())
    with pytest.raises(ValueError, match='missing PLY properties'):
        Gaussians.load_ply(path)


def test_non_finite_gaussians_are_counted_per_field():
    gaussians = random_gaussians(batch=2, count=10)
    assert gaussians.non_finite() == {}
    gaussians.check_finite()
    gaussians.means[0, 2, 1] = float('nan')
    gaussians.harmonics[1, 4, 0, 3] = float('inf')
    gaussians.harmonics[1, 4, 2, 0] = float('nan')  # same Gaussian: counted once
    gaussians.harmonics[0, 7, 1, 1] = -float('inf')
    assert gaussians.non_finite() == {'means': 1, 'harmonics': 2}
    with pytest.raises(ValueError, match=r'means: 1, harmonics: 2'):
        gaussians.check_finite()


def test_shape_check_names_the_bad_field():
    gaussians = random_gaussians(batch=1, count=4)
    gaussians.check_shapes()
    gaussians.opacities = gaussians.opacities[:, :3]
    with pytest.raises(ValueError, match='opacities'):
        gaussians.check_shapes()
