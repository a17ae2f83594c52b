"""lrkit schedules for optax/JAX: a jit-safe ``count -> learning rate`` function.

A schedule already works as optax's ``learning_rate=`` (it evaluates JAX arrays and tracers with
``jax.numpy``); ``optax_schedule`` makes that explicit and accepts a spec string too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax.numpy as jnp

from lrkit.schedules.base import Schedule
from lrkit.schedules.spec import parse


def optax_schedule(schedule: Schedule | str) -> Callable[[Any], Any]:
    """A function of optax's step count, traceable under ``jax.jit``, giving the schedule's value."""
    schedule = parse(schedule, name="schedule")

    def learning_rate(count: Any) -> Any:
        return schedule.evaluate_traced(jnp.asarray(count) * 1.0, jnp)

    learning_rate.__doc__ = repr(schedule)
    return learning_rate
