"""The Trace: the history of one run (step, lr, loss and optional val_loss, grad_norm), as one value.

Every part of lrkit produces or consumes a Trace: the range test records one, log readers build one,
the guard appends to one, ``suggest`` and ``diagnose`` read one, plots draw one. A Trace is
immutable and NumPy-backed; ``TraceBuilder`` collects one step at a time and freezes it.
Missing values (a step without validation, an LR the log does not give) are NaN; a learning rate
is otherwise >= 0 and finite.
"""

from __future__ import annotations

import csv
import io
import json
import math
import reprlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from lrkit import checks

COLUMNS = ("step", "lr", "loss", "val_loss", "grad_norm")
_OPTIONAL = ("val_loss", "grad_norm")


@dataclass(frozen=True)
class Event:
    """Something that happened at a step: a skipped NaN step, a rollback, an LR cut, a stop."""

    step: int
    kind: str
    detail: str = ""


def _column(name: str, values: Iterable[float] | np.ndarray) -> np.ndarray:
    """``values`` as a read-only 1-D array (integers for ``step``, floats otherwise).

    Anything else (text, booleans, a 2-D array, a fractional step) is refused, naming the column.
    """
    allowed = f"{name} must be a 1-D array of numbers"
    try:
        array = np.asarray(values)
    except ValueError:  # a ragged nesting
        raise ValueError(f"{allowed}, got {reprlib.repr(values)}") from None
    if array.ndim != 1:
        raise ValueError(f"{allowed}, got shape {array.shape}")
    if array.dtype.kind not in "iuf":
        items = np.asarray(values, dtype=object).tolist()  # as given, before NumPy coerced them
        index = next((i for i, item in enumerate(items) if not checks.is_real(item)), None)
        if index is not None:
            item = items[index]
            raise TypeError(f"{allowed}, got {item!r} ({type(item).__name__}) at index {index}")
    if name != "step":
        return _frozen(np.array(array, dtype=np.float64))
    steps = np.array(array, dtype=np.float64)
    fractional = np.flatnonzero(~np.isfinite(steps) | (steps != np.round(steps)))
    if len(fractional):
        index = int(fractional[0])
        raise ValueError(f"step must hold whole numbers, got {float(steps[index])!r} at index {index}")
    return _frozen(np.array(array, dtype=np.int64))


def _frozen(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class Trace:
    """Aligned per-step arrays of one run plus its metadata (task, optimizer, seed, ...) and events."""

    step: np.ndarray
    lr: np.ndarray
    loss: np.ndarray
    val_loss: np.ndarray | None = None
    grad_norm: np.ndarray | None = None
    events: tuple[Event, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        for name in ("step", "lr", "loss"):
            set_(self, name, _column(name, getattr(self, name)))
        for name in _OPTIONAL:
            values = getattr(self, name)
            if values is not None:
                array = _column(name, values)
                set_(self, name, None if np.isnan(array).all() else array)
        bad_lr = np.flatnonzero((self.lr < 0) | np.isinf(self.lr))
        if len(bad_lr):
            index = int(bad_lr[0])
            raise ValueError(
                f"lr must be >= 0 and finite (NaN where unknown), got {float(self.lr[index])!r} at index {index}"
            )
        n = len(self.step)
        for name in COLUMNS[1:]:
            values = getattr(self, name)
            if values is not None and len(values) != n:
                raise ValueError(f"{name} has {len(values)} values but step has {n}; columns must align")
        set_(self, "events", tuple(self.events))
        set_(self, "meta", MappingProxyType(dict(self.meta)))

    def __len__(self) -> int:
        return len(self.step)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Trace):
            return NotImplemented
        return (
            all(_same(getattr(self, name), getattr(other, name)) for name in COLUMNS)
            and self.events == other.events
            and dict(self.meta) == dict(other.meta)
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        if not len(self):
            return f"Trace(empty, meta={dict(self.meta)!r})"
        finite = self.loss[np.isfinite(self.loss)]
        loss = f"{finite[0]:.4g}->{finite[-1]:.4g}" if len(finite) else "no finite loss"
        extra = [name for name in _OPTIONAL if getattr(self, name) is not None]
        return (
            f"Trace(n={len(self)}, steps {self.step[0]}..{self.step[-1]}, "
            f"lr {self.lr.min():.3g}..{self.lr.max():.3g}, loss {loss}"
            + (f", with {'+'.join(extra)}" if extra else "")
            + (f", {len(self.events)} events" if self.events else "")
            + (f", meta={dict(self.meta)!r}" if self.meta else "")
            + ")"
        )

    def replace(self, **changes: Any) -> Trace:
        """A copy with some fields changed."""
        fields = {name: getattr(self, name) for name in (*COLUMNS, "events", "meta")}
        fields.update(changes)
        return Trace(**fields)

    def select(self, mask: np.ndarray | slice) -> Trace:
        """The rows picked by a boolean mask or slice (events outside the kept steps are dropped)."""
        columns = {name: (None if getattr(self, name) is None else getattr(self, name)[mask]) for name in COLUMNS}
        kept = set(columns["step"].tolist())
        return Trace(**columns, events=[e for e in self.events if e.step in kept], meta=self.meta)

    # --- text forms -------------------------------------------------------------------------

    def to_csv(self) -> str:
        """CSV text: a ``# {json}`` line with meta and events, then one row per step."""
        buffer = io.StringIO()
        header = {"meta": dict(self.meta), "events": [vars(e) for e in self.events]}
        buffer.write("# " + json.dumps(header, default=str) + "\n")
        columns = [name for name in COLUMNS if getattr(self, name) is not None]
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        for i in range(len(self)):
            writer.writerow([_format(getattr(self, name)[i]) for name in columns])
        return buffer.getvalue()

    @classmethod
    def from_csv(cls, text: str) -> Trace:
        """Parse the text written by :meth:`to_csv`."""
        lines = text.splitlines()
        header: dict[str, Any] = {}
        if lines and lines[0].startswith("# "):
            header = json.loads(lines[0][2:])
            lines = lines[1:]
        rows = list(csv.DictReader(lines))
        return cls._from_rows(rows, header)

    def to_jsonl(self) -> str:
        """JSON lines: a header object with meta and events, then one object per step."""
        header = {"lrkit_trace": 1, "meta": dict(self.meta), "events": [vars(e) for e in self.events]}
        out = [json.dumps(header, default=str)]
        columns = [name for name in COLUMNS if getattr(self, name) is not None]
        for i in range(len(self)):
            out.append(json.dumps({name: _json_number(getattr(self, name)[i]) for name in columns}))
        return "\n".join(out) + "\n"

    @classmethod
    def from_jsonl(cls, text: str) -> Trace:
        """Parse the text written by :meth:`to_jsonl`."""
        records = [json.loads(line) for line in text.splitlines() if line.strip()]
        header = records.pop(0) if records and "lrkit_trace" in records[0] else {}
        return cls._from_rows(records, header)

    @classmethod
    def _from_rows(cls, rows: list[Mapping[str, Any]], header: Mapping[str, Any]) -> Trace:
        columns: dict[str, Any] = {}
        for name in COLUMNS:
            if rows and name in rows[0]:
                columns[name] = [_parse(row.get(name)) for row in rows]
            elif name in ("step", "lr", "loss"):
                columns[name] = [] if not rows else [math.nan] * len(rows)
        if "step" in columns:
            columns["step"] = [int(value) for value in columns["step"]]
        events = [Event(**event) for event in header.get("events", [])]
        return cls(**columns, events=events, meta=header.get("meta", {}))

    def save(self, path: str | Path) -> Path:
        """Write atomically as CSV (``.csv``) or JSON lines (``.jsonl``/``.json``)."""
        from lrkit.files import atomic_write_text

        path = Path(path)
        text = self.to_csv() if path.suffix == ".csv" else self.to_jsonl()
        atomic_write_text(path, text)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Trace:
        """Read a file written by :meth:`save`."""
        path = Path(path)
        text = path.read_text()
        return cls.from_csv(text) if path.suffix == ".csv" else cls.from_jsonl(text)

    def plot(self, ax: Any = None, **options: Any) -> Any:
        """Draw loss against step (see :func:`lrkit.plots.plot_traces`)."""
        from lrkit.plots import plot_traces

        return plot_traces([self], ax=ax, **options)


class TraceBuilder:
    """Collects a run step by step; :meth:`build` freezes it into a :class:`Trace`."""

    def __init__(self, **meta: Any) -> None:
        self.meta = dict(meta)
        self._columns: dict[str, list[float]] = {name: [] for name in COLUMNS}
        self._events: list[Event] = []

    def __len__(self) -> int:
        return len(self._columns["step"])

    def add(
        self,
        step: int,
        lr: float,
        loss: float,
        *,
        val_loss: float = math.nan,
        grad_norm: float = math.nan,
    ) -> None:
        columns = self._columns  # one append per column, spelled out: this runs every training step
        columns["step"].append(step)
        columns["lr"].append(lr)
        columns["loss"].append(loss)
        columns["val_loss"].append(val_loss)
        columns["grad_norm"].append(grad_norm)

    def set_val_loss(self, val_loss: float) -> None:
        """Attach a validation loss to the latest step."""
        self._columns["val_loss"][-1] = val_loss

    def event(self, step: int, kind: str, detail: str = "") -> Event:
        event = Event(step, kind, detail)
        self._events.append(event)
        return event

    def build(self, rows: slice | None = None) -> Trace:
        """The run so far as a Trace, or only ``rows`` of it (only those are copied, so a window of
        a long run costs the window, not the run; events outside it are dropped)."""
        if rows is None:
            return Trace(**self._columns, events=self._events, meta=self.meta)
        columns = {name: values[rows] for name, values in self._columns.items()}
        kept = set(columns["step"])
        return Trace(**columns, events=[e for e in self._events if e.step in kept], meta=self.meta)


def _same(a: np.ndarray | None, b: np.ndarray | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a.shape == b.shape and bool(np.array_equal(a, b, equal_nan=True))


def _format(value: float) -> str:
    return repr(int(value)) if isinstance(value, np.integer) else repr(float(value))


def _json_number(value: float) -> float | int | str:
    if isinstance(value, np.integer):
        return int(value)
    value = float(value)
    return value if math.isfinite(value) else repr(value)


def _parse(value: Any) -> float:
    if value is None or value == "":
        return math.nan
    return float(value)
