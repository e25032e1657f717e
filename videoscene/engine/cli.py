"""The command-line tools' entry point: errors a user can cause end in one line, not a traceback."""
from __future__ import annotations

import sys
from collections.abc import Callable

from videoscene.errors import VideoSceneError

__all__ = ['run_tool']


def run_tool(main: Callable[[], object]) -> None:
    """Run a tool's ``main``; the project's own errors and missing files print ``error: ...`` on
    stderr and exit with status 2 (anything else is a bug and keeps its traceback)."""
    try:
        main()
    except (VideoSceneError, FileNotFoundError) as error:
        print(f'error: {type(error).__name__}: {error}', file=sys.stderr)
        sys.exit(2)
