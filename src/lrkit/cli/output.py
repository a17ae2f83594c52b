"""What the commands share in their output: paths checked before any work, and ``--json``.

The checks create nothing: a folder appears with the first file written into it, so a command that
fails before writing leaves no empty folder behind. With ``--json`` a command prints one JSON object
and nothing else on stdout, so ``lrkit find ... --json | jq .lr`` works: what it (or the user's
code, or a library) prints while it works goes to stderr.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import numpy as np

if TYPE_CHECKING:
    from rich.console import Console


def writable_folder(path: str | Path, option: str = "--out") -> Path:
    """Prove the folder ``path`` accepts files (or can be made), so a run fails before it trains."""
    _named(path, option, "folder")
    folder = Path(path)
    _probe(folder, option, path)
    return folder


def writable_file(path: str | Path, option: str) -> Path:
    """Prove the file ``path`` can be written (its folder exists or can be created), before any work."""
    _named(path, option, "file")
    file = Path(path)
    if file.is_dir():
        raise click.UsageError(f"{option} {str(path)!r} is a folder; name a file")
    _probe(file.parent, option, path)
    return file


def figure_file(path: str | Path, option: str = "--plot") -> Path:
    """Check that ``path``'s extension names a format matplotlib writes, and that it can be written."""
    from lrkit.plots import figure_format

    _named(path, option, "file")
    try:
        kind = figure_format(path)
    except ValueError as error:
        raise click.UsageError(f"{option} {error}") from None
    if kind == "pgf":  # matplotlib measures the text with LaTeX, and fails after the work without it
        import matplotlib

        tex = matplotlib.rcParams["pgf.texsystem"]
        if shutil.which(tex) is None:
            raise click.UsageError(f"{option} {str(path)!r}: a .pgf figure needs {tex} (LaTeX), which is not installed; use .pdf or .svg")
    return writable_file(path, option)


def _named(path: str | Path, option: str, what: str) -> None:
    """Refuse an empty path: ``--out "$DIR"`` with DIR unset must not write into the current folder."""
    if not str(path).strip():
        raise click.UsageError(f"{option} must name a {what}, got an empty string")


def _probe(folder: Path, option: str, shown: str | Path) -> None:
    """Write and drop a nameless file in ``folder``, or in its nearest existing parent."""
    try:
        while not folder.exists() and folder != folder.parent:
            if folder.is_symlink():  # a link to nowhere, or a loop: the folder cannot be made there
                raise click.UsageError(
                    f"{option} {str(shown)!r} cannot be written: {str(folder)!r} is a symbolic link "
                    "to nothing (a missing target or a loop)"
                )
            folder = folder.parent
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise click.UsageError(f"{option} {str(shown)!r} cannot be written: {str(folder)!r}: {reason}") from None


def print_json(data: Mapping[str, Any]) -> None:
    """Print ``data`` on stdout as one JSON object; NaN and infinities (JSON has neither) as null."""
    click.echo(json.dumps(_plain(data), indent=2, allow_nan=False))


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


@contextlib.contextmanager
def stdout_to_stderr(enabled: bool = True) -> Iterator[None]:
    """While open (and ``enabled``), send what is printed to stderr, the prints of worker processes
    and compiled code too where stdout is a real file, so stdout is left for ``print_json``."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    try:
        descriptors: tuple[int, int] | None = (sys.stdout.fileno(), sys.stderr.fileno())
    except (AttributeError, OSError, ValueError):  # a stream in memory (a test's capture): no descriptor
        descriptors = None
    saved = None
    if descriptors is not None:
        saved = os.dup(descriptors[0])
        os.dup2(descriptors[1], descriptors[0])
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stderr.flush()
        if saved is not None:
            os.dup2(saved, descriptors[0])
            os.close(saved)


def live(console: Console) -> bool:
    """Whether ``console`` redraws a progress bar in place (a terminal or a notebook); in a pipe or
    a file a bar would leave blank lines behind, so it is not drawn there."""
    return console.is_terminal or console.is_jupyter
