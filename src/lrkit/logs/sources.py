"""Where a log is and how it opens: the log a run folder holds, its format, and its text (gzipped or not)."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import IO

# the log a run folder holds: Lightning's CSVLogger's, MMEngine's (``<timestamp>/vis_data/``)
FOLDER_LOGS = ("metrics.csv", "scalars.json")
GZIP_MAGIC = b"\x1f\x8b"  # a gzipped log (metrics.csv.gz) is read through gzip
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)  # what a damaged one raises


def log_in_folder(folder: Path) -> Path:
    """The one log a run folder holds (a metrics.csv, scalars.json, TensorBoard events' folder, or
    the latest trainer_state.json); a folder holding several runs' logs raises ``ValueError``."""
    found = [file for name in FOLDER_LOGS for file in sorted(folder.rglob(name))] + sorted(folder.rglob("*tfevents*"))
    places = sorted({file.parent for file in found})
    if not places:
        states = sorted(folder.rglob("trainer_state.json"), key=_trained_steps)
        if states:  # a Hugging Face output folder: the latest state holds the whole history
            return states[-1]
        raise ValueError(
            f"{folder}: no metrics.csv, scalars.json, TensorBoard event file or trainer_state.json in this folder"
        )
    if len(places) > 1:
        listed = ", ".join(str(place) for place in places[:5])
        if len(places) > 5:
            listed += f" and {len(places) - 5} more"
        raise ValueError(f"{folder}: holds several runs ({listed}); name one of them")
    return next((places[0] / name for name in FOLDER_LOGS if (places[0] / name).exists()), places[0])


def _trained_steps(state: Path) -> tuple[int, bool]:
    """How far a trainer_state.json got: the N of its ``checkpoint-N`` folder, else its own
    ``global_step`` (-1 if unreadable), and whether it is the one the Trainer saves when training
    ends (``save_state``), which wins a tie: it alone records the ``train_runtime``."""
    match = re.fullmatch(r"checkpoint-(\d+)", state.parent.name)
    if match:
        return int(match.group(1)), False
    try:
        steps = json.loads(state.read_text()).get("global_step")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        steps = None
    return (steps if isinstance(steps, int) else -1), True


def detect(path: Path) -> str:
    """A log file's format: by its name (``.gz`` looked through), else by its first bytes."""
    if "tfevents" in path.name:
        return "tensorboard"
    gzipped = _gzipped(path)
    suffix = (path.with_suffix("") if gzipped and path.suffix.lower() == ".gz" else path).suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    with _opened(path) as handle:
        head = handle.read(4096)
    try:
        text = head.decode()
    except UnicodeDecodeError:
        return "tensorboard"
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "json"
    return "jsonl" if stripped.startswith("{") else "csv"


def _gzipped(path: Path) -> bool:
    """Whether the file is gzip-compressed (``metrics.csv.gz``): by its first two bytes."""
    with open(path, "rb") as handle:
        return handle.read(2) == GZIP_MAGIC


@contextlib.contextmanager
def _opened(path: Path) -> Iterator[IO[bytes]]:
    """The log's bytes, decompressed if it is gzipped; a damaged gzip file is a ValueError naming it."""
    try:
        with gzip.open(path, "rb") if _gzipped(path) else open(path, "rb") as handle:
            yield handle
    except GZIP_ERRORS as error:
        raise ValueError(f"{path}: a damaged gzip file ({error})") from None


def read_text(path: Path) -> str:
    """The log's text (decompressed if it is gzipped), line ends made ``\\n``."""
    try:
        with _opened(path) as raw, io.TextIOWrapper(raw) as handle:
            text = handle.read()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not a text file ({error.reason} at byte {error.start})"
        ) from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    return text


def lines(text: str) -> Iterator[str]:
    """``text.splitlines()`` a block at a time, so a big log is not held again as a list of lines."""
    start = 0
    while start < len(text):
        # cut after a '\n': no line break spans it (reading the text turned '\r\n' into '\n')
        end = text.find("\n", start + (1 << 20))
        end = len(text) if end < 0 else end + 1
        yield from text[start:end].splitlines()
        start = end
