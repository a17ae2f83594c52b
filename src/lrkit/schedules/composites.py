"""The named recipes (warmup+cosine, warmup-stable-decay, 1cycle, step decay, Adam's warmup), each a
combination of the elementary kinds, so their values and specs are those of the parts."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from lrkit import checks
from lrkit.schedules.base import Schedule
from lrkit.schedules.combinators import Warmup
from lrkit.schedules.kinds import Constant, Cosine, Exponential, Linear, OneMinusSqrt

COOLDOWNS = ("linear", "cosine", "1-sqrt")
ANNEALS = ("cosine", "linear")

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _recipe(build: Callable[_P, _R]) -> Callable[_P, _R]:
    """Prefix every argument error of a recipe with its name, as the kinds prefix theirs: a bad
    argument may only surface in a part (``cosine: ...``), which alone would not say which call."""

    @functools.wraps(build)
    def checked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return build(*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise type(error)(f"{build.__name__}: {error}") from None

    return checked


def _warmup_within(warmup_steps: int, steps: int) -> None:
    if warmup_steps >= steps:
        raise ValueError(f"warmup_steps must be < steps, got warmup_steps={warmup_steps} >= steps={steps}")


@_recipe
def step_decay(peak: float, decay_steps: int, decay_ratio: float = 0.1) -> Schedule:
    """Multiply by ``decay_ratio`` every ``decay_steps`` steps (PyTorch's StepLR): staircase exponential."""
    return Exponential(peak=peak, decay_ratio=decay_ratio, decay_steps=decay_steps, staircase=True)


@_recipe
def warmup_cosine(
    peak: float, steps: int, warmup_steps: int, end: float = 0.0, start_ratio: float = 0.0
) -> Schedule:
    """Linear warmup to ``peak`` over ``warmup_steps``, then cosine to ``end`` at step ``steps``."""
    peak = checks.positive("peak", peak)
    steps = checks.integer("steps", steps, minimum=2)
    warmup_steps = checks.integer("warmup_steps", warmup_steps, minimum=1)
    _warmup_within(warmup_steps, steps)
    return Warmup(warmup_steps, start_ratio=start_ratio) >> Cosine(peak=peak, steps=steps - warmup_steps, end=end)


def _cooldown(kind: str, peak: float, steps: int, end: float) -> Schedule:
    if kind == "linear":
        return Linear(start=peak, end=end, steps=steps)
    if kind == "cosine":
        return Cosine(peak=peak, steps=steps, end=end)
    return OneMinusSqrt(peak=peak, steps=steps, end=end)


@_recipe
def wsd(
    peak: float,
    steps: int,
    warmup_steps: int,
    decay_steps: int,
    cooldown: str = "linear",
    end: float = 0.0,
    start_ratio: float = 0.0,
) -> Schedule:
    """Warmup-stable-decay: linear warmup from ``start_ratio * peak``, ``peak`` held, then a ``cooldown``
    to ``end`` in the last ``decay_steps`` of ``steps`` (linear, cosine or 1-sqrt)."""
    peak = checks.positive("peak", peak)
    steps = checks.integer("steps", steps, minimum=2)
    warmup_steps = checks.integer("warmup_steps", warmup_steps, minimum=0)
    decay_steps = checks.integer("decay_steps", decay_steps, minimum=1)
    checks.one_of("cooldown", cooldown, COOLDOWNS)
    stable_steps = steps - warmup_steps - decay_steps
    if stable_steps < 0:
        raise ValueError(
            f"warmup_steps + decay_steps must be <= steps={steps}, got {warmup_steps} + {decay_steps}"
        )
    phases: list[Schedule] = [Warmup(warmup_steps, start_ratio=start_ratio)] if warmup_steps else []
    if stable_steps:
        phases.append(Constant(peak, steps=stable_steps))
    phases.append(_cooldown(cooldown, peak, decay_steps, end))
    schedule = phases[0]
    for phase in phases[1:]:
        schedule = schedule >> phase
    return schedule


@_recipe
def one_cycle(
    peak: float,
    steps: int,
    up_steps: int | None = None,
    start_ratio: float = 0.04,
    end_ratio: float = 4e-6,
    anneal: str = "cosine",
    three_phase: bool = False,
) -> Schedule:
    """1cycle (Smith & Topin): from ``peak*start_ratio`` up to ``peak`` at step ``up_steps``, then down to
    ``peak*end_ratio`` at the last step ``steps - 1``; ``three_phase`` comes back to the start level
    over another ``up_steps`` first. Defaults follow PyTorch's OneCycleLR (up_steps = 0.3*steps - 1)."""
    steps = checks.integer("steps", steps, minimum=3)
    up_steps = round(0.3 * steps) - 1 if up_steps is None else up_steps
    up_steps = checks.integer("up_steps", up_steps, minimum=1)
    checks.one_of("anneal", anneal, ANNEALS)
    start_ratio = checks.in_range("start_ratio", start_ratio, 0, 1, low_open=True, high_open=True)
    end_ratio = checks.in_range("end_ratio", end_ratio, 0, start_ratio)
    if not isinstance(three_phase, bool):
        raise TypeError(f"three_phase must be True or False, got {three_phase!r}")
    down_steps = steps - 1 - up_steps * (2 if three_phase else 1)
    if down_steps < 1:
        raise ValueError(f"up_steps must leave room to come down: got up_steps={up_steps} for steps={steps}")
    peak = checks.positive("peak", peak)
    start, end = peak * start_ratio, peak * end_ratio
    if anneal == "linear":
        rise = Warmup(up_steps, start_ratio=start_ratio)
        fall = Linear(start=peak, end=end, steps=down_steps)
        back = Linear(start=peak, end=start, steps=up_steps)
    else:
        rise = Warmup(up_steps, start_ratio=start_ratio, shape="cosine")
        fall = Cosine(peak=peak, steps=down_steps, end=end)
        back = Cosine(peak=peak, steps=up_steps, end=start)
    if three_phase:
        fall = Cosine(peak=start, steps=down_steps, end=end) if anneal == "cosine" else Linear(
            start=start, end=end, steps=down_steps
        )
        return rise >> back >> fall
    return rise >> fall


@_recipe
def adam_warmup(beta2: float = 0.999, start_ratio: float = 0.0) -> Warmup:
    """The "untuned" linear warmup for Adam (Ma & Yarats 2021): ``2 / (1 - beta2)`` steps."""
    beta2 = checks.in_range("beta2", beta2, 0, 1, low_open=True, high_open=True)
    return Warmup(max(1, round(2.0 / (1.0 - beta2))), start_ratio=start_ratio)
