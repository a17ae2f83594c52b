"""What every command that writes files shares: an output folder checked before any work starts."""

from __future__ import annotations

import tempfile
from pathlib import Path

import click


def writable_folder(path: str | Path) -> Path:
    """Create ``path`` if needed and prove it accepts files, so a run fails before it trains."""
    folder = Path(path)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise click.UsageError(f"--out {str(path)!r} cannot be written: {reason}") from None
    return folder
