"""The one exception type users see: a message that names the file and the problem."""

from __future__ import annotations

from pathlib import Path


class EdgeferError(ValueError):
    """A user-facing error. ``path`` names the offending file or folder when there is one."""

    def __init__(self, message: str, path: str | Path | None = None):
        self.path = None if path is None else Path(path)
        super().__init__(f"{self.path}: {message}" if self.path is not None else message)


class UnrecordedDataError(EdgeferError):
    """A model's card does not say which dataset and split it was trained on: callers that can
    fall back to the data they were given catch this one."""
