"""Gaussian renderers: the torch compositor against a brute-force reference, culling, chunking, gsplat."""
from __future__ import annotations

import pytest
import torch

from videoscene.registry import RENDERERS
from videoscene.renderers import GsplatRenderer, TorchRenderer
from videoscene.renderers.spherical_harmonics import sh_basis
from videoscene.structures import Gaussians

SH_C0 = 0.28209479177387814


def look_at(eye, target, up=(0.0, -1.0, 0.0)) -> torch.Tensor:
    """OpenCV camera-to-world matrix of a camera at ``eye`` looking at ``target``."""
    eye, target, up = (torch.tensor(v, dtype=torch.float64) for v in (eye, target, up))
    forward = torch.nn.functional.normalize(target - eye, dim=0)
    right = torch.nn.functional.normalize(torch.linalg.cross(forward, up), dim=0)
    down = torch.linalg.cross(forward, right)
    pose = torch.eye(4, dtype=torch.float64)
    pose[:3, :3] = torch.stack([right, down, forward], dim=1)
    pose[:3, 3] = eye
    return pose


def random_scene(batch: int, count: int, degree: int = 2, seed: int = 0) -> Gaussians:
    """Gaussians around the origin, a few behind or beside the cameras, some opaque enough to stop pixels."""
    gen = torch.Generator().manual_seed(seed)
    means = torch.randn(batch, count, 3, generator=gen, dtype=torch.float64) * torch.tensor([0.5, 0.5, 1.5])
    means[:, :8] += torch.tensor([0.0, 0.0, -8.0])  # behind the cameras at z = -5
    factors = torch.randn(batch, count, 3, 3, generator=gen, dtype=torch.float64) * 0.08
    covariances = factors @ factors.transpose(-1, -2) + 1e-3 * torch.eye(3, dtype=torch.float64)
    harmonics = torch.randn(batch, count, 3, (degree + 1) ** 2, generator=gen, dtype=torch.float64) * 0.3
    opacities = torch.rand(batch, count, generator=gen, dtype=torch.float64)
    opacities[:, ::5] = 0.9995  # alpha clamps at 0.999 and pixels terminate early
    return Gaussians(means, covariances, harmonics, opacities)


def cameras(batch: int, views: int):
    poses = [look_at((0.4 * v - 0.3, 0.1 * v, -5.0), (0.0, 0.0, 0.0)) for v in range(views)]
    extrinsics = torch.stack(poses).expand(batch, views, 4, 4).clone()
    intrinsics = torch.tensor([[0.9, 0.0, 0.52], [0.0, 0.95, 0.47], [0.0, 0.0, 1.0]], dtype=torch.float64)
    intrinsics = intrinsics.expand(batch, views, 3, 3).clone()
    near = torch.full((batch, views), 1.0, dtype=torch.float64)
    far = torch.full((batch, views), 6.5, dtype=torch.float64)  # some Gaussians lie beyond
    return extrinsics, intrinsics, near, far


def reference_render(gaussians: Gaussians, extrinsics, intrinsics, image_shape, near, far, background):
    """Every Gaussian against every pixel, no tiles or boxes, gsplat's rules written out plainly.

    Returns colour, depth and how many pixels stopped early (transmittance would fall to 1e-4).
    """
    from gsplat.cuda._torch_impl import _spherical_harmonics

    height, width = image_shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64),
                            indexing='ij')
    centres = torch.stack([xs, ys], dim=-1).reshape(-1, 2) + 0.5
    colors, depths, stopped = [], [], 0
    for b in range(extrinsics.shape[0]):
        for v in range(extrinsics.shape[1]):
            w2c = torch.linalg.inv(extrinsics[b, v])
            rotation, translation = w2c[:3, :3], w2c[:3, 3]
            points = gaussians.means[b] @ rotation.T + translation
            cov = rotation @ gaussians.covariances[b] @ rotation.T
            fx, fy = intrinsics[b, v, 0, 0] * width, intrinsics[b, v, 1, 1] * height
            cx, cy = intrinsics[b, v, 0, 2] * width, intrinsics[b, v, 1, 2] * height
            x, y, z = points.unbind(-1)
            tx = z * torch.clamp(x / z, -(cx / fx + 0.15 * width / fx), (width - cx) / fx + 0.15 * width / fx)
            ty = z * torch.clamp(y / z, -(cy / fy + 0.15 * height / fy), (height - cy) / fy + 0.15 * height / fy)
            jac = torch.zeros(len(z), 2, 3, dtype=z.dtype)
            jac[:, 0, 0], jac[:, 0, 2] = fx / z, -fx * tx / z ** 2
            jac[:, 1, 1], jac[:, 1, 2] = fy / z, -fy * ty / z ** 2
            cov2d = jac @ cov @ jac.transpose(1, 2) + 0.3 * torch.eye(2, dtype=z.dtype)
            conic = torch.linalg.inv(cov2d)
            mean2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
            rgb = _spherical_harmonics(gaussians.sh_degree, gaussians.means[b] - extrinsics[b, v, :3, 3],
                                       gaussians.harmonics[b].transpose(-1, -2))
            rgb = (rgb + 0.5).clamp_min(0)
            delta = mean2d[None] - centres[:, None]  # [pixels, G, 2]
            sigma = 0.5 * torch.einsum('pgi,gij,pgj->pg', delta, conic, delta)
            alpha = torch.clamp_max(gaussians.opacities[b] * torch.exp(-sigma), 0.999)
            valid = (z >= near[b, v]) & (z <= far[b, v]) & (torch.linalg.det(cov2d) > 0)
            considered = valid & (sigma >= 0) & (alpha >= 1 / 255)
            order = torch.argsort(z)
            alpha = torch.where(considered, alpha, 0)[:, order]
            in_front = torch.cumprod(torch.cat([torch.ones_like(alpha[:, :1]), 1 - alpha[:, :-1]], dim=1), dim=1)
            drawn = considered[:, order] & (in_front * (1 - alpha) > 1e-4)
            stopped += int((considered[:, order] & ~drawn).any(dim=1).sum())
            weights = torch.where(drawn, alpha * in_front, 0)
            remaining = torch.where(drawn, 1 - alpha, 1).prod(dim=1)
            colors.append(weights @ rgb[order] + remaining[:, None] * background)
            depths.append(weights @ z[order] / (1 - remaining).clamp_min(1e-10))
    batch, views = extrinsics.shape[:2]
    color = torch.stack(colors).reshape(batch, views, height, width, 3).permute(0, 1, 4, 2, 3)
    return color, torch.stack(depths).reshape(batch, views, height, width), stopped


def leaves(gaussians: Gaussians) -> Gaussians:
    return Gaussians(*(t.detach().clone().requires_grad_(True) for t in
                       (gaussians.means, gaussians.covariances, gaussians.harmonics, gaussians.opacities)))


@pytest.fixture(scope='module')
def dense_case():
    """A random scene, its cameras, loss weights, and the reference outputs and gradients."""
    gaussians = random_scene(batch=2, count=300)
    extrinsics, intrinsics, near, far = cameras(batch=2, views=2)
    background = torch.tensor([0.1, 0.3, 0.6], dtype=torch.float64)
    gen = torch.Generator().manual_seed(1)
    weights = (torch.rand(2, 2, 3, 32, 32, generator=gen, dtype=torch.float64),
               torch.rand(2, 2, 32, 32, generator=gen, dtype=torch.float64))
    ref = leaves(gaussians)
    color, depth, stopped = reference_render(ref, extrinsics, intrinsics, (32, 32), near, far, background)
    ((color * weights[0]).sum() + (depth * weights[1]).sum()).backward()
    return dict(gaussians=gaussians, cameras=(extrinsics, intrinsics, (32, 32), near, far), background=background,
                weights=weights, color=color.detach(), depth=depth.detach(), stopped=stopped, reference=ref)


@pytest.mark.parametrize('budgets', [None, (3000, 0, 200, 500)], ids=['default', 'small-budgets'])
def test_torch_renderer_matches_the_dense_reference_with_gradients(dense_case, monkeypatch, budgets):
    from videoscene.renderers import torch_renderer
    if budgets is not None:  # many slabs (later ones skip stopped pixels), split blocks, many pixel runs
        names = ('_CANDIDATES_PER_SLAB', '_CANDIDATES_PER_PIXEL_PER_SLAB', '_CANDIDATES_PER_STEP', '_PAIRS_PER_RUN')
        for name, value in zip(names, budgets):
            monkeypatch.setattr(torch_renderer, name, value)
    case = dense_case
    ours = leaves(case['gaussians'])
    out = TorchRenderer(background=tuple(case['background'].tolist())).render(ours, *case['cameras'])

    torch.testing.assert_close(out.color, case['color'], rtol=1e-9, atol=1e-9)
    torch.testing.assert_close(out.depth, case['depth'], rtol=1e-9, atol=1e-9)
    drawn = (case['depth'] > 0).float().mean()
    assert 0.3 < drawn < 0.95, f'the scene should cover part of the views, covers {drawn:.2f}'
    assert case['stopped'] > 20, f'early termination should occur in the scene, {case["stopped"]} pixels stopped'

    ((out.color * case['weights'][0]).sum() + (out.depth * case['weights'][1]).sum()).backward()
    for name in ('means', 'covariances', 'harmonics', 'opacities'):
        ours_grad, ref_grad = getattr(ours, name).grad, getattr(case['reference'], name).grad
        scale = float(ref_grad.abs().max())
        assert scale > 0, name
        torch.testing.assert_close(ours_grad, ref_grad, rtol=1e-7, atol=1e-10 * scale, msg=f'gradient of {name}')


def test_float32_rendering_is_close_to_float64():
    gaussians = random_scene(batch=1, count=200, seed=3)
    extrinsics, intrinsics, near, far = cameras(batch=1, views=2)
    renderer = TorchRenderer()
    exact = renderer.render(gaussians, extrinsics, intrinsics, (24, 32), near, far)
    single = renderer.render(gaussians.to(torch.float32), extrinsics.float(), intrinsics.float(), (24, 32),
                             near.float(), far.float())
    torch.testing.assert_close(single.color, exact.color.float(), atol=2e-3, rtol=0)
    assert single.color.dtype == torch.float32


def test_background_shows_where_there_are_no_gaussians():
    # Projects onto the centre (16.5, 16.5) of pixel (16, 16).
    one = Gaussians(means=torch.tensor([[[0.046875, 0.046875, 3.0]]]), covariances=0.01 * torch.eye(3)[None, None],
                    harmonics=torch.zeros(1, 1, 3, 1), opacities=torch.tensor([[0.8]]))
    extrinsics = torch.eye(4)[None, None]
    intrinsics = torch.tensor([[[[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]]])
    near, far = torch.tensor([[0.5]]), torch.tensor([[10.0]])
    background = (0.2, 0.5, 0.9)
    out = TorchRenderer(background=background).render(one, extrinsics, intrinsics, (32, 32), near, far)
    expected = torch.tensor(background)[:, None, None].expand(3, 32, 32)
    corner = (slice(None), slice(0, 6), slice(0, 6))
    torch.testing.assert_close(out.color[0, 0][corner], expected[corner])
    assert (out.depth[0, 0][corner[1:]] == 0).all()
    # At its centre the Gaussian (SH colour 0.5 grey, alpha 0.8) covers 80 % of the background.
    centre = out.color[0, 0, :, 16, 16]
    torch.testing.assert_close(centre, 0.8 * 0.5 + 0.2 * torch.tensor(background), atol=1e-3, rtol=0)
    torch.testing.assert_close(out.depth[0, 0, 16, 16], torch.tensor(3.0), atol=1e-2, rtol=0)


@pytest.mark.parametrize('depth, near, far, drawn', [(3.0, 1.0, 10.0, True), (-3.0, 1.0, 10.0, False),
                                                     (3.0, 3.5, 10.0, False), (3.0, 1.0, 2.5, False)])
def test_gaussians_behind_the_camera_or_outside_near_far_are_not_drawn(depth, near, far, drawn):
    one = Gaussians(means=torch.tensor([[[0.0, 0.0, depth]]]), covariances=0.05 * torch.eye(3)[None, None],
                    harmonics=torch.full((1, 1, 3, 1), 0.5 / SH_C0), opacities=torch.tensor([[0.9]]))
    out = TorchRenderer().render(one, torch.eye(4)[None, None],
                                 torch.tensor([[[[1.0, 0.0, 0.5], [0.0, 1.0, 0.5], [0.0, 0.0, 1.0]]]]), (16, 16),
                                 torch.tensor([[near]]), torch.tensor([[far]]))
    assert bool((out.color > 0).any()) == drawn
    assert bool((out.depth > 0).any()) == drawn


def test_an_isotropic_gaussian_lands_on_its_pinhole_projection():
    pose = look_at((0.3, -0.2, -2.0), (0.1, 0.05, 0.4))
    world_point = torch.tensor([0.25, -0.1, 1.3], dtype=torch.float64)
    height, width = 40, 48
    intrinsics = torch.tensor([[0.8, 0.0, 0.45], [0.0, 0.9, 0.55], [0.0, 0.0, 1.0]], dtype=torch.float64)
    camera_point = torch.linalg.inv(pose)[:3] @ torch.cat([world_point, world_point.new_ones(1)])
    u = intrinsics[0, 0] * width * camera_point[0] / camera_point[2] + intrinsics[0, 2] * width
    v = intrinsics[1, 1] * height * camera_point[1] / camera_point[2] + intrinsics[1, 2] * height
    assert 5 < u < width - 5 and 5 < v < height - 5
    assert 0.1 < u % 1 < 0.9 and 0.1 < v % 1 < 0.9, 'keep the projection away from pixel borders'

    one = Gaussians(means=world_point[None, None], covariances=4e-4 * torch.eye(3, dtype=torch.float64)[None, None],
                    harmonics=torch.full((1, 1, 3, 1), 0.5 / SH_C0, dtype=torch.float64),
                    opacities=torch.tensor([[0.5]], dtype=torch.float64))
    near, far = torch.tensor([[0.1]], dtype=torch.float64), torch.tensor([[10.0]], dtype=torch.float64)
    out = TorchRenderer().render(one, pose[None, None], intrinsics[None, None], (height, width), near, far)
    alpha = out.color[0, 0, 0]  # white Gaussian over black: colour == alpha
    row, col = divmod(int(alpha.argmax()), width)
    assert (col, row) == (int(u), int(v))
    ys, xs = torch.meshgrid(torch.arange(height) + 0.5, torch.arange(width) + 0.5, indexing='ij')
    centroid = torch.stack([(alpha * xs).sum(), (alpha * ys).sum()]) / alpha.sum()
    torch.testing.assert_close(centroid, torch.stack([u, v]), atol=0.05, rtol=0)


def test_chunked_rendering_equals_unchunked():
    gaussians = random_scene(batch=2, count=150, seed=5)
    extrinsics, intrinsics, near, far = cameras(batch=2, views=3)
    near[1, 2] = 2.0  # a per-view plane must stay with its view
    whole = TorchRenderer(views_per_chunk=3).render(gaussians, extrinsics, intrinsics, (20, 24), near, far)
    parts = TorchRenderer(views_per_chunk=1).render(gaussians, extrinsics, intrinsics, (20, 24), near, far)
    torch.testing.assert_close(parts.color, whole.color, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(parts.depth, whole.depth, rtol=1e-10, atol=1e-10)
    assert not torch.allclose(whole.color[1, 2], whole.color[0, 2])


def test_non_finite_gaussians_are_refused_with_the_field_named():
    gaussians = random_scene(batch=1, count=20)
    gaussians.opacities[0, 3] = float('nan')
    extrinsics, intrinsics, near, far = cameras(batch=1, views=1)
    with pytest.raises(ValueError, match='opacities: 1'):
        TorchRenderer().render(gaussians, extrinsics, intrinsics, (8, 8), near, far)


def test_bad_camera_shapes_are_named():
    gaussians = random_scene(batch=1, count=10)
    extrinsics, intrinsics, near, far = cameras(batch=1, views=2)
    with pytest.raises(ValueError, match='intrinsics'):
        TorchRenderer().render(gaussians, extrinsics, intrinsics[:, :1], (8, 8), near, far)
    with pytest.raises(ValueError, match='near'):
        TorchRenderer().render(gaussians, extrinsics, intrinsics, (8, 8), -near, far)


def test_renderers_are_registered_and_configurable():
    renderer = RENDERERS.build(dict(type='torch', background=(1.0, 1.0, 1.0), views_per_chunk=2))
    assert isinstance(renderer, TorchRenderer) and renderer.background == (1.0, 1.0, 1.0)
    assert isinstance(RENDERERS.build(dict(type='gsplat')), GsplatRenderer)


def test_projection_matches_gsplats_torch_reference():
    from gsplat.cuda._torch_impl import _fully_fused_projection

    from videoscene.renderers.torch_renderer import project_gaussians

    gaussians = random_scene(batch=1, count=200, seed=11)
    # Wide Gaussians far to the sides: beyond 1.3x the field of view, where the Jacobian is clamped.
    gaussians.means[0, :6] = torch.tensor([[s * 5.0, 0.3 * k, 0.0] for s in (-1, 1) for k in range(3)])
    gaussians.covariances[0, :6] = 4.0 * torch.eye(3, dtype=torch.float64)
    extrinsics, intrinsics, _, _ = cameras(batch=1, views=2)
    viewmats = torch.linalg.inv(extrinsics[0])
    pixels_k = intrinsics[0] * torch.tensor([40.0, 30.0, 1.0], dtype=torch.float64)[:, None]
    radii, means2d, depths, conics, _ = _fully_fused_projection(
        gaussians.means[0], gaussians.covariances[0], viewmats, pixels_k, 40, 30, near_plane=1.0, far_plane=6.5)
    ours_means2d, ours_cov2d, ours_depths = project_gaussians(
        gaussians.means[0], gaussians.covariances[0], viewmats[:, None], pixels_k[:, None, [0, 1], [0, 1]],
        pixels_k[:, None, :2, 2], (30, 40))
    valid = (radii > 0).all(-1)
    assert valid.sum() > 100 and valid[:, :6].sum() >= 6
    ours_conics = torch.linalg.inv(ours_cov2d)
    torch.testing.assert_close(ours_means2d[valid], means2d[valid])
    torch.testing.assert_close(ours_depths, depths)
    torch.testing.assert_close(ours_conics[..., [0, 0, 1], [0, 1, 1]][valid], conics[valid])


@pytest.mark.parametrize('degree', [0, 1, 2, 3, 4])
def test_sh_basis_matches_gsplat(degree):
    from gsplat.cuda._torch_impl import _eval_sh_bases_fast

    directions = torch.nn.functional.normalize(torch.randn(64, 3, dtype=torch.float64), dim=-1)
    torch.testing.assert_close(sh_basis(directions, degree), _eval_sh_bases_fast((degree + 1) ** 2, directions))


def test_gsplat_arguments_follow_gsplats_conventions():
    gaussians = random_scene(batch=2, count=30, degree=2)
    extrinsics, intrinsics, _, _ = cameras(batch=2, views=3)
    args = GsplatRenderer(background=(0.1, 0.2, 0.3)).rasterization_arguments(
        gaussians, extrinsics[1], intrinsics[1], (24, 40), batch_index=1, near_plane=1.0, far_plane=6.5)
    # viewmats are world-to-camera: they take each camera centre to the origin.
    centres = torch.cat([extrinsics[1, :, :3, 3], torch.ones(3, 1, dtype=torch.float64)], dim=-1)
    origins = (args['viewmats'] @ centres[..., None])[:, :3, 0]
    torch.testing.assert_close(origins, torch.zeros(3, 3, dtype=torch.float64))
    torch.testing.assert_close(args['Ks'][:, 0, 0], intrinsics[1, :, 0, 0] * 40)
    torch.testing.assert_close(args['Ks'][:, 1, 2], intrinsics[1, :, 1, 2] * 24)
    assert args['colors'].shape == (30, 9, 3)  # [G, K, 3]
    torch.testing.assert_close(args['colors'][4, 7, 2], gaussians.harmonics[1, 4, 2, 7])
    assert args['sh_degree'] == 2 and torch.equal(args['covars'], gaussians.covariances[1])
    torch.testing.assert_close(args['backgrounds'], torch.tensor([[0.1, 0.2, 0.3]] * 3, dtype=torch.float64))
    assert (args['width'], args['height'], args['render_mode']) == (40, 24, 'RGB+ED')


def test_gsplat_renderer_refuses_cpu_tensors():
    gaussians = random_scene(batch=1, count=10).to(torch.float32)
    extrinsics, intrinsics, near, far = cameras(batch=1, views=1)
    with pytest.raises(RuntimeError, match='CUDA'):
        GsplatRenderer().render(gaussians, extrinsics.float(), intrinsics.float(), (8, 8), near.float(), far.float())


@pytest.mark.skipif(not torch.cuda.is_available(), reason='gsplat rasterisation needs a CUDA device')
def test_gsplat_renderer_matches_the_torch_renderer_on_cuda():
    gaussians = random_scene(batch=2, count=400, degree=3, seed=7).to(device='cuda', dtype=torch.float32)
    extrinsics, intrinsics, near, far = (t.to(device='cuda', dtype=torch.float32) for t in cameras(batch=2, views=3))
    near[0, 1] = 2.0
    args = (extrinsics, intrinsics, (48, 64), near, far)
    fast = GsplatRenderer(background=(0.2, 0.4, 0.6)).render(gaussians, *args)
    slow = TorchRenderer(background=(0.2, 0.4, 0.6)).render(gaussians, *args)
    # Same rules; only pairs at the 1/255 or 1e-4 thresholds may flip (gsplat uses a fast exp).
    color_error = (fast.color - slow.color).abs()
    assert float(color_error.mean()) < 2e-4
    assert float((color_error > 1e-3).float().mean()) < 5e-3
    depth_error = (fast.depth - slow.depth).abs() / slow.depth.clamp_min(1e-3)
    assert float((depth_error > 1e-3).float().mean()) < 5e-3
