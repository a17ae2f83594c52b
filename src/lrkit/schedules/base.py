"""The Schedule base: a frozen value mapping a step (an int or an array of steps) to a learning rate.

Each kind writes its formula once, as ``evaluate(t, xp)`` on a float array ``t`` with the array
namespace ``xp`` (NumPy, ``jax.numpy`` under jit, or Keras ops), so every framework gets the same
numbers from the same code. Durations are ints, but a formula uses them as floats (``float(steps)``):
JAX turns a Python int into an int32, which a duration past 2**31 overflows. ``repr`` gives the spec
string that ``lrkit.schedules.parse`` reads back.
"""

from __future__ import annotations

import dataclasses
from numbers import Integral
from typing import Any, ClassVar

import numpy as np

from lrkit import checks


class Schedule:
    """Base of every schedule: call it with a step (int) or steps (integer NumPy array)."""

    kind: ClassVar[str]  # the name used in spec strings
    positional: ClassVar[int] = 0  # how many leading fields the spec writes without a keyword

    def __post_init__(self) -> None:
        try:
            self.validate()
        except (TypeError, ValueError) as error:
            raise type(error)(f"{self.kind}: {error}") from None

    def validate(self) -> None:
        """Check (and normalise) the fields; raise ``ValueError``/``TypeError`` naming the argument."""

    def evaluate(self, t: Any, xp: Any) -> Any:
        """The learning rate at float steps ``t`` (an array of namespace ``xp``)."""
        raise NotImplementedError

    def evaluate_traced(self, t: Any, xp: Any) -> Any:
        """``evaluate`` for steps that cannot be checked, being traced (JAX under jit, Keras): a negative
        step reads as step 0, where ``__call__`` refuses it, so no framework gets a rate NumPy would not."""
        return self.evaluate(xp.where(t < 0.0, 0.0, t), xp)

    @property
    def length(self) -> int | None:
        """Steps this schedule spans before it settles (``None``: open-ended); sequences cut here."""
        return None

    def __call__(self, step: Any) -> Any:
        if isinstance(step, Integral) and not isinstance(step, bool):
            checks.integer("step", step, minimum=0)
            return float(self.evaluate(np.array([step], dtype=np.float64), np)[0])
        if isinstance(step, (np.ndarray, list, tuple)):
            steps = np.asarray(step)
            if steps.dtype.kind not in "iu":
                raise TypeError(f"steps must be an array of integers, got dtype {steps.dtype}")
            if steps.size and steps.min() < 0:
                raise ValueError(f"steps must be >= 0, got {int(steps.min())}")
            values = self.evaluate(steps.astype(np.float64).reshape(-1), np)
            return np.asarray(values, dtype=np.float64).reshape(steps.shape)
        if hasattr(step, "__array_namespace__") and not isinstance(step, np.generic):
            return self.evaluate_traced(step * 1.0, step.__array_namespace__())  # jax arrays and tracers
        raise TypeError(f"step must be an int or an array of ints, got {step!r} ({type(step).__name__})")

    def __rshift__(self, other: Schedule) -> Schedule:
        from lrkit.schedules.combinators import Sequence

        if not isinstance(other, Schedule):
            return NotImplemented
        return Sequence((self, other))

    def __repr__(self) -> str:
        fields = dataclasses.fields(self)  # type: ignore[arg-type]
        parts = []
        for index, field in enumerate(fields):
            value = getattr(self, field.name)
            if index < self.positional:
                parts.append(format_value(value))
            elif field.default is dataclasses.MISSING or value != field.default:
                parts.append(f"{field.name}={format_value(value)}")
        return f"{self.kind}({', '.join(parts)})"


def format_value(value: object) -> str:
    """A field value as spec text that parses back to an equal value."""
    if isinstance(value, tuple):
        return "[" + ", ".join(format_value(item) for item in value) + "]"
    return repr(value)


def setattr_frozen(schedule: object, name: str, value: object) -> None:
    """Normalise a field of a frozen dataclass during validation."""
    object.__setattr__(schedule, name, value)


def steps_field(schedule: object, name: str, *, minimum: int = 1) -> int:
    """Validate and store a duration field (an int >= ``minimum``)."""
    value = checks.integer(name, getattr(schedule, name), minimum=minimum)
    setattr_frozen(schedule, name, value)
    return value


def float_field(schedule: object, name: str, check: Any = checks.non_negative) -> float:
    """Validate a numeric field with ``check`` and store it as a float."""
    value = check(name, getattr(schedule, name))
    setattr_frozen(schedule, name, value)
    return value


def schedule_field(schedule: object, name: str) -> Schedule:
    """Check that a field holds a Schedule."""
    value = getattr(schedule, name)
    if not isinstance(value, Schedule):
        raise TypeError(f"{name} must be a schedule, got {value!r} ({type(value).__name__})")
    return value
