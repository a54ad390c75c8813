"""The rich console every command prints through."""

from __future__ import annotations

import contextlib
import os
import sys
from pathlib import Path


def make_console():
    """A rich Console; tables stay readable when output goes to a file or a CI log (rich assumes 80
    columns there)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)


@contextlib.contextmanager
def native_stderr_to(log_path: str | Path = os.devnull):
    """Send file descriptor 2 to a file: native libraries (the MLIR converter, LiteRT's delegate
    set-up) log info lines from C++, which no Python logging setting reaches and which would bury
    the CLI's own output."""
    sys.stderr.flush()
    saved = os.dup(2)
    try:
        with open(log_path, "wb") as log:
            os.dup2(log.fileno(), 2)
            yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
