"""Plan the per-device memory of training a config's model, without loading a weight.

    python tools/plan_memory.py CONFIG [--world-size N] [--gpu-memory 80GB] [--batch B]
        [--frames F --size H W] [--measure [--steps S]] [--cfg-options k=v ...]

Prints the expected bytes per device by component (frozen shell, frozen denoiser, reconstructor,
student, teacher and EMA copies, gradients, optimizer states, policy, activations), the
parameter counts and whether it fits in ``--gpu-memory``; placement follows the config's
``strategy`` (none/DDP, FSDP2Strategy, DeepSpeedStrategy) over ``--world-size`` devices.  The
backbone is built on the meta device from its folder's ``config.json`` files, e.g. CogVideoX-5B-I2V:
``--cfg-options model.backbone.pretrained=configs/_base_/models/cogvideox5b_i2v``.
``--measure`` also runs a few training steps of the config on this CPU (one process, a fresh
interpreter) and prints the measured peak memory increase against the prediction for one device.
Formula and calibration: ``videoscene/engine/memory_plan.py``.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.engine.cli import run_tool  # noqa: E402
from videoscene.engine.config import CfgOptionsAction, REPO_ROOT  # noqa: E402
from videoscene.errors import InputError  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('config')
    parser.add_argument('--world-size', type=int, default=1, help='devices (default 1)')
    parser.add_argument('--gpu-memory', default='80GB', help='memory per device (binary units)')
    parser.add_argument('--batch', type=int, help="samples per device (default: the config's)")
    parser.add_argument('--frames', type=int, help='frames per training video (default: from '
                        'the training dataset config)')
    parser.add_argument('--size', type=int, nargs=2, metavar=('H', 'W'),
                        help='training frame size (default: from the training dataset config)')
    parser.add_argument('--measure', action='store_true',
                        help='also run the config on this CPU and compare the measured peak')
    parser.add_argument('--steps', type=int, default=3, help='training steps of --measure')
    parser.add_argument('--cfg-options', nargs='+', action=CfgOptionsAction, default={},
                        metavar='KEY=VALUE', help='override config entries')
    args = parser.parse_args(argv)
    if (args.frames is None) != (args.size is None):
        parser.error('--frames and --size go together')
    if args.batch is not None and args.batch < 1:
        parser.error('--batch must be at least 1')

    from mmengine.config import Config

    from videoscene.engine.memory_plan import format_size, measure_peak, parse_bytes, plan_memory
    if not osp.isfile(args.config):
        raise FileNotFoundError(f'Config file not found: {args.config}')
    if REPO_ROOT not in sys.path:
        sys.path.insert(0, REPO_ROOT)
    capacity = parse_bytes(args.gpu_memory)
    cfg = Config.fromfile(args.config)
    cfg.merge_from_dict(args.cfg_options)
    if 'custom_imports' in cfg:
        from mmengine.utils import import_modules_from_strings
        import_modules_from_strings(**cfg.custom_imports)
    video = (args.frames, *args.size) if args.frames is not None else None
    plan = plan_memory(cfg, args.world_size, args.batch, video)
    print(plan.render(capacity))
    if args.measure:
        if args.world_size != 1:
            raise InputError('--measure', 'measures one process: use --world-size 1')
        measured = measure_peak(args.config, args.cfg_options, args.steps, args.batch)
        print(f'\nmeasured on this CPU ({args.steps} steps, batch {measured["batch"]}): peak '
              f'{format_size(measured["peak"])}, predicted {format_size(plan.total)}, '
              f'predicted / measured {plan.total / measured["peak"]:.3f}')


if __name__ == '__main__':
    run_tool(main)
