"""Export a trained stage-2 teacher as a model folder the next stage loads with ``from_pretrained``.

    python tools/export_teacher.py configs/teacher/cogvideox_re10k.py work_dirs/teacher_cogvideox_re10k/iter_10000.pth \
        --out checkpoints/cogvideox_interpolation

Builds the config's ``InterpolationTeacher``, loads the MMEngine checkpoint strictly and writes the
backbone's folder (``VideoBackbone.save_pretrained``); for CogVideoX it holds ``transformer/``,
``vae/``, ``scheduler/`` and ``prompt_embeds.safetensors``, so
``dict(type='CogVideoX', pretrained=OUT, prompt_embedding=OUT/prompt_embeds.safetensors)`` loads it.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from mmengine.config import Config  # noqa: E402
from mmengine.runner import load_checkpoint  # noqa: E402

from videoscene.engine import trusted_local_checkpoints  # noqa: E402
from videoscene.engine.checkpoint import checkpoint_problem  # noqa: E402
from videoscene.errors import CheckpointError  # noqa: E402
from videoscene.registry import MODELS  # noqa: E402
from videoscene.engine.cli import run_tool  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config', help='the teacher config the checkpoint was trained with')
    parser.add_argument('checkpoint', help='MMEngine checkpoint (.pth) of that run')
    parser.add_argument('--out', required=True, help='output model folder')
    args = parser.parse_args(argv)
    problem = checkpoint_problem(args.checkpoint)
    if problem is not None:
        raise CheckpointError(args.checkpoint, problem)
    model = MODELS.build(Config.fromfile(args.config).model)
    with trusted_local_checkpoints():  # MMEngine checkpoints pickle more than tensors
        load_checkpoint(model, args.checkpoint, map_location='cpu', strict=True)
    out = model.backbone.save_pretrained(args.out)
    print(f'wrote {type(model.backbone).__name__} folder to {out}')


if __name__ == '__main__':
    run_tool(main)
