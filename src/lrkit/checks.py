"""Argument checks shared by the whole package, so every bad value is reported the same way.

Each check raises ``ValueError`` (or ``TypeError`` for a wrong type) naming the argument, the value
it got and what is allowed, and returns the value (converted where that is the point) when it is
fine.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Iterable
from numbers import Integral, Real
from typing import TypeVar

T = TypeVar("T")


def is_real(value: object) -> bool:
    """A real number, and not a bool (which Python counts as an integer)."""
    return isinstance(value, Real) and not isinstance(value, bool)


def one_number(value: object) -> float | None:
    """``value`` as a float when it holds one real number: a number, or a one-element tensor or
    array (read by duck typing, so this stays free of torch); None otherwise."""
    if is_real(value):
        return float(value)
    count = value.numel() if callable(getattr(value, "numel", None)) else getattr(value, "size", None)
    if count == 1 and callable(getattr(value, "item", None)) and is_real(item := value.item()):
        return float(item)
    return None


def _require_real(name: str, value: object) -> float:
    if not is_real(value):
        raise TypeError(f"{name} must be a number, got {value!r} ({type(value).__name__})")
    number = float(value)
    if math.isnan(number):
        raise ValueError(f"{name} must be a number, got NaN")
    return number


def finite(name: str, value: object) -> float:
    """A finite real number."""
    number = _require_real(name, value)
    if math.isinf(number):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return number


def positive(name: str, value: object) -> float:
    """A finite number > 0 (learning rates, factors)."""
    number = finite(name, value)
    if number <= 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return number


def non_negative(name: str, value: object) -> float:
    """A finite number >= 0."""
    number = finite(name, value)
    if number < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return number


def in_range(
    name: str,
    value: object,
    low: float,
    high: float,
    *,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite number inside an interval; ``*_open`` excludes that end."""
    number = finite(name, value)
    too_low = number <= low if low_open else number < low
    too_high = number >= high if high_open else number > high
    if too_low or too_high:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return number


def integer(name: str, value: object, *, minimum: int | None = None) -> int:
    """A whole number, optionally at least ``minimum`` (floats such as 3.0 are refused)."""
    if isinstance(value, bool) or not isinstance(value, Integral):
        raise TypeError(f"{name} must be an integer, got {value!r} ({type(value).__name__})")
    number = int(value)
    if minimum is not None and number < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {number}")
    return number


def known_options(what: str, options: Iterable[str], allowed: Iterable[str]) -> None:
    """Every keyword option one that ``what`` takes (a callback checking options it passes on later)."""
    allowed = list(allowed)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(f"unknown {what} option(s) {', '.join(unknown)}; the options are {', '.join(allowed)}")


def one_of(name: str, value: T, allowed: Iterable[T]) -> T:
    """One of a fixed set of choices."""
    choices = list(allowed)
    if value not in choices:
        listed = ", ".join(repr(choice) for choice in choices)
        raise ValueError(f"{name} must be one of {listed}; got {value!r}")
    return value


def ordered(low_name: str, low: float, high_name: str, high: float) -> None:
    """Two bounds with ``low < high``."""
    if not low < high:
        raise ValueError(f"{low_name} must be < {high_name}, got {low_name}={low!r} >= {high_name}={high!r}")


def steps_without_closure(optimizer: object, why: str) -> None:
    """Refuse an optimizer whose ``step()`` needs a closure (LBFGS: it evaluates the loss several
    times per step); ``why`` says what steps it once per batch."""
    closure = inspect.signature(optimizer.step).parameters.get("closure")
    if closure is not None and closure.default is inspect.Parameter.empty:
        raise TypeError(
            f"optimizer must step without a closure, got {type(optimizer).__name__}, whose step() needs "
            f"one (it evaluates the loss several times per step); {why}: use a first-order optimizer "
            "(SGD, Adam, ...)"
        )
