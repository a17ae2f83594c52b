"""The curve of a learning-rate schedule, with its phase boundaries marked."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lrkit import checks
from lrkit.plots.curves import new_axes
from lrkit.schedules.base import Schedule
from lrkit.schedules.combinators import phase_starts


def plot_schedule(
    schedule: Schedule, steps: int, *, ax: Axes | None = None, log_lr: bool = False, title: str | None = None
) -> Figure:
    """LR against step for ``steps`` steps; dotted lines where a sequence's phases change."""
    steps = checks.integer("steps", steps, minimum=1)
    figure, ax = new_axes(ax)
    grid = np.arange(steps)
    ax.plot(grid, schedule(grid), linewidth=1.4)
    for start in phase_starts(schedule)[1:]:
        if start < steps:
            ax.axvline(start, color="grey", linestyle=":", linewidth=1)
    if log_lr:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.grid(True, alpha=0.3)
    ax.set_title(title if title is not None else repr(schedule), fontsize=9, wrap=True)
    return figure
