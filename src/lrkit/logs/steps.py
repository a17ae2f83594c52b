"""Each row's step: whole numbers that never go back, or the error that says where they do (and,
when a column of text changes there, that the file holds several runs one after another)."""

from __future__ import annotations

import math
import shlex
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from lrkit.logs.table import ColumnValues, Runs, Table, listed


def row_steps(path: Path, table: Table, logged: ColumnValues, found: Mapping[str, str]) -> np.ndarray:
    """Each row's step as a whole float (the row number when the log has no step column); must not go back.

    Only the steps of the rows that log a Trace column count (MMEngine logs validation metrics at
    step=epoch among training rows at step=iteration): another row takes the step before it. A
    fractional epoch column (``epoch`` 0.25, 0.5, ... as Hugging Face logs it) counts its distinct
    values in order instead: the curve's shape is the same, only the axis is renumbered.
    """
    name = found.get("step")
    if name is None:
        return np.arange(table.rows, dtype=float)
    read = np.zeros(table.rows, dtype=bool)
    for column, logged_as in found.items():
        if column not in ("step", "time"):
            read |= logged[logged_as][1]
    runs = {column: changes for column, changes in table.changes.items() if changes and column not in found.values()}
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


def carried(values: np.ndarray, logged: np.ndarray, *, fill: float) -> np.ndarray:
    """``values`` with each unlogged one replaced by the last logged before it (``fill`` if none)."""
    source = np.maximum.accumulate(np.where(logged, np.arange(len(values)), -1))
    return np.where(source >= 0, values[np.maximum(source, 0)], fill)


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


def _carried_steps(path: Path, name: str, values: np.ndarray, known: np.ndarray, first: int) -> np.ndarray:
    """``values`` with each row not ``known`` given the step before it, and the rows before ``first``
    (the first row read, which must have a step) its step."""
    if not known[first]:
        raise ValueError(f"{path}: step column {name!r} is empty in data row {first + 1}")
    values = carried(values, known, fill=math.nan)
    values[:first] = values[first]
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
                f"({listed(values)}): pick one with run={pick!r} (--run {shlex.quote(pick)})"
            )
    return ValueError(message)
