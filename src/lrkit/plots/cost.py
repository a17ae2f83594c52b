"""The cost figure: the chosen and the baseline run racing to the same target loss."""

from __future__ import annotations

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lrkit.cost import CostComparison, first_step, smoothed_loss
from lrkit.plots.curves import new_axes, spans_decades, thinned
from lrkit.trace import Trace


def plot_cost(
    chosen: Trace,
    baseline: Trace,
    comparison: CostComparison,
    *,
    labels: tuple[str, str] = ("chosen", "baseline"),
    colors: tuple[str, str] = ("C0", "C1"),
    ax: Axes | None = None,
) -> Figure:
    """Both runs' moving-mean loss against step, the target line, and where each reached it.

    ``colors``: the chosen run's and the baseline's; by default the ones :func:`plot_traces` gives
    them where they come first and second (the report of one run against a baseline, the demo's).
    """
    figure, ax = new_axes(ax)
    for trace, cost, label, color in zip(
        (chosen, baseline), (comparison.chosen, comparison.baseline), labels, colors, strict=True
    ):
        # steps trained through each row, as the cost counts them
        steps = trace.step - first_step(trace) + 1
        ax.plot(*thinned(steps, trace.loss), color=color, linewidth=0.6, alpha=0.35)
        reached = "never" if cost.steps is None else f"{cost.steps} steps"
        ax.plot(
            *thinned(steps, smoothed_loss(trace)),
            color=color,
            linewidth=1.8,
            label=f"{label}: {reached}",
        )
        if cost.steps is not None:
            ax.axvline(cost.steps, color=color, linestyle="--", linewidth=1)
    ax.axhline(
        comparison.target_loss,
        color="0.3",
        linestyle="-.",
        linewidth=1,
        label=f"target loss {comparison.target_loss:.3g}",
    )
    if spans_decades(np.concatenate([chosen.loss, baseline.loss])):
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    columns = {column or "loss" for column in comparison.loss_columns}
    measure = columns.pop() if len(columns) == 1 and columns != {"loss"} else "training loss"
    ax.set_ylabel(
        f"{measure} (moving mean bold)"
    )  # the column judged, when a log named one (val_loss, say)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=9)
    ax.set_title("steps to reach the target loss")
    return figure
