"""The project's exception types: every error a user can trigger names the input it is about.

``InputError`` is for a file, folder, argument or tensor the user supplied that is not what the
reader expected; its message names that input (path, frame, argument) and says what was expected.
It subclasses ``ValueError`` so callers that already catch ``ValueError`` keep working.
"""
from __future__ import annotations

__all__ = ['VideoSceneError', 'InputError', 'CameraError', 'CorruptInputError', 'CheckpointError']


class VideoSceneError(Exception):
    """Base class of the errors videoscene raises on purpose."""


class InputError(VideoSceneError, ValueError):
    """A user-supplied input (file, camera, image, argument) is missing, unreadable or invalid.

    Args:
        source: what the input is (a path, ``'transforms.json frame 3'``, ``'--steps'`` ...).
        problem: what is wrong and what was expected.
    """

    def __init__(self, source: object, problem: str) -> None:
        self.source = str(source)
        self.problem = problem
        super().__init__(f'{self.source}: {problem}')

    def __reduce__(self):  # picklable across DataLoader workers
        return type(self), (self.source, self.problem)


class CheckpointError(InputError):
    """A checkpoint file is missing, truncated, or does not hold what the model needs."""


class CameraError(InputError):
    """A camera (extrinsics, intrinsics, near/far) that breaks the project's conventions: not
    finite, not a rigid camera-to-world matrix, non-positive or pixel-unit focal lengths, bad bounds."""


class CorruptInputError(InputError):
    """Stored data that does not decode (a corrupt or truncated image or chunk file); datasets
    skip the example it belongs to, warn once per file and count it.

    Args:
        source, problem: as for :class:`InputError`.
        path: the file the data is in (default ``source``), so that warnings come once per file.
    """

    def __init__(self, source: object, problem: str, path: object | None = None) -> None:
        super().__init__(source, problem)
        self.path = self.source if path is None else str(path)

    def __reduce__(self):
        return type(self), (self.source, self.problem, self.path)
