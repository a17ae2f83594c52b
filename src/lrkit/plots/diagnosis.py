"""The figure behind a Diagnosis: the curve, its smoothed trend, and the points the verdict rests on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lrkit.plots.curves import mostly_near_zero, new_axes, spans_decades, thinned, title_lines
from lrkit.trace import Trace

if TYPE_CHECKING:
    from lrkit.diagnosis import Diagnosis

MARKED_POINTS = 100  # validation points drawn with a marker each; more would merge into a blot


def plot_diagnosis(trace: Trace, diagnosis: Diagnosis, *, ax: Axes | None = None) -> Figure:
    """Loss against step with the smoothed trend, the best point, spikes, the cycle ends a run under
    restarts is compared at, the first non-finite step, the window the trend was judged on, and
    the LR on a second axis; long lines are drawn :func:`~lrkit.plots.curves.thinned`."""
    from lrkit.diagnosis import smooth_curve

    figure, ax = new_axes(ax)
    e = diagnosis.evidence
    finite = np.isfinite(trace.loss)
    step, loss = trace.step[finite], trace.loss[finite]
    ax.plot(*thinned(step, loss), color="0.6", linewidth=0.8, label="loss")
    if len(loss) >= 3:
        ax.plot(*smooth_curve(step, loss), color="C0", linewidth=1.8, label="smoothed")
    if trace.val_loss is not None:
        has_val = np.isfinite(trace.val_loss)
        ax.plot(
            *thinned(trace.step[has_val], trace.val_loss[has_val]),
            "o--" if has_val.sum() <= MARKED_POINTS else "--",
            color="C1",
            markersize=3,
            label="val_loss",
        )
    if np.isfinite(e.best):
        ax.plot([e.best_step], [e.best], "v", color="C2", markersize=9, label=f"best {e.best:.3g}")
        ax.axhline(e.end, color="C4", linestyle=":", linewidth=1, label=f"end {e.end:.3g}")
    if e.spike_steps:
        label = f"{e.spike_count} spike{'s' if e.spike_count > 1 else ''}"
        _mark(ax, trace, e.spike_steps, "x", color="C3", markersize=9, mew=2, label=label)
    if e.cycle_end_steps:  # under restarts the run is judged between these points (equal, low LR)
        label = f"{len(e.cycle_end_steps)} cycle ends (compared)"
        _mark(ax, trace, e.cycle_end_steps, "D", color="C5", markersize=5, label=label)
    if e.first_nonfinite_step is not None:
        first = e.first_nonfinite_step
        ax.axvline(
            first,
            color="C3",
            linewidth=2 if e.ended_nonfinite else 1,
            label=f"non-finite from step {first}"
            if e.ended_nonfinite
            else f"first of {e.nonfinite_count} non-finite losses left out (step {first})",
        )
    if diagnosis.verdict in ("too_low", "healthy", "plateau"):
        left = step[0] + 0.7 * (e.trend_until_step - step[0])
        ax.axvspan(
            left, e.trend_until_step, color="C0", alpha=0.08, label=f"trend window ({e.trend:.2f})"
        )
    if np.isfinite(trace.lr).any():
        _draw_lr(ax, trace)
    if spans_decades(loss):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(
        title_lines(
            f"{diagnosis.verdict} (confidence {diagnosis.confidence:.2f}): {diagnosis.action}"
        ),
        fontsize=9,
    )
    return figure


def _mark(ax: Axes, trace: Trace, steps: Sequence[int], marker: str, **style: Any) -> None:
    """The loss at ``steps`` marked with ``marker``."""
    at = np.isin(trace.step, steps)
    ax.plot(trace.step[at], trace.loss[at], marker, **style)


def _draw_lr(ax: Axes, trace: Trace) -> None:
    """The LR on a second y axis, from 0 (log where a linear axis would flatten most of it to
    zero: a range-test sweep, say), kept under ``ax`` so that the legend stays on top of it."""
    lr_ax = ax.twinx()
    lr_ax.plot(*thinned(trace.step, trace.lr), color="C5", linewidth=1, alpha=0.7)
    if mostly_near_zero(trace.lr):
        lr_ax.set_yscale("log")
    elif np.nanmax(trace.lr) > 0:
        lr_ax.set_ylim(0, 1.1 * float(np.nanmax(trace.lr)))
    lr_ax.set_ylabel("learning rate", color="C5")
    ax.set_zorder(lr_ax.get_zorder() + 1)  # the loss, its marks and the legend over the LR line
    ax.patch.set_visible(False)  # else the raised axes' background would hide the LR line
