"""Read an LR range test (LR rising, loss recorded) and suggest the rate to train with.

The curve is smoothed without lag (a local linear fit of loss against log LR under a Gaussian
window, centred on each point), so slopes are taken against log LR and the minimum is not pushed
to higher rates the way a one-sided EMA pushes it. Divergence is judged relative to how far the
loss has fallen and how noisy it is, never by a ratio of losses, so it works for losses of any
sign and scale (fastai #962). Every rule here is invariant to shifting or scaling the loss and to
multiplying every LR by a constant.

The rule: the *edge* is the last rate at which a higher rate still paid: the step before the
loss first jumps clearly above its best so far, or where the smoothed loss bottoms out, whichever
comes first. The suggestion is a decade below the edge. A short test overstates the rate a long
run can sustain (instabilities need steps to grow; noise accumulates over a long run), and a rate
too high costs far more than one too low, so the margin is wide. The range spans a factor of 3
either side of the suggestion (capped at the edge); ``max_stable_lr`` is the edge.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import numpy as np

from lrkit import checks
from lrkit.trace import Trace

MIN_POINTS = 8  # fewer finite points than this cannot show a valley
MARGIN = 10.0  # the suggestion is this factor (a decade) below the last stable LR
RANGE_FACTOR = 3.0  # the good range spans this factor either side of the suggestion


@dataclass(frozen=True)
class Suggestion:
    """The rate to train with, a good range, where the loss blows up, and the evidence.

    ``lr`` is ``None`` when the curve cannot support a suggestion; ``reason`` says why.
    """

    lr: float | None
    range: tuple[float, float] | None
    max_stable_lr: float | None
    reason: str
    evidence: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "evidence", MappingProxyType(dict(self.evidence)))

    @property
    def usable(self) -> bool:
        return self.lr is not None

    def __repr__(self) -> str:
        if self.lr is None:
            return f"Suggestion(no usable curve: {self.reason})"
        low, high = self.range
        stable = "not reached" if self.max_stable_lr is None else f"{self.max_stable_lr:.3g}"
        return (
            f"Suggestion(lr={self.lr:.3g}, range={low:.3g}..{high:.3g}, "
            f"max_stable_lr={stable}; {self.reason})"
        )


class DivergenceWatch:
    """Online divergence test, fed one loss per step: True once the loss has blown up.

    The loss is tracked with a bias-corrected EMA, its noise by the median distance of each loss
    from the previous smoothed value (a median, so the blow-up itself does not raise it). The loss
    has diverged when it is not finite; when, two steps in a row, its EMA has lost all the progress
    of the test (risen above its start) and stands more than ``ratio`` times the larger of the drop
    so far and six noise units above its best; or when one raw loss lands five times that far
    above the best. A false alarm wastes the whole test, so the rule errs late: a finite loss is
    judged only from the ``MIN_STEPS``-th on, when the noise is the median of enough residuals (on
    fewer, one lucky low first loss and a small median made flat noise read as a blow-up).
    """

    MIN_STEPS = 10

    def __init__(self, *, window: float = 3.0, ratio: float = 1.0) -> None:
        self.beta = 1.0 - 1.0 / checks.in_range("window", window, 1.0, math.inf)
        self.ratio = checks.positive("ratio", ratio)
        self.count = 0
        self._ema = 0.0
        self._strikes = 0
        self._residuals: list[float] = []
        self.start = self.best = self.smooth = math.nan

    def update(self, loss: float) -> bool:
        if not math.isfinite(loss):
            return True
        self.count += 1
        if self.count > 1:
            self._residuals.append(abs(loss - self.smooth))
        self._ema = self.beta * self._ema + (1 - self.beta) * loss
        self.smooth = self._ema / (1 - self.beta**self.count)
        if self.count == 1:
            self.start = self.best = self.smooth
            return False
        self.best = min(self.best, self.smooth)
        drop = self.ratio * (self.start - self.best)
        # the noise (a median, the costly part) only matters once a cheap necessary test passes
        lost = self.smooth > self.start
        if self.count < self.MIN_STEPS or not (lost or loss - self.best > 5 * drop):
            self._strikes = 0
            return False
        scale = max(drop, self.ratio * 6 * 1.4826 * statistics.median(self._residuals))
        if scale <= 0:
            return False
        risen = lost and self.smooth - self.best > scale
        self._strikes = self._strikes + 1 if risen else 0
        return self._strikes >= 2 or loss - self.best > 5 * scale


def default_window(points: int) -> float:
    """Smoothing width in points for a curve of ``points`` steps: a twentieth of it, at least 1.5."""
    return max(1.5, points / 20)


def smooth(lr: np.ndarray, loss: np.ndarray, *, window: float) -> tuple[np.ndarray, np.ndarray]:
    """Smoothed loss and its slope d loss / d log10(lr) at each point (local linear fit, no lag)."""
    x = np.log10(np.asarray(lr, dtype=float))
    y = np.asarray(loss, dtype=float)
    index = np.arange(len(x), dtype=float)
    weights = np.exp(-0.5 * ((index[:, None] - index[None, :]) / window) ** 2)
    sw = weights.sum(1)
    mx = weights @ x / sw
    my = weights @ y / sw
    dx = x[None, :] - mx[:, None]
    sxx = (weights * dx**2).sum(1)
    sxy = (weights * dx * (y[None, :] - my[:, None])).sum(1)
    slope = np.divide(sxy, sxx, out=np.zeros_like(sxy), where=sxx > 1e-12 * np.maximum(1.0, mx**2))
    return my + slope * (x - mx), slope


def divergence_index(loss: np.ndarray, *, window: float) -> int | None:
    """Index of the first step at which :class:`DivergenceWatch` fires, or ``None``."""
    watch = DivergenceWatch(window=window)
    for i, value in enumerate(np.asarray(loss, dtype=float)):
        if watch.update(float(value)):
            return i
    return None


def suggest(trace: Trace, *, use: str = "auto", window: float | None = None) -> Suggestion:
    """Suggest an LR from a range-test Trace (``use``: "loss", "val_loss" or "auto" = val if recorded).

    The default ``window`` is a twentieth of the sweep's planned steps (``meta["planned_steps"]``,
    which ``find_lr`` records, so a test that stopped early reads as it did), else of its length.
    """
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a lrkit Trace, got {type(trace).__name__}")
    checks.one_of("use", use, ("auto", "loss", "val_loss"))
    if use == "val_loss" and trace.val_loss is None:
        raise ValueError("use='val_loss' but the trace has no val_loss column")
    column = (
        "val_loss"
        if use == "val_loss" or (use == "auto" and trace.val_loss is not None)
        else "loss"
    )
    lr, loss = np.asarray(trace.lr, dtype=float), np.asarray(getattr(trace, column), dtype=float)
    if window is not None:
        checks.in_range("window", window, 0.5, math.inf)
    if len(lr) and not (np.all(np.isfinite(lr)) and np.all(lr > 0)):
        raise ValueError("trace.lr must be finite and > 0 at every step")
    if np.any(np.diff(lr) < 0):
        raise ValueError("trace.lr must not decrease; a range test sweeps the LR upwards")
    # divergence is a property of training, so it is read on the training loss even when the
    # suggestion reads the validation loss (a noise-free validation loss makes any drift look huge)
    watched = np.asarray(trace.loss, dtype=float)
    planned = trace.meta.get("planned_steps")
    points = planned if checks.is_real(planned) and planned >= len(lr) else len(lr)
    return _suggest(lr, loss, column, window or default_window(points), watched)


def _unusable(reason: str, **evidence: float) -> Suggestion:
    return Suggestion(None, None, None, reason, evidence)


def _suggest(lr: np.ndarray, loss: np.ndarray, column: str, window: float, watched: np.ndarray) -> Suggestion:
    if len(lr) == 0:
        return _unusable("the trace is empty")
    if not math.isfinite(loss[0]):
        return _unusable(f"the {column} is {loss[0]} from the first step", points=len(lr))
    stop = divergence_index(watched, window=window)
    if stop is None and not np.all(np.isfinite(loss)):  # the column itself blew up
        stop = int(np.flatnonzero(~np.isfinite(loss))[0])
    end = len(loss) if stop is None else stop
    evidence: dict[str, float] = {"points": float(end), "window": window}
    if stop is not None:
        evidence["diverged_lr"] = float(lr[stop])
    if end < MIN_POINTS:
        where = "" if stop is None else f" (diverged at lr={lr[stop]:.3g})"
        return _unusable(
            f"only {end} usable points{where}; at least {MIN_POINTS} are needed", **evidence
        )
    if lr[end - 1] <= lr[0]:
        return _unusable("the LR did not change during the test", **evidence)

    lr, loss = lr[:end], loss[:end]
    level, slope = smooth(lr, loss, window=window)
    lowest = int(np.argmin(level))
    drop = float(level[0] - level[lowest])
    # step-to-step scatter, robust to the trend and to the blow-up: MAD of differences / sqrt(2)
    noise = float(np.median(np.abs(np.diff(loss)))) * 1.4826 / math.sqrt(2)
    evidence.update(min_loss_lr=float(lr[lowest]), drop=drop, noise=noise)
    if drop <= 0:
        return _unusable(_never_fell(column, lr, stop is not None), **evidence)
    if drop <= 2 * noise / math.sqrt(max(1.0, window)):
        return _unusable(
            f"the {column} fell by {drop:.3g}, no more than its step-to-step noise ({noise:.3g}) can "
            "explain (no clear valley): use more steps, an exponential sweep, or a wider LR range",
            **evidence,
        )
    steepest = int(np.argmin(slope[: lowest + 1]))
    evidence.update(steepest_lr=float(lr[steepest]), steepest_slope=float(slope[steepest]))

    jump = first_rise(loss, start=float(level[0]), noise=noise, window=window)
    if jump is not None:
        evidence["first_rise_lr"] = float(lr[jump])
    # the edge: the last rate before the loss first jumps, or where the smoothed loss bottoms
    # out, whichever comes first (either one means a higher rate has stopped paying)
    if jump is not None and jump - 1 < lowest:
        edge, how = jump - 1, f"the loss first rose clearly at {lr[jump]:.3g}"
    else:
        edge, how = lowest, f"the smoothed loss bottoms out at {lr[lowest]:.3g}"
    reached_edge = jump is not None or stop is not None or lowest < end - 1
    chosen = max(float(lr[edge]) / MARGIN, float(lr[0]))
    reason = f"{how}; the suggestion is {MARGIN:g}x below the last stable rate {lr[edge]:.3g}"
    if not reached_edge:
        reason += "; the loss was still falling at max_lr, so the edge may lie higher"
    return Suggestion(
        lr=chosen,
        range=(chosen / RANGE_FACTOR, min(chosen * RANGE_FACTOR, float(lr[edge]))),
        max_stable_lr=float(lr[edge]) if reached_edge else None,
        reason=reason,
        evidence=evidence,
    )


def _never_fell(column: str, lr: np.ndarray, blew_up: bool) -> str:
    """Why a test whose loss never fell below its start has no valley, and what to change: a
    test that then blew up tried only rates that were too high (a linear sweep over decades jumps
    from min_lr to a large fraction of max_lr in its first step)."""
    if not blew_up:
        return f"the {column} did not fall during the test (no valley): widen the LR range or raise max_lr"
    reason = (
        f"the {column} never fell below its first value and blew up by lr={lr[-1]:.3g}: every rate "
        f"tried was too high; lower min_lr and max_lr"
    )
    if len(lr) > 1 and lr[1] > 100 * lr[0]:
        reason += f" (the sweep's second step was already at lr={lr[1]:.3g}: use an exponential sweep)"
    return reason


def first_rise(loss: np.ndarray, *, start: float, noise: float, window: float) -> int | None:
    """Index of the first step whose loss jumps clearly above the best loss before it, or ``None``.

    The best is the running minimum of a bias-corrected EMA (causal: a centred smoother would see
    the descent ahead). Clearly: by more than a quarter of the progress made so far and more than
    four noise units, once that progress itself exceeds four noise units. This is where the rate
    first becomes too large for the loss to keep falling: often one step's jump, which smoothing
    would blur.
    """
    best = np.minimum.accumulate(ema(loss, window=window))
    for t in range(1, len(loss)):
        progress = start - best[t - 1]
        if progress > 4 * noise and loss[t] - best[t - 1] > max(0.25 * progress, 4 * noise):
            return t
    return None


def ema(values: np.ndarray, *, window: float) -> np.ndarray:
    """Bias-corrected exponential moving average with ``beta = 1 - 1/window``."""
    beta = 1.0 - 1.0 / window
    out = np.empty(len(values))
    running = 0.0
    for i, value in enumerate(np.asarray(values, dtype=float)):
        running = beta * running + (1 - beta) * value
        out[i] = running / (1 - beta ** (i + 1))
    return out
