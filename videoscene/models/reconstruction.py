"""Stage 1: train a feed-forward Gaussian reconstructor through its renders."""
from __future__ import annotations

import torch.nn.functional as F
from mmengine.model import BaseModel

from videoscene.registry import MODELS, RECONSTRUCTORS, RENDERERS


@MODELS.register_module()
class GaussianReconstruction(BaseModel):
    """A reconstructor (context views -> Gaussians) supervised by rendering the target views.

    Args:
        reconstructor: config of a ``RECONSTRUCTORS`` entry (e.g. ``dict(type='MVSplat')``).
        renderer: config of a ``RENDERERS`` entry (``torch`` on the CPU, ``gsplat`` on CUDA).
        data_preprocessor: MMEngine data preprocessor config (moves batches to the device).

    ``forward(context, target, scene, mode)`` takes a collated scene sample (see
    ``videoscene.datasets``): ``mode='loss'`` returns ``{'loss_mse'}`` between the rendered and true
    target views; ``'predict'`` returns one dict per scene with ``pred`` and ``gt`` ``[F, 3, H, W]``
    and the rendered ``depth [F, H, W]``; ``'tensor'`` returns the renderer's output.
    """

    def __init__(self, reconstructor: dict, renderer: dict = dict(type='torch'),
                 data_preprocessor: dict | None = None) -> None:
        super().__init__(data_preprocessor=data_preprocessor)
        self.reconstructor = RECONSTRUCTORS.build(reconstructor)
        self.renderer = RENDERERS.build(renderer)

    def render_targets(self, context: dict, target: dict):
        gaussians = self.reconstructor(context)
        return self.renderer.render(gaussians, target['extrinsics'], target['intrinsics'],
                                    tuple(target['image'].shape[-2:]), target['near'],
                                    target['far'])

    def forward(self, context: dict, target: dict, scene: list[str] | None = None,
                mode: str = 'loss'):
        rendered = self.render_targets(context, target)
        if mode == 'loss':
            return dict(loss_mse=F.mse_loss(rendered.color, target['image']))
        if mode == 'predict':
            scenes = scene if scene is not None else [None] * rendered.color.shape[0]
            return [dict(pred=color, gt=gt, depth=depth, scene=name) for color, gt, depth, name
                    in zip(rendered.color, target['image'], rendered.depth, scenes)]
        if mode == 'tensor':
            return rendered
        raise ValueError(f"mode must be 'loss', 'predict' or 'tensor', got {mode!r}")
