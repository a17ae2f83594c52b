"""The range-test figure: loss against LR (log x), smoothed, with the suggestion and range marked."""

from __future__ import annotations

from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lrkit.plots.curves import new_axes, spans_decades, title_lines
from lrkit.suggest import smooth
from lrkit.trace import Trace


def plot_finder(result: Any, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Draw a ``FinderResult`` (or anything with ``.trace`` and ``.suggestion``), with the LR where
    the test stopped on a diverged loss marked: that point is often far above the frame."""
    figure, ax = new_axes(ax)
    trace, suggestion = result.trace, result.suggestion
    column = "val_loss" if trace.val_loss is not None else "loss"
    loss = np.asarray(getattr(trace, column))
    finite = np.isfinite(loss)
    lr, loss = trace.lr[finite], loss[finite]
    ax.plot(lr, loss, ".", color="0.6", markersize=4, label=f"{column} (each step)")
    window = suggestion.evidence.get("window")
    points = int(suggestion.evidence.get("points", len(lr)))
    if window and points >= 3:
        level, _ = smooth(lr[:points], loss[:points], window=window)
        ax.plot(lr[:points], level, color="C0", linewidth=1.8, label="smoothed")
    if suggestion.range is not None:
        ax.axvspan(*suggestion.range, color="C2", alpha=0.15, label="good range")
    if suggestion.lr is not None:
        ax.axvline(
            suggestion.lr, color="C2", linewidth=2, label=f"suggested lr {suggestion.lr:.3g}"
        )
    if suggestion.max_stable_lr is not None:
        ax.axvline(
            suggestion.max_stable_lr,
            color="C3",
            linestyle="--",
            linewidth=1.2,
            label=f"max stable lr {suggestion.max_stable_lr:.3g}",
        )
    diverged = _diverged_lr(trace)
    if diverged is not None:
        ax.axvline(
            diverged,
            color="C3",
            linestyle=":",
            linewidth=1.5,
            label=f"diverged at lr {diverged:.3g}",
        )
    usable = loss[:points] if points >= 1 else loss
    if len(usable):  # frame the part the rule read, not the blow-up after it
        low, high = float(usable.min()), float(np.percentile(usable, 98))
        # a sweep that never settled: a linear axis would flatten all but its peak
        if spans_decades(usable):
            ax.set_yscale("log")
            ax.set_ylim(low / 1.5, float(usable.max()) * 1.5)
        else:
            pad = 0.1 * (high - low) or 1.0
            ax.set_ylim(low - pad, high + 3 * pad)
    ax.set_xscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel(column)
    ax.grid(True, which="both", alpha=0.3)
    found = "LR range test" if suggestion.lr is not None else f"LR range test: {suggestion.reason}"
    ax.set_title(title_lines(title or found, width=80))
    ax.legend(fontsize=8)
    return figure


def _diverged_lr(trace: Trace) -> float | None:
    """The LR at the first step the test recorded as diverged, if any."""
    for event in trace.events:
        rows = np.flatnonzero(trace.step == event.step)
        if event.kind == "diverged" and len(rows):
            return float(trace.lr[rows[0]])
    return None
