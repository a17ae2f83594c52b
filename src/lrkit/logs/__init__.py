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

from pathlib import Path

from lrkit.logs.build import build_trace
from lrkit.logs.columns import CANDIDATES, DURATIONS, clock_names
from lrkit.logs.readers import READERS
from lrkit.logs.sources import detect, log_in_folder
from lrkit.logs.table import Table
from lrkit.trace import Trace

__all__ = ["CANDIDATES", "DURATIONS", "FORMATS", "parse_run", "read_log"]

FORMATS = tuple(READERS)  # "csv", "jsonl", "json", "tensorboard"


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
        path = log_in_folder(path)
    if not path.exists():
        raise ValueError(f"{path}: no such file")
    wanted = None if run is None else parse_run(run)
    kind = format or ("tensorboard" if path.is_dir() else detect(path))
    if wanted is not None and kind == "tensorboard":
        raise ValueError(f"{path}: run picks rows of a CSV or JSON log; TensorBoard keeps each run in its own folder")
    names = {"step": step, "loss": loss, "lr": lr, "val_loss": val_loss, "grad_norm": grad_norm, "time": time}
    chosen = {key: value for key, value in names.items() if value}
    table = Table(wanted)
    header = READERS[kind](path, clock_names(chosen), table)
    table.check_run(path)
    return build_trace(path, kind, table, header, chosen)


def parse_run(run: str) -> tuple[str, str]:
    """``"COLUMN=VALUE"`` as (column, value), each stripped; raises ``ValueError`` on anything else."""
    column, equals, value = run.partition("=") if isinstance(run, str) else ("", "", "")
    if not equals or not column.strip() or not value.strip():
        raise ValueError(f"run must be COLUMN=VALUE, e.g. 'role=chosen'; got {run!r}")
    return column.strip(), value.strip()
