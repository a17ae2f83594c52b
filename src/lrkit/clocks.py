"""Seconds per step from the time a training log keeps: a wall clock read at logged steps, or each
step's duration. Pauses (an evaluation, a checkpoint, the gap before a resumed run) are left out, so
one of them does not swamp every step; what cannot be used says why instead of failing.

Each function returns meta for a Trace: ``seconds_per_step`` and ``time_source`` (``where``, in
words), or ``time_problem``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

# an interval between logged rows this many times slower than the median one is a pause (an
# evaluation, a checkpoint, the gap before a resumed run), not training
PAUSE_RATIO = 4.0
# a clock past 1e11 is Unix time in a finer unit than seconds (in seconds it would be the year
# 5138): milliseconds (JavaScript's Date.now), and each factor of 1000 past that the next unit
# (Python's time.time_ns), as (smallest value, units in a second, its name), largest first
EPOCH_UNITS = ((1e17, 1e9, "nanoseconds"), (1e14, 1e6, "microseconds"), (1e11, 1e3, "milliseconds"))


def pace_of_clock(where: str, steps: np.ndarray, seconds: np.ndarray) -> dict[str, Any]:
    """Meta for a clock read at ``steps`` (in row order): its :func:`_pace`, or what is wrong with it."""
    bad = np.flatnonzero(~np.isfinite(seconds))
    if bad.size:
        return {"time_problem": f"{where} has a value that is not a time at step {int(steps[bad[0]])}"}
    back = np.flatnonzero(np.diff(seconds) < 0)
    if back.size:
        return {"time_problem": f"{where} goes back at step {int(steps[back[0] + 1])}"}
    for smallest, per_second, unit in EPOCH_UNITS:
        if seconds.size and seconds[0] > smallest:
            seconds, where = seconds / per_second, f"{where} (in {unit})"
            break
    last = np.ones(len(steps), dtype=bool)  # a step's time is the last logged at it
    last[:-1] = steps[1:] != steps[:-1]
    if last.sum() < 2:
        return {"time_problem": f"{where} has fewer than 2 steps timed"}
    pace = _pace(steps[last], seconds[last])
    if pace is None:
        return {"time_problem": f"{where} shows no time passing"}
    return {"seconds_per_step": pace, "time_source": where}


def pace_of_durations(where: str, steps: np.ndarray, seconds: np.ndarray) -> dict[str, Any]:
    """Meta for each training step's duration: their mean, less the pauses, or what is wrong.

    As on a clock, a duration over ``PAUSE_RATIO`` times the median is a pause (the first step's
    compilation, a step that ran an evaluation) and left out. Time outside the steps logged (an
    evaluation between them) is in no duration, so it is not counted.
    """
    bad = np.flatnonzero(~(seconds >= 0))
    if bad.size:
        return {"time_problem": f"{where} has a value that is not a duration at step {int(steps[bad[0]])}"}
    if not seconds.size:
        return {"time_problem": f"{where} has no training step timed"}
    typical = float(np.median(seconds))
    pace = float(seconds[seconds <= PAUSE_RATIO * typical].mean()) if typical > 0 else float(seconds.mean())
    if pace <= 0:
        return {"time_problem": f"{where} shows no time passing"}
    return {"seconds_per_step": pace, "time_source": where}


def _pace(steps: np.ndarray, seconds: np.ndarray) -> float | None:
    """Seconds per step: time over steps between the first and last timed steps, less the pauses.

    The rule: each interval between consecutive timed steps is a pause, and left out, when it ran
    over ``PAUSE_RATIO`` times slower per step than the median interval. A plain span would let one
    pause (a long evaluation, the hours before a resumed run) swamp every step; a plain median of
    the intervals' rates would drop the steady overheads a run pays (logging, short evaluations),
    which lrkit's own timing counts. A clock too coarse for the median to tick (0 s) keeps the
    whole span. None when no time passed.
    """
    spans, gaps = np.diff(steps), np.diff(seconds)
    rates = gaps / spans
    typical = float(np.median(rates))
    steady = rates <= PAUSE_RATIO * typical if typical > 0 else np.ones(len(rates), dtype=bool)
    elapsed = float(gaps[steady].sum())
    return elapsed / float(spans[steady].sum()) if elapsed > 0 else None
