"""Stage 1: train a feed-forward Gaussian reconstructor through its renders."""
from __future__ import annotations

import torch.nn.functional as F
from mmengine.logging import print_log
from mmengine.model import BaseModel

from videoscene.evaluation.lpips import LPIPS
from videoscene.registry import MODELS, RECONSTRUCTORS, RENDERERS

_lpips_off_logged = False


def _log_lpips_off() -> None:
    """Say once per process that stage 1 trains on MSE alone."""
    global _lpips_off_logged
    if not _lpips_off_logged:
        print_log('GaussianReconstruction: LPIPS loss off, training on MSE alone. To add it, set '
                  "model.lpips = dict(vgg_checkpoint='<local torchvision vgg16-397923af.pth>') "
                  '(weight 0.05 by default, as in MVSplat).', logger='current')
        _lpips_off_logged = True


@MODELS.register_module()
class GaussianReconstruction(BaseModel):
    """A reconstructor (context views -> Gaussians) supervised by rendering the target views.

    Args:
        reconstructor: config of a ``RECONSTRUCTORS`` entry (e.g. ``dict(type='MVSplat')``).
        renderer: config of a ``RENDERERS`` entry (``torch`` on the CPU, ``gsplat`` on CUDA).
        lpips: optional ``dict(vgg_checkpoint=..., linear_weights=None, weight=0.05)`` adding
            ``weight * LPIPS-VGG`` to the loss (MVSplat's recipe); the files are local (see
            :class:`videoscene.evaluation.LPIPS`). ``None``: MSE alone, logged once per process.
            LPIPS is frozen and parameter-free, so it is neither trained nor in checkpoints.
        data_preprocessor: MMEngine data preprocessor config (moves batches to the device).

    ``forward(context, target, scene, mode)`` takes a collated scene sample (see
    ``videoscene.datasets``): ``mode='loss'`` returns ``{'loss_mse'}`` between the rendered and true
    target views, plus the weighted ``'loss_lpips'`` when ``lpips`` is set; ``'predict'`` returns
    one dict per scene with ``pred`` and ``gt`` ``[F, 3, H, W]`` and the rendered
    ``depth [F, H, W]``; ``'tensor'`` returns the renderer's output.
    """

    # tools/test.py: report row -> the predict sample key holding that video
    evaluation_outputs = {'render': 'pred'}

    def __init__(self, reconstructor: dict, renderer: dict = dict(type='torch'),
                 lpips: dict | None = None, data_preprocessor: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.reconstructor = RECONSTRUCTORS.build(reconstructor)
        self.renderer = RENDERERS.build(renderer)
        if lpips is None:
            self.lpips = None
            _log_lpips_off()
        else:
            lpips = dict(lpips)
            self.lpips_weight = float(lpips.pop('weight', 0.05))
            self.lpips = LPIPS(**lpips)

    def render_targets(self, context: dict, target: dict):
        gaussians = self.reconstructor(context)
        return self.renderer.render(gaussians, target['extrinsics'], target['intrinsics'],
                                    tuple(target['image'].shape[-2:]), target['near'],
                                    target['far'])

    def forward(self, context: dict, target: dict, scene: list[str] | None = None,
                mode: str = 'loss'):
        rendered = self.render_targets(context, target)
        if mode == 'loss':
            losses = dict(loss_mse=F.mse_loss(rendered.color, target['image']))
            if self.lpips is not None:
                losses['loss_lpips'] = self.lpips_weight * self.lpips(
                    rendered.color, target['image']).mean()
            return losses
        if mode == 'predict':
            scenes = scene if scene is not None else [None] * rendered.color.shape[0]
            return [dict(pred=color, gt=gt, depth=depth, scene=name) for color, gt, depth, name
                    in zip(rendered.color, target['image'], rendered.depth, scenes)]
        if mode == 'tensor':
            return rendered
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
