"""Convert transforms.json scenes, COLMAP scenes or a folder of videos with poses into RE10K chunks.

    python tools/convert_scenes.py transforms SCENE [SCENE ...] --out data/mine [--stage test]
    python tools/convert_scenes.py colmap SCENE [SCENE ...] --out data/mine [--sparse-dir sparse/0 --image-dir images]
    python tools/convert_scenes.py video VIDEO_FOLDER --out data/mine [--frames 49]

Each SCENE is a folder (or, for transforms, a ``transforms.json``); each video in VIDEO_FOLDER
needs its RealEstate10K pose file beside it (``clip.mp4`` + ``clip.txt``, see
``videoscene/datasets/video.py``). Distorted images are undistorted (``--no-undistort`` refuses
them); JPEG files that need no change are stored byte for byte. Writes ``{out}/{stage}/*.torch``,
``{out}/{stage}/index.json`` and ``{out}/evaluation_index_{stage}.json`` (context = first and last
frame, or ``[0, --eval-context-gap]``, with ``--num-eval-targets`` targets between; by default 49,
or fewer when the shortest scene needs it). Read the result with ``RE10KDataset``.

Arguments are checked by argparse (counts at least 1, JPEG quality 1-100); every scene's cameras
are read and checked, and the evaluation index planned, before anything is written; a conversion
that fails (also midway, e.g. on an image that does not decode) leaves neither ``--out`` (when it
did not exist) nor a hidden ``.partial-*`` folder.
"""
from __future__ import annotations

import argparse
import os.path as osp
import sys
import time

sys.path.insert(0, osp.dirname(osp.dirname(osp.abspath(__file__))))

from videoscene.datasets.base import SceneSource  # noqa: E402
from videoscene.datasets.chunks import evaluation_index  # noqa: E402
from videoscene.datasets.colmap import read_colmap_scene  # noqa: E402
from videoscene.datasets.convert import convert_to_chunks  # noqa: E402
from videoscene.datasets.image_files import ImageFileSource  # noqa: E402
from videoscene.datasets.transforms_json import read_transforms_json  # noqa: E402
from videoscene.datasets.video import VideoSource  # noqa: E402
from videoscene.engine.cli import run_tool  # noqa: E402


def bounded_int(low: int, high: int | None = None):
    """An argparse type: an integer in ``[low, high]``."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'expected an integer, got {text!r}') from None
        if value < low or (high is not None and value > high):
            raise argparse.ArgumentTypeError(f'must be between {low} and {high}, got {value}' if high is not None
                                             else f'must be at least {low}, got {value}')
        return value
    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument('kind', choices=('transforms', 'colmap', 'video'), help='input format')
    parser.add_argument('inputs', nargs='+', help='scene folders (transforms, colmap) or one video folder (video)')
    parser.add_argument('--out', required=True, help='dataset root to write')
    parser.add_argument('--stage', default='test', help="stage folder, e.g. 'train' or 'test'")
    parser.add_argument('--sparse-dir', default='sparse/0', help='colmap: model folder inside each scene')
    parser.add_argument('--image-dir', default='images', help='colmap: image folder inside each scene')
    parser.add_argument('--frames', type=bounded_int(1), default=None,
                        help='video: frames per scene at equal intervals (default: every posed frame)')
    parser.add_argument('--no-undistort', action='store_true', help='refuse distorted cameras instead of undistorting')
    parser.add_argument('--num-eval-targets', type=bounded_int(1), default=None,
                        help='targets per scene in the evaluation index (default: 49, or frames - 2 if fewer)')
    parser.add_argument('--eval-context-gap', type=bounded_int(2), default=None,
                        help='context pair [0, gap] of the evaluation index (default: first and last frame)')
    parser.add_argument('--scenes-per-chunk', type=bounded_int(1), default=16)
    parser.add_argument('--jpeg-quality', type=bounded_int(1, 100), default=95,
                        help='for frames that must be re-encoded (1-100)')
    parser.add_argument('--overwrite', action='store_true', help='replace an existing stage folder')
    return parser.parse_args(argv)


def build_source(args: argparse.Namespace) -> SceneSource:
    if args.kind == 'transforms':
        return ImageFileSource([read_transforms_json(path) for path in args.inputs], undistort=not args.no_undistort)
    if args.kind == 'colmap':
        return ImageFileSource([read_colmap_scene(path, args.sparse_dir, args.image_dir)[0] for path in args.inputs],
                               undistort=not args.no_undistort)
    if len(args.inputs) != 1:
        raise SystemExit(f'video: give one folder of videos with pose files, got {len(args.inputs)} inputs')
    return VideoSource(args.inputs[0], num_frames=args.frames)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    start = time.perf_counter()
    source = build_source(args)
    frames = {key: len(source.cameras(key)[0]) for key in source.keys}
    targets = args.num_eval_targets
    if targets is None:
        span = min(frames.values()) if args.eval_context_gap is None else args.eval_context_gap + 1
        targets = min(49, span - 2)
        if targets < 1:
            raise SystemExit(f'the shortest scene has {min(frames.values())} frames: too few for an evaluation index')
    evaluation_index(frames, targets, args.eval_context_gap)  # refuses an impossible index before writing
    stage = convert_to_chunks(source, args.out, args.stage, num_eval_targets=targets,
                              eval_context_gap=args.eval_context_gap, scenes_per_chunk=args.scenes_per_chunk,
                              jpeg_quality=args.jpeg_quality, overwrite=args.overwrite)
    print(f'wrote {len(frames)} scenes ({sum(frames.values())} frames) to {stage} in '
          f'{time.perf_counter() - start:.1f} s')
    print(f'evaluation index ({targets} targets per scene): {stage.parent / f"evaluation_index_{args.stage}.json"}')


if __name__ == '__main__':
    run_tool(main)
