"""The readers of each format. Each fills a Table with the log's rows in file order and returns a
header: an lrkit trace's own (``meta``, ``events``), and the clock a format keeps outside its
columns (``wall_time``: TensorBoard tag -> (steps, seconds); ``runtime``: Hugging Face's
(train_runtime, global_step)).
"""

from __future__ import annotations

import csv
import json
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from lrkit.logs.cells import Cell, clock_value, number
from lrkit.logs.columns import Clock
from lrkit.logs.sources import lines, read_text
from lrkit.logs.table import Table

Reader = Callable[[Path, Clock, Table], dict[str, Any]]


def read_csv(path: Path, clock: Clock, table: Table) -> dict[str, Any]:
    """A CSV (or tab- or semicolon-separated) log; an lrkit trace's header is its first line, ``# {...}``."""
    text = read_text(path)
    first = next(lines(text))
    header = _lrkit_header(first[2:]) if first.startswith("# {") else {}
    numbers: deque[int] = deque()  # the numbers of the lines the CSV reader took, not yet in a row

    def body() -> Iterator[str]:
        for line_number, line in enumerate(lines(text), 1):
            if line.strip() and not line.startswith("#"):
                numbers.append(line_number)
                yield line

    rest = body()
    head = next(rest, None)
    if head is None:
        raise ValueError(f"{path}: the file has no header row and no data")
    rows = csv.reader(chain([head], rest), _dialect(head))
    names = [name.strip() for name in next(rows)]
    clocks = [clock(name) for name in names]
    numbers.popleft()
    for row in rows:
        line_number = numbers.popleft()
        if len(row) > len(names):
            raise ValueError(
                f"{path}: line {line_number} has {len(row)} fields but the header has {len(names)}"
            )
        table.add(
            ((name, clock_value(cell) if timed else number(cell))
             for name, timed, cell in zip(names, clocks, row, strict=False)),
            line_number,
        )
    if not table.offered:
        raise ValueError(f"{path}: has a header ({', '.join(names)}) but no data rows")
    if numbers:
        raise ValueError(f"{path}: a quoted field runs over more than one line; keep each row on one line")
    return header


def _dialect(first_line: str) -> type[csv.Dialect]:
    """Tabs or semicolons when the header row is split by them and holds no comma, else commas."""
    for delimiter in ("\t", ";"):
        if delimiter in first_line and "," not in first_line:
            return type("Sniffed", (csv.excel,), {"delimiter": delimiter})
    return csv.excel


def _lrkit_header(text: str) -> dict[str, Any]:
    """An lrkit trace's header line as a dict; anything else as none."""
    try:
        header = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return header if isinstance(header, dict) else {}


def read_jsonl(path: Path, clock: Clock, table: Table) -> dict[str, Any]:
    """A log of one JSON object a line; the line holding ``lrkit_trace`` is an lrkit trace's header."""
    header: dict[str, Any] = {}
    for line_number, line in enumerate(lines(read_text(path)), 1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except json.JSONDecodeError as error:
            raise ValueError(f"{path}: line {line_number} is not JSON ({error.msg})") from None
        if not isinstance(value, dict):
            raise ValueError(f"{path}: line {line_number} is not a JSON object")
        if "lrkit_trace" in value:
            header = value
            continue
        table.add(_json_cells(value, clock), line_number)
    return header


def read_json(path: Path, clock: Clock, table: Table) -> dict[str, Any]:
    """A JSON list of records, or a Hugging Face trainer_state.json (its ``log_history``); a file
    that is no one JSON value is read as JSON lines."""
    text = read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return read_jsonl(path, clock, table)
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


def _json_cells(value: Mapping[str, Any], clock: Clock) -> Iterator[tuple[str, Cell]]:
    """A JSON record's cells; booleans, objects and lists are no values of a column and left out."""
    for name, cell in value.items():
        if not isinstance(cell, (bool, dict, list)):
            yield name, clock_value(cell) if clock(name) else number(cell)


def read_tensorboard(path: Path, clock: Clock, table: Table) -> dict[str, Any]:
    """TensorBoard event files, a row per step holding every tag logged there, and each tag's wall
    times (the clock) in the header; ``clock`` goes unused: TensorBoard keeps time beside each value."""
    series, clocks = _scalars(path)
    merged: dict[int, dict[str, float]] = {}
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
    for step in sorted(merged):
        table.add(merged[step].items())
    return {"wall_time": clocks}


def _scalars(
    path: Path,
) -> tuple[dict[str, list[tuple[int, float]]], dict[str, tuple[np.ndarray, np.ndarray]]]:
    """Each scalar tag's (step, value) points in the event files, and its steps and wall times."""
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
    return series, clocks


def _wall_times(events: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """A tag's steps and the wall time (seconds since the epoch) each was written at."""
    steps = np.array([event.step for event in events], dtype=float)
    return steps, np.array([event.wall_time for event in events], dtype=float)


READERS: dict[str, Reader] = {
    "csv": read_csv,
    "jsonl": read_jsonl,
    "json": read_json,
    "tensorboard": read_tensorboard,
}
