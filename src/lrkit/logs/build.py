"""From a filled Table to a Trace: its columns found, its steps checked, the rows that share a step
merged, and the log's clock read as seconds per step."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lrkit.clocks import pace_of_clock, pace_of_durations
from lrkit.logs.columns import DURATIONS, find_columns, normal
from lrkit.logs.steps import carried, row_steps
from lrkit.logs.table import ColumnValues, Table
from lrkit.trace import Event, Trace


def build_trace(
    path: Path,
    kind: str,
    table: Table,
    header: Mapping[str, Any],
    chosen: Mapping[str, str],
) -> Trace:
    """The Trace in ``table``, a log of format ``kind`` with a reader's ``header``; ``chosen`` names
    the columns the caller gave."""
    if not table.rows:
        raise ValueError(f"{path}: no data rows")
    logged = table.columns()
    found = _read_columns(path, table, logged, header, chosen)
    steps = row_steps(path, table, logged, found)
    _check_lr(path, found.get("lr"), logged, steps)
    curves = _merged(path, logged, found, steps)
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
    return Trace(**curves, events=events, meta=meta)


def _read_columns(
    path: Path, table: Table, logged: ColumnValues, header: Mapping[str, Any], chosen: Mapping[str, str]
) -> dict[str, str]:
    """Trace column -> the log column read for it, which must hold numbers only."""
    if "time" in chosen and header and normal(chosen["time"]) not in map(normal, logged):
        # a log that keeps its time outside its columns (an lrkit trace, TensorBoard, train_runtime)
        # is timed by it, so that one --time can name the clock of the other logs read with it
        chosen = {column: name for column, name in chosen.items() if column != "time"}
    found = find_columns(path, logged, chosen)
    for name in found.values():  # text in a column not read (a note, a phase) is no matter
        if name in table.text:
            text, line = table.text[name]
            raise ValueError(f"{path}: column {name!r} has text {text[:40]!r} at line {line}; expected a number")
    return found


def _check_lr(path: Path, name: str | None, logged: ColumnValues, steps: np.ndarray) -> None:
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


def _merged(path: Path, logged: ColumnValues, found: Mapping[str, str], steps: np.ndarray) -> dict[str, np.ndarray]:
    """The Trace's columns, a row per training step (a step that logs a loss): rows that share a
    step are merged, each column keeping the last value logged there, and a validation value
    without a training loss at its step goes to the last training step before it."""
    # rows that share a step are neighbours, as steps never go back
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
        lr = carried(*merged["lr"], fill=math.nan)[train]
    grad_norm = merged["grad_norm"][0][train] if "grad_norm" in merged else np.full(len(train), np.nan)
    val_loss = np.full(len(train), np.nan)
    if "val_loss" in merged:
        values, at = _last_logged(*merged["val_loss"], target, len(train))
        val_loss[at] = values[at]
    return {
        "step": _whole(steps[new][train]),
        "lr": lr,
        "loss": loss[train],
        "val_loss": val_loss,
        "grad_norm": grad_norm,
    }


def _clock(
    header: Mapping[str, Any],
    logged: ColumnValues,
    found: Mapping[str, str],
    steps: np.ndarray,
    durations: Collection[str],
) -> dict[str, Any]:
    """The log's seconds per step and where they came from, or why its clock was left out, as meta:
    a time column (a clock, or each step's duration), else TensorBoard's wall time of the loss, else
    Hugging Face's train_runtime."""
    if "time" in found:
        name = found["time"]
        values, known = logged[name]
        normalised = normal(name)
        # each step's duration, not a clock: so named, written as durations (fastai), or MMEngine's
        # and Detectron2's `time` beside `data_time`, both seconds per iteration
        if name in durations or normalised in DURATIONS or (normalised == "time" and "data_time" in map(normal, logged)):
            trained = known & logged[found["loss"]][1]  # a validation row's time is no training step's
            scale, unit = (1e-3, " (in milliseconds)") if normalised.endswith("_ms") else (1.0, "")
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


def _whole(steps: np.ndarray) -> np.ndarray:
    """Whole-number steps as integers (Python's where they do not fit in 64 bits)."""
    if np.all(np.abs(steps) < 2.0**63):
        return steps.astype(np.int64)
    return np.array([int(step) for step in steps.tolist()])
