"""A log's rows as read, column by column, and the rows of one run when the caller picks one."""

from __future__ import annotations

import math
from array import array
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np

from lrkit.logs.cells import Cell, cell_text, number
from lrkit.logs.columns import normal

# the most texts (and changes of text) of a column that may tell runs apart that are kept; the most
# of them an error lists
RUN_VALUES = 32
RUN_LISTED = 6

# column name -> (values, logged) over all rows, as ``Table.columns`` gives them
ColumnValues = Mapping[str, tuple[np.ndarray, np.ndarray]]
# per column of text, the rows where its text changes and the new text (``Table.changes``)
Runs = Mapping[str, list[tuple[int, str]]]


class Table:
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

    def add(self, cells: Iterable[tuple[str, Cell]], line: int = 0) -> None:
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
        """Keep ``value`` in ``changes`` when it is a new text of its column (see the class)."""
        changes = self.changes.setdefault(name, [])
        if changes is None or (changes and changes[-1][1] == value):
            return
        if len(changes) >= RUN_VALUES:
            self.changes[name] = None
            return
        changes.append((row, value))

    def _in_run(self, cells: Sequence[tuple[str, Cell]]) -> bool:
        """Whether a row holds ``run``'s value in ``run``'s column (text alike, or the same number)."""
        assert self.run is not None
        column, wanted = self.run
        for name, value in cells:
            self.names.setdefault(name)
            if name != column and normal(name) != normal(column):
                continue
            self.run_seen = True
            if value is None:
                return False
            text = cell_text(value)
            if len(self.run_values) < RUN_VALUES:
                self.run_values.setdefault(text)
            if text == wanted:
                return True
            wanted_number = number(wanted)
            return isinstance(wanted_number, float) and isinstance(value, float) and wanted_number == value
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
            f"{path}: no row has {column}={wanted!r} (given for run); {column!r} holds {listed(values)}"
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


def listed(values: Sequence[str]) -> str:
    """The first ``RUN_LISTED`` of ``values``, quoted, and ``...`` for the rest."""
    return ", ".join(map(repr, values[:RUN_LISTED])) + (", ..." if len(values) > RUN_LISTED else "")
