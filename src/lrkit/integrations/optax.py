"""lrkit schedules and plateau cuts for optax/JAX, traceable under ``jax.jit``.

A schedule already works as optax's ``learning_rate=`` (it evaluates JAX arrays and tracers with
``jax.numpy``); ``optax_schedule`` makes that explicit and accepts a spec string too.
``optax_plateau`` is an lrkit ``Plateau`` as a gradient transformation that scales the updates by
the plateau's ratio, chained after any optimizer, so warmup and plateau cuts compose in optax too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import jax
import jax.numpy as jnp
import optax

from lrkit.schedules.base import Schedule
from lrkit.schedules.plateau import Plateau, PlateauState
from lrkit.schedules.spec import parse

INT32_MAX = 2**31 - 1  # the state's counters are int32


def optax_schedule(schedule: Schedule | str) -> Callable[[Any], Any]:
    """A function of optax's step count, traceable under ``jax.jit``, giving the schedule's value."""
    schedule = parse(schedule, name="schedule")

    def learning_rate(count: Any) -> Any:
        return schedule.evaluate_traced(jnp.asarray(count) * 1.0, jnp)

    learning_rate.__doc__ = repr(schedule)
    return learning_rate


def optax_plateau(plateau: Plateau) -> optax.GradientTransformationExtraArgs:
    """Multiply updates by ``plateau``'s ratio, reporting the metric passed as ``value=`` first.

    Call it as optax's ``reduce_on_plateau``: ``update(updates, state, params, value=metric)``, e.g.
    ``optax.chain(optax.adam(schedule), optax_plateau(Plateau(patience=5)))``; every call with a
    metric is one report, and ``value=None`` reports nothing (steps between evaluations). The state
    (a ``PlateauState`` of arrays) starts from ``plateau``'s settings and state when this is called;
    ``plateau`` itself is not changed. Decisions equal ``Plateau.report``'s on the same metrics: exactly
    with ``jax_enable_x64``; in float32, a metric within float32 rounding of the threshold may fall either side.
    """
    if not isinstance(plateau, Plateau):
        raise TypeError(f"plateau must be an lrkit Plateau, got {plateau!r} ({type(plateau).__name__})")
    for name in ("patience", "cooldown"):
        if getattr(plateau, name) >= INT32_MAX:
            value = getattr(plateau, name)
            raise ValueError(f"{name} must be < {INT32_MAX} for optax (its counters are int32), got {value}")
    rules = replace(plateau)  # the settings, fixed now: later changes to ``plateau`` do not reach a compiled update
    start = plateau.state

    def init(params: Any) -> PlateauState:
        del params
        floats = jnp.result_type(float)  # float32, or float64 with jax_enable_x64
        return PlateauState(
            ratio=jnp.asarray(start.ratio, floats),
            best=jnp.asarray(start.best, floats),
            bad_reports=jnp.asarray(start.bad_reports, jnp.int32),
            cooldown_left=jnp.asarray(start.cooldown_left, jnp.int32),
            reports=jnp.asarray(start.reports, jnp.int32),
        )

    def update(
        updates: Any, state: PlateauState, params: Any = None, *, value: Any, **extra_args: Any
    ) -> tuple[Any, PlateauState]:
        del params, extra_args
        if value is not None:
            state = rules.next_state(state, _metric(value, state.best.dtype), jnp)
        return jax.tree.map(lambda update: update * state.ratio.astype(update.dtype), updates), state

    return optax.GradientTransformationExtraArgs(init, update)


def _metric(value: Any, dtype: Any) -> Any:
    """``value`` as a scalar of ``dtype``; its shape is known while tracing, so a wrong one raises."""
    metric = jnp.asarray(value)
    if metric.size != 1:
        raise ValueError(f"value must be one number (the metric), got an array of shape {metric.shape}")
    if not (jnp.issubdtype(metric.dtype, jnp.floating) or jnp.issubdtype(metric.dtype, jnp.integer)):
        raise TypeError(f"value must be a real number (the metric), got dtype {metric.dtype}")
    return metric.reshape(()).astype(dtype)
