"""Pure-torch, differentiable Gaussian splatting for the CPU that follows gsplat's compositing rules.

The rules are those of gsplat 1.5.3 (``rasterization`` in classic mode, ``eps2d=0.3``):

* a Gaussian is drawn in a view when the camera z of its centre lies in ``[near, far]``;
* EWA projection ``Sigma_2d = J R Sigma R^T J^T + 0.3 I`` with the perspective Jacobian ``J`` at the
  centre, whose ``x/z`` and ``y/z`` are clamped to 1.3 times the half field of view;
* a pixel ``(x, y)`` is sampled at its centre ``(x + 0.5, y + 0.5)``; ``sigma = d^T Sigma_2d^-1 d / 2``,
  ``alpha = min(0.999, opacity * exp(-sigma))``; pairs with ``alpha < 1/255`` are skipped;
* front-to-back blending in camera-z order; a pixel stops at the first Gaussian that would bring
  its transmittance to 1e-4 or below (that Gaussian is not drawn);
* the colour is the SH colour along the ray from the camera to the centre, ``+ 0.5``, clamped at 0.

How: gsplat's 16x16 tiles make every pixel of a tile test every Gaussian touching the tile, which
on a CPU wastes most of the work. This renderer lists the exact pixel-Gaussian pairs instead:

1. project every Gaussian without gradient to find the drawn (view, Gaussian) entries, sorted by
   view then depth (:func:`_visible_entries`);
2. project the drawn entries again, differentiably, to 2D means, conics, opacities, colours and
   depths (:func:`_project_entries`, recomputed in backward rather than stored);
3. cut each view's entries, front to back, into slabs of about ``_CANDIDATES_PER_SLAB`` candidate
   pixels; per slab (:class:`_EntryBoxes`): drop entries whose box holds only stopped pixels
   (a summed-area table), evaluate ``sigma`` on each box -- gsplat's opacity-aware radius
   ``min(3.33, sqrt(2 ln(255 opacity)))`` sigma bounds the ``alpha >= 1/255`` ellipse -- grouped by
   box size so that it broadcasts, keep the pairs above the threshold and sort them by
   (pixel, depth) with one integer sort;
4. blend them (:class:`_Rasterize`) in runs of whole pixels on top of the transmittance the slabs
   in front left, in log space with float64 segmented sums; the analytic backward walks the slabs
   back to front and recomputes the terms of the drawn pairs, of which it keeps 8 bytes each.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor
from torch.utils.checkpoint import checkpoint

from videoscene.registry import RENDERERS
from videoscene.structures import Gaussians

from .base import GaussianRenderer, RenderOutput, pixel_intrinsics
from .spherical_harmonics import sh_to_rgb

__all__ = ['TorchRenderer', 'project_gaussians']

EPS_2D = 0.3
ALPHA_THRESHOLD = 1.0 / 255.0
MAX_ALPHA = 0.999
MIN_TRANSMITTANCE = 1e-4
MAX_EXTEND = 3.33
# Candidate pixel-Gaussian pairs per slab of a chunk (bounds memory; later slabs skip stopped pixels),
# at least this many per pixel so that per-slab work over all pixels stays small.
_CANDIDATES_PER_SLAB = 1 << 21
_CANDIDATES_PER_PIXEL_PER_SLAB = 4
# Candidates evaluated at once within a slab (bounds the memory of one broadcast block).
_CANDIDATES_PER_STEP = 1 << 20
# Pairs blended at once (runs never cut a pixel; bounds the memory of blending and its backward).
_PAIRS_PER_RUN = 1 << 18


def project_gaussians(means: Tensor, covariances: Tensor, world_to_camera: Tensor, focal: Tensor,
                      principal: Tensor, image_shape: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor]:
    """EWA projection of 3D Gaussians into pinhole cameras; all leading dimensions broadcast.

    Args:
        means: ``[..., 3]`` world-space centres.
        covariances: ``[..., 3, 3]`` world-space covariances.
        world_to_camera: ``[..., 4, 4]`` OpenCV world-to-camera transforms.
        focal: ``[..., 2]`` focal lengths ``(fx, fy)`` in pixels.
        principal: ``[..., 2]`` principal point ``(cx, cy)`` in pixels.
        image_shape: ``(H, W)``.

    Returns:
        ``means2d [..., 2]`` in pixels, ``covariances2d [..., 2, 2]`` including the 0.3 low-pass
        and ``depths [...]`` (camera z).
    """
    height, width = image_shape
    rotation, translation = world_to_camera[..., :3, :3], world_to_camera[..., :3, 3]
    points = (rotation @ means[..., None])[..., 0] + translation
    x, y, z = points.unbind(-1)
    fx, fy = focal.unbind(-1)
    cx, cy = principal.unbind(-1)
    margin_x, margin_y = 0.15 * width / fx, 0.15 * height / fy  # 0.3 tan(half field of view)
    tx = z * torch.clamp(x / z, min=-(cx / fx + margin_x), max=(width - cx) / fx + margin_x)
    ty = z * torch.clamp(y / z, min=-(cy / fy + margin_y), max=(height - cy) / fy + margin_y)
    zero = torch.zeros_like(z)
    jacobian = torch.stack([fx / z, zero, -fx * tx / (z * z), zero, fy / z, -fy * ty / (z * z)], dim=-1)
    # J R Sigma R^T J^T, associated as (J R) Sigma (J R)^T: two small products instead of four.
    to_image = jacobian.unflatten(-1, (2, 3)) @ rotation
    eye = torch.eye(2, dtype=means.dtype, device=means.device)
    covariances2d = to_image @ covariances @ to_image.transpose(-1, -2) + EPS_2D * eye
    means2d = torch.stack([fx * x / z + cx, fy * y / z + cy], dim=-1)
    return means2d, covariances2d, z


def _determinant(covariances2d: Tensor) -> Tensor:
    return covariances2d[..., 0, 0] * covariances2d[..., 1, 1] - covariances2d[..., 0, 1] * covariances2d[..., 1, 0]


def _radii(covariances2d: Tensor, opacities: Tensor) -> Tensor:
    """gsplat's opacity-aware pixel radii ``[..., 2]``: they bound the ``alpha >= 1/255`` ellipse."""
    extend = (2 * torch.log(opacities / ALPHA_THRESHOLD).clamp_min(0)).sqrt().clamp_max(MAX_EXTEND)
    variances = torch.diagonal(covariances2d, dim1=-2, dim2=-1).clamp_min(0)
    return torch.ceil(extend[..., None] * variances.sqrt())


def _falloff(dx: Tensor, dy: Tensor, half_a: Tensor, b: Tensor, half_c: Tensor) -> Tensor:
    """``sigma = (a dx^2 + 2 b dx dy + c dy^2) / 2`` for a conic ``(a, b, c)``.

    The one formula used everywhere: evaluated on broadcast boxes or on gathered pairs it gives
    bitwise the same values.
    """
    return half_a * dx * dx + half_c * dy * dy + b * dx * dy


@torch.no_grad()
def _visible_entries(gaussians: Gaussians, world_to_camera: Tensor, focal: Tensor, principal: Tensor,
                     near: Tensor, far: Tensor, image_shape: tuple[int, int]) -> tuple[Tensor, Tensor]:
    """Image and Gaussian indices ``[E]`` of the drawn (image, Gaussian) entries, sorted by (image, depth).

    Cameras are ``[B, V, ...]``; images are numbered ``b * V + v``. A Gaussian is drawn in a view
    when its centre's camera z lies in ``[near, far]``, its 2D covariance is positive definite, its
    opacity reaches 1/255 and its pixel box overlaps the image (gsplat's culling).
    """
    height, width = image_shape
    batch, views = world_to_camera.shape[:2]
    images, indices = [], []
    for b in range(batch):
        for v in range(views):
            means2d, covariances2d, depth = project_gaussians(
                gaussians.means[b], gaussians.covariances[b], world_to_camera[b, v], focal[b, v], principal[b, v],
                image_shape)
            radii = _radii(covariances2d, gaussians.opacities[b])
            low, high = means2d - radii, means2d + radii
            drawn = ((depth >= near[b, v]) & (depth <= far[b, v]) & (_determinant(covariances2d) > 0)
                     & (gaussians.opacities[b] >= ALPHA_THRESHOLD) & (radii > 0).any(-1)
                     & (high[:, 0] > 0) & (low[:, 0] < width) & (high[:, 1] > 0) & (low[:, 1] < height))
            drawn_indices = drawn.nonzero()[:, 0]
            order = torch.argsort(depth[drawn_indices], stable=True)
            indices.append(drawn_indices[order])
            images.append(torch.full_like(drawn_indices, b * views + v))
    return torch.cat(images), torch.cat(indices)


def _box_ladder(limit: int, device: torch.device) -> Tensor:
    """Box sides that candidate boxes are rounded up to: 1..8, then about 1.25x apart, up to ``limit``."""
    sides = [1]
    while sides[-1] < limit:
        sides.append(sides[-1] + 1 if sides[-1] < 8 else min(limit, math.ceil(sides[-1] * 1.25)))
    return torch.tensor(sides, device=device)


def _conic_terms(conics: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(a / 2, b, c / 2)`` of conics ``[..., 3]`` (exact halving, so listing and blending agree bitwise)."""
    a, b, c = conics.unbind(-1)
    return 0.5 * a, b, 0.5 * c


def _alpha(sigma: Tensor, opacities: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``exp(-sigma)``, ``opacity exp(-sigma)`` and ``alpha = min(0.999, opacity exp(-sigma))``."""
    falloff = torch.exp(-sigma)
    raw = opacities * falloff
    return falloff, raw, raw.clamp_max(MAX_ALPHA)


def _segment_scan(values: Tensor, pixels: Tensor, span: int) -> tuple[Tensor, Tensor]:
    """Exclusive cumulative sums of pixel-sorted ``values [P]`` restarted at each pixel, and the
    per-pixel totals ``[span]`` (``pixels`` in ``[0, span)``); float64, so long sums stay exact."""
    values = values.double()
    totals = torch.bincount(pixels, weights=values, minlength=span)
    starts = torch.cumsum(totals, 0) - totals
    return torch.cumsum(values, 0) - values - starts.index_select(0, pixels), totals


def _pixel_runs(pixels: Tensor) -> list[tuple[slice, slice]]:
    """Split pixel-sorted pairs into runs of about ``_PAIRS_PER_RUN`` pairs that never cut a pixel.

    Returns, per run, the slice of its pairs and the window of pixels ``[first, last]`` they cover.
    """
    cuts = torch.arange(len(pixels) // _PAIRS_PER_RUN, device=pixels.device)[1:] * _PAIRS_PER_RUN
    cuts = torch.searchsorted(pixels, pixels[cuts]).tolist()  # back to the first pair of the cut pixel
    bounds = sorted({0, len(pixels), *cuts})
    if len(bounds) < 2:
        return []
    firsts = pixels[bounds[:-1]].tolist()
    lasts = pixels[[end - 1 for end in bounds[1:]]].tolist()
    return [(slice(lo, hi), slice(first, last + 1))
            for lo, hi, first, last in zip(bounds[:-1], bounds[1:], firsts, lasts)]


class _EntryBoxes:
    """Per-entry data for listing pixel-Gaussian pairs (entries in (image, depth) order).

    A box holds the ``2r`` pixels per axis whose centres lie within the radius ``r`` of the mean,
    clipped to the image. The block actually evaluated is a square whose ``side`` is the longer box
    side rounded up to :func:`_box_ladder`: few distinct sides mean few (vectorised) groups.
    """

    def __init__(self, means2d: Tensor, conics: Tensor, opacities: Tensor, radii: Tensor, images: Tensor,
                 image_shape: tuple[int, int]) -> None:
        height, width = image_shape
        self.images, self.image_shape = images, image_shape
        radii = radii.long()
        start = torch.floor(means2d + 0.5).long() - radii
        self.end = torch.minimum(start + 2 * radii, torch.tensor([width, height], device=start.device))
        self.start = start.clamp_min(0)
        ladder = _box_ladder(max(height, width), start.device)
        self.sides = ladder[torch.searchsorted(ladder, (self.end - self.start).amax(-1).clamp_min(1))]
        # A pair's sort key is (pixel << shift) | entry; entries ascend with depth within an image.
        self.shift = max(means2d.shape[0] - 1, 1).bit_length()
        key_bases = (images * (height * width) << self.shift) + torch.arange(means2d.shape[0], device=start.device)
        # Packed so that a step gathers its entries twice: (x0, y0, x1, y1, key base) and
        # (mean x, mean y, a/2, b, c/2, limit), where alpha >= 1/255  <=>  sigma <= ln(opacity * 255).
        self.integers = torch.cat([self.start, self.end, key_bases[:, None]], dim=1)
        self.reals = torch.stack([*means2d.unbind(-1), *_conic_terms(conics), torch.log(opacities / ALPHA_THRESHOLD)],
                                 dim=1)

    def slabs(self, num_images: int) -> list[Tensor]:
        """Entry indices split front to back, per image, into slabs of about ``_CANDIDATES_PER_SLAB``
        (or ``_CANDIDATES_PER_PIXEL_PER_SLAB`` per pixel) candidates; each slab stays in (image, depth) order."""
        if len(self.images) == 0:
            return []
        areas = self.sides * self.sides
        before = torch.cumsum(areas, 0) - areas  # candidates before each entry, all images
        counts = torch.bincount(self.images, minlength=num_images)
        first = (torch.cumsum(counts, 0) - counts).clamp_max(len(areas) - 1)
        within = before - before[first][self.images]  # candidates before each entry in its image
        height, width = self.image_shape
        budget = max(_CANDIDATES_PER_SLAB // num_images, _CANDIDATES_PER_PIXEL_PER_SLAB * height * width, 1)
        slab = within // budget  # per image
        order = torch.argsort(slab, stable=True)
        return [part for part in order.split(torch.bincount(slab).tolist()) if len(part)]

    def touching_alive(self, members: Tensor, done: Tensor) -> Tensor:
        """Which ``members`` have a pixel that is not ``done`` in their box (summed-area table of live pixels)."""
        height, width = self.image_shape
        live = (~done).view(-1, height, width).long()
        table = torch.nn.functional.pad(live.cumsum(1).cumsum(2), (1, 0, 1, 0)).flatten()
        base = self.images[members] * ((height + 1) * (width + 1))
        (x0, y0), (x1, y1) = self.start[members].unbind(-1), self.end[members].unbind(-1)
        corner = lambda x, y: table[base + y * (width + 1) + x]  # noqa: E731
        return corner(x1, y1) - corner(x0, y1) - corner(x1, y0) + corner(x0, y0) > 0

    def pairs(self, members: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """The pixel-Gaussian pairs of ``members`` with ``alpha >= 1/255``, sorted by pixel then depth.

        Returns ``pixels [P]`` (``image * H * W + y * W + x``), ``entries [P]`` and ``sigma [P]``.
        """
        width = self.image_shape[1]
        sides, group_of = torch.unique(self.sides[members], return_inverse=True)
        groups = members[torch.argsort(group_of)].split(torch.bincount(group_of, minlength=len(sides)).tolist())
        keys, sigmas = [], []
        for side, group in zip(sides.tolist(), groups):  # entries whose evaluated block is side x side
            offsets = torch.arange(side, device=group.device)
            for step in group.split(max(1, _CANDIDATES_PER_STEP // (side * side))):
                integers, reals = self.integers.index_select(0, step), self.reals.index_select(0, step)
                xs, ys = integers[:, 0:1] + offsets, integers[:, 1:2] + offsets  # [n, side]
                # Columns and rows past the clipped box get an infinite offset: their sigma is never kept.
                dx = torch.where(xs < integers[:, 2:3], reals[:, 0:1] - (xs.to(reals.dtype) + 0.5), math.inf)
                dy = torch.where(ys < integers[:, 3:4], reals[:, 1:2] - (ys.to(reals.dtype) + 0.5), math.inf)
                half_a, b, half_c, limit = reals[:, 2:, None, None].unbind(1)  # each [n, 1, 1]
                sigma = _falloff(dx[:, None, :], dy[:, :, None], half_a, b, half_c)
                keep = (sigma >= 0) & (sigma <= limit)
                key = (integers[:, 4:5] + ((ys * width) << self.shift))[:, :, None] + (xs << self.shift)[:, None, :]
                keys.append(torch.masked_select(key, keep))
                sigmas.append(torch.masked_select(sigma, keep))
        keys, order = torch.sort(torch.cat(keys))
        return keys >> self.shift, keys & ((1 << self.shift) - 1), torch.cat(sigmas).index_select(0, order)


def _pixel_centres(num_images: int, image_shape: tuple[int, int], dtype: torch.dtype,
                   device: torch.device) -> Tensor:
    """Centres ``(x + 0.5, y + 0.5)`` of every pixel of ``num_images`` images, ``[num_images * H * W, 2]``."""
    height, width = image_shape
    ys, xs = torch.meshgrid(torch.arange(height, dtype=dtype, device=device),
                            torch.arange(width, dtype=dtype, device=device), indexing='ij')
    return (torch.stack([xs, ys], dim=-1).reshape(-1, 2) + 0.5).repeat(num_images, 1)


class _Rasterize(torch.autograd.Function):
    """Lists and blends the pixel-Gaussian pairs of projected entries, slab by slab, front to back.

    Inputs: per entry (sorted by image, then depth) ``means2d [E, 2]``, ``conics [E, 3]``,
    ``opacities [E]``, ``features [E, C]``, ``images [E]``, ``radii [E, 2]``; ``image_shape``;
    ``num_images``. Outputs: ``blended [I * H * W, C] = sum_i w_i f_i`` and ``transmittance [I * H * W]``.

    Each slab (see :meth:`_EntryBoxes.slabs`) is blended on top of the
    transmittance the slabs in front left; pixels that stopped are skipped by later slabs, and
    entries whose box holds only stopped pixels are not listed at all. Backward walks the slabs
    back to front and recomputes their terms from what it kept: the drawn pairs (8 bytes each) and
    each slab's log transmittance in front of it (one value per pixel).
    """

    @staticmethod
    def forward(ctx, means2d: Tensor, conics: Tensor, opacities: Tensor, features: Tensor, images: Tensor,
                radii: Tensor, image_shape: tuple[int, int], num_images: int) -> tuple[Tensor, Tensor]:
        height, width = image_shape
        num_pixels = num_images * height * width
        boxes = _EntryBoxes(means2d, conics, opacities, radii, images, image_shape)
        per_entry = torch.cat([opacities[:, None], features], dim=1)
        log_transmittance = torch.zeros(num_pixels, dtype=torch.float64, device=means2d.device)
        done = torch.zeros(num_pixels, dtype=torch.bool, device=means2d.device)
        blended = features.new_zeros(num_pixels, features.shape[1])
        saved = []
        for index, members in enumerate(boxes.slabs(num_images)):
            if index > 0:
                members = members[boxes.touching_alive(members, done)]
                if len(members) == 0:
                    continue
            slab_pixels, slab_entries, slab_sigma = boxes.pairs(members)
            in_front = log_transmittance.masked_fill(done, -math.inf)  # what the slabs in front left
            drawn_pixels, drawn_entries = [], []
            for pairs, window in _pixel_runs(slab_pixels):
                pixels, entries = slab_pixels[pairs] - window.start, slab_entries[pairs]  # pixels local to window
                gathered = per_entry.index_select(0, entries)  # [P, 1 + C]
                _, _, alpha = _alpha(slab_sigma[pairs], gathered[:, 0])
                log_keep = torch.log1p(-alpha)
                ahead, _ = _segment_scan(log_keep, pixels, window.stop - window.start)
                log_t = (in_front[window].index_select(0, pixels) + ahead).to(alpha.dtype)
                drawn = log_t + log_keep > math.log(MIN_TRANSMITTANCE)
                # Drawn pairs have transmittance above 1e-4; the clamp keeps the others out of denormals.
                weights = torch.where(drawn, alpha * log_t.clamp_min(math.log(MIN_TRANSMITTANCE)).exp(), 0.0)
                blended[window].index_add_(0, pixels, weights[:, None] * gathered[:, 1:])
                log_transmittance[window].index_add_(0, pixels, torch.where(drawn, log_keep, 0.0).double())
                done[window][torch.masked_select(pixels, ~drawn)] = True
                if any(ctx.needs_input_grad):
                    drawn_pixels.append(torch.masked_select(slab_pixels[pairs], drawn).int())
                    drawn_entries.append(torch.masked_select(entries, drawn).int())
            if drawn_pixels:
                saved.append((torch.cat(drawn_pixels), torch.cat(drawn_entries), in_front.to(features.dtype)))
        transmittance = log_transmittance.exp().to(features.dtype)
        ctx.save_for_backward(means2d, conics, opacities, features, transmittance)
        ctx.slabs, ctx.image_shape, ctx.num_images = saved, image_shape, num_images
        return blended, transmittance

    @staticmethod
    def backward(ctx, grad_blended: Tensor, grad_transmittance: Tensor):
        means2d, conics, opacities, features, transmittance = ctx.saved_tensors
        num_pixels, channels = transmittance.shape[0], features.shape[1]
        centres = _pixel_centres(ctx.num_images, ctx.image_shape, means2d.dtype, means2d.device)
        table = torch.cat([means2d, conics, opacities[:, None], features], dim=1)
        grads = torch.zeros_like(table)
        final = transmittance * grad_transmittance
        behind_slabs = torch.zeros(num_pixels, dtype=torch.float64, device=means2d.device)  # later slabs' share
        for slab_pixels, slab_entries, in_front in reversed(ctx.slabs):
            for pairs, window in _pixel_runs(slab_pixels):
                pixels, entries = slab_pixels[pairs].long() - window.start, slab_entries[pairs].long()
                span = window.stop - window.start
                gathered = table.index_select(0, entries)  # [D, 6 + C]
                dx, dy = (gathered[:, :2] - centres[window].index_select(0, pixels)).unbind(-1)
                half_a, b, half_c = _conic_terms(gathered[:, 2:5])
                falloff, raw, alpha = _alpha(_falloff(dx, dy, half_a, b, half_c), gathered[:, 5])
                log_t = in_front[window].index_select(0, pixels) + _segment_scan(torch.log1p(-alpha), pixels, span)[0]
                pair_transmittance = log_t.to(alpha.dtype).exp()
                weights = alpha * pair_transmittance
                grad_pair = grad_blended[window].index_select(0, pixels)  # [D, C]
                dot = (gathered[:, 6:] * grad_pair).sum(-1)
                contribution = weights * dot
                ahead, totals = _segment_scan(contribution, pixels, span)
                # What the pairs behind each pair contribute, then the background through T_final.
                totals += behind_slabs[window]
                behind = (totals.index_select(0, pixels) - ahead - contribution).to(alpha.dtype)
                behind = behind + final[window].index_select(0, pixels)
                # d blended / d alpha_i = T_i f_i - (sum_{j behind i} w_j f_j + T_final bg) / (1 - alpha_i)
                grad_alpha = torch.where(raw <= MAX_ALPHA, pair_transmittance * dot - behind / (1 - alpha), 0.0)
                grad_sigma = -grad_alpha * raw
                grad_pairs = torch.empty_like(gathered)
                torch.mul(grad_sigma, 2 * half_a * dx + b * dy, out=grad_pairs[:, 0])
                torch.mul(grad_sigma, b * dx + 2 * half_c * dy, out=grad_pairs[:, 1])
                torch.mul(grad_sigma, 0.5 * dx * dx, out=grad_pairs[:, 2])
                torch.mul(grad_sigma, dx * dy, out=grad_pairs[:, 3])
                torch.mul(grad_sigma, 0.5 * dy * dy, out=grad_pairs[:, 4])
                torch.mul(grad_alpha, falloff, out=grad_pairs[:, 5])
                torch.mul(weights[:, None], grad_pair, out=grad_pairs[:, 6:])
                grads.index_add_(0, entries, grad_pairs)
                behind_slabs[window] = totals
        grad_means2d, grad_conics, grad_opacities, grad_features = grads.split([2, 3, 1, channels], dim=1)
        return grad_means2d, grad_conics, grad_opacities[:, 0], grad_features, None, None, None, None


@RENDERERS.register_module(name='torch')
class TorchRenderer(GaussianRenderer):
    """Differentiable CPU (or any device) renderer in pure torch; same rules and outputs as ``gsplat``.

    Gradients reach the means, covariances, harmonics and opacities of the Gaussians (and the
    cameras). Working memory is bounded by the slab and run budgets; what grows with the scene is
    8 bytes per drawn pixel-Gaussian pair kept for backward, plus a few hundred bytes per
    (view, Gaussian) entry of a chunk.
    """

    def _render_views(self, gaussians: Gaussians, extrinsics: Tensor, intrinsics: Tensor, image_shape: tuple[int, int],
                      near: Tensor, far: Tensor) -> RenderOutput:
        batch, views = extrinsics.shape[:2]
        height, width = image_shape
        world_to_camera = torch.linalg.inv(extrinsics)
        intrinsics = pixel_intrinsics(intrinsics, image_shape)
        focal = torch.stack([intrinsics[..., 0, 0], intrinsics[..., 1, 1]], dim=-1)
        principal = intrinsics[..., :2, 2]
        images, indices = _visible_entries(gaussians, world_to_camera, focal, principal, near, far, image_shape)
        # Recomputed in backward instead of keeping its intermediates (a few hundred bytes an entry).
        means2d, conics, opacities, features, radii = checkpoint(
            _project_entries, gaussians.means, gaussians.covariances, gaussians.harmonics, gaussians.opacities,
            extrinsics, world_to_camera, focal, principal, images, indices, image_shape, use_reentrant=False)
        blended, transmittance = _Rasterize.apply(means2d, conics, opacities, features, images, radii, image_shape,
                                                  batch * views)
        background = blended.new_tensor(self.background)
        color = blended[:, :3] + transmittance[:, None] * background
        depth = blended[:, 3] / (1 - transmittance).clamp_min(1e-10)
        return RenderOutput(color=color.reshape(batch, views, height, width, 3).permute(0, 1, 4, 2, 3),
                            depth=depth.reshape(batch, views, height, width))


def _project_entries(means: Tensor, covariances: Tensor, harmonics: Tensor, opacities: Tensor, extrinsics: Tensor,
                     world_to_camera: Tensor, focal: Tensor, principal: Tensor, images: Tensor, indices: Tensor,
                     image_shape: tuple[int, int]) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    """Differentiable projection of the drawn entries (culled ones may sit at z = 0 and are left out).

    Gaussians are ``[B, G, ...]`` and cameras ``[B, V, ...]``; entry ``e`` is Gaussian ``indices[e]`` in
    image ``images[e] = b * V + v``. Returns per entry ``means2d [E, 2]``, conics ``[E, 3]``,
    ``opacities [E]``, features ``[E, 4]`` (RGB, camera z) and the pixel radii ``[E, 2]`` (no gradient).
    """
    # Gathers use index_select: its backward (index_add_) sums repeated indices in a fixed order on
    # the CPU, whereas advanced indexing's backward (index_put_ with accumulate) adds them with
    # parallel atomics when deterministic algorithms are off, so two runs would differ.
    views, count = extrinsics.shape[1], means.shape[1]
    flat = (images // views) * count + indices
    entry_means = means.flatten(0, 1).index_select(0, flat)
    means2d, covariances2d, depths = project_gaussians(
        entry_means, covariances.flatten(0, 1).index_select(0, flat),
        world_to_camera.flatten(0, 1).index_select(0, images), focal.flatten(0, 1).index_select(0, images),
        principal.flatten(0, 1).index_select(0, images), image_shape)
    conics = torch.stack([covariances2d[:, 1, 1], -0.5 * (covariances2d[:, 0, 1] + covariances2d[:, 1, 0]),
                          covariances2d[:, 0, 0]], dim=-1) / _determinant(covariances2d)[:, None]
    # Colours of every Gaussian in every view (broadcast, no per-entry copy of the harmonics), then gathered.
    colors = sh_to_rgb(harmonics[:, None], means[:, None] - extrinsics[:, :, None, :3, 3])
    colors = colors.flatten(0, 2).index_select(0, images * count + indices)
    opacities = opacities.flatten(0, 1).index_select(0, flat)
    radii = _radii(covariances2d.detach(), opacities.detach())
    return means2d, conics, opacities, torch.cat([colors, depths[:, None]], dim=-1), radii
