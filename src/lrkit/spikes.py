"""The loss-spike rule behind the guard: a loss far above its running median, in robust units.

Pure values and functions (no torch), so the rule can be property-tested and rolled back with the
training state: a :class:`SpikeState` is immutable and :meth:`SpikeRule.update` returns a new one.
A step is *anomalous* when its loss exceeds the median of the recent accepted losses by ``rise``
times that median and, once ``warmup_steps`` losses are known (enough to measure the noise), also
by ``threshold`` robust standard deviations (1.4826 x MAD). Before that only a gross rise, by
``warmup_rise`` times the median, counts: an early blow-up (the classic too-high LR) is caught
while a noisy start is not. A spike is ``confirm`` anomalous steps
in a row, so one hard batch in a noisy curve never triggers it. Anomalous losses stay out of the
baseline, so a slow series of spikes cannot drag the median up.

Given each step's LR, the rule also knows when a schedule raised it on purpose: once the LR is
``lr_rise`` times the LR the loss had at its best (a warm restart, a cyclical peak), the loss is
expected to climb part of the way back, so a spike must also undo ``raised_share`` of the progress
(first loss to best baseline). Without LRs, or while the LR stays below that, nothing changes.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from enum import Enum

from lrkit import checks

MAD_TO_SIGMA = 1.4826  # the MAD of a normal distribution times this is its standard deviation


class Verdict(str, Enum):
    """What the rule says about one step's loss."""

    OK = "ok"  # accepted into the baseline
    WARMUP = "warmup"  # accepted, but too little history to judge yet
    SUSPECT = "suspect"  # anomalous, not yet ``confirm`` in a row
    SPIKE = "spike"  # ``confirm`` anomalous steps in a row
    NONFINITE = "nonfinite"  # NaN or infinite


# an LR this many times the LR of the loss's best was raised on purpose (a warm restart, a cyclical
# peak), and the loss's rise after it counts only once it undoes this share of the progress;
# ``lrkit.diagnosis`` reads raised LRs by the same two numbers
LR_RISE = 2.0
RAISED_SHARE = 0.3

@dataclass(frozen=True)
class SpikeState:
    """The rule's memory: recent accepted losses (newest last), how many were accepted, the streak."""

    recent: tuple[float, ...] = ()
    accepted: int = 0
    streak: int = 0
    ordered: tuple[float, ...] = ()  # ``recent`` sorted, kept alongside so the median is O(1)
    start: float = math.nan  # the first accepted loss: where the progress is counted from
    best: float = math.inf  # the lowest baseline median once past the warm-up
    best_lr: float = math.nan  # the LR of the step that set ``best`` (NaN when LRs are not given)

    @property
    def clean(self) -> bool:
        """No anomalous step is pending."""
        return self.streak == 0


@dataclass(frozen=True)
class Baseline:
    """Where the recent losses sit: their median and robust standard deviation."""

    median: float
    sigma: float

    @classmethod
    def of(cls, losses: Sequence[float]) -> Baseline:
        if not losses:
            raise ValueError("losses must hold at least one value to form a baseline, got none")
        median = _median(sorted(losses))
        return cls(median, MAD_TO_SIGMA * _median(sorted(abs(x - median) for x in losses)))

    def excess(self, loss: float) -> float:
        """How far ``loss`` sits above the median."""
        return loss - self.median


@dataclass(frozen=True)
class SpikeRule:
    """A robust spike rule; ``update(state, loss)`` judges one step (see the module docstring)."""

    window: int = 50
    warmup_steps: int = 20
    threshold: float = 6.0
    rise: float = 0.5
    warmup_rise: float = 2.0
    confirm: int = 3
    lr_rise: float = LR_RISE
    raised_share: float = RAISED_SHARE

    def __post_init__(self) -> None:
        checks.integer("window", self.window, minimum=3)
        checks.integer("warmup_steps", self.warmup_steps, minimum=3)
        checks.positive("threshold", self.threshold)
        checks.non_negative("rise", self.rise)
        checks.non_negative("warmup_rise", self.warmup_rise)
        checks.integer("confirm", self.confirm, minimum=1)
        checks.in_range("lr_rise", self.lr_rise, 1.0, math.inf, low_open=True, high_open=True)
        checks.non_negative("raised_share", self.raised_share)
        if self.warmup_steps > self.window:
            raise ValueError(
                f"warmup_steps must be <= window, got warmup_steps={self.warmup_steps} > window={self.window}"
            )

    def anomalous(self, state: SpikeState, loss: float, lr: float | None = None) -> bool:
        """Whether ``loss`` is far above the baseline of ``state`` (``lr``: this step's LR, if known)."""
        if not state.recent:
            return False
        median = _median(state.ordered)
        if loss - median <= self.rise * abs(median):
            return False  # the cheap test first: most steps end here
        if len(state.recent) < self.warmup_steps:
            # too few losses to measure the noise: a gross relative rise alone decides
            return loss - median > self.warmup_rise * abs(median)
        baseline = Baseline.of(state.recent)
        if baseline.excess(loss) <= self.threshold * baseline.sigma:
            return False
        return not self.raised(state, lr) or loss - median > self.raised_share * (
            state.start - state.best
        )

    def raised(self, state: SpikeState, lr: float | None) -> bool:
        """Whether the schedule has raised the LR to ``lr_rise`` times the LR of the loss's best."""
        return lr is not None and lr > self.lr_rise * state.best_lr  # NaN best_lr: never

    def update(
        self, state: SpikeState, loss: float, lr: float | None = None
    ) -> tuple[SpikeState, Verdict]:
        """The state after one step's loss (made at ``lr``, if known), and the verdict on that step."""
        if not math.isfinite(loss):
            return state, Verdict.NONFINITE
        if self.anomalous(state, loss, lr):
            streak = state.streak + 1
            verdict = Verdict.SPIKE if streak >= self.confirm else Verdict.SUSPECT
            return replace(state, streak=streak), verdict
        loss = float(loss)
        recent, ordered = (*state.recent, loss), list(state.ordered)
        bisect.insort(ordered, loss)
        if len(recent) > self.window:
            del ordered[bisect.bisect_left(ordered, recent[0])]
            recent = recent[1:]
        ready = len(state.recent) >= self.warmup_steps
        best, best_lr = state.best, state.best_lr
        if ready and (median := _median(ordered)) < best:
            best, best_lr = median, math.nan if lr is None else float(lr)
        start = loss if state.accepted == 0 else state.start
        new = SpikeState(recent, state.accepted + 1, 0, tuple(ordered), start, best, best_lr)
        return new, Verdict.OK if ready else Verdict.WARMUP


def find_spikes(
    losses: Sequence[float], rule: SpikeRule | None = None, *, lrs: Sequence[float] | None = None
) -> list[int]:
    """Indices where ``rule`` confirms a spike, judging the losses in order (the state runs on);
    ``lrs``, each step's LR, lets the rule tell a rise the schedule asked for."""
    allowed = "losses must be a sequence of numbers"
    if isinstance(losses, (str, bytes)) or not isinstance(losses, Iterable):
        raise TypeError(f"{allowed}, got {losses!r} ({type(losses).__name__})")
    if rule is not None and not isinstance(rule, SpikeRule):
        raise TypeError(f"rule must be a SpikeRule or None, got {rule!r} ({type(rule).__name__})")
    losses = list(losses)
    if lrs is not None:
        lrs = [checks.finite(f"lrs[{index}]", lr) for index, lr in enumerate(lrs)]
        if len(lrs) != len(losses):
            raise ValueError(
                f"lrs must hold one LR per loss, got {len(lrs)} LRs for {len(losses)} losses"
            )
    rule = rule or SpikeRule()
    state, found = SpikeState(), []
    for index, loss in enumerate(losses):
        if not checks.is_real(loss):
            raise TypeError(f"{allowed}, got {loss!r} ({type(loss).__name__}) at index {index}")
        state, verdict = rule.update(state, float(loss), None if lrs is None else lrs[index])
        if verdict is Verdict.SPIKE:
            found.append(index)
            state = replace(state, streak=0)
    return found


def _median(ordered: Sequence[float]) -> float:
    middle = len(ordered) // 2
    return ordered[middle] if len(ordered) % 2 else 0.5 * (ordered[middle - 1] + ordered[middle])
