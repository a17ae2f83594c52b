"""The elementary schedules, one formula each; composites and combinators are built from these.

Absolute values are ``start``, ``peak``, ``end``, ``min_lr``, ``max_lr``; durations end in
``_steps`` (``steps`` is a kind's own total); ratios say so (``decay_ratio``, ``peak_ratio``).
Kinds with a total hold their final value after it; the open-ended ones (a constant, the decays
without an end, cyclic) take an optional ``steps`` that gives them one, so a phase can follow them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lrkit import checks
from lrkit.schedules.base import Schedule, float_field, setattr_frozen, steps_field


def _at_most(schedule: object, low_name: str, high_name: str) -> None:
    low, high = getattr(schedule, low_name), getattr(schedule, high_name)
    if low > high:
        raise ValueError(f"{low_name} must be <= {high_name}, got {low_name}={low!r} > {high_name}={high!r}")


def floor_div(t: Any, steps: int, xp: Any) -> Any:
    """``floor(t / steps)`` for whole ``t``, exact even where a compiler divides by multiplying with
    ``1/steps`` (XLA does: 49 * (1/49) floors to 0); whole products are exact, so they correct it."""
    steps = float(steps)
    n = xp.floor(t / steps)
    n = xp.where(n * steps > t, n - 1.0, n)
    return xp.where((n + 1.0) * steps <= t, n + 1.0, n)


def _progress(t: Any, steps: int, xp: Any) -> Any:
    """Fraction of ``steps`` done, held at 1 afterwards (and never above it, even where a compiler's
    ``steps * (1/steps)`` rounds up: ``1 - progress`` may be raised to a fractional power)."""
    steps = float(steps)
    return xp.minimum(xp.minimum(t, steps) / steps, 1.0)


class OpenEnded:
    """A kind that runs forever unless ``steps`` gives it a length: then a phase can follow it, and
    alone it holds its value at ``steps`` after it, as every kind with a total does."""

    steps: int | None

    def validate_steps(self) -> None:
        if self.steps is not None:
            steps_field(self, "steps")

    @property
    def length(self) -> int | None:
        return self.steps

    def held(self, t: Any, xp: Any) -> Any:
        """``t``, held at ``steps`` when there is one."""
        return t if self.steps is None else xp.minimum(t, float(self.steps))


class Decaying:
    """A kind whose decay counts in periods of ``decay_steps``; ``staircase`` counts whole periods."""

    decay_steps: int
    staircase: bool

    def validate_periods(self) -> None:
        steps_field(self, "decay_steps")
        if not isinstance(self.staircase, bool):
            raise TypeError(f"staircase must be True or False, got {self.staircase!r}")

    def periods(self, t: Any, xp: Any) -> Any:
        """The periods of ``decay_steps`` in ``t``, floored with ``staircase``."""
        return floor_div(t, self.decay_steps, xp) if self.staircase else t / float(self.decay_steps)


@dataclass(frozen=True, repr=False)
class Constant(OpenEnded, Schedule):
    """The same rate at every step; ``steps`` gives it a length inside a sequence."""

    kind = "constant"
    positional = 1
    peak: float
    steps: int | None = None

    def validate(self) -> None:
        float_field(self, "peak")
        self.validate_steps()

    def evaluate(self, t: Any, xp: Any) -> Any:
        return t * 0.0 + self.peak


@dataclass(frozen=True, repr=False)
class Exponential(OpenEnded, Decaying, Schedule):
    """``peak * decay_ratio ** (t / decay_steps)``; ``staircase`` floors the exponent (step decay)."""

    kind = "exponential"
    peak: float
    decay_ratio: float
    decay_steps: int = 1
    staircase: bool = False
    steps: int | None = None

    def validate(self) -> None:
        float_field(self, "peak", checks.positive)
        setattr_frozen(self, "decay_ratio", checks.in_range("decay_ratio", self.decay_ratio, 0, 1, low_open=True))
        self.validate_periods()
        self.validate_steps()

    def evaluate(self, t: Any, xp: Any) -> Any:
        return self.peak * self.decay_ratio ** self.periods(self.held(t, xp), xp)


@dataclass(frozen=True, repr=False)
class MultiStep(OpenEnded, Schedule):
    """Piecewise constant: ``peak`` times ``decay_ratio`` for every milestone reached."""

    kind = "multistep"
    peak: float
    milestones: tuple[int, ...]
    decay_ratio: float = 0.1
    steps: int | None = None

    def validate(self) -> None:
        float_field(self, "peak", checks.positive)
        if not isinstance(self.milestones, (tuple, list)) or not self.milestones:
            raise TypeError(f"milestones must be a non-empty list of steps, got {self.milestones!r}")
        milestones = tuple(checks.integer("milestones", m, minimum=1) for m in self.milestones)
        if any(a >= b for a, b in zip(milestones, milestones[1:], strict=False)):
            raise ValueError(f"milestones must be strictly increasing, got {list(milestones)}")
        setattr_frozen(self, "milestones", milestones)
        setattr_frozen(self, "decay_ratio", checks.in_range("decay_ratio", self.decay_ratio, 0, 1, low_open=True))
        self.validate_steps()

    def evaluate(self, t: Any, xp: Any) -> Any:
        t = self.held(t, xp)
        reached = t * 0.0
        for milestone in self.milestones:
            reached = reached + xp.where(t >= float(milestone), 1.0, 0.0)
        return self.peak * self.decay_ratio**reached


@dataclass(frozen=True, repr=False)
class Cosine(Schedule):
    """A cosine from ``peak`` down to ``end`` over ``steps``, raised to ``exponent`` (optax's form).

    ``waves`` is how many whole cosine waves fit in ``steps`` (transformers' ``num_cycles``): the
    default 0.5 is the one decay; 1 falls to ``end`` halfway and comes back up to ``peak``.
    """

    kind = "cosine"
    peak: float
    steps: int
    end: float = 0.0
    exponent: float = 1.0
    waves: float = 0.5

    def validate(self) -> None:
        float_field(self, "peak", checks.positive)
        steps_field(self, "steps")
        float_field(self, "end")
        float_field(self, "exponent", checks.positive)
        float_field(self, "waves", checks.positive)
        _at_most(self, "end", "peak")

    @property
    def length(self) -> int:
        return self.steps

    def evaluate(self, t: Any, xp: Any) -> Any:
        angle = 2.0 * math.pi * self.waves  # pi for the default half wave, exactly
        shape = 0.5 * (1.0 + xp.cos(angle * _progress(t, self.steps, xp)))
        return self.end + (self.peak - self.end) * shape**self.exponent


@dataclass(frozen=True, repr=False)
class CosineRestarts(Schedule):
    """Cosine cycles from a peak to ``end`` (SGDR): cycle ``n`` lasts ``cycle_steps * length_ratio**n``
    steps and peaks at ``peak * peak_ratio**n``; after ``cycles`` cycles (if given) it stays at ``end``."""

    kind = "cosine_restarts"
    peak: float
    cycle_steps: int
    length_ratio: int = 1
    peak_ratio: float = 1.0
    cycles: int | None = None
    end: float = 0.0

    def validate(self) -> None:
        float_field(self, "peak", checks.positive)
        steps_field(self, "cycle_steps")
        setattr_frozen(self, "length_ratio", checks.integer("length_ratio", self.length_ratio, minimum=1))
        setattr_frozen(self, "peak_ratio", checks.in_range("peak_ratio", self.peak_ratio, 0, 1, low_open=True))
        if self.cycles is not None:
            steps_field(self, "cycles")
        float_field(self, "end")
        _at_most(self, "end", "peak")

    def _cycle_start(self, n: Any) -> Any:
        if self.length_ratio == 1:
            return float(self.cycle_steps) * n
        ratio = float(self.length_ratio)
        return float(self.cycle_steps) * (ratio**n - 1.0) / (ratio - 1.0)

    @property
    def length(self) -> int | None:
        return None if self.cycles is None else int(self._cycle_start(self.cycles))

    def evaluate(self, t: Any, xp: Any) -> Any:
        ratio = float(self.length_ratio)
        if self.length_ratio == 1:
            n = floor_div(t, self.cycle_steps, xp)
        else:
            n = xp.floor(xp.log(1.0 + t / self.cycle_steps * (ratio - 1.0)) / math.log(ratio))
            # the logarithm can land a hair off a cycle boundary; the exact integer starts decide
            n = xp.where(t < self._cycle_start(n), n - 1.0, n)
            n = xp.where(t >= self._cycle_start(n + 1.0), n + 1.0, n)
        start = self._cycle_start(n)
        progress = (t - start) / (float(self.cycle_steps) * ratio**n)
        top = xp.maximum(self.peak * self.peak_ratio**n, self.end)
        value = self.end + (top - self.end) * 0.5 * (1.0 + xp.cos(math.pi * progress))
        if self.cycles is not None:
            value = xp.where(n >= float(self.cycles), self.end, value)
        return value


@dataclass(frozen=True, repr=False)
class Linear(Schedule):
    """A straight line from ``start`` to ``end`` over ``steps`` (either direction)."""

    kind = "linear"
    start: float
    end: float
    steps: int

    def validate(self) -> None:
        float_field(self, "start")
        float_field(self, "end")
        steps_field(self, "steps")

    @property
    def length(self) -> int:
        return self.steps

    def evaluate(self, t: Any, xp: Any) -> Any:
        return self.start + (self.end - self.start) * _progress(t, self.steps, xp)


@dataclass(frozen=True, repr=False)
class Polynomial(Schedule):
    """``end + (peak - end) * (1 - t/steps) ** power`` (PyTorch's PolynomialLR, transformers')."""

    kind = "polynomial"
    peak: float
    steps: int
    end: float = 0.0
    power: float = 1.0

    def validate(self) -> None:
        float_field(self, "peak", checks.positive)
        steps_field(self, "steps")
        float_field(self, "end")
        float_field(self, "power", checks.positive)
        _at_most(self, "end", "peak")

    @property
    def length(self) -> int:
        return self.steps

    def evaluate(self, t: Any, xp: Any) -> Any:
        return self.end + (self.peak - self.end) * (1.0 - _progress(t, self.steps, xp)) ** self.power


@dataclass(frozen=True, repr=False)
class OneMinusSqrt(Schedule):
    """``end + (peak - end) * (1 - sqrt(t/steps))``: the 1-sqrt cooldown of warmup-stable-decay."""

    kind = "one_minus_sqrt"
    peak: float
    steps: int
    end: float = 0.0

    def validate(self) -> None:
        float_field(self, "peak", checks.positive)
        steps_field(self, "steps")
        float_field(self, "end")
        _at_most(self, "end", "peak")

    @property
    def length(self) -> int:
        return self.steps

    def evaluate(self, t: Any, xp: Any) -> Any:
        return self.end + (self.peak - self.end) * (1.0 - xp.sqrt(_progress(t, self.steps, xp)))


@dataclass(frozen=True, repr=False)
class InverseSqrt(OpenEnded, Schedule):
    """``peak * sqrt(timescale_steps / (t + timescale_steps))``: ``peak`` at 0, halved at 3x the timescale."""

    kind = "inverse_sqrt"
    peak: float
    timescale_steps: int
    steps: int | None = None

    def validate(self) -> None:
        float_field(self, "peak", checks.positive)
        steps_field(self, "timescale_steps")
        self.validate_steps()

    def evaluate(self, t: Any, xp: Any) -> Any:
        t = self.held(t, xp)
        timescale = float(self.timescale_steps)
        return self.peak * xp.sqrt(timescale / (t + timescale))


@dataclass(frozen=True, repr=False)
class InverseTime(OpenEnded, Decaying, Schedule):
    """``peak / (1 + decay_rate * t / decay_steps)``, Keras' InverseTimeDecay; ``staircase`` floors
    ``t / decay_steps``. The rate is ``peak / 2`` after ``decay_steps / decay_rate`` steps."""

    kind = "inverse_time"
    peak: float
    decay_rate: float
    decay_steps: int = 1
    staircase: bool = False
    steps: int | None = None

    def validate(self) -> None:
        float_field(self, "peak", checks.positive)
        float_field(self, "decay_rate")
        self.validate_periods()
        self.validate_steps()

    def evaluate(self, t: Any, xp: Any) -> Any:
        return self.peak / (1.0 + self.decay_rate * self.periods(self.held(t, xp), xp))


CYCLIC_MODES = ("triangular", "triangular2", "exp_range")


@dataclass(frozen=True, repr=False)
class Cyclic(OpenEnded, Schedule):
    """Cyclical LR (Smith 2017): up from ``min_lr`` to ``max_lr`` in ``up_steps``, down in ``down_steps``;
    ``triangular2`` halves the height each cycle, ``exp_range`` multiplies it by ``decay_ratio`` each step."""

    kind = "cyclic"
    min_lr: float
    max_lr: float
    up_steps: int
    down_steps: int | None = None
    mode: str = "triangular"
    decay_ratio: float = 1.0
    steps: int | None = None

    def validate(self) -> None:
        float_field(self, "min_lr")
        float_field(self, "max_lr", checks.positive)
        _at_most(self, "min_lr", "max_lr")
        steps_field(self, "up_steps")
        if self.down_steps is not None:
            steps_field(self, "down_steps")
        checks.one_of("mode", self.mode, CYCLIC_MODES)
        setattr_frozen(self, "decay_ratio", checks.in_range("decay_ratio", self.decay_ratio, 0, 1, low_open=True))
        if self.mode != "exp_range" and self.decay_ratio != 1.0:
            raise ValueError(f"decay_ratio only applies to mode='exp_range', got mode={self.mode!r}")
        self.validate_steps()

    @property
    def period(self) -> int:
        return self.up_steps + (self.up_steps if self.down_steps is None else self.down_steps)

    def evaluate(self, t: Any, xp: Any) -> Any:
        # PyTorch's CyclicLR formula: position x in [0, 1) within the cycle, rising until up_fraction
        t = self.held(t, xp)
        period = float(self.period)
        up_fraction = self.up_steps / period
        cycle = 1.0 + floor_div(t, period, xp)
        # past 2**24 steps float32 cannot subtract exactly: keep x in the cycle, hence the rate in bounds
        x = xp.minimum(xp.maximum((t - (cycle - 1.0) * period) / period, 0.0), 1.0)
        height = (self.max_lr - self.min_lr) * xp.where(
            x <= up_fraction, x / up_fraction, (x - 1.0) / (up_fraction - 1.0)
        )
        if self.mode == "triangular2":
            height = height * 0.5 ** (cycle - 1.0)
        elif self.mode == "exp_range":
            height = height * self.decay_ratio**t
        return self.min_lr + height
