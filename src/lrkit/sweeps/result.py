"""What a sweep returns: every trial as a row, the best LR, and what it cost against a full grid."""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path

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


@dataclass(frozen=True)
class SweepResult:
    """A finished (or resumed) sweep: the study's trials, the best LR and the compute spent.

    ``grid_steps`` is what a grid of as many LRs, each trained to the end (``full_steps``), costs;
    ``compute_fraction`` is ``steps_spent`` over that.
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

    @property
    def finished(self) -> tuple[TrialRow, ...]:
        return tuple(row for row in self.trials if row.state in ("complete", "pruned"))

    @property
    def best(self) -> TrialRow:
        """The complete trial with the lowest validation loss."""
        complete = [row for row in self.trials if row.state == "complete" and not math.isnan(row.val_loss)]
        if not complete:
            raise ValueError(f"study {self.study!r} has no complete trial yet")
        return min(complete, key=lambda row: (row.val_loss, row.number))

    @property
    def best_lr(self) -> float:
        return self.best.lr

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
                    f"{row.lr:.6g}",
                    row.state,
                    "" if math.isnan(row.val_loss) else f"{row.val_loss:.6g}",
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
            best = f"best_lr={self.best_lr:.3g}, best_loss={self.best_loss:.4g}"
        except ValueError:
            best = "no complete trial"
        cost = f", steps={self.steps_spent:,}" if self.steps_spent else ""
        if self.compute_fraction is not None:
            cost += f" ({self.compute_fraction:.0%} of a {self.grid_steps:,}-step grid)"
        return (
            f"SweepResult({best}, trials={len(self.finished)}/{self.n_trials} "
            f"({self.pruned} pruned){cost}, study={self.study!r})"
        )
