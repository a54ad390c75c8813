"""The rich console every command prints through."""

from __future__ import annotations

import sys


def make_console():
    """A rich Console; tables stay readable when output goes to a file or a CI log (rich assumes 80
    columns there)."""
    from rich.console import Console

    return Console(width=None if sys.stdout.isatty() else 160)
