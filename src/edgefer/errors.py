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


def output_folder(path: str | Path) -> Path:
    """``path`` as a folder edgefer may write into (made if missing): a file there, a read-only parent or
    any other reason it cannot be written is one clear error."""
    import os

    path = Path(path)
    if path.exists() and not path.is_dir():
        raise EdgeferError("is a file, not a folder to write into", path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise EdgeferError(f"cannot create this output folder ({exc.strerror or exc})", path) from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise EdgeferError("output folder is not writable", path)
    return path
