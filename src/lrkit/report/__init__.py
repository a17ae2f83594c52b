"""The HTML report: one self-contained page from the Traces lrkit produced or read."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from lrkit.files import atomic_write_text
from lrkit.report.document import render_report
from lrkit.schedules import Schedule

__all__ = ["render_report", "write_report"]


def write_report(
    path: str | Path,
    *,
    runs: Sequence[Any] | Mapping[str, Any] = (),
    finder: Any = None,
    schedule: Schedule | str | None = None,
    baseline: Any = None,
    target_loss: float | None = None,
    price_per_gpu_hour: float | None = None,
    title: str = "lrkit report",
) -> Path:
    """Write the report to ``path`` atomically and return the path.

    ``runs``: training runs (Traces, or results with ``.trace`` such as ``TrainResult``; a mapping
    label -> run names them); the first is the chosen one. ``finder``: a range test (its Trace or
    a ``FinderResult``). ``schedule``: the schedule used (a Schedule or a spec string).
    ``baseline``: a run at the default LR to compare the chosen one with: steps and time to
    ``target_loss`` (default: the higher of the two runs' final smoothed losses, so both can reach
    it) and, with ``price_per_gpu_hour``, the money saved.
    """
    text = render_report(
        runs=runs,
        finder=finder,
        schedule=schedule,
        baseline=baseline,
        target_loss=target_loss,
        price_per_gpu_hour=price_per_gpu_hour,
        title=title,
    )
    return atomic_write_text(path, text)
