"""The demo every introduction to the learning rate gives: one classifier, one seed, three rates.

Trains a built-in task at a rate that is too high, one that is too low and a well-chosen one, and
measures what people look for in the curves: divergence, spikes, how far the loss fell, when it
reached a target, and the final accuracy. It also checks that each rate showed the behaviour it
is meant to show, and says so when a task does not.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from lrkit import checks
from lrkit.cost import steps_to_reach
from lrkit.tasks import Task, TrainResult, get_task, train

# The demo's rates, as multiples of the task's rule-of-thumb LR: for digits-mlp (Adam, 1e-3) they
# are 1.0, 1e-5 and 1e-3.
TOO_HIGH_FACTOR, TOO_LOW_DIVISOR = 1000.0, 100.0


def demo_lrs(task: Task | str) -> tuple[float, float, float]:
    """Too high, too low and chosen for ``task``: its default LR times 1000, divided by 100, as is."""
    task = get_task(task) if isinstance(task, str) else task
    return task.default_lr * TOO_HIGH_FACTOR, task.default_lr / TOO_LOW_DIVISOR, task.default_lr


SPIKE_WINDOW = 20  # steps of history a spike is judged against
BLOWUP = 10.0  # a loss this many times its start has blown up


@dataclass(frozen=True)
class DemoRow:
    """One learning rate's run and the facts the demo's table shows."""

    role: str
    result: TrainResult
    spikes: int
    progress: float
    steps_to_target: int | None

    @property
    def lr(self) -> float:
        return self.result.lr

    @property
    def blew_up(self) -> bool:
        """The loss rose past ten times where it started at some point (then came back down)."""
        loss = self.result.trace.loss
        return bool(loss[0] > 0 and np.nanmax(loss) > BLOWUP * loss[0])

    @property
    def behaviour(self) -> str:
        """A plain word for what the curve did."""
        if self.result.diverged:
            return "diverged"
        if self.blew_up:
            return "blew up"
        if self.spikes > 0 and self.progress < 0.9:
            return "oscillated"
        if self.progress < 0.2:
            return "barely moved"
        return "converged" if self.steps_to_target is not None else "slow"


@dataclass(frozen=True)
class DemoResult:
    task: str
    seed: int
    target_loss: float
    rows: list[DemoRow]
    notes: list[str] = field(default_factory=list)
    finder: Any = None  # the range test behind the "found" row, when one ran


def count_spikes(loss: np.ndarray, window: int = SPIKE_WINDOW) -> int:
    """Steps whose loss jumps above the recent median both by half the progress made so far and
    by far more than the recent noise (8 median absolute deviations).

    Judging a jump against progress keeps ordinary noise near a low loss from counting; judging it
    against the noise keeps the noisy first steps from counting.
    """
    spikes = 0
    for i in range(1, len(loss)):
        if not math.isfinite(loss[i]):
            spikes += 1
            continue
        recent = loss[max(0, i - window) : i]
        recent = recent[np.isfinite(recent)]
        if len(recent) < window // 2:
            continue
        median = float(np.median(recent))
        noise = float(np.median(np.abs(recent - median)))
        progress = max(loss[0] - median, 0.2 * abs(loss[0]))
        jump = loss[i] - median
        if jump > 0.5 * progress and jump > 8 * noise:
            spikes += 1
    return spikes


def measure(role: str, result: TrainResult, target_loss: float) -> DemoRow:
    loss = result.trace.loss
    progress = 0.0 if result.diverged else (loss[0] - result.final_loss) / loss[0]
    return DemoRow(
        role, result, count_spikes(loss), progress, steps_to_reach(result.trace, target_loss)
    )


def expectations(rows: Sequence[DemoRow]) -> list[str]:
    """Where a rate did not show the behaviour its role stands for, one sentence each."""
    notes = []
    best = max((row.result.metric or 0.0) for row in rows)
    for row in rows:
        metric = row.result.metric
        if row.role == "too high" and not (row.result.diverged or row.blew_up or row.spikes):
            notes.append(
                f"lr={row.lr:.3g} was meant to be too high, but its loss neither diverged nor spiked."
            )
        if row.role == "too high" and metric is not None and metric >= 0.9 * best:
            notes.append(
                f"lr={row.lr:.3g} was meant to be too high, but it still reached {metric:.0%} accuracy."
            )
        if row.role == "too low" and row.progress >= 0.5:
            notes.append(
                f"lr={row.lr:.3g} was meant to be too low, but the loss fell {row.progress:.0%}."
            )
        if row.role in ("chosen", "found") and row.steps_to_target is None:
            notes.append(f"lr={row.lr:.3g} did not bring the loss to the target in this budget.")
    return notes


def run_demo(
    task: Task | str = "digits-mlp",
    lrs: Sequence[float] | None = None,
    *,
    seed: int = 0,
    roles: Sequence[str] | None = None,
    find: bool = False,
    target_ratio: float = 0.1,
    on_step: Callable[[int, int, float], None] | None = None,
) -> DemoResult:
    """Train ``task`` at each of ``lrs`` (by default ``demo_lrs(task)``) with the same seed and
    data, and measure each run.

    With ``find``, an LR range test (10% of one run's steps) picks one more rate, trained as the
    "found" row. The target loss is ``target_ratio`` times the initial training loss.
    ``on_step(run, step, loss)`` reports progress. Default roles are "too high", "too low",
    "chosen" for three rates.
    """
    task = get_task(task) if isinstance(task, str) else task
    lrs = [checks.positive("lrs", lr) for lr in (demo_lrs(task) if lrs is None else lrs)]
    if not lrs:
        raise ValueError("lrs must name at least one learning rate, got none")
    seed = checks.integer("seed", seed)
    target_ratio = checks.in_range(
        "target_ratio", target_ratio, 0, 1, low_open=True, high_open=True
    )
    if roles is None:
        roles = ["too high", "too low", "chosen"] if len(lrs) == 3 else [""] * len(lrs)
    notes, finder = [], None
    if find:
        from lrkit.torch.finder import find_task_lr

        finder = find_task_lr(task, seed=seed)
        if finder.lr is None:
            notes.append(f"the range test found no usable curve: {finder.reason}")
        else:
            lrs, roles = [*lrs, finder.lr], [*roles, "found"]
    results = []
    for index, lr in enumerate(lrs):
        callback = None if on_step is None else (lambda step, loss, i=index: on_step(i, step, loss))
        results.append(train(task, lr, seed=seed, on_step=callback))
    target = target_ratio * float(results[0].trace.loss[0])  # same seed: every run starts here
    rows = [measure(role, result, target) for role, result in zip(roles, results, strict=True)]
    return DemoResult(task.name, seed, target, rows, notes + expectations(rows), finder)
