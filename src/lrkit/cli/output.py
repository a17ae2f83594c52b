"""What every command that writes files shares: output paths checked before any work starts.

The checks create nothing: a folder appears with the first file written into it, so a command that
fails before writing leaves no empty folder behind.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click


def writable_folder(path: str | Path, option: str = "--out") -> Path:
    """Prove the folder ``path`` accepts files (or can be made), so a run fails before it trains."""
    folder = Path(path)
    _probe(folder, option, path)
    return folder


def writable_file(path: str | Path, option: str) -> Path:
    """Prove the file ``path`` can be written (its folder exists or can be created), before any work."""
    file = Path(path)
    _probe(file.parent, option, path)
    return file


def figure_file(path: str | Path, option: str = "--plot") -> Path:
    """Check that ``path``'s extension names a format matplotlib writes, and that it can be written."""
    from lrkit.plots import figure_format

    try:
        figure_format(path)
    except ValueError as error:
        raise click.UsageError(f"{option} {error}") from None
    return writable_file(path, option)


def _probe(folder: Path, option: str, shown: str | Path) -> None:
    """Write and drop a nameless file in ``folder``, or in its nearest existing parent."""
    try:
        while not folder.exists() and folder != folder.parent:
            folder = folder.parent
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise click.UsageError(f"{option} {str(shown)!r} cannot be written: {str(folder)!r}: {reason}") from None
