"""The curve of a learning-rate schedule, with its phase boundaries marked."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from lrkit import checks
from lrkit.plots.curves import mostly_near_zero, new_axes, thinned
from lrkit.schedules.base import Schedule
from lrkit.schedules.combinators import phase_starts

DOTTED_STEPS = 50


def plot_schedule(
    schedule: Schedule,
    steps: int,
    *,
    ax: Axes | None = None,
    log_lr: bool | None = None,
    title: str | None = None,
) -> Figure:
    """LR against step for ``steps`` steps; dotted lines where a sequence's phases change.

    ``log_lr``: a log LR axis; by default one where a linear axis would draw most steps as zero (an
    LR decayed over many decades). A schedule of up to ``DOTTED_STEPS`` steps gets a dot per step,
    so that one step shows at all and a few show where each one falls.
    """
    steps = checks.integer("steps", steps, minimum=1)
    figure, ax = new_axes(ax)
    grid = np.arange(steps)
    values, dotted = schedule(grid), steps <= DOTTED_STEPS
    ax.plot(*thinned(grid, values), linewidth=1.4, marker="o" if dotted else None, markersize=4)
    for start in phase_starts(schedule)[1:]:
        if start < steps:
            ax.axvline(start, color="grey", linestyle=":", linewidth=1)
    if log_lr is None:
        log_lr = mostly_near_zero(values)
    if log_lr:
        ax.set_yscale("log")
    if dotted:  # whole steps only (no tick at step 0.2), half a step beside the dots
        ax.set_xlim(-0.5, max(steps, 2) - 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.grid(True, alpha=0.3)
    ax.set_title(title if title is not None else repr(schedule), fontsize=9, wrap=True)
    return figure
