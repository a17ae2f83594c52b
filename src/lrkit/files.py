"""Atomic file writes: a temp file in the same folder, flushed and fsynced, then ``os.replace``.

A reader (or a crash at any point) sees either the old file or the complete new one, never half.
A file no one reads after a crash (a snapshot the run deletes when it ends) skips the fsyncs:
``durable=False`` keeps the atomic replace but not the wait for the disk.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO


@contextmanager
def atomic_path(path: str | Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it replaces ``path`` atomically.

    The new file gets the mode of the file it replaces, or ``0o666`` less the umask when there is
    none, as ``open()`` would give it. A symbolic link is written through: the file it points to
    is replaced, and the link stays.
    """
    path = Path(path)
    if path.is_symlink():  # os.replace on the link itself would swap the link for a plain file
        try:
            path = path.resolve()
        except RuntimeError:  # Python 3.11's word for a loop of links (later ones raise OSError)
            raise OSError(f"{path}: a loop of symbolic links") from None
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".{path.name}.{secrets.token_hex(8)}.tmp"
    # not tempfile.mkstemp, whose files are always 0o600: os.open applies the umask, as open() does
    os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    try:
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fchmod(handle.fileno(), _mode(path if path.exists() else tmp))
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
        if durable:
            _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write(
    path: str | Path, write: Callable[[IO[bytes]], object], *, durable: bool = True
) -> Path:
    """Call ``write(handle)`` on a temp file, then move it over ``path``."""
    with atomic_path(path, durable=durable) as tmp, open(tmp, "wb") as handle:
        write(handle)
    return Path(path)


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write(path, lambda handle: handle.write(text.encode()))


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
