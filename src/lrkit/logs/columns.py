"""Which log column is which Trace column: the names loggers commonly give them, or the caller's."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

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
LR_PREFIXES = ("lr_", "learning_rate_")

Clock = Callable[[str], bool]  # whether a column holds wall-clock times (read leniently)


def normal(name: str) -> str:
    """A column name as the candidates are written: lower case, '/', '-', '.' and ' ' made '_'."""
    return re.sub(r"[/\-. ]+", "_", name.strip().lower())


def clock_names(chosen: Mapping[str, str]) -> Clock:
    """The columns read as wall-clock times: the one named for ``time`` and every time candidate
    not named for another column."""
    others = {normal(name) for column, name in chosen.items() if column != "time"}
    named = normal(chosen["time"]) if "time" in chosen else None
    candidates = set(CANDIDATES["time"])

    def is_clock(name: str) -> bool:
        normalised = normal(name)
        return normalised == named or (normalised in candidates and normalised not in others)

    return is_clock


def find_columns(path: Path, available: Iterable[str], chosen: Mapping[str, str]) -> dict[str, str]:
    """Trace column -> log column, from the caller's names or the candidates."""
    available = list(dict.fromkeys(available))
    by_normal = {}
    for name in available:
        by_normal.setdefault(normal(name), name)
    found: dict[str, str] = {}
    for column, candidates in CANDIDATES.items():
        if column in chosen:
            # the exact name, else the one column it names up to case and punctuation, as guessing does
            named = chosen[column] if chosen[column] in available else by_normal.get(normal(chosen[column]))
            if named is None:
                raise ValueError(
                    f"{path}: no column {chosen[column]!r} (given for {column}); columns: {', '.join(available)}"
                )
            found[column] = named
            continue
        match = next((by_normal[name] for name in candidates if name in by_normal), None)
        if match is None and column == "lr":
            match = next(
                (name for name in available if normal(name).startswith(LR_PREFIXES)), None
            )
        if match is not None and match not in found.values():
            found[column] = match
    if "loss" not in found:
        fix = "name it with loss=... (--loss)"
        if "value" in by_normal and {"key", "tag", "metric"} & set(by_normal):
            fix = "it holds one metric a row (as MLflow's metric history does): make a column of each metric first"
        raise ValueError(f"{path}: no loss column among {', '.join(available) or 'no columns'}; {fix}")
    return found
