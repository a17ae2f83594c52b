"""Read training logs into a Trace: CSV (Lightning's CSVLogger and Keras' included), JSON lines or a
JSON list of records (Hugging Face's ``trainer_state.json``), and TensorBoard event files.

Columns are found by name (``step``/``iteration``/``epoch``, ``loss``/``train_loss``,
``lr``/``learning_rate``, ``val_loss``/``eval_loss``, ``grad_norm``, and a wall clock
``time``/``wall_time``/``timestamp``/...) or named by the caller. Rows
that share a step are merged (loggers write train and validation metrics on separate rows), a
validation value without a training loss at its step goes to the last training step before it, and
a missing LR carries over from the last one logged (an LR column with no values reads as no LR
column). A log that cannot be read this way, or logs a negative or infinite LR, raises
``ValueError`` naming the file and the problem.

The wall clock a log keeps (a time column, TensorBoard's wall time of the loss, Hugging Face's
``train_runtime``) gives ``meta["seconds_per_step"]``, with ``meta["time_source"]`` saying where it
came from; a clock that cannot be used (text, going back, too few times) is left out, never fatal,
and ``meta["time_problem"]`` says why. An lrkit trace's own recorded time comes first. A column of
each step's duration (MMEngine's ``time`` beside ``data_time``, fastai's ``MM:SS``, ``time_ms``, ...)
is timed by its mean instead. Text in a column that is not read (a note, a phase) is passed over.
"""

from __future__ import annotations

import contextlib
import csv
import gzip
import io
import json
import math
import re
import shlex
import zlib
from array import array
from collections import deque
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from itertools import chain
from pathlib import Path
from typing import IO, Any

import numpy as np

from lrkit.clocks import pace_of_clock, pace_of_durations
from lrkit.trace import Event, Trace

# names of a column holding each logged step's duration, not a clock (``_ms``: in milliseconds)
DURATIONS = (
    "iter_time",
    "step_time",
    "batch_time",
    "time_per_iter",
    "time_per_step",
    "time_ms",
    "iter_time_ms",
    "step_time_ms",
)
# a duration as fastai writes an epoch's time, ``MM:SS`` (``H:MM:SS`` past an hour), or as Python's
# ``str(timedelta)`` does; an hour of two digits is left to be a time of day, no duration
DURATION_TEXT = re.compile(r"(?:(\d):)?(\d\d):(\d\d(?:\.\d+)?)")

# Trace column -> names that loggers commonly give it, best first (after normalising: lower case,
# '/', '-', '.', ' ' turned into '_'). An LR column may also be named ``lr_<optimizer>``. ``time``
# is no Trace column but the wall clock its seconds per step are measured on: seconds (since the
# start or the epoch) or ISO-8601 times; Weights & Biases exports name it ``_runtime``/``_timestamp``,
# and its own counter of log calls ``_step`` (Hugging Face's step there is ``train/global_step``).
# After the clocks come the names of each step's duration (``DURATIONS``).
CANDIDATES: dict[str, tuple[str, ...]] = {
    "step": (
        "step",
        "global_step",
        "train_global_step",
        "iteration",
        "iter",
        "it",
        "train_step",
        "batch",
        "_step",
        "epoch",
    ),
    "loss": (
        "loss",
        "train_loss",
        "training_loss",
        "loss_train",
        "train_loss_step",
        "loss_step",
        "train_loss_epoch",
        "loss_epoch",
        "epoch_loss",
        "total_loss",
    ),
    "lr": (
        "lr",
        "learning_rate",
        "train_lr",
        "train_learning_rate",
        "epoch_lr",
        "epoch_learning_rate",
    ),
    "val_loss": (
        "val_loss",
        "validation_loss",
        "valid_loss",
        "eval_loss",
        "loss_val",
        "loss_valid",
        "loss_validation",
        "val_loss_epoch",
        "epoch_val_loss",
    ),
    "grad_norm": ("grad_norm", "gradient_norm", "train_grad_norm", "grad_norm_total"),
    "time": (
        "time",
        "wall_time",
        "walltime",
        "timestamp",
        "elapsed",
        "elapsed_time",
        "_runtime",
        "_timestamp",
        "relative_time",
        *DURATIONS,
    ),
}
_LR_PREFIXES = ("lr_", "learning_rate_")
FORMATS = ("csv", "jsonl", "json", "tensorboard")
GZIP_MAGIC = b"\x1f\x8b"  # a gzipped log (metrics.csv.gz) is read through gzip
GZIP_ERRORS = (gzip.BadGzipFile, EOFError, zlib.error)  # what a damaged one raises

# the most texts (and changes of text) of a column that may tell runs apart that are kept; the most
# of them an error lists
RUN_VALUES = 32
RUN_LISTED = 6

Record = dict[str, float | None]
# per column of text, the rows where its text changes and the new text (``_Table.changes``)
Runs = Mapping[str, list[tuple[int, str]]]


class _Table:
    """A log's columns as read, in file order: per column its values and which rows logged one.

    Each column is a compact float array, not a dict per row, so a log takes a few bytes a cell.
    A row that has a column's name with no value (an empty cell, ``null``) leaves it unlogged
    there, as a row without the name does; the name still counts as one of the log's columns. Text
    leaves a cell unlogged too, and ``text`` keeps each column's first (with its line), so that only
    a column that is read fails on it; ``durations`` names the columns written as durations.
    ``changes`` keeps, per column of text, the rows where its text changes and the new text (a
    column of more than ``RUN_VALUES`` texts or changes is dropped from it): several runs one after
    another are told apart by such a column. With ``run`` (a column and a value) only the rows with
    that value in that column are kept; ``offered`` counts every row, kept or not.
    """

    def __init__(self, run: tuple[str, str] | None = None) -> None:
        self.rows = 0
        self.offered = 0
        self._values: dict[str, array] = {}
        self._logged: dict[str, bytearray] = {}
        self.text: dict[str, tuple[str, int]] = {}
        self.durations: set[str] = set()
        self.changes: dict[str, list[tuple[int, str]] | None] = {}
        self.run = run
        # for ``run``'s errors: every column seen, whether ``run``'s was, and the first texts it holds
        self.names: dict[str, None] = {}
        self.run_seen = False
        self.run_values: dict[str, None] = {}

    def add(self, cells: Iterable[tuple[str, float | str | timedelta | None]], line: int = 0) -> None:
        """Append one row (``line`` where it is in the file); a name given twice keeps its last value."""
        self.offered += 1
        if self.run is not None:
            cells = list(cells)
            if not self._in_run(cells):
                return
        row = self.rows
        for name, value in cells:
            if isinstance(value, str):
                self.text.setdefault(name, (value, line))
                self._note_text(name, value, row)
                value = None
            elif isinstance(value, timedelta):
                self.durations.add(name)
                value = value.total_seconds()
            values = self._values.get(name)
            if values is None:
                values = self._values[name] = array("d")
                self._logged[name] = bytearray()
            logged = self._logged[name]
            if len(values) > row:  # the name came earlier in this row
                values.pop()
                logged.pop()
            elif len(values) < row:
                values.extend([math.nan] * (row - len(values)))
                logged.extend(bytes(row - len(logged)))
            values.append(math.nan if value is None else value)
            logged.append(value is not None)
        self.rows += 1

    def _note_text(self, name: str, value: str, row: int) -> None:
        changes = self.changes.setdefault(name, [])
        if changes is None or (changes and changes[-1][1] == value):
            return
        if len(changes) >= RUN_VALUES:
            self.changes[name] = None
            return
        changes.append((row, value))

    def _in_run(self, cells: Sequence[tuple[str, float | str | timedelta | None]]) -> bool:
        """Whether a row holds ``run``'s value in ``run``'s column (text alike, or the same number)."""
        assert self.run is not None
        column, wanted = self.run
        for name, value in cells:
            self.names.setdefault(name)
            if name != column and _normal(name) != _normal(column):
                continue
            self.run_seen = True
            if value is None:
                return False
            text = _cell_text(value)
            if len(self.run_values) < RUN_VALUES:
                self.run_values.setdefault(text)
            if text == wanted:
                return True
            number = _number(wanted)
            return isinstance(number, float) and isinstance(value, float) and number == value
        return False

    def check_run(self, path: Path) -> None:
        """Raise when ``run`` kept no row: its column is not in the log, or does not hold its value."""
        if self.run is None or self.rows:
            return
        column, wanted = self.run
        if not self.run_seen:
            names = ", ".join(self.names) or "no columns"
            raise ValueError(f"{path}: no column {column!r} (given for run); columns: {names}")
        values = list(self.run_values)
        raise ValueError(
            f"{path}: no row has {column}={wanted!r} (given for run); {column!r} holds {_listed(values)}"
        )

    def columns(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Column name (in the order names first appear) -> (values, logged) over all rows."""
        found = {}
        for name, values in self._values.items():
            logged = self._logged[name]
            values.extend([math.nan] * (self.rows - len(values)))
            logged.extend(bytes(self.rows - len(logged)))
            found[name] = (np.frombuffer(values, dtype=float), np.frombuffer(logged, dtype=bool))
        return found


def read_log(
    path: str | Path,
    *,
    format: str | None = None,
    step: str | None = None,
    loss: str | None = None,
    lr: str | None = None,
    val_loss: str | None = None,
    grad_norm: str | None = None,
    time: str | None = None,
    run: str | None = None,
) -> Trace:
    """The Trace in a training log; the format comes from the name or the content unless given.

    ``path`` may be a folder holding a Lightning ``metrics.csv``, TensorBoard event files or
    Hugging Face checkpoints (the latest ``trainer_state.json`` is read). The
    keyword column names override detection (for CSV and JSON the key, for TensorBoard the tag);
    ``time`` names the wall-clock column the seconds per step are measured on; a log without it
    that keeps its time elsewhere (an lrkit trace, TensorBoard, a trainer_state.json's
    ``train_runtime``) is timed by that. ``run="COLUMN=VALUE"`` (``"role=chosen"``) reads only the
    rows of a CSV or JSON log whose COLUMN holds VALUE: one run of a file holding several one after
    another (``lrkit demo``'s ``loss_curves.csv``, W&B and MLflow exports with a ``run`` column).
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}; got {format!r}")
    if path.is_dir():
        path = _log_in_folder(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    wanted = None if run is None else parse_run(run)
    kind = format or ("tensorboard" if path.is_dir() else _detect(path))
    if wanted is not None and kind == "tensorboard":
        raise ValueError(f"{path}: run picks rows of a CSV or JSON log; TensorBoard keeps each run in its own folder")
    names = {"step": step, "loss": loss, "lr": lr, "val_loss": val_loss, "grad_norm": grad_norm, "time": time}
    chosen = {key: value for key, value in names.items() if value}
    table = _Table(wanted)
    header = _READERS[kind](path, _clock_names(chosen), table)
    table.check_run(path)
    return _build(path, kind, table, header, chosen)


def parse_run(run: str) -> tuple[str, str]:
    """``"COLUMN=VALUE"`` as (column, value), each stripped; raises ``ValueError`` on anything else."""
    column, equals, value = run.partition("=") if isinstance(run, str) else ("", "", "")
    if not equals or not column.strip() or not value.strip():
        raise ValueError(f"run must be COLUMN=VALUE, e.g. 'role=chosen'; got {run!r}")
    return column.strip(), value.strip()


# --- finding and sniffing -----------------------------------------------------------------------


# the log a run folder holds: Lightning's CSVLogger's, MMEngine's (``<timestamp>/vis_data/``)
FOLDER_LOGS = ("metrics.csv", "scalars.json")


def _log_in_folder(folder: Path) -> Path:
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


def _detect(path: Path) -> str:
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


# --- readers: each fills a table with the rows in file order and returns a header: an lrkit trace's own
# (meta, events), and the clock a format keeps outside its columns ("wall_time": TensorBoard tag ->
# (steps, seconds); "runtime": Hugging Face's (train_runtime, global_step)) ----------------------

Clock = Callable[[str], bool]  # whether a column holds wall-clock times (read leniently)


def _clock_names(chosen: Mapping[str, str]) -> Clock:
    """The columns read as wall-clock times: the one named for ``time`` and every time candidate
    not named for another column."""
    others = {_normal(name) for column, name in chosen.items() if column != "time"}
    named = _normal(chosen["time"]) if "time" in chosen else None
    candidates = set(CANDIDATES["time"])

    def is_clock(name: str) -> bool:
        normal = _normal(name)
        return normal == named or (normal in candidates and normal not in others)

    return is_clock


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


def _read_text(path: Path) -> str:
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


def _lines(text: str) -> Iterator[str]:
    """``text.splitlines()`` a block at a time, so a big log is not held again as a list of lines."""
    start = 0
    while start < len(text):
        # cut after a '\n': no line break spans it (reading the text turned '\r\n' into '\n')
        end = text.find("\n", start + (1 << 20))
        end = len(text) if end < 0 else end + 1
        yield from text[start:end].splitlines()
        start = end


def _read_csv(path: Path, clock: Clock, table: _Table) -> dict[str, Any]:
    text = _read_text(path)
    first = next(_lines(text))
    header = _lrkit_header(path, first[2:]) if first.startswith("# {") else {}
    numbers: deque[int] = deque()  # the numbers of the lines the CSV reader took, not yet in a row

    def body() -> Iterator[str]:
        for number, line in enumerate(_lines(text), 1):
            if line.strip() and not line.startswith("#"):
                numbers.append(number)
                yield line

    lines = body()
    head = next(lines, None)
    if head is None:
        raise ValueError(f"{path}: the file has no header row and no data")
    rows = csv.reader(chain([head], lines), _dialect(head))
    names = [name.strip() for name in next(rows)]
    clocks = [clock(name) for name in names]
    numbers.popleft()
    for row in rows:
        number = numbers.popleft()
        if len(row) > len(names):
            raise ValueError(
                f"{path}: line {number} has {len(row)} fields but the header has {len(names)}"
            )
        table.add(
            ((name, _time(cell) if timed else _number(cell))
             for name, timed, cell in zip(names, clocks, row, strict=False)),
            number,
        )
    if not table.offered:
        raise ValueError(f"{path}: has a header ({', '.join(names)}) but no data rows")
    if numbers:
        raise ValueError(f"{path}: a quoted field runs over more than one line; keep each row on one line")
    return header


def _dialect(first_line: str) -> type[csv.Dialect]:
    for delimiter in ("\t", ";"):
        if delimiter in first_line and "," not in first_line:
            return type("Sniffed", (csv.excel,), {"delimiter": delimiter})
    return csv.excel


def _read_jsonl(path: Path, clock: Clock, table: _Table) -> dict[str, Any]:
    header: dict[str, Any] = {}
    for number, line in enumerate(_lines(_read_text(path)), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {number} is not JSON ({error.msg})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{path}: line {number} is not a JSON object")
        if "lrkit_trace" in value:
            header = value
            continue
        table.add(_json_cells(value, clock), number)
    return header


def _read_json(path: Path, clock: Clock, table: _Table) -> dict[str, Any]:
    text = _read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return _read_jsonl(path, clock, table)
    header: dict[str, Any] = {}
    if isinstance(value, dict) and isinstance(value.get("log_history"), list):
        header = _runtime(value)
        value = value["log_history"]  # Hugging Face Trainer's trainer_state.json
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(
            f"{path}: expected a list of JSON objects (one per logged step) or a trainer_state.json"
        )
    for index, item in enumerate(value):
        table.add(_json_cells(item, clock), index + 1)
    return header


def _runtime(state: Mapping[str, Any]) -> dict[str, Any]:
    """A trainer_state.json's clock: the ``train_runtime`` of its final log entry (written when
    training ends) and the steps trained, ``global_step`` (else that entry's step)."""
    final = next(
        (entry for entry in reversed(state["log_history"]) if isinstance(entry, dict) and "train_runtime" in entry),
        None,
    )
    if final is None:
        return {}
    return {"runtime": (final["train_runtime"], state.get("global_step", final.get("step")))}


def _json_cells(value: Mapping[str, Any], clock: Clock) -> Iterator[tuple[str, float | str | timedelta | None]]:
    for name, cell in value.items():
        if not isinstance(cell, (bool, dict, list)):
            yield name, _time(cell) if clock(name) else _number(cell)


def _read_tensorboard(path: Path) -> tuple[list[Record], dict[str, Any]]:
    """The records merged by step, and each tag's wall times (the clock) in the header."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    folder = path if path.is_dir() else path.parent
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    try:
        accumulator.Reload()
    except Exception as error:  # the reader raises its own types for corrupt records
        raise ValueError(f"{path}: not a readable TensorBoard event file ({error})") from None
    series: dict[str, list[tuple[int, float]]] = {}
    clocks: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    tags = accumulator.Tags()
    for tag in tags.get("scalars", []):
        events = accumulator.Scalars(tag)
        series[tag] = [(event.step, float(event.value)) for event in events]
        clocks[tag] = _wall_times(events)
    for tag in tags.get("tensors", []):
        events = accumulator.Tensors(tag)
        values = [(event.step, tensor_util.make_ndarray(event.tensor_proto)) for event in events]
        if values and all(array.size == 1 and array.dtype.kind == "f" for _, array in values):
            series[tag] = [(step, float(array.reshape(-1)[0])) for step, array in values]
            clocks[tag] = _wall_times(events)
    if not series:
        raise ValueError(
            f"{path if path.is_file() else folder}: no scalar values in the TensorBoard events"
        )
    merged: dict[int, Record] = {}
    for tag, points in series.items():
        steps = [step for step, _ in points]
        back = next((i for i in range(1, len(steps)) if steps[i] < steps[i - 1]), None)
        if back is not None:
            raise ValueError(
                f"{path}: steps of {tag!r} are not increasing (step {steps[back]} follows {steps[back - 1]}); "
                "a restarted run? read one run's events at a time"
            )
        for step, value in points:
            merged.setdefault(step, {"step": float(step)})[tag] = value
    return [merged[step] for step in sorted(merged)], {"wall_time": clocks}


def _wall_times(events: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """A tag's steps and the wall time (seconds since the epoch) each was written at."""
    steps = np.array([event.step for event in events], dtype=float)
    return steps, np.array([event.wall_time for event in events], dtype=float)


def _read_tensorboard_table(path: Path, clock: Clock, table: _Table) -> dict[str, Any]:
    records, header = _read_tensorboard(path)
    for record in records:
        table.add(record.items())
    return header


_READERS = {
    "csv": _read_csv,
    "jsonl": _read_jsonl,
    "json": _read_json,
    "tensorboard": _read_tensorboard_table,
}


def _lrkit_header(path: Path, text: str) -> dict[str, Any]:
    try:
        header = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return header if isinstance(header, dict) else {}


def _time(cell: Any) -> float | timedelta | None:
    """A wall-clock cell in seconds: a number, or an ISO-8601 time (one without a zone read as UTC),
    or a duration written ``[H:]MM:SS`` (a timedelta); empty is missing (None) and anything else NaN,
    which leaves the clock out instead of failing."""
    text = _number(cell)
    if not isinstance(text, str):
        return text
    duration = DURATION_TEXT.fullmatch(text)
    if duration:
        hours, minutes, seconds = duration.groups()
        return timedelta(hours=int(hours or 0), minutes=int(minutes), seconds=float(seconds))
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return math.nan
    return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()


def _cell_text(value: float | str | timedelta) -> str:
    """A cell as text again: a whole number without its ``.0``."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _listed(values: Sequence[str]) -> str:
    """The first ``RUN_LISTED`` of ``values``, quoted, and ``...`` for the rest."""
    return ", ".join(map(repr, values[:RUN_LISTED])) + (", ..." if len(values) > RUN_LISTED else "")


def _number(cell: Any) -> float | str | None:
    """A cell as a float; empty is missing (None), 'nan'/'inf' are values, other text stays text."""
    if cell is None:
        return None
    if isinstance(cell, (int, float)):
        return float(cell)
    text = str(cell).strip()
    if not text:
        return None
    try:
        return float(text)
    except ValueError:
        return text


# --- from records to a Trace --------------------------------------------------------------------


def _normal(name: str) -> str:
    return re.sub(r"[/\-. ]+", "_", name.strip().lower())


def _columns(path: Path, available: Iterable[str], chosen: Mapping[str, str]) -> dict[str, str]:
    """Trace column -> log column, from the caller's names or the candidates."""
    available = list(dict.fromkeys(available))
    by_normal = {}
    for name in available:
        by_normal.setdefault(_normal(name), name)
    found: dict[str, str] = {}
    for column, candidates in CANDIDATES.items():
        if column in chosen:
            # the exact name, else the one column it names up to case and punctuation, as guessing does
            named = chosen[column] if chosen[column] in available else by_normal.get(_normal(chosen[column]))
            if named is None:
                raise ValueError(
                    f"{path}: no column {chosen[column]!r} (given for {column}); columns: {', '.join(available)}"
                )
            found[column] = named
            continue
        match = next((by_normal[name] for name in candidates if name in by_normal), None)
        if match is None and column == "lr":
            match = next(
                (name for name in available if _normal(name).startswith(_LR_PREFIXES)), None
            )
        if match is not None and match not in found.values():
            found[column] = match
    if "loss" not in found:
        fix = "name it with loss=... (--loss)"
        if "value" in by_normal and {"key", "tag", "metric"} & set(by_normal):
            fix = "it holds one metric a row (as MLflow's metric history does): make a column of each metric first"
        raise ValueError(f"{path}: no loss column among {', '.join(available) or 'no columns'}; {fix}")
    return found


def _build(
    path: Path,
    kind: str,
    table: _Table,
    header: Mapping[str, Any],
    chosen: Mapping[str, str],
) -> Trace:
    if not table.rows:
        raise ValueError(f"{path}: no data rows")
    logged = table.columns()
    if "time" in chosen and header and _normal(chosen["time"]) not in map(_normal, logged):
        # a log that keeps its time outside its columns (an lrkit trace, TensorBoard, train_runtime)
        # is timed by it, so that one --time can name the clock of the other logs read with it
        chosen = {column: name for column, name in chosen.items() if column != "time"}
    found = _columns(path, logged, chosen)
    for name in found.values():  # text in a column not read (a note, a phase) is no matter
        if name in table.text:
            text, line = table.text[name]
            raise ValueError(f"{path}: column {name!r} has text {text[:40]!r} at line {line}; expected a number")
    # the rows that log a Trace column: only their steps are the curve's (MMEngine logs validation
    # metrics at step=epoch among training rows at step=iteration)
    read = np.zeros(table.rows, dtype=bool)
    for column, name in found.items():
        if column not in ("step", "time"):
            read |= logged[name][1]
    runs = {name: changes for name, changes in table.changes.items() if changes and name not in found.values()}
    steps = _steps(path, logged, table.rows, found.get("step"), read, runs)
    _check_lr(path, found.get("lr"), logged, steps)

    # merge rows that share a step (neighbours, as steps never go back), keeping the last value
    # each column logged there
    new = np.ones(len(steps), dtype=bool)
    new[1:] = steps[1:] != steps[:-1]
    merged_row = np.cumsum(new) - 1
    merged = {
        column: _last_logged(*logged[name], merged_row, int(new.sum()))
        for column, name in found.items()
        if column != "time"
    }

    loss, is_train = merged["loss"]
    if not is_train.any():
        raise ValueError(f"{path}: the loss column {found['loss']!r} has no values")
    train = np.flatnonzero(is_train)
    # a merged row's values go to the last training step at or before it (the first one if none)
    target = np.maximum(np.cumsum(is_train) - 1, 0)
    lr = np.full(len(train), np.nan)
    if "lr" in merged:  # a missing LR carries over from the last one logged
        lr = _carried(*merged["lr"], fill=math.nan)[train]
    grad_norm = merged["grad_norm"][0][train] if "grad_norm" in merged else np.full(len(train), np.nan)
    val_loss = np.full(len(train), np.nan)
    if "val_loss" in merged:
        values, at = _last_logged(*merged["val_loss"], target, len(train))
        val_loss[at] = values[at]
    own = dict(header.get("meta", {}))
    # an lrkit trace's recorded time comes first: the log's clock is read only without it
    clock = (
        {} if "seconds" in own or "seconds_per_step" in own else _clock(header, logged, found, steps, table.durations)
    )
    meta = {
        **clock,
        **own,
        "source": str(path),
        "format": kind,
        "columns": {column: name for column, name in found.items() if column != "time" or "time_source" in clock},
    }
    events = [Event(**event) for event in header.get("events", [])]
    return Trace(
        step=_whole(steps[new][train]),
        lr=lr,
        loss=loss[train],
        val_loss=val_loss,
        grad_norm=grad_norm,
        events=events,
        meta=meta,
    )


def _clock(
    header: Mapping[str, Any],
    logged: Mapping[str, tuple[np.ndarray, np.ndarray]],
    found: Mapping[str, str],
    steps: np.ndarray,
    durations: Collection[str] = (),
) -> dict[str, Any]:
    """The log's seconds per step and where they came from, or why its clock was left out, as meta:
    a time column (a clock, or each step's duration), else TensorBoard's wall time of the loss, else
    Hugging Face's train_runtime."""
    if "time" in found:
        name = found["time"]
        values, known = logged[name]
        normal = _normal(name)
        # each step's duration, not a clock: so named, written as durations (fastai), or MMEngine's
        # and Detectron2's `time` beside `data_time`, both seconds per iteration
        if name in durations or normal in DURATIONS or (normal == "time" and "data_time" in map(_normal, logged)):
            trained = known & logged[found["loss"]][1]  # a validation row's time is no training step's
            scale, unit = (1e-3, " (in milliseconds)") if normal.endswith("_ms") else (1.0, "")
            where = f"the log's {name!r} column of step durations{unit}"
            return pace_of_durations(where, steps[trained], values[trained] * scale)
        return pace_of_clock(f"the log's {name!r} column", steps[known], values[known])
    wall_times = header.get("wall_time", {})
    if found["loss"] in wall_times:
        return pace_of_clock(f"the TensorBoard wall time of {found['loss']!r}", *wall_times[found["loss"]])
    if "runtime" in header:
        runtime, global_step = header["runtime"]
        where = "trainer_state.json's train_runtime over its global_step"
        if not all(
            isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0
            for value in (runtime, global_step)
        ):
            return {"time_problem": f"{where} are not a positive time and step count"}
        return {"seconds_per_step": runtime / global_step, "time_source": where}
    return {}


def _last_logged(
    values: np.ndarray, logged: np.ndarray, group: np.ndarray, groups: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per group (numbered from 0 in row order) its last logged value (NaN if none) and whether it has one."""
    rows = np.flatnonzero(logged)
    of_row = group[rows]
    last = np.ones(len(rows), dtype=bool)
    last[:-1] = of_row[1:] != of_row[:-1]
    out, has = np.full(groups, np.nan), np.zeros(groups, dtype=bool)
    out[of_row[last]] = values[rows[last]]
    has[of_row[last]] = True
    return out, has


def _carried(values: np.ndarray, logged: np.ndarray, *, fill: float) -> np.ndarray:
    """``values`` with each unlogged one replaced by the last logged before it (``fill`` if none)."""
    source = np.maximum.accumulate(np.where(logged, np.arange(len(values)), -1))
    return np.where(source >= 0, values[np.maximum(source, 0)], fill)


def _whole(steps: np.ndarray) -> np.ndarray:
    """Whole-number steps as integers (Python's where they do not fit in 64 bits)."""
    if np.all(np.abs(steps) < 2.0**63):
        return steps.astype(np.int64)
    return np.array([int(step) for step in steps.tolist()])


def _ranked(
    path: Path, name: str, values: np.ndarray, logged: np.ndarray, first: int, runs: Runs
) -> np.ndarray:
    """Each value's place among the distinct values of its column (a missing one repeats the last)."""
    known = logged & np.isfinite(values)
    values = _carried_steps(path, name, values, known, first)
    back = np.flatnonzero(values[1:] < values[:-1])
    if back.size:
        row = int(back[0]) + 1
        value, last = float(values[row]), float(values[row - 1])
        raise _out_of_order(path, f"{name}={value!r} in data row {row + 1} follows {last!r}", row, known, runs)
    new = np.ones(len(values), dtype=bool)
    new[1:] = values[1:] != values[:-1]
    return (np.cumsum(new) - 1).astype(float)


def _check_lr(
    path: Path, name: str | None, logged: Mapping[str, tuple[np.ndarray, np.ndarray]], steps: np.ndarray
) -> None:
    """A logged learning rate is >= 0 and finite (NaN: not known at that step)."""
    if name is None:
        return
    values, known = logged[name]
    bad = np.flatnonzero(known & ((values < 0) | np.isinf(values)))
    if bad.size:
        row = int(bad[0])
        raise ValueError(
            f"{path}: column {name!r} has the learning rate {float(values[row])!r} in data row {row + 1} "
            f"(step {int(steps[row])}); a learning rate must be >= 0 and finite"
        )


def _carried_steps(path: Path, name: str, values: np.ndarray, known: np.ndarray, first: int) -> np.ndarray:
    """``values`` with each row not ``known`` given the step before it, and the rows before ``first``
    (the first row read, which must have a step) its step."""
    if not known[first]:
        raise ValueError(f"{path}: step column {name!r} is empty in data row {first + 1}")
    values = _carried(values, known, fill=math.nan)
    values[:first] = values[first]
    return values


def _steps(
    path: Path,
    logged: Mapping[str, tuple[np.ndarray, np.ndarray]],
    rows: int,
    name: str | None,
    read: np.ndarray,
    runs: Runs,
) -> np.ndarray:
    """Each row's step as a whole float (the row number when the log has no step column); must not go back.

    Only the ``read`` rows' steps count: another row (one that logs no Trace column) takes the step
    before it. A fractional epoch column (``epoch`` 0.25, 0.5, ... as Hugging Face logs it) counts
    its distinct values in order instead: the curve's shape is the same, only the axis is renumbered.
    """
    if name is None:
        return np.arange(rows, dtype=float)
    values, known = logged[name]
    start = 0
    if read.any():
        start, known = int(np.argmax(read)), known & read
    if "epoch" in name.lower():
        finite = values[known & np.isfinite(values)]
        if np.any(finite != np.trunc(finite)):
            return _ranked(path, name, values, known, start, runs)
    values = _carried_steps(path, name, values, known, start)
    wrong = ~np.isfinite(values)
    wrong[~wrong] = values[~wrong] != np.trunc(values[~wrong])
    back = np.zeros(len(values), dtype=bool)
    back[1:] = values[1:] < values[:-1]
    first = np.flatnonzero(wrong | back)
    if first.size:
        row = int(first[0])
        if wrong[row]:
            raise ValueError(
                f"{path}: step column {name!r} has {float(values[row])!r} in data row {row + 1}; expected whole numbers"
            )
        where = f"{name}={int(values[row])} in data row {row + 1} follows {int(values[row - 1])}"
        raise _out_of_order(path, where, row, known, runs)
    return values


def _out_of_order(path: Path, where: str, row: int, known: np.ndarray, runs: Runs) -> ValueError:
    """The error for steps that go back at ``row``; when a column of text not read changes there
    (between the step before and this one), the file holds several runs one after another by it."""
    message = f"{path}: steps are not in order: {where}"
    before = np.flatnonzero(known[:row])
    since = int(before[-1]) if before.size else 0
    for column, changes in runs.items():
        if any(since < start <= row for start, _ in changes):
            values = list(dict.fromkeys(text for _, text in changes))
            # lrkit demo's loss_curves.csv names the run it picked "chosen": the one to look at first
            pick = f"{column}={'chosen' if 'chosen' in values else values[0]}"
            return ValueError(
                f"{message}; the file holds several runs one after another by its {column!r} column "
                f"({_listed(values)}): pick one with run={pick!r} (--run {shlex.quote(pick)})"
            )
    return ValueError(message)
