"""Convert an official reconstructor checkpoint to safetensors with the project's keys.

    python tools/convert_checkpoint.py --arch mvsplat re10k.ckpt [re10k.safetensors]
    python tools/convert_checkpoint.py --arch pixelsplat re10k.ckpt [re10k.safetensors]

The official Lightning ``.ckpt`` keeps the weights in ``['state_dict']`` under the prefix
``encoder.``. The tool builds the registered reconstructor with its default (official)
configuration, loads the weights strictly -- any missing, unexpected or mis-shaped key is an error
that lists them -- and writes the module's state dict (same tensors, prefix removed). Load the
result with ``MVSplat(checkpoint='re10k.safetensors')`` or ``model.load_official(path)``.

Adding an architecture is one entry in ``ARCHITECTURES`` (CLI name -> registry type).
"""
from __future__ import annotations

import argparse
from pathlib import Path

from videoscene.reconstructors.official_checkpoint import load_checkpoint, save_safetensors
from videoscene.registry import RECONSTRUCTORS
from videoscene.engine.cli import run_tool

#: CLI name -> name in ``videoscene.registry.RECONSTRUCTORS``.
ARCHITECTURES = {'mvsplat': 'MVSplat', 'pixelsplat': 'pixelSplat'}


def convert(arch: str, source: str | Path, output: str | Path | None = None,
            allow_pickle: bool = False) -> Path:
    """Convert ``source`` (official ``.ckpt``) to ``output`` (default: same name, ``.safetensors``).

    Raises:
        KeyError: unknown ``arch``.
        CheckpointMismatchError: the checkpoint does not match the architecture.
    """
    if arch not in ARCHITECTURES:
        raise KeyError(f"unknown architecture '{arch}'; choose from {sorted(ARCHITECTURES)}")
    source = Path(source)
    output = Path(output) if output is not None else source.with_suffix('.safetensors')
    if output.resolve() == source.resolve():
        raise ValueError(f'output {output} would overwrite the source checkpoint')
    model = RECONSTRUCTORS.build(dict(type=ARCHITECTURES[arch]))
    load_checkpoint(model, source, allow_pickle=allow_pickle)
    output.parent.mkdir(parents=True, exist_ok=True)
    save_safetensors(model, output, metadata={'arch': arch, 'source': source.name})
    return output


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--arch', required=True, choices=sorted(ARCHITECTURES),
                        help='reconstructor architecture of the checkpoint')
    parser.add_argument('checkpoint', type=Path, help='official .ckpt file')
    parser.add_argument('output', type=Path, nargs='?',
                        help='output .safetensors (default: next to the checkpoint)')
    parser.add_argument('--allow-pickle', action='store_true',
                        help='unpickle the checkpoint fully (only for files you trust); needed '
                             'if it holds objects that weights_only loading rejects')
    args = parser.parse_args(argv)
    output = convert(args.arch, args.checkpoint, args.output, args.allow_pickle)
    print(f'wrote {output}')
    return output


if __name__ == '__main__':
    run_tool(main)
