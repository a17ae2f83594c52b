"""Diagnosis of a training curve: was the learning rate too high, too low, or about right?

Pure NumPy. Every measure is a ratio of loss differences (or, for positive losses, of losses), so
multiplying the loss by a constant never changes the verdict, and positions are fractions of the
run, so logging more or fewer steps does not either. The rules, in order:

- ``diverged``: the loss ends non-finite, or it blew up far above where it began and stayed there
  (non-finite losses the run went on from, such as skipped overflows, are left out and reported);
- ``too_high``: the loss rose from its best, spiked, oscillated, or was so noisy that the noise
  swamps the progress;
- ``too_low``: still falling steadily at the end (at the pace of the last part, another run as long
  would gain a good share of what this one gained). Under a decaying LR the pace is taken before
  the decay and per unit of LR spent, and the decay must not have gained more than the LR it spent:
  a loss held up by the LR's noise drops when the LR decays, one held back by a small LR does not;
- ``plateau``: stalled early, having gained little;
- ``healthy``: none of these.

Under a schedule that raises the LR again after lowering it (warm restarts, cyclical LRs) the run
is compared at the ends of its cycles, where the LR stands equally low, and a rise of the loss
after a restart counts only once it undoes a large share of the progress (the guard's rule).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from lrkit.spikes import LR_RISE, RAISED_SHARE
from lrkit.trace import Trace

VERDICTS = ("diverged", "too_high", "too_low", "plateau", "healthy")
MIN_POINTS = 8

# Thresholds, each a ratio with a meaning (see the module docstring and docs/diagnose.md).
BLOWUP = 2.0  # diverged: the end sits this many "progress units" above the start
LATE_RISE = 0.25  # too_high: the end sits this share of the progress above the best point
NOISE_TO_PROGRESS = 0.6  # too_high: per-step noise (late half) over the progress made
SPIKES = 3  # too_high: this many spikes, or one bigger than the whole progress
SPIKE_SIGMAS = 6.0  # a spike stands this many noise sigmas above the trend ...
SPIKE_SHARE = 0.3  # ... and this share of the progress above it ...
SPIKE_POINTS = 2  # ... and the loss stays above half that for this many points
OSCILLATION = 0.5  # too_high: lag-1 anti-correlation of the residuals, when the noise is large
EARLY_RISE = 0.5  # too_high: early on the loss rose this share of the progress above its start
REBOUND = 0.25  # too_high: at some point the loss climbed back this share of the progress ...
REBOUND_SE = 4.0  # ... beyond the standard errors its smoothed curve wanders by on noise alone
STILL_FALLING = 1.0  # a trend this steep (another run gains as much again) outweighs bumps
TREND = 0.25  # too_low: another run at the late pace would gain this share of the progress
FLAT = 8.0  # plateau: the smoothed curve moved less than this many of its standard errors
HALF_TIME = 0.2  # too_low: making half the progress took this share of the run, or more
TREND_Z = 2.0  # ... and the late slope is this many standard errors from flat
PLATEAU_GAIN = 0.1  # plateau: a positive loss that fell less than this fraction of its start
VAL_TREND = 0.072  # too_low: validation gains 5% of the progress per doubling (0.05/ln 2)
VAL_POINTS = 5  # fewest validation points to judge their pace
DECAY_SHARE = 0.1  # a decay is judged when the LR stood below half its peak this share of the run
DECAY_WINDOW = 0.5  # the pace before a decay is fitted to this last share of the time at high LR
_LATE = 0.3  # the late window is the last 30% of the run (or of the time at high LR)
_MAX_POINTS = 2000  # longer curves are reduced to bin medians first


@dataclass(frozen=True)
class Evidence:
    """The numbers a verdict rests on; steps are the trace's own, ratios are in progress units."""

    points: int
    start: float  # loss at the start (the first point, or the smoothed start if lower)
    best: float  # lowest smoothed loss
    best_step: int
    end: float  # median loss over the last 10%
    progress: float  # start - best, the unit of the ratios below
    noise: float  # robust per-step noise around the smoothed curve, over the late half
    movement: float  # range of the curve smoothed over 10% of the run, in its standard errors
    gain: float  # (start - end) / start for positive losses, else NaN
    trend: float  # loss the late pace would still gain over another run, per unit of progress
    trend_z: float  # the late slope in standard errors (>= 2: the fall is real, not noise)
    half_time: float  # share of the run spent making half of its progress (start to end)
    late_rise: float  # (end - best) / progress
    early_rise: float  # highest loss in the first 30%, above the start, per unit of progress
    rebound: float  # highest rise of the smoothed curve above its best so far, per unit of progress
    rebound_step: int  # where that rise peaked
    noise_to_progress: float  # robust per-step noise (late half) / (start - end), the progress kept
    oscillation: float  # step-to-step swinging: about 0 for noise, 1 for a zig-zag
    spike_count: int
    spike_steps: tuple[int, ...]
    spike_height: float  # the highest spike above the trend, per unit of progress (0 without one)
    nonfinite_count: int
    first_nonfinite_step: int | None
    ended_nonfinite: bool  # the last loss is NaN or infinite: the run diverged
    lr_peak: float  # highest LR in the trace (NaN when the log has none)
    lr_end_ratio: float  # last LR / peak
    warmup: bool  # the LR rose over the first steps
    trend_until_step: int  # where the trend window ends (earlier than the end when the LR decayed)
    val_late_rise: float  # like late_rise, for the validation loss (NaN without one)
    val_trend: float  # like trend, for the validation loss, per unit of training progress
    val_trend_z: float  # its late slope in standard errors of the validation noise
    lr_trend: float  # under a decaying LR: what the pace before the decay gains per run's worth of
    # LR spent, per unit of progress (NaN without a decay)
    lr_trend_z: float  # that pace in standard errors
    decay_gain: float  # fall during the decay / the fall that pace predicts for the LR it spent
    cycle_end_steps: tuple[int, ...] = ()  # under restarts: the comparable points (each cycle's
    # lowest LR before the LR rose again, and the end when the LR ends as low); empty without

    def to_dict(self) -> dict[str, Any]:
        return {key: _plain(value) for key, value in asdict(self).items()}


@dataclass(frozen=True)
class Diagnosis:
    """A verdict on a training curve, how sure it is, the evidence in numbers and what to do."""

    verdict: str
    confidence: float
    evidence: Evidence
    action: str
    reasons: tuple[str, ...]
    trace: Trace | None = field(default=None, repr=False, compare=False)
    lr_factor: float = 1.0  # multiply the LR by this (the number the action gives; 1 = keep it)

    def __str__(self) -> str:
        return (
            f"{self.verdict} (confidence {self.confidence:.2f}): "
            + "; ".join(self.reasons)
            + f". {self.action}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "verdict": self.verdict,
            "confidence": round(self.confidence, 3),
            "action": self.action,
            "lr_factor": self.lr_factor,
            "reasons": list(self.reasons),
            "evidence": self.evidence.to_dict(),
        }

    def plot(self, ax: Any = None) -> Any:
        """The curve with what the verdict rests on marked (see :func:`lrkit.plots.plot_diagnosis`)."""
        from lrkit.plots import plot_diagnosis

        if self.trace is None:
            raise ValueError("this Diagnosis holds no trace to plot; make it with diagnose(trace)")
        return plot_diagnosis(self.trace, self, ax=ax)


def diagnose(trace: Trace) -> Diagnosis:
    """Judge the learning rate from a training Trace (loss per step; LR and val_loss when logged)."""
    if not isinstance(trace, Trace):
        raise TypeError(f"trace must be a Trace, got {type(trace).__name__}")
    if len(trace) < MIN_POINTS:
        raise ValueError(
            f"too few points: the trace has {len(trace)}, diagnose needs at least {MIN_POINTS}"
        )
    back = np.flatnonzero(np.diff(trace.step) <= 0)
    if len(back):
        i = int(back[0])
        raise ValueError(
            f"trace steps must increase; step {trace.step[i + 1]} follows {trace.step[i]}"
        )
    finite = np.isfinite(trace.loss)
    bad = np.flatnonzero(~finite)
    # a run diverged when its loss ends non-finite; non-finite steps it went on from (an overflow
    # the grad scaler skipped, a batch the guard skipped) are left out and the rest is judged
    last = int(np.flatnonzero(finite)[-1]) + 1 if finite.any() else 0
    kept = np.flatnonzero(finite[:last])
    if len(kept) < MIN_POINTS and last < len(trace):
        evidence = _nonfinite_only(trace, bad)
    elif len(kept) < MIN_POINTS:
        raise ValueError(
            f"too few finite losses: the trace has {len(kept)}, diagnose needs at least {MIN_POINTS}"
        )
    else:
        evidence = _measure(trace.select(kept), trace, bad)
    verdict, confidence, reasons = _judge(evidence)
    if len(bad) and not evidence.ended_nonfinite:
        reasons.append(
            f"{len(bad)} non-finite loss(es) left out, the first at step {evidence.first_nonfinite_step}: "
            "the run went on past them"
        )
    factor = _lr_factor(verdict, evidence)
    return Diagnosis(
        verdict, confidence, evidence, _action(verdict, evidence, factor), tuple(reasons), trace, factor
    )


# --- measuring ------------------------------------------------------------------------------------


def smooth(values: np.ndarray, share: float = 0.04) -> np.ndarray:
    """A rolling median over ``share`` of the points (odd window, at least 3), shrinking at the ends."""
    n = len(values)
    half = max(1, round(share / 2 * n))
    padded = np.concatenate([np.full(half, np.nan), values, np.full(half, np.nan)])
    windows = np.lib.stride_tricks.sliding_window_view(padded, 2 * half + 1)
    return np.nanmedian(windows, axis=1)


def smooth_curve(x: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The curve ``diagnose`` judges: a long one reduced to bin medians, then :func:`smooth`ed."""
    x_small, loss_small = _reduce(np.asarray(x, dtype=float), np.asarray(loss, dtype=float))
    return x_small, smooth(loss_small)


def _reduce(t: np.ndarray, loss: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """At most ``_MAX_POINTS`` points: medians of equal bins of a long curve."""
    if len(loss) <= _MAX_POINTS:
        return t, loss
    edges = np.linspace(0, len(loss), _MAX_POINTS + 1).astype(int)
    return (
        np.array([t[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)]),
        np.array([np.median(loss[a:b]) for a, b in zip(edges[:-1], edges[1:], strict=True)]),
    )


def _measure(trace: Trace, whole: Trace, bad: np.ndarray) -> Evidence:
    step, loss = trace.step.astype(float), trace.loss
    n = len(loss)
    span = max(step[-1] - step[0], 1.0)
    t = (step - step[0]) / span
    t_small, loss_small = _reduce(t, loss)
    trend_line = smooth(loss_small)
    residual = loss - np.interp(t, t_small, trend_line)

    late_half = t >= 0.5
    sigma = _noise(loss[late_half])
    start = _start(loss[0], float(trend_line[0]), sigma)
    tail = max(3, n // 10)
    end = float(np.median(loss[-tail:]))
    lr = whole.lr
    lr_known = np.isfinite(lr).any()
    lr_peak = float(np.nanmax(lr)) if lr_known else math.nan
    finite_lr = lr[np.isfinite(lr)]
    lr_end_ratio = float(finite_lr[-1] / lr_peak) if lr_known and lr_peak > 0 else math.nan
    warmup = bool(lr_known and len(finite_lr) > 2 and finite_lr[0] < 0.5 * lr_peak)
    cycles = _cycles(loss, trace.lr)
    # under restarts the run is compared at the ends of its cycles, where the LR is as low as it gets
    last = cycles.levels[-1] if cycles else end
    best_index = int(np.argmin(trend_line))
    best = float(min(trend_line[best_index], last))
    progress = start - best
    unit = max(progress, sigma, _tiny(start))

    if warmup:  # the LR started low, so the first fall is slow: measure spikes against a centred trend
        residual = loss - np.interp(t, t_small, _centred_start(loss_small, trend_line))
    spikes = _spikes(loss, residual, sigma, unit)
    raised = np.interp(t_small, t, cycles.raised) > 0.5 if cycles else np.zeros(len(t_small), bool)
    early = t_small <= 0.3
    early_line = smooth(loss_small[early]) if early.sum() >= 3 else loss_small[early]
    early_rise = float(np.max(_expected_kept(
        early_line - min(loss[0], early_line[0]), raised[early], unit
    ))) / unit
    rebound = _expected_kept(_rebound(loss_small, trend_line), raised, unit)
    rebound_at = int(np.argmax(rebound))
    window_end = _trend_window_end(t, trace.lr)
    if cycles:
        trend, trend_z, window_end = _cycle_trend(t, cycles, start, sigma)
        val = _cycle_val_measures(whole, trace, cycles, unit)
        decay = {"lr_trend": math.nan, "lr_trend_z": math.nan, "decay_gain": math.nan}
    else:
        trend, trend_z = _trend(t, t_small, trend_line, window_end, start, sigma)
        val = {"val_late_rise": _val_late_rise(whole.val_loss), **_val_measures(whole, window_end, unit)}
        decay = _decay_measures(t, loss, t_small, trend_line, trace.lr, window_end, end, sigma, unit)

    return Evidence(
        points=len(whole),
        start=start,
        best=best,
        best_step=int(np.interp(t_small[best_index], t, step)),
        end=end,
        progress=progress,
        noise=sigma,
        movement=_movement(loss_small, sigma * math.sqrt(len(loss_small) / n), start, end),
        gain=(start - end) / start if start > 0 and np.all(loss > 0) else math.nan,
        trend=trend,
        trend_z=trend_z,
        half_time=_half_time(t_small, trend_line, start, end, _warm_until(t, trace.lr)),
        late_rise=(last - best) / unit,
        early_rise=early_rise,
        rebound=float(rebound[rebound_at]) / unit,
        rebound_step=int(np.interp(t_small[rebound_at], t, step)),
        noise_to_progress=sigma / (start - end) if start > end else math.inf,
        oscillation=_oscillation(loss[late_half]),
        spike_count=len(spikes),
        spike_steps=tuple(int(trace.step[i]) for i in spikes),
        spike_height=float(max(residual[spikes], default=0.0)) / unit,
        nonfinite_count=len(bad),
        first_nonfinite_step=int(whole.step[bad[0]]) if len(bad) else None,
        ended_nonfinite=not math.isfinite(whole.loss[-1]),
        lr_peak=lr_peak,
        lr_end_ratio=lr_end_ratio,
        warmup=warmup,
        trend_until_step=int(step[0] + window_end * span),
        **val,
        **decay,
        cycle_end_steps=tuple(int(trace.step[i]) for i in cycles.ends) if cycles else (),
    )


@dataclass(frozen=True)
class _Cycles:
    """Where a schedule raised the LR on purpose, and the loss at the points comparable across it."""

    ends: np.ndarray  # index of each cycle's end: its lowest LR before a restart, or the last point
    levels: np.ndarray  # median loss over the last 10% of each cycle (at least 3 points)
    counts: np.ndarray  # how many points each level is the median of
    window_starts: np.ndarray  # where the last 10% of each cycle begins
    raised: np.ndarray  # per point: 1.0 from a restart until the next cycle end's window, else 0.0

    def __bool__(self) -> bool:
        return len(self.ends) > 0


def _cycles(loss: np.ndarray, lr: np.ndarray) -> _Cycles:
    """The cycles of a schedule that raises the LR again after lowering it (warm restarts, cyclical
    and triangular LRs): a restart is where the LR, having fallen from a peak, climbs back to
    ``LR_RISE`` times its low and to at least 1/``LR_RISE`` of the peak before it (an LR decayed to
    about zero that wobbles is no restart). A warmup from the first step raises an LR that never
    fell: no restart.
    Each cycle ends at its lowest LR, the last one at the last point if the LR ends as low."""
    none = _Cycles(*(np.array([], dtype=int),) * 4, np.zeros(len(loss)))
    if len(lr) < MIN_POINTS or not np.isfinite(lr).all():
        return none
    lows: list[int] = []
    peak = low = float(lr[0])
    low_at = 0
    for i, value in enumerate(lr.tolist()):
        if value < low:
            low, low_at = value, i
        if low < peak and value >= LR_RISE * low and value >= peak / LR_RISE:
            lows.append(low_at)
            peak = low = value
            low_at = i
        elif value > peak and low == peak:
            peak = low = value
            low_at = i
    if not lows:
        return none
    ends = lows + ([len(lr) - 1] if lr[-1] <= LR_RISE * max(lr[lows]) and lows[-1] < len(lr) - 1 else [])
    begins = [0] + [i + 1 for i in ends[:-1]]
    windows = [(max(b, e + 1 - max(3, round(0.1 * (e + 1 - b)))), e + 1) for b, e in zip(begins, ends, strict=True)]
    raised = np.zeros(len(loss))
    for restart, (a, _) in zip(lows, windows[1:], strict=False):
        raised[restart + 1 : a] = 1.0
    if len(lows) == len(ends):  # the run ended inside a cycle, raised from its restart on
        raised[lows[-1] + 1 :] = 1.0
    return _Cycles(
        np.array(ends),
        np.array([float(np.median(loss[a:b])) for a, b in windows]),
        np.array([b - a for a, b in windows]),
        np.array([a for a, _ in windows]),
        raised,
    )


def _expected_kept(rise: np.ndarray, raised: np.ndarray, unit: float) -> np.ndarray:
    """A rise after a restart is the loss answering an LR raised on purpose: it counts only once it
    undoes ``RAISED_SHARE`` of the progress (the guard's rule for spikes)."""
    rise = np.maximum(rise, 0.0)
    return np.where(raised & (rise < RAISED_SHARE * unit), 0.0, rise)


def _cycle_trend(t: np.ndarray, cycles: _Cycles, start: float, sigma: float) -> tuple[float, float, float]:
    """Under restarts: the trend, its z and the window's end from the loss at the cycle ends in the
    last 30% of the run up to the last one, and the one before them: the pace of :func:`_trend`,
    between points where the LR stood equally low. The levels scatter from cycle to cycle more
    than the noise of their medians says, so the error is the larger of the two."""
    chosen = _last_ends(t[cycles.ends])
    x, y = t[cycles.ends][chosen], cycles.levels[chosen]
    until = float(x[-1])
    if len(x) < 2:
        return 0.0, 0.0, until
    slope = float(np.polyfit(x, y, 1)[0]) if len(x) > 2 else float((y[1] - y[0]) / (x[1] - x[0]))
    spread = math.sqrt(max(float(np.sum((x - x.mean()) ** 2)), 1e-300))
    level_error = 1.25 * sigma / math.sqrt(float(np.min(cycles.counts[chosen])))
    if len(cycles.levels) > 2:
        scatter = 1.4826 * float(np.median(np.abs(np.diff(cycles.levels)))) / math.sqrt(2)
        level_error = max(level_error, scatter)
    error = level_error / spread
    trend_z = -slope / error if error > 0 else _signed_infinity(-slope)
    return -slope * until / max(start - float(y[-1]), sigma, _tiny(start)), float(trend_z), until


def _cycle_val_measures(whole: Trace, trace: Trace, cycles: _Cycles, unit: float) -> dict[str, float]:
    """Under restarts, the validation measures from the last validation loss logged in the last
    10% of each cycle (where the LR stands as low as at the cycle's end): its trend as in
    :func:`_val_measures`, over the same cycle ends as the training trend, and its late rise as the
    last such loss above the lowest, per unit of the fall from the first to the lowest."""
    nan = {"val_late_rise": math.nan, "val_trend": math.nan, "val_trend_z": math.nan}
    if whole.val_loss is None:
        return nan
    has = np.isfinite(whole.val_loss)
    steps, values = whole.step[has].astype(float), whole.val_loss[has]
    if len(values) < VAL_POINTS:
        return nan
    found = np.full(len(cycles.ends), math.nan)
    for k, (a, e) in enumerate(zip(cycles.window_starts, cycles.ends, strict=True)):
        inside = np.flatnonzero((steps >= trace.step[a]) & (steps <= trace.step[e]))
        if len(inside):
            found[k] = values[inside[-1]]
    logged = found[np.isfinite(found)]
    if len(logged) < 2:
        return nan
    fallen = logged[0] - logged.min()
    late_rise = (logged[-1] - logged.min()) / fallen if fallen > 0 else math.nan
    t = (trace.step[cycles.ends] - whole.step[0]) / max(float(whole.step[-1] - whole.step[0]), 1.0)
    chosen = _last_ends(t)  # the training trend's cycle ends: judged only when logged at them all
    if len(chosen) < 2 or t[chosen[0]] <= 0 or not np.isfinite(found[chosen]).all():
        return {**nan, "val_late_rise": float(late_rise)}
    noise = 1.4826 * float(np.median(np.abs(np.diff(values, 2)))) / math.sqrt(6)
    u = np.log(t[chosen])
    slope = float(np.polyfit(u, found[chosen], 1)[0])
    spread = math.sqrt(float(np.sum((u - u.mean()) ** 2)))
    z = -slope * spread / noise if noise > 0 else _signed_infinity(-slope)
    return {"val_late_rise": float(late_rise), "val_trend": -slope / unit, "val_trend_z": float(z)}


def _centred_start(values: np.ndarray, line: np.ndarray) -> np.ndarray:
    """``line`` (the :func:`smooth`ed ``values``) with its start taken from windows centred on each
    point, shrinking towards the first: the rolling median sees only later points there, so on a
    slow first fall it lies below the curve and the noise of the first steps stands out."""
    half = max(1, round(0.02 * len(values)))
    centred = line.copy()
    for i in range(min(half, len(values))):
        centred[i] = np.median(values[: 2 * i + 1])
    return centred


def _last_ends(t_ends: np.ndarray) -> np.ndarray:
    """Indices of the cycle ends a trend is fitted to: those in the last 30% of the run up to the
    last cycle end, and the one before them (the pace since then)."""
    late = np.flatnonzero(t_ends >= t_ends[-1] * (1 - _LATE))
    return np.arange(max(int(late[0]) - 1, 0), len(t_ends))


def _nonfinite_only(trace: Trace, bad: np.ndarray) -> Evidence:
    loss = trace.loss[np.isfinite(trace.loss)]
    start = float(loss[0]) if len(loss) else math.nan
    lr = trace.lr
    lr_peak = float(np.nanmax(lr)) if np.isfinite(lr).any() else math.nan
    nan = math.nan
    return Evidence(
        points=len(trace),
        start=start,
        best=nan,
        best_step=int(trace.step[0]),
        end=nan,
        progress=nan,
        noise=nan,
        movement=nan,
        gain=nan,
        trend=nan,
        trend_z=nan,
        half_time=nan,
        late_rise=nan,
        early_rise=nan,
        rebound=nan,
        rebound_step=int(trace.step[0]),
        noise_to_progress=nan,
        oscillation=nan,
        spike_count=0,
        spike_steps=(),
        spike_height=nan,
        nonfinite_count=len(bad),
        first_nonfinite_step=int(trace.step[bad[0]]),
        ended_nonfinite=True,
        lr_peak=lr_peak,
        lr_end_ratio=nan,
        warmup=False,
        trend_until_step=int(trace.step[-1]),
        val_late_rise=nan,
        val_trend=nan,
        val_trend_z=nan,
        lr_trend=nan,
        lr_trend_z=nan,
        decay_gain=nan,
    )


def _start(first: float, smoothed: float, sigma: float) -> float:
    """The loss the run began from: the first point, unless it stands within noise of the smoothed
    start (then one noisy point must not set the unit of progress). A first point far above the
    smoothed start is a fast initial fall, which a rolling median cuts short."""
    return first if first - smoothed > SPIKE_SIGMAS * sigma else min(first, smoothed)


def _movement(values: np.ndarray, sigma: float, start: float, end: float) -> float:
    """How far the curve moved at all: the range of a rolling median over 10% of the points (or the
    fall from the start to the end, when a fast first fall hides inside one window), over the
    standard error of such a median (1.25 sigma / sqrt(window)). Noise alone gives 3 to 6."""
    window = 2 * max(1, round(0.05 * len(values))) + 1
    line = smooth(values, 0.1)
    moved = max(float(np.ptp(line)), start - end)
    return moved / max(1.25 * sigma / math.sqrt(window), _tiny(start))


def _rebound(values: np.ndarray, line: np.ndarray) -> np.ndarray:
    """How far the smoothed curve stands above its lowest point so far, less the few standard errors
    a rolling median wanders by on noise alone (a rise that is only noise gives 0). The noise is
    the local one, from the step-to-step changes in the same window: early batches are often
    noisier than late ones."""
    window = 2 * max(1, round(0.02 * len(values))) + 1
    changes = np.abs(np.diff(values, prepend=values[0]))
    sigma = 1.4826 * smooth(changes) / math.sqrt(2)
    wander = REBOUND_SE * 1.25 * sigma / math.sqrt(window)
    return np.maximum(line - np.minimum.accumulate(line) - wander, 0.0)


def _noise(values: np.ndarray) -> float:
    """Robust per-point noise from the median step-to-step change (a slow trend barely adds to it;
    a zig-zag counts in full). For Gaussian noise this is its standard deviation."""
    if len(values) < 3:
        return 0.0
    return 1.4826 * float(np.median(np.abs(np.diff(values)))) / math.sqrt(2)


def _spikes(loss: np.ndarray, residual: np.ndarray, sigma: float, unit: float) -> list[int]:
    """Index of the highest point of each run of points far above the trend that lasts: an
    unstable step damages the weights, so from the run's first point the loss stays above half the
    spike's threshold for ``SPIKE_POINTS`` points or more (wherever in the run its highest point
    falls), while one or two hard batches leave the losses after them alone. A point that merely stands below the loss just before it (a fast fall the trend cuts
    short) is no spike."""
    threshold = max(SPIKE_SIGMAS * sigma, SPIKE_SHARE * unit)
    above = residual > threshold
    above[0] = False  # the first loss is where the run starts, above a steep trend or not
    peaks, index = [], 0
    while index < len(above):
        if above[index]:
            stop = index
            while stop + 1 < len(above) and above[stop + 1]:
                stop += 1
            peak = index + int(np.argmax(residual[index : stop + 1]))
            after = stop
            while after + 1 < len(above) and residual[after + 1] > threshold / 2:
                after += 1
            rose = peak == 0 or loss[peak] > np.median(loss[max(0, peak - 3) : peak])
            if after - index + 1 >= SPIKE_POINTS and rose:
                peaks.append(peak)
            index = stop + 1
        else:
            index += 1
    return peaks


def _oscillation(values: np.ndarray) -> float:
    """How much the loss swings up and down from one step to the next, from the lag-1
    autocorrelation r of its step-to-step changes: 1 - 2(1 + r) is about 0 for white noise
    (r = -1/2), 1 for a zig-zag (r = -1) and negative for a smooth drift."""
    changes = np.diff(values)
    changes = changes - changes.mean()
    denominator = float(np.dot(changes, changes))
    if len(changes) < 4 or denominator == 0:
        return 0.0
    r = float(np.dot(changes[1:], changes[:-1])) / denominator
    return 1 - 2 * (1 + r)


def _trend_window_end(t: np.ndarray, lr: np.ndarray) -> float:
    """Where the trend is judged: the end, or when a decaying LR last stood at half its peak."""
    if not np.isfinite(lr).any():
        return 1.0
    peak = np.nanmax(lr)
    high = np.flatnonzero(lr >= 0.5 * peak)
    return float(max(t[high[-1]], 2 * _LATE)) if len(high) else 1.0


def _trend(
    t_raw: np.ndarray,
    t: np.ndarray,
    line: np.ndarray,
    window_end: float,
    start: float,
    sigma: float,
) -> tuple[float, float]:
    """Loss a further run as long would gain at the pace of its last 30%, per unit gained so far,
    and that pace in standard errors of a line fitted to the raw points.

    The run is taken to end at ``window_end`` (where a decaying LR fell to half its peak)."""
    window = (t >= window_end * (1 - _LATE)) & (t <= window_end)
    if window.sum() < 3:
        return 0.0, 0.0
    slope = float(np.polyfit(t[window], line[window], 1)[0])
    reached = float(np.interp(window_end, t, line))
    raw = t_raw[(t_raw >= window_end * (1 - _LATE)) & (t_raw <= window_end)]
    error = sigma / math.sqrt(max(float(np.sum((raw - raw.mean()) ** 2)), 1e-300))
    trend_z = -slope / error if error > 0 else _signed_infinity(-slope)
    return -slope * window_end / max(start - reached, sigma, _tiny(start)), float(trend_z)


def _decay_measures(
    t_raw: np.ndarray,
    loss: np.ndarray,
    t: np.ndarray,
    line: np.ndarray,
    lr: np.ndarray,
    window_end: float,
    end: float,
    sigma: float,
    unit: float,
) -> dict[str, float]:
    """The pace before a decaying LR, against the LR spent, and what the decay gained beyond it.

    With a small LR the loss falls in step with the LR it spends (gradient flow), so when the LR
    decays the fall slows in proportion: the decay gains no more than the pace before it predicts
    for the LR the decay spends (``decay_gain`` <= 1), and that pace is still steep. With a large
    LR the loss sits on a floor the LR's noise holds up, and decaying the LR lowers the floor: the
    decay gains far more than the LR it spends (``decay_gain`` > 1). The pace is fitted to the
    second half of the time at high LR (after any warmup) against the share of the run's LR spent.
    """
    nan = {"lr_trend": math.nan, "lr_trend_z": math.nan, "decay_gain": math.nan}
    if not np.isfinite(lr).all() or window_end > 1 - DECAY_SHARE:
        return nan
    spent = np.cumsum(np.maximum(lr, 0.0))
    if spent[-1] <= 0:
        return nan
    spent = spent / spent[-1]
    begin = max(window_end * (1 - DECAY_WINDOW), _warm_until(t_raw, lr))
    window = (t >= begin) & (t <= window_end)
    raw = spent[(t_raw >= begin) & (t_raw <= window_end)]
    if window.sum() < 3 or len(raw) < 3:
        return nan
    x = np.interp(t[window], t_raw, spent)
    slope, intercept = np.polyfit(x, line[window], 1)
    error = sigma / math.sqrt(max(float(np.sum((raw - raw.mean()) ** 2)), 1e-300))
    at_decay = float(np.interp(window_end, t_raw, spent))
    predicted = -slope * (1 - at_decay)
    fallen = slope * at_decay + intercept - end
    return {
        "lr_trend": float(-slope / unit),
        "lr_trend_z": float(-slope / error) if error > 0 else _signed_infinity(-slope),
        "decay_gain": float(fallen / predicted) if predicted > 0 else math.nan,
    }


def _warm_until(t: np.ndarray, lr: np.ndarray) -> float:
    """Where a warmup first brought the LR to half its peak (0 without an LR column)."""
    if not np.isfinite(lr).any():
        return 0.0
    reached = np.flatnonzero(lr >= 0.5 * np.nanmax(lr))
    return float(min(t[reached[0]], 0.5))


def _half_time(t: np.ndarray, line: np.ndarray, start: float, end: float, t0: float) -> float:
    """When the smoothed curve first got halfway from its start to its end, as a share of the run
    after ``t0`` (the warmup, which does not count against the LR)."""
    if end >= start:
        return math.nan
    below = np.flatnonzero(line <= start - 0.5 * (start - end))
    return float(max(t[below[0]] - t0, 0.0) / (1 - t0)) if len(below) else math.nan


def _val_measures(trace: Trace, window_end: float, unit: float) -> dict[str, float]:
    """The validation loss's pace over the last 30% of the trend window, and that pace in standard
    errors of the validation noise.

    The pace is a slope against log step, as for the training trend (so it reads the same for any
    run length), per unit of *training* progress: the validation loss is the same loss on other
    data, and its first check often comes after most of the fall, so it has no progress of its
    own. Measured on the same data every time, without batch noise, it shows a steady fall that
    heavy-tailed batch losses hide in the training curve.
    """
    nan = {"val_trend": math.nan, "val_trend_z": math.nan}
    if trace.val_loss is None:
        return nan
    has = np.isfinite(trace.val_loss)
    step = trace.step.astype(float)
    t = (step[has] - step[0]) / max(step[-1] - step[0], 1.0)
    values = trace.val_loss[has]
    if len(values) < VAL_POINTS:
        return nan
    noise = 1.4826 * float(np.median(np.abs(np.diff(values, 2)))) / math.sqrt(6)
    late = (t > 0) & (t >= window_end * (1 - _LATE)) & (t <= window_end)
    if late.sum() < 3:
        return nan
    u = np.log(t[late])
    slope = float(np.polyfit(u, values[late], 1)[0])
    spread = math.sqrt(float(np.sum((u - u.mean()) ** 2)))
    z = -slope * spread / noise if noise > 0 else _signed_infinity(-slope)
    return {"val_trend": -slope / unit, "val_trend_z": float(z)}


def _val_late_rise(val: np.ndarray | None) -> float:
    if val is None:
        return math.nan
    values = val[np.isfinite(val)]
    if len(values) < 3:
        return math.nan
    progress = values[0] - values.min()
    return float((values[-1] - values.min()) / progress) if progress > 0 else math.nan


def _signed_infinity(value: float) -> float:
    """A z-score with no noise to measure against: infinite in the direction of ``value`` (0 if none)."""
    return 0.0 if value == 0 else math.copysign(math.inf, value)


# --- judging --------------------------------------------------------------------------------------


def _judge(e: Evidence) -> tuple[str, float, list[str]]:
    """The first rule that fires gives the verdict; confidence grows with its margin."""
    if e.ended_nonfinite:
        return (
            "diverged",
            1.0,
            [
                f"loss is not finite at {e.nonfinite_count} step(s), first at step {e.first_nonfinite_step}"
            ],
        )
    blowup = (e.end - e.start) / max(e.progress, 3 * e.noise, _tiny(e.start))
    if blowup >= BLOWUP:
        return (
            "diverged",
            _margin(blowup, BLOWUP),
            [f"the loss blew up: it ends at {e.end:.4g}, far above its start {e.start:.4g}"],
        )
    high = []
    if e.spike_count >= SPIKES or e.spike_height >= 1:
        high.append(
            (
                max(
                    _margin(e.spike_count, SPIKES) if e.spike_count >= SPIKES else 0.5,
                    _margin(e.spike_height, 1.0) if e.spike_height >= 1 else 0.5,
                ),
                f"{e.spike_count} loss spike(s) (steps {_steps(e.spike_steps)}), the highest "
                f"{e.spike_height:.2f}x the progress above the trend",
            )
        )
    flat = e.movement < FLAT
    if flat and not high:
        return (
            "plateau",
            _margin(FLAT, max(e.movement, 1e-3)),
            [f"the loss did not move beyond its noise (movement {e.movement:.1f} standard errors)"],
        )
    # a loss still falling fast and steadily has made little of its progress yet, so bumps and
    # swings measured in that small unit look large: they do not make the LR too high
    still_falling = e.trend >= STILL_FALLING and e.trend_z >= TREND_Z
    high += _fired(
        (e.late_rise, LATE_RISE, True,
         f"the loss rose from its best {e.best:.4g} (step {e.best_step}) to {e.end:.4g} at the end"),
        (e.rebound, REBOUND, not still_falling,
         f"the loss climbed back {e.rebound:.2f}x the progress above its best so far "
         f"(step {e.rebound_step})"),
        (e.noise_to_progress, NOISE_TO_PROGRESS, True,
         "noise swamps progress (" + (
             f"noise-to-progress {e.noise_to_progress:.2f})" if math.isfinite(e.noise_to_progress)
             else f"the loss kept none of its fall: it ends at {e.end:.4g}, started at {e.start:.4g})"
         )),
        (e.oscillation, OSCILLATION,
         e.noise_to_progress >= NOISE_TO_PROGRESS / 4 and not still_falling,
         f"the loss oscillates step to step (anti-correlation {e.oscillation:.2f})"),
        (e.early_rise, EARLY_RISE, not still_falling,
         f"the loss first rose {e.early_rise:.2f}x the progress above its start"),
    )
    if high:
        confidence = max(score for score, _ in high)
        return "too_high", confidence, [reason for _, reason in high]
    decayed = math.isfinite(e.lr_trend)
    slow = _fired(
        (e.trend, TREND, e.trend_z >= TREND_Z and not decayed,
         f"still falling steadily (trend {e.trend:.2f}: at the late pace another run would "
         f"gain {e.trend:.0%} of the progress so far)"),
        (e.lr_trend, TREND, e.lr_trend_z >= TREND_Z and not e.decay_gain > 1,
         f"still falling steadily before the LR decayed (at that pace another run's worth of LR "
         f"would gain {e.lr_trend:.0%} of the progress so far), and the decay gained no more than "
         f"the LR it spent (decay gain {e.decay_gain:.2f}): the LR held the loss back"),
        (e.val_trend, VAL_TREND, e.val_trend_z >= TREND_Z,
         f"the validation loss is still falling steadily (another run as long would gain "
         f"{e.val_trend * math.log(2):.0%} of the progress so far)"),
        (e.half_time, HALF_TIME, True,
         f"slow from the start: half of the progress took {e.half_time:.0%} of the run"),
    )
    if slow:
        return "too_low", max(score for score, _ in slow), [reason for _, reason in slow]
    if e.gain < PLATEAU_GAIN:
        return (
            "plateau",
            _margin(PLATEAU_GAIN, max(e.gain, 1e-3)),
            [
                f"the loss stalled at {e.end:.4g} having fallen only {max(e.gain, 0):.0%} from {e.start:.4g}"
            ],
        )
    closest = min(
        LATE_RISE / max(e.late_rise, 1e-3),
        NOISE_TO_PROGRESS / max(e.noise_to_progress, 1e-3),
        TREND / max(e.trend, 1e-3),
        EARLY_RISE / max(e.early_rise, 1e-3),
        HALF_TIME / max(e.half_time, 1e-3) if math.isfinite(e.half_time) else math.inf,
    )
    return (
        "healthy",
        _margin(closest, 1.0),
        [
            f"fell from {e.start:.4g} to {e.end:.4g}, half of it {_half_when(e)}, and levelled "
            f"off (trend {round(e.trend, 2) + 0.0:.2f}, noise-to-progress "
            f"{e.noise_to_progress:.2f}, {e.spike_count} spike{'' if e.spike_count == 1 else 's'})"
        ],
    )


def _half_when(e: Evidence) -> str:
    if e.warmup and e.half_time < 0.005:
        return "during the warmup"
    when = "within the first 1%" if e.half_time < 0.005 else f"in the first {e.half_time:.0%}"
    return f"{when} of the run" + (" after the warmup" if e.warmup else "")


def _lr_factor(verdict: str, e: Evidence) -> float:
    """What to multiply the LR by: a decade when the evidence is far past the rules, else 3x."""
    if verdict == "diverged":
        return 0.1
    if verdict == "too_high":
        far = e.late_rise >= 1 or e.noise_to_progress >= 2 * NOISE_TO_PROGRESS
        return 0.1 if far else 1 / 3
    if verdict == "too_low":  # only the paces whose rules fired (the reasons show them) count
        decayed = math.isfinite(e.lr_trend)
        paces = [
            e.trend if e.trend_z >= TREND_Z and not decayed else 0.0,
            e.lr_trend if decayed and e.lr_trend_z >= TREND_Z and not e.decay_gain > 1 else 0.0,
        ]
        far = max(paces) >= 4 * TREND or e.half_time >= 2.5 * HALF_TIME
        return 10.0 if far else 3.0
    if verdict == "plateau":
        return 3.0
    return 1.0


def _action(verdict: str, e: Evidence, factor: float) -> str:
    action = _lr_action(verdict, e, factor)
    overfits = e.val_late_rise >= LATE_RISE and e.late_rise < LATE_RISE  # NaN compares False
    if overfits and verdict != "diverged":
        action += (
            f"; the validation loss ended {e.val_late_rise:.2f}x its progress above its best while "
            "the training loss did not rise: that is overfitting, not the LR (stop early at the "
            "best validation loss, or regularize)"
        )
    return action


def _lr_action(verdict: str, e: Evidence, factor: float) -> str:
    lr = e.lr_peak if math.isfinite(e.lr_peak) and e.lr_peak > 0 else None
    direction, times = ("lower", 1 / factor) if factor < 1 else ("raise", factor)
    change = f"{direction} the LR about {times:.0f}x" + (f", to ~{lr * factor:.1g}" if lr else "")

    if verdict == "diverged":
        extra = "" if e.warmup else "; add warmup"
        return change + extra + "; clip gradients if it persists"
    if verdict == "too_high":
        advice = [change]
        if e.early_rise >= EARLY_RISE and not e.warmup:
            advice.append("add warmup")
        if e.late_rise >= LATE_RISE and (math.isnan(e.lr_end_ratio) or e.lr_end_ratio > 0.5):
            advice.append("add a decay")
        return "; ".join(advice)
    if verdict == "too_low":
        return change
    if verdict == "plateau":
        return change + ", or add warmup then a decay; if it still stalls, check the model and data"
    if (
        math.isfinite(e.lr_end_ratio)
        and e.lr_end_ratio > 0.5
        and e.noise_to_progress > NOISE_TO_PROGRESS / 6
    ):
        return "keep the LR; add a decay to settle the noise at the end"
    return "keep the LR"


def _fired(*rules: tuple[float, float, bool, str]) -> list[tuple[float, str]]:
    """(confidence, reason) of each rule ``(value, threshold, applies, reason)`` that fires: it
    applies and its value reached the threshold (NaN never does)."""
    return [
        (_margin(value, threshold), reason)
        for value, threshold, applies, reason in rules
        if applies and value >= threshold
    ]


def _margin(value: float, threshold: float) -> float:
    """0.5 at the threshold, towards 1 as ``value`` moves past it (on a log scale)."""
    ratio = max(value, 1e-12) / max(threshold, 1e-12)
    return round(0.5 + 0.5 * math.tanh(abs(math.log(ratio))), 3)


def _tiny(value: float) -> float:
    return 1e-12 * max(abs(value), 1e-300)


def _steps(steps: tuple[int, ...]) -> str:
    shown = ", ".join(str(step) for step in steps[:5])
    return shown + (f", +{len(steps) - 5} more" if len(steps) > 5 else "")


def _plain(value: Any) -> Any:
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, tuple):
        return list(value)
    return value
