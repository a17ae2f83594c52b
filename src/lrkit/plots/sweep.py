"""A sweep's trials: validation loss against learning rate (log x), pruned and diverged apart."""

from __future__ import annotations

import math

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from lrkit.plots.curves import new_axes, spans_decades


def plot_sweep(result, *, ax: Axes | None = None, title: str | None = None) -> Figure:
    """Complete trials as dots, pruned ones as crosses at their last reported loss, the best starred.

    Diverged trials, which have no finite loss, sit as triangles on the top edge of the axes (not
    at a loss, where they would pass for a trial that scored it).
    """
    figure, ax = new_axes(ax)
    rows = [row for row in result.trials if row.state in ("complete", "pruned")]
    finite = [row for row in rows if math.isfinite(row.val_loss) and not row.diverged]
    complete = [row for row in finite if row.state == "complete"]
    pruned = [row for row in finite if row.state == "pruned"]
    diverged = [row for row in rows if row not in finite]
    if complete:
        ax.scatter(
            [r.lr for r in complete],
            [r.val_loss for r in complete],
            s=28,
            label=f"complete ({len(complete)})",
        )
    if pruned:
        ax.scatter(
            [r.lr for r in pruned],
            [r.val_loss for r in pruned],
            marker="x",
            s=28,
            color="tab:gray",
            label=f"pruned ({len(pruned)}, last reported loss)",
        )
    losses = np.array([row.val_loss for row in finite]) if finite else np.array([1.0])
    if diverged:
        ax.scatter(
            [r.lr for r in diverged],
            [1.0] * len(diverged),
            marker="^",
            s=36,
            color="tab:red",
            transform=ax.get_xaxis_transform(),
            clip_on=False,
            zorder=3,
            label=f"diverged ({len(diverged)})",
        )
    if complete:
        best = result.best
        ax.scatter(
            [best.lr],
            [best.val_loss],
            marker="*",
            s=220,
            color="gold",
            edgecolor="black",
            zorder=3,
            label=f"best trial: lr {best.lr:.3g}, loss {best.val_loss:.4g}",
        )
        bowl = result.bowl
        if bowl is not None:
            span = np.geomspace(min(bowl.lrs), max(bowl.lrs), 100)
            ax.plot(
                span,
                bowl.loss(span),
                color="tab:green",
                alpha=0.7,
                label=f"fit through {len(bowl.lrs)} best",
            )
        ax.axvline(
            result.lr, color="tab:green", linestyle="--", label=f"lr to train with: {result.lr:.3g}"
        )
    ax.set_xscale("log")
    ax.set_xlim(result.min_lr / 1.5, result.max_lr * 1.5)
    if spans_decades(losses):
        ax.set_yscale("log")
    ax.set_xlabel("learning rate")
    ax.set_ylabel("validation loss")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    ax.set_title(
        title or f"sweep {result.study!r}: {result.sampler}, pruner {result.pruner or 'none'}"
    )
    return figure
