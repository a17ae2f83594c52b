"""What a learning-rate choice costs: steps and time to reach a target loss, and the money saved.

Pure NumPy on Traces. A run "reaches" a target when the moving mean of its training loss over its
last 10 steps first falls to it (a mean, so one lucky batch does not count; over steps, not logged
rows, so a log written every N steps is judged as promptly as one written every step); a run that
failed never does. Time comes from each run's measured seconds per step (``trace.meta["seconds"]``
over its steps, or ``meta["seconds_per_step"]``, which ``read_log`` sets from a log's own clock and
names in ``meta["time_source"]``); two runs of the same task (``meta["task"]``)
share the mean of their rates, since one model's step costs the same at any LR and a difference is
timing noise. Steps spent choosing the rate (a range test) are charged to the chosen run. The
default target is the higher of the two runs' final levels (the mean over their last 10 steps, or
last 3 logged rows in a sparse log).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lrkit import checks
from lrkit.trace import Trace

WINDOW = 10  # steps in the moving mean that decides when a target is reached
FINAL_ROWS = 3  # logged rows the final level holds at least, so one lucky last row sets no target


def moving_mean(
    loss: np.ndarray, window: int = WINDOW, *, step: np.ndarray | None = None, rows: int = 1
) -> np.ndarray:
    """Mean of the finite losses logged over the last ``window`` steps at each row, or over its last
    ``rows`` rows where those span more steps (fewer at the start); NaN where the loss itself is not
    finite.

    ``step`` is each row's step (default: one row a step), so a log written every 10 steps is
    averaged over the same stretch of training as one written every step. A non-finite loss is left
    out of the later means: a guarded run that skipped one NaN step goes on being judged.
    """
    window = checks.integer("window", window, minimum=1)
    rows = checks.integer("rows", rows, minimum=1)
    loss = np.asarray(loss, dtype=float)
    step = np.arange(len(loss)) if step is None else np.asarray(step, dtype=float)
    finite = np.isfinite(loss)
    sums = np.concatenate([[0.0], np.cumsum(np.where(finite, loss, 0.0))])
    counts = np.concatenate([[0], np.cumsum(finite)])
    index = np.arange(len(loss))
    low = np.minimum(np.searchsorted(step, step - window, side="right"), np.maximum(index - rows + 1, 0))
    with np.errstate(invalid="ignore", divide="ignore"):
        means = (sums[index + 1] - sums[low]) / (counts[index + 1] - counts[low])
    return np.where(finite, means, np.nan)


def smoothed_loss(trace: Trace, window: int = WINDOW) -> np.ndarray:
    """The trace's training loss as the target is judged on it: its moving mean over ``window`` steps."""
    return moving_mean(trace.loss, window, step=trace.step)


def steps_to_target(trace: Trace, target: float, *, window: int = WINDOW) -> int | None:
    """Steps trained (counted by the trace's own step column, see :func:`first_step`) when the
    moving mean of the logged losses over the last ``window`` steps first falls to ``target``; a
    log written every N steps counts N steps a row."""
    target = checks.finite("target", target)
    reached = np.flatnonzero(smoothed_loss(trace, window) <= target)
    return steps_through(trace, int(reached[0])) if len(reached) else None


def steps_to_reach(trace: Trace, target: float, *, window: int = WINDOW) -> int | None:
    """:func:`steps_to_target` for a run that did not fail (see :func:`failure`); None for one that
    did: a run that passed the target and then blew up never reached it."""
    return None if failure(trace, window) else steps_to_target(trace, target, window=window)


def failure(trace: Trace, window: int = WINDOW) -> str | None:
    """Why a run failed (it ended non-finite, or its final moving mean is no lower than the first
    finite loss it logged), or None when it did not."""
    means = smoothed_loss(trace, window)
    if not len(means):
        return "it logged no loss"
    if not np.isfinite(means[-1]):
        return "it ended non-finite"
    if means[-1] >= trace.loss[np.isfinite(trace.loss)][0]:
        return "it ended no lower than it began"
    return None


def steps_through(trace: Trace, row: int) -> int:
    """Steps trained through ``row`` (included), by the trace's step column, from its first step."""
    return int(trace.step[row]) - first_step(trace) + 1


def steps_trained(trace: Trace) -> int:
    """Steps the whole run trained, by its step column (a log written every N steps counts N a row)."""
    return steps_through(trace, len(trace) - 1) if len(trace) else 0


def first_step(trace: Trace) -> int:
    """The step the run started from: step 0 when the log's first row comes within one logging
    interval of it (a logger writing every N steps first writes at step N-1 or N, a validation log
    after its first evaluation), else the first row's step (a log that starts mid-run, as a resumed
    one does)."""
    if not len(trace):
        return 0
    first = int(trace.step[0])
    spacing = float(np.median(np.diff(trace.step))) if len(trace) > 1 else 1.0
    return 0 if 0 <= first <= spacing else first


def seconds_per_step(trace: Trace) -> float | None:
    """Measured wall time per step from the trace's metadata, if it was recorded (or read from a
    log's clock)."""
    meta = trace.meta
    if "seconds_per_step" in meta:
        return checks.non_negative("seconds_per_step", meta["seconds_per_step"])
    if "seconds" in meta and len(trace):
        return checks.non_negative("seconds", meta["seconds"]) / steps_trained(trace)
    return None


def time_source(trace: Trace) -> str | None:
    """Where :func:`seconds_per_step` comes from, in words: the log's clock ``read_log`` read
    (``meta["time_source"]``), else the meta the run recorded; None for a run without time."""
    if seconds_per_step(trace) is None:
        return None
    meta = trace.meta
    if "time_source" in meta:
        return str(meta["time_source"])
    return f"the run's recorded meta {'seconds_per_step' if 'seconds_per_step' in meta else 'seconds'!r}"


@dataclass(frozen=True)
class RunCost:
    """One run against the target: the steps it took to reach it (None: never), the steps it ran,
    its seconds per step, why it failed if it did (a failed run never reaches the target), and where
    its step time came from."""

    steps: int | None
    run_steps: int
    seconds_per_step: float | None
    failure: str | None = None
    time_source: str | None = None

    @property
    def seconds(self) -> float | None:
        """Time to reach the target; None when it never did or the run has no step time."""
        if self.steps is None or self.seconds_per_step is None:
            return None
        return self.steps * self.seconds_per_step


@dataclass(frozen=True)
class CostComparison:
    """The chosen LR against a baseline (for example the default LR) at one target loss.

    ``steps_saved`` charges ``search_steps`` (the range test) to the chosen run. When the baseline
    never reaches the target, its whole run is used and ``at_least`` is True: the saving is a
    lower bound. When the chosen run never reaches it, nothing is saved (``None``).
    """

    target_loss: float
    chosen: RunCost
    baseline: RunCost
    search_steps: int = 0
    price_per_gpu_hour: float | None = None
    target_given: bool = True  # False: chosen by lrkit (the higher of the two runs' final moving means)
    loss_columns: tuple[str | None, str | None] = (None, None)  # the log column each run was judged on

    @property
    def at_least(self) -> bool:
        """Whether the savings are lower bounds: the baseline never reached the target."""
        return self.baseline.steps is None

    @property
    def chosen_total_steps(self) -> int | None:
        """The chosen run's steps to the target, range test included; None when it never got there."""
        return None if self.chosen.steps is None else self.chosen.steps + self.search_steps

    @property
    def baseline_steps(self) -> int:
        """The baseline's steps to the target, or its whole run when it never got there."""
        return self.baseline.run_steps if self.baseline.steps is None else self.baseline.steps

    @property
    def steps_saved(self) -> int | None:
        total = self.chosen_total_steps
        return None if total is None else self.baseline_steps - total

    @property
    def speedup(self) -> float | None:
        """Baseline steps / chosen steps (search included): how many times faster the choice is."""
        total = self.chosen_total_steps
        return None if not total else self.baseline_steps / total

    @property
    def seconds_saved(self) -> float | None:
        total = self.chosen_total_steps
        chosen_rate, baseline_rate = self.chosen.seconds_per_step, self.baseline.seconds_per_step
        if total is None or chosen_rate is None or baseline_rate is None:
            return None
        return self.baseline_steps * baseline_rate - total * chosen_rate

    @property
    def gpu_hours_saved(self) -> float | None:
        seconds = self.seconds_saved
        return None if seconds is None else seconds / 3600

    @property
    def money_saved(self) -> float | None:
        hours = self.gpu_hours_saved
        if hours is None or self.price_per_gpu_hour is None:
            return None
        return hours * self.price_per_gpu_hour


def compare_cost(
    chosen: Trace,
    baseline: Trace,
    *,
    target_loss: float | None = None,
    search_steps: int = 0,
    price_per_gpu_hour: float | None = None,
    window: int = WINDOW,
) -> CostComparison:
    """Steps, time and money to reach ``target_loss`` with the chosen run against the baseline.

    The default target is the higher of the two runs' final (moving-mean) losses, so both get
    there and the comparison is about speed. A run that failed (ended non-finite, or no lower
    than it began) does not set it, and never reaches it: a rate that blows up later is no saving.
    """
    for name, trace in (("chosen", chosen), ("baseline", baseline)):
        if not isinstance(trace, Trace):
            raise TypeError(f"{name} must be a Trace, got {type(trace).__name__}")
    search_steps = checks.integer("search_steps", search_steps, minimum=0)
    if price_per_gpu_hour is not None:
        price_per_gpu_hour = checks.non_negative("price_per_gpu_hour", price_per_gpu_hour)
    target_given = target_loss is not None
    if target_loss is None:
        target_loss = _shared_final(chosen, baseline, window)
    target_loss = checks.finite("target_loss", target_loss)
    rates = [seconds_per_step(trace) for trace in (chosen, baseline)]
    same_task = chosen.meta.get("task") is not None and chosen.meta.get("task") == baseline.meta.get("task")
    if same_task and None not in rates:  # one model: its step costs the same at any LR, up to timing noise
        rates = [sum(rates) / 2] * 2  # type: ignore[operator]
    costs = []
    for trace, rate in zip((chosen, baseline), rates, strict=True):
        reached = steps_to_reach(trace, target_loss, window=window)
        costs.append(RunCost(reached, steps_trained(trace), rate, failure(trace, window), time_source(trace)))
    columns = (loss_column(chosen), loss_column(baseline))
    return CostComparison(
        target_loss, costs[0], costs[1], search_steps, price_per_gpu_hour, target_given, columns
    )


def loss_column(trace: Trace) -> str | None:
    """The log column ``read_log`` took the trace's loss from (``meta["columns"]["loss"]``), if known."""
    columns = trace.meta.get("columns")
    column = columns.get("loss") if isinstance(columns, dict) else None
    return None if column is None else str(column)


def _shared_final(chosen: Trace, baseline: Trace, window: int) -> float:
    finals = [_final(trace, window) for trace in (chosen, baseline) if not failure(trace, window)]
    if not finals:
        raise ValueError("target_loss cannot be chosen: neither run ended below where it began; pass target_loss")
    return max(finals)


def _final(trace: Trace, window: int) -> float:
    """Where a run ended: the mean of its losses over its last ``window`` steps, or its last
    ``FINAL_ROWS`` rows where those span more (a log written every N steps)."""
    return float(moving_mean(trace.loss, window, step=trace.step, rows=FINAL_ROWS)[-1])
