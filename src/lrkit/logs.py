"""Read training logs into a Trace: CSV (Lightning's CSVLogger and Keras' included), JSON lines or a
JSON list of records (Hugging Face's ``trainer_state.json``), and TensorBoard event files.

Columns are found by name (``step``/``iteration``/``epoch``, ``loss``/``train_loss``,
``lr``/``learning_rate``, ``val_loss``/``eval_loss``, ``grad_norm``) or named by the caller. Rows
that share a step are merged (loggers write train and validation metrics on separate rows), a
validation value without a training loss at its step goes to the last training step before it, and
a missing LR carries over from the last one logged (an LR column with no values reads as no LR
column). A log that cannot be read this way, or logs a negative or infinite LR, raises
``ValueError`` naming the file and the problem.
"""

from __future__ import annotations

import csv
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from lrkit.trace import Event, Trace

# Trace column -> names that loggers commonly give it, best first (after normalising: lower case,
# '/', '-', '.', ' ' turned into '_'). An LR column may also be named ``lr_<optimizer>``.
CANDIDATES: dict[str, tuple[str, ...]] = {
    "step": ("step", "global_step", "iteration", "iter", "it", "train_step", "batch", "epoch"),
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
}
_LR_PREFIXES = ("lr_", "learning_rate_")
FORMATS = ("csv", "jsonl", "json", "tensorboard")

Record = dict[str, float | None]


def read_log(
    path: str | Path,
    *,
    format: str | None = None,
    step: str | None = None,
    loss: str | None = None,
    lr: str | None = None,
    val_loss: str | None = None,
    grad_norm: str | None = None,
) -> Trace:
    """The Trace in a training log; the format comes from the name or the content unless given.

    ``path`` may be a folder holding a Lightning ``metrics.csv``, TensorBoard event files or
    Hugging Face checkpoints (the latest ``trainer_state.json`` is read). The
    keyword column names override detection (for CSV and JSON the key, for TensorBoard the tag).
    """
    path = Path(path)
    if format is not None and format not in FORMATS:
        raise ValueError(f"format must be one of {', '.join(map(repr, FORMATS))}; got {format!r}")
    if path.is_dir():
        path = _log_in_folder(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    kind = format or ("tensorboard" if path.is_dir() else _detect(path))
    records, header = _READERS[kind](path)
    names = {"step": step, "loss": loss, "lr": lr, "val_loss": val_loss, "grad_norm": grad_norm}
    return _build(
        path, kind, records, header, {key: value for key, value in names.items() if value}
    )


# --- finding and sniffing -----------------------------------------------------------------------


def _log_in_folder(folder: Path) -> Path:
    found = sorted(folder.rglob("metrics.csv")) + sorted(folder.rglob("*tfevents*"))
    places = sorted({file.parent for file in found})
    if not places:
        states = sorted(folder.rglob("trainer_state.json"), key=_checkpoint_number)
        if states:  # a Hugging Face output folder: the latest checkpoint holds the whole history
            return states[-1]
        raise ValueError(
            f"{folder}: no metrics.csv, TensorBoard event file or trainer_state.json in this folder"
        )
    if len(places) > 1:
        listed = ", ".join(str(place) for place in places[:5])
        if len(places) > 5:
            listed += f" and {len(places) - 5} more"
        raise ValueError(f"{folder}: holds several runs ({listed}); name one of them")
    metrics = places[0] / "metrics.csv"
    return metrics if metrics.exists() else places[0]


def _checkpoint_number(state: Path) -> int:
    """The N of a ``checkpoint-N`` folder holding ``state`` (-1 for any other folder)."""
    match = re.fullmatch(r"checkpoint-(\d+)", state.parent.name)
    return int(match.group(1)) if match else -1


def _detect(path: Path) -> str:
    if "tfevents" in path.name:
        return "tensorboard"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv"):
        return "csv"
    head = path.read_bytes()[:4096]
    try:
        text = head.decode()
    except UnicodeDecodeError:
        return "tensorboard"
    stripped = text.lstrip()
    if stripped.startswith("["):
        return "json"
    return "jsonl" if stripped.startswith("{") else "csv"


# --- readers: each returns records in file order and an lrkit header (meta, events) if any -------


def _read_text(path: Path) -> str:
    try:
        text = path.read_text()
    except UnicodeDecodeError as error:
        raise ValueError(
            f"{path}: not a text file ({error.reason} at byte {error.start})"
        ) from None
    if not text.strip():
        raise ValueError(f"{path}: the file is empty")
    return text


def _read_csv(path: Path) -> tuple[list[Record], dict[str, Any]]:
    lines = _read_text(path).splitlines()
    header: dict[str, Any] = {}
    if lines[0].startswith("# {"):
        header = _lrkit_header(path, lines[0][2:])
    body = [
        (number, line)
        for number, line in enumerate(lines, 1)
        if line.strip() and not line.startswith("#")
    ]
    if not body:
        raise ValueError(f"{path}: the file has no header row and no data")
    dialect = _dialect(body[0][1])
    rows = list(csv.reader((line for _, line in body), dialect))
    names = [name.strip() for name in rows[0]]
    if len(rows) == 1:
        raise ValueError(f"{path}: has a header ({', '.join(names)}) but no data rows")
    records = []
    for (number, _), row in zip(body[1:], rows[1:], strict=True):
        if len(row) > len(names):
            raise ValueError(
                f"{path}: line {number} has {len(row)} fields but the header has {len(names)}"
            )
        records.append(
            {
                name: _number(path, name, cell, number)
                for name, cell in zip(names, row, strict=False)
            }
        )
    return records, header


def _dialect(first_line: str) -> type[csv.Dialect]:
    for delimiter in ("\t", ";"):
        if delimiter in first_line and "," not in first_line:
            return type("Sniffed", (csv.excel,), {"delimiter": delimiter})
    return csv.excel


def _read_jsonl(path: Path) -> tuple[list[Record], dict[str, Any]]:
    header: dict[str, Any] = {}
    records = []
    for number, line in enumerate(_read_text(path).splitlines(), 1):
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
        records.append(_json_record(path, value, number))
    return records, header


def _read_json(path: Path) -> tuple[list[Record], dict[str, Any]]:
    text = _read_text(path)
    try:
        value = json.loads(text)
    except json.JSONDecodeError:
        return _read_jsonl(path)
    if isinstance(value, dict) and isinstance(value.get("log_history"), list):
        value = value["log_history"]  # Hugging Face Trainer's trainer_state.json
    if not isinstance(value, list) or not all(isinstance(item, dict) for item in value):
        raise ValueError(
            f"{path}: expected a list of JSON objects (one per logged step) or a trainer_state.json"
        )
    return [_json_record(path, item, index + 1) for index, item in enumerate(value)], {}


def _json_record(path: Path, value: Mapping[str, Any], number: int) -> Record:
    record = {}
    for name, cell in value.items():
        if isinstance(cell, (bool, dict, list)):
            continue
        record[name] = _number(path, name, cell, number)
    return record


def _read_tensorboard(path: Path) -> tuple[list[Record], dict[str, Any]]:
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    from tensorboard.util import tensor_util

    folder = path if path.is_dir() else path.parent
    accumulator = EventAccumulator(str(path), size_guidance={"scalars": 0, "tensors": 0})
    try:
        accumulator.Reload()
    except Exception as error:  # the reader raises its own types for corrupt records
        raise ValueError(f"{path}: not a readable TensorBoard event file ({error})") from None
    series: dict[str, list[tuple[int, float]]] = {}
    tags = accumulator.Tags()
    for tag in tags.get("scalars", []):
        series[tag] = [(event.step, float(event.value)) for event in accumulator.Scalars(tag)]
    for tag in tags.get("tensors", []):
        values = [
            (event.step, tensor_util.make_ndarray(event.tensor_proto))
            for event in accumulator.Tensors(tag)
        ]
        if values and all(array.size == 1 and array.dtype.kind == "f" for _, array in values):
            series[tag] = [(step, float(array.reshape(-1)[0])) for step, array in values]
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
    return [merged[step] for step in sorted(merged)], {}


_READERS = {
    "csv": _read_csv,
    "jsonl": _read_jsonl,
    "json": _read_json,
    "tensorboard": _read_tensorboard,
}


def _lrkit_header(path: Path, text: str) -> dict[str, Any]:
    try:
        header = json.loads(text)
    except json.JSONDecodeError:
        return {}
    return header if isinstance(header, dict) else {}


def _number(path: Path, column: str, cell: Any, row: int) -> float | None:
    """A cell as a float; empty is missing (None), 'nan'/'inf' are values, other text is an error."""
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
        raise ValueError(
            f"{path}: column {column!r} has text {text[:40]!r} at line {row}; expected a number"
        ) from None


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
        raise ValueError(
            f"{path}: no loss column among {', '.join(available) or 'no columns'}; name it with loss=... (--loss)"
        )
    return found


def _build(
    path: Path,
    kind: str,
    records: list[Record],
    header: Mapping[str, Any],
    chosen: Mapping[str, str],
) -> Trace:
    if not records:
        raise ValueError(f"{path}: no data rows")
    found = _columns(path, (name for record in records for name in record), chosen)
    steps = _steps(path, records, found.get("step"))

    # merge rows that share a step, keeping the last value each column logged there
    merged: dict[int, Record] = {}
    for number, (step, record) in enumerate(zip(steps, records, strict=True), 1):
        _check_lr(path, found.get("lr"), record, number, step)
        row = merged.setdefault(step, {})
        for column, name in found.items():
            if record.get(name) is not None:
                row[column] = record[name]

    train_steps = [step for step, row in merged.items() if row.get("loss") is not None]
    if not train_steps:
        raise ValueError(f"{path}: the loss column {found['loss']!r} has no values")
    position = {step: index for index, step in enumerate(train_steps)}
    columns = {
        name: np.full(len(train_steps), np.nan) for name in ("lr", "loss", "val_loss", "grad_norm")
    }
    last_lr, index = math.nan, -1
    for step, row in merged.items():
        if step in position:
            index = position[step]
        last_lr = row.get("lr", last_lr)
        target = max(index, 0)
        if step in position:
            columns["lr"][target] = last_lr
            columns["loss"][target] = row["loss"]
            columns["grad_norm"][target] = row.get("grad_norm", math.nan)
        if row.get("val_loss") is not None:
            columns["val_loss"][target] = row["val_loss"]
    meta = {
        **dict(header.get("meta", {})),
        "source": str(path),
        "format": kind,
        "columns": dict(found),
    }
    events = [Event(**event) for event in header.get("events", [])]
    return Trace(
        step=np.array(train_steps),
        lr=columns["lr"],
        loss=columns["loss"],
        val_loss=columns["val_loss"],
        grad_norm=columns["grad_norm"],
        events=events,
        meta=meta,
    )


def _ranked(path: Path, name: str, values: list[float | None]) -> list[int]:
    """Each value's place among the distinct values of its column (a missing one repeats the last)."""
    ranks, last, rank = [], None, -1
    for number, value in enumerate(values, 1):
        if value is None or not math.isfinite(value):
            if last is None:
                raise ValueError(f"{path}: step column {name!r} is empty in data row {number}")
            value = last
        if last is not None and value < last:
            raise ValueError(f"{path}: steps are not in order: {name}={value!r} in data row {number} follows {last!r}")
        rank += value != last
        ranks.append(rank)
        last = value
    return ranks


def _check_lr(path: Path, name: str | None, record: Record, number: int, step: int) -> None:
    """A logged learning rate is >= 0 and finite (NaN: not known at that step)."""
    value = record.get(name) if name else None
    if value is not None and (value < 0 or math.isinf(value)):
        raise ValueError(
            f"{path}: column {name!r} has the learning rate {value!r} in data row {number} (step {step}); "
            "a learning rate must be >= 0 and finite"
        )


def _steps(path: Path, records: list[Record], name: str | None) -> list[int]:
    """Each record's step (the row number when the log has no step column); must not go back.

    A fractional epoch column (``epoch`` 0.25, 0.5, ... as Hugging Face logs it) counts its
    distinct values in order instead: the curve's shape is the same, only the axis is renumbered.
    """
    if name is None:
        return list(range(len(records)))
    if "epoch" in name.lower():
        values = [record.get(name) for record in records]
        known = [value for value in values if value is not None and math.isfinite(value)]
        if known and any(value != int(value) for value in known):
            return _ranked(path, name, values)
    steps, last = [], None
    for number, record in enumerate(records, 1):
        value = record.get(name)
        if value is None:
            if last is None:
                raise ValueError(f"{path}: step column {name!r} is empty in data row {number}")
            value = last
        if not math.isfinite(value) or value != int(value):
            raise ValueError(
                f"{path}: step column {name!r} has {value!r} in data row {number}; expected whole numbers"
            )
        if last is not None and value < last:
            raise ValueError(
                f"{path}: steps are not in order: {name}={int(value)} in data row {number} follows {int(last)}"
            )
        steps.append(int(value))
        last = value
    return steps
