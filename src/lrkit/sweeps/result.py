"""What a sweep returns: every trial as a row, the best LR, and what it cost against a full grid."""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from lrkit.files import atomic_write_text

COLUMNS = ("number", "lr", "state", "val_loss", "steps", "diverged", "retry_of", "schedule", "warmup_steps")


@dataclass(frozen=True)
class TrialRow:
    """One trial: its LR (and schedule, when searched), how it ended (complete, pruned, running,
    waiting, failed) and its loss.

    ``val_loss`` is the final value of a complete trial and the last reported value of any other
    (NaN when it reported none); ``retry_of`` is the trial number it re-runs after a worker died.
    """

    number: int
    lr: float
    state: str
    val_loss: float
    steps: int | None
    diverged: bool = False
    retry_of: int | None = None
    schedule: str | None = None
    warmup_steps: int | None = None


MIN_FIT_SPAN = 0.1  # decades the fitted trials must span for their curvature to mean anything
FLAT = 1e-9  # curvature over the span, relative to the losses' size, below which there is no bowl


@dataclass(frozen=True)
class Bowl:
    """A parabola in log10 LR through the better trials: ``loss ~ polyval(coefficients, log10 lr)``."""

    lr: float
    coefficients: tuple[float, float, float]
    lrs: tuple[float, ...]

    def loss(self, lr: float | np.ndarray) -> float | np.ndarray:
        return np.polyval(self.coefficients, np.log10(lr))


def fit_bowl(lrs: Sequence[float], losses: Sequence[float]) -> Bowl | None:
    """The minimum of a parabola in log10 LR fitted to the better half of the trials (at least 3).

    One trial's loss carries its run's noise, so the single best trial is biased toward a lucky
    run (the winner's curse); a curve through its neighbours averages that noise out. The vertex
    is kept within the fitted trials' span. None when the better half holds fewer than 3 distinct
    LRs or spans under ``MIN_FIT_SPAN`` decades, or no bowl (flat, or opening downward) is there.
    """
    if len(lrs) != len(losses):
        raise ValueError(f"lrs and losses must have the same length, got {len(lrs)} and {len(losses)}")
    points = sorted(
        (loss, math.log10(lr)) for lr, loss in zip(lrs, losses, strict=True) if math.isfinite(loss) and lr > 0
    )
    if len(points) < 3:
        return None
    kept = points[: max(3, math.ceil(len(points) / 2))]
    y, x = (np.array(column) for column in zip(*kept, strict=True))
    if np.ptp(x) < MIN_FIT_SPAN or len(np.unique(x.round(6))) < 3:  # a parabola needs 3 distinct LRs
        return None
    a, b, c = (float(value) for value in np.polyfit(x, y, 2))
    # a bowl curves by more than rounding over the fitted span (flat or straight losses fit a ~ 1e-16)
    if not a * np.ptp(x) ** 2 > FLAT * max(float(np.abs(y).max()), float(np.ptp(y))):
        return None
    vertex = float(np.clip(-b / (2 * a), x.min(), x.max()))
    return Bowl(lr=10.0**vertex, coefficients=(a, b, c), lrs=tuple(float(lr) for lr in 10.0**x))


@dataclass(frozen=True)
class SweepResult:
    """A finished (or resumed) sweep: the study's trials, the best LR and the compute spent.

    ``grid_steps`` is what a grid of as many LRs, each trained to the end (``full_steps``), costs;
    ``compute_fraction`` is ``steps_spent`` over that. ``timeout`` is the run's time budget in
    seconds (None: none); ``timed_out`` is True when it, not ``n_trials``, ended the sweep, so the
    study holds fewer finished trials than asked (perhaps none complete: then ``best`` raises).
    """

    study: str
    storage: str
    sampler: str
    pruner: str | None
    min_lr: float
    max_lr: float
    n_trials: int
    trials: tuple[TrialRow, ...]
    full_steps: int | None
    timeout: float | None = None
    timed_out: bool = False

    @property
    def finished(self) -> tuple[TrialRow, ...]:
        return tuple(row for row in self.trials if row.state in ("complete", "pruned"))

    @property
    def best(self) -> TrialRow:
        """The complete trial with the lowest finite validation loss (a diverged one never is)."""
        complete = [row for row in self.trials if row.state == "complete" and math.isfinite(row.val_loss)]
        if not complete:
            ended = sum(row.state == "complete" for row in self.trials)
            why = f"all {ended} complete trials diverged" if ended else "it has no complete trial yet"
            raise ValueError(f"study {self.study!r} has no trial with a finite validation loss: {why}")
        return min(complete, key=lambda row: (row.val_loss, row.number))

    @property
    def best_lr(self) -> float:
        """The best trial's LR (see ``lr`` for the one to train with)."""
        return self.best.lr

    @property
    def bowl(self) -> Bowl | None:
        """The parabola ``fit_bowl`` fits to the complete trials that share the best trial's
        schedule; None when they hold no bowl."""
        best = self.best
        same = [
            row for row in self.trials
            if row.state == "complete" and not row.diverged
            and (row.schedule, row.warmup_steps) == (best.schedule, best.warmup_steps)
        ]
        return fit_bowl([row.lr for row in same], [row.val_loss for row in same])

    @property
    def lr(self) -> float:
        """The LR to train with: the minimum of the loss curve fitted across the complete trials,
        or the best trial's LR when they hold no bowl."""
        bowl = self.bowl
        return self.best_lr if bowl is None else bowl.lr

    @property
    def best_loss(self) -> float:
        return self.best.val_loss

    @property
    def pruned(self) -> int:
        return sum(row.state == "pruned" for row in self.trials)

    @property
    def steps_spent(self) -> int:
        """Training steps run by every trial that reported them (failed ones included)."""
        return sum(row.steps or 0 for row in self.trials)

    @property
    def grid_steps(self) -> int | None:
        if self.full_steps is None:
            return None
        return len(self.finished) * self.full_steps

    @property
    def compute_fraction(self) -> float | None:
        grid = self.grid_steps
        return self.steps_spent / grid if grid else None

    def to_csv(self, path: str | Path | None = None) -> str:
        """The trials table as CSV text, written atomically to ``path`` when one is given."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in self.trials:
            writer.writerow(
                [
                    row.number,
                    repr(row.lr),  # every digit: the CSV gives back the LR each trial ran
                    row.state,
                    "" if math.isnan(row.val_loss) else repr(row.val_loss),
                    "" if row.steps is None else row.steps,
                    int(row.diverged),
                    "" if row.retry_of is None else row.retry_of,
                    row.schedule or "",
                    "" if row.warmup_steps is None else row.warmup_steps,
                ]
            )
        text = buffer.getvalue()
        if path is not None:
            atomic_write_text(path, text)
        return text

    def plot(self, ax=None):
        """Validation loss against LR (log x), pruned trials shown apart; returns the figure."""
        from lrkit.plots.sweep import plot_sweep

        return plot_sweep(self, ax=ax)

    def __repr__(self) -> str:
        try:
            best = f"lr={self.lr:.3g}, best_lr={self.best_lr:.3g}, best_loss={self.best_loss:.4g}"
        except ValueError:  # no complete trial, or every one diverged
            diverged = any(row.state == "complete" for row in self.trials)
            best = "no LR: every complete trial diverged" if diverged else "no complete trial"
        cost = f", steps={self.steps_spent:,}" if self.steps_spent else ""
        if self.compute_fraction is not None:
            cost += f" ({self.compute_fraction:.0%} of a {self.grid_steps:,}-step grid)"
        budget = f", timed out at timeout={self.timeout:g}s" if self.timed_out else ""
        return (
            f"SweepResult({best}, trials={len(self.finished)}/{self.n_trials} "
            f"({self.pruned} pruned){cost}{budget}, study={self.study!r})"
        )
