"""Combinators: sequence phases (``a >> b``), warm up into whatever follows, lay a phase over the
next one's first steps, scale, clip, add noise."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from lrkit import checks
from lrkit.schedules.base import Schedule, float_field, schedule_field, setattr_frozen, steps_field

WARMUP_SHAPES = ("linear", "cosine", "exponential", "1-sqrt")


@dataclass(frozen=True, repr=False)
class Warmup(Schedule):
    """A ramp over ``steps`` from ``start_ratio`` times the next phase's first value up to that value.

    It has no level of its own, so it only makes sense in front of something: ``warmup(500) >> cosine(...)``.
    ``exponential`` rises geometrically and needs ``start_ratio > 0``; ``1-sqrt`` is the 1-sqrt
    cooldown backwards in time, slow at first (transformers' ``warmup_type="1-sqrt"``).
    """

    kind = "warmup"
    positional = 1
    steps: int
    start_ratio: float = 0.0
    shape: str = "linear"

    def validate(self) -> None:
        steps_field(self, "steps")
        checks.one_of("shape", self.shape, WARMUP_SHAPES)
        low_open = self.shape == "exponential"
        ratio = checks.in_range("start_ratio", self.start_ratio, 0, 1, low_open=low_open, high_open=True)
        setattr_frozen(self, "start_ratio", ratio)

    @property
    def length(self) -> int:
        return self.steps

    def ramp(self, t: Any, xp: Any) -> Any:
        """The fraction of the target reached at local step ``t`` (``start_ratio`` at 0, 1 at ``steps``)."""
        steps = float(self.steps)
        progress = xp.minimum(xp.minimum(t, steps) / steps, 1.0)  # a compiler's steps * (1/steps) may pass 1
        if self.shape == "exponential":
            return self.start_ratio ** (1.0 - progress)
        if self.shape == "cosine":
            progress = 0.5 * (1.0 - xp.cos(math.pi * progress))
        elif self.shape == "1-sqrt":
            progress = 1.0 - xp.sqrt(1.0 - progress)
        return self.start_ratio + (1.0 - self.start_ratio) * progress

    def evaluate(self, t: Any, xp: Any) -> Any:
        raise ValueError(f"{self!r} rises to the phase after it; write it in front of one: {self!r} >> ...")


@dataclass(frozen=True, repr=False)
class Overlay(Schedule):
    """A phase laid over the first steps of the phase after it instead of delaying it: in
    ``overlay(a) >> b``, ``b`` runs on the clock that starts with ``a``, so after ``a``'s steps it
    goes on from its own step ``a.length`` and ends where it would alone (timm's warmup with
    ``warmup_prefix=False``). A warmup in it rises to ``b``'s step 0, as it would without it.
    An overlay of an overlay is that overlay."""

    kind = "overlay"
    positional = 1
    schedule: Schedule

    def validate(self) -> None:
        inner = schedule_field(self, "schedule")
        if isinstance(inner, Overlay):
            inner = inner.schedule
            setattr_frozen(self, "schedule", inner)
        if inner.length is None:
            raise ValueError(
                f"schedule must have a length to lie over the next phase, got {inner!r}; {_how_to_end(inner)}"
            )

    @property
    def length(self) -> int:
        return self.schedule.length  # type: ignore[return-value]

    def evaluate(self, t: Any, xp: Any) -> Any:
        raise ValueError(f"{self!r} lies over the phase after it; write it in front of one: {self!r} >> ...")


FRONTS = (Warmup, Overlay)  # phases that need a phase after them


def check_complete(schedule: Schedule) -> Schedule:
    """``schedule`` itself, once it is sure to have a value at every step: a warmup or an overlay
    anywhere in it must have a phase after it (``warmup(500)`` alone, or last, has none)."""
    phases = schedule.phases if isinstance(schedule, Sequence) else (schedule,)
    for index, phase in enumerate(phases):
        if isinstance(phase, FRONTS) and index == len(phases) - 1:
            where = "" if phase is schedule else f" in {schedule!r}"
            verb = "rises to" if isinstance(phase, Warmup) else "lies over"
            raise ValueError(
                f"{phase!r} {verb} the phase after it, but nothing follows it{where}; "
                f"write it in front of one: {phase!r} >> ..."
            )
        if isinstance(phase, Overlay):
            if not isinstance(phase.schedule, Warmup):  # an overlaid warmup rises to the next phase
                check_complete(phase.schedule)
            continue
        if isinstance(phase, Warmup):
            continue
        for value in vars(phase).values():
            for part in value if isinstance(value, tuple) else (value,):
                if isinstance(part, Schedule):
                    check_complete(part)
    return schedule


@dataclass(frozen=True, repr=False)
class Sequence(Schedule):
    """Phases one after another; each restarts at its own step 0 where the previous one's length
    ends, except after an ``overlay(...)``, whose clock the next phase keeps."""

    kind = "sequence"
    phases: tuple[Schedule, ...]

    def validate(self) -> None:
        if not isinstance(self.phases, (tuple, list)) or len(self.phases) < 2:
            raise ValueError(f"phases must be two or more schedules, got {self.phases!r}")
        flat: list[Schedule] = []
        for phase in self.phases:
            if not isinstance(phase, Schedule):
                raise TypeError(f"phases must be schedules, got {phase!r} ({type(phase).__name__})")
            flat.extend(phase.phases if isinstance(phase, Sequence) else (phase,))
        for phase in flat[:-1]:
            if phase.length is None:
                raise ValueError(
                    f"phase {phase!r} has no length, so nothing can follow it; {_how_to_end(phase)} or put it last"
                )
        setattr_frozen(self, "phases", tuple(flat))
        starts, origins = self._timeline()
        for index in range(1, len(flat)):
            covered, length = starts[index] - origins[index], flat[index].length
            if covered and length is not None and length <= covered:
                raise ValueError(
                    f"phase {flat[index]!r} lasts {length} steps, all under the overlay before it "
                    f"({covered} steps); it must last longer"
                )

    def _timeline(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Where each phase begins, and where its own step 0 falls (earlier, after an overlay)."""
        starts, origins = [0], [0]
        for index, phase in enumerate(self.phases[:-1]):
            end = origins[index] + phase.length  # type: ignore[operator]
            starts.append(end)
            origins.append(origins[index] if isinstance(phase, Overlay) else end)
        return tuple(starts), tuple(origins)

    @property
    def starts(self) -> tuple[int, ...]:
        """The global step at which each phase begins."""
        return self._timeline()[0]

    @property
    def origins(self) -> tuple[int, ...]:
        """The global step at which each phase's own step 0 falls: its start, or after an overlay
        the overlay's own step 0."""
        return self._timeline()[1]

    @property
    def length(self) -> int | None:
        last = self.phases[-1].length
        return None if last is None else self.origins[-1] + last

    def evaluate(self, t: Any, xp: Any) -> Any:
        return self._rest(0, t, xp, self._timeline())

    def _rest(self, index: int, t: Any, xp: Any, timeline: tuple[tuple[int, ...], ...]) -> Any:
        """Phases ``index`` onwards at global steps ``t``, none of them before phase ``index``'s own step 0."""
        if index == len(self.phases) - 1:
            return self._phase(index, t, xp, timeline)
        end = float(timeline[0][index + 1])
        head = self._phase(index, xp.minimum(t, end), xp, timeline)
        tail = self._rest(index + 1, xp.maximum(t, end), xp, timeline)
        return xp.where(t < end, head, tail)

    def _phase(self, index: int, t: Any, xp: Any, timeline: tuple[tuple[int, ...], ...]) -> Any:
        """Phase ``index`` at global steps ``t``, on its own clock; a warmup rises to the value the
        phases after it have at their own step 0."""
        origins = timeline[1]
        phase = self.phases[index]
        inner = phase.schedule if isinstance(phase, Overlay) else phase
        local = t - float(origins[index])
        if isinstance(inner, Warmup) and index + 1 < len(self.phases):
            target = self._rest(index + 1, t * 0.0 + float(origins[index + 1]), xp, timeline)
            return inner.ramp(local, xp) * target
        return inner.evaluate(local, xp)

    def __repr__(self) -> str:
        return " >> ".join(repr(phase) for phase in self.phases)


def _how_to_end(phase: Schedule) -> str:
    """How ``phase`` (or the schedule it wraps) gets a length: every open-ended kind takes ``steps``,
    except ``cosine_restarts``, which ends after ``cycles``."""
    while isinstance(phase, Sequence) or isinstance(getattr(phase, "schedule", None), Schedule):
        phase = phase.phases[-1] if isinstance(phase, Sequence) else phase.schedule  # type: ignore[attr-defined]
    name = "cycles" if phase.kind == "cosine_restarts" else "steps"
    return f"give it one with {name}=N ({phase.kind}(..., {name}=N))"


@dataclass(frozen=True, repr=False)
class Scale(Schedule):
    """Another schedule times a constant ``ratio``."""

    kind = "scale"
    positional = 1
    schedule: Schedule
    ratio: float

    def validate(self) -> None:
        schedule_field(self, "schedule")
        float_field(self, "ratio", checks.positive)

    @property
    def length(self) -> int | None:
        return self.schedule.length

    def evaluate(self, t: Any, xp: Any) -> Any:
        return self.schedule.evaluate(t, xp) * self.ratio


@dataclass(frozen=True, repr=False)
class Clip(Schedule):
    """Another schedule held inside ``[min_lr, max_lr]`` (either bound may be left out)."""

    kind = "clip"
    positional = 1
    schedule: Schedule
    min_lr: float | None = None
    max_lr: float | None = None

    def validate(self) -> None:
        schedule_field(self, "schedule")
        if self.min_lr is None and self.max_lr is None:
            raise ValueError("clip needs min_lr, max_lr or both; got neither")
        if self.min_lr is not None:
            float_field(self, "min_lr")
        if self.max_lr is not None:
            float_field(self, "max_lr", checks.positive)
        if self.min_lr is not None and self.max_lr is not None:
            checks.ordered("min_lr", self.min_lr, "max_lr", self.max_lr)

    @property
    def length(self) -> int | None:
        return self.schedule.length

    def evaluate(self, t: Any, xp: Any) -> Any:
        value = self.schedule.evaluate(t, xp)
        if self.min_lr is not None:
            value = xp.maximum(value, self.min_lr)
        if self.max_lr is not None:
            value = xp.minimum(value, self.max_lr)
        return value


@dataclass(frozen=True, repr=False)
class Noise(Schedule):
    """Another schedule times a seeded factor drawn uniformly from ``[1 - ratio, 1 + ratio)`` per step.

    The factor is a hash of (seed, step), not a random stream, so any step can be asked for in any
    order and a resumed run sees the same noise.
    """

    kind = "noise"
    positional = 1
    schedule: Schedule
    ratio: float
    seed: int = 0

    def validate(self) -> None:
        schedule_field(self, "schedule")
        setattr_frozen(self, "ratio", checks.in_range("ratio", self.ratio, 0, 1, high_open=True))
        setattr_frozen(self, "seed", checks.integer("seed", self.seed, minimum=0))

    @property
    def length(self) -> int | None:
        return self.schedule.length

    def evaluate(self, t: Any, xp: Any) -> Any:
        uniform = _hash_uniform(t, self.seed, xp)
        return self.schedule.evaluate(t, xp) * (1.0 + self.ratio * (2.0 * uniform - 1.0))


def phase_starts(schedule: Schedule) -> tuple[int, ...]:
    """The steps where a sequence's phases begin (``(0,)`` for a single phase)."""
    return schedule.starts if isinstance(schedule, Sequence) else (0,)


def _hash_uniform(t: Any, seed: int, xp: Any) -> Any:
    """A uniform number in [0, 1) from (seed, step), in int32 arithmetic every array library wraps alike."""
    t = t - xp.floor(t / 2147483648.0) * 2147483648.0  # steps past int32 wrap (exact: 2**31 is a power of 2)
    x = xp.asarray(t, dtype=xp.int32) ^ ((seed * 0x9E3779B1 + 0x632BE5AB) & 0x7FFFFFFF)
    x = x ^ ((x >> 16) & 0xFFFF)  # masks make the signed shifts logical
    x = x * 0x7FEB352D
    x = x ^ ((x >> 15) & 0x1FFFF)
    x = x * 0x046CA68B
    x = x ^ ((x >> 16) & 0xFFFF)
    return (x & 0xFFFFFF) * (1.0 / 16777216.0)
