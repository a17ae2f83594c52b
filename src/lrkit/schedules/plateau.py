"""Reduce-on-plateau as a controller beside a schedule: it keeps a ``ratio`` that drops when the
watched metric stops improving, and the caller multiplies any schedule's value by it, so warmup
followed by plateau reductions composes (which PyTorch's ReduceLROnPlateau cannot do).

The rule is written once, as ``Plateau.next_state(state, metric, xp)`` in an array namespace ``xp``
(the way schedules write ``evaluate``): ``report`` runs it with NumPy on plain numbers, the optax
transformation with ``jax.numpy`` on arrays under jit, so both take the same decisions.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any, NamedTuple

import numpy as np

from lrkit import checks

MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")


class PlateauState(NamedTuple):
    """What a report changes: plain numbers in ``Plateau``, arrays in a traced (optax) state."""

    ratio: Any
    best: Any
    bad_reports: Any
    cooldown_left: Any
    reports: Any


@dataclass
class Plateau:
    """Multiply the rate by ``decay_ratio`` after more than ``patience`` reports without improvement.

    Improvement follows PyTorch's ReduceLROnPlateau: ``rel`` needs ``metric < best * (1 - threshold)``
    (for ``mode="min"``), ``abs`` needs ``metric < best - threshold``; ``cooldown`` reports are ignored
    after each cut; the ratio never goes below ``min_ratio``. NaN never counts as an improvement.
    """

    decay_ratio: float = 0.1
    patience: int = 10
    threshold: float = 1e-4
    threshold_mode: str = "rel"
    mode: str = "min"
    cooldown: int = 0
    min_ratio: float = 0.0
    ratio: float = field(default=1.0, init=False)
    best: float = field(default=math.inf, init=False)
    bad_reports: int = field(default=0, init=False)
    cooldown_left: int = field(default=0, init=False)
    reports: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.decay_ratio = checks.in_range("decay_ratio", self.decay_ratio, 0, 1, low_open=True, high_open=True)
        self.patience = checks.integer("patience", self.patience, minimum=0)
        self.threshold = checks.non_negative("threshold", self.threshold)
        checks.one_of("threshold_mode", self.threshold_mode, THRESHOLD_MODES)
        checks.one_of("mode", self.mode, MODES)
        self.cooldown = checks.integer("cooldown", self.cooldown, minimum=0)
        self.min_ratio = checks.in_range("min_ratio", self.min_ratio, 0, 1, high_open=True)
        self.best = math.inf if self.mode == "min" else -math.inf

    @property
    def state(self) -> PlateauState:
        """The current state, as plain numbers."""
        return PlateauState(self.ratio, self.best, self.bad_reports, self.cooldown_left, self.reports)

    def improves(self, metric: float) -> bool:
        """Whether ``metric`` beats the best so far by more than the threshold."""
        return bool(self._improves(metric, self.best))

    def _improves(self, metric: Any, best: Any) -> Any:
        sign = 1.0 if self.mode == "min" else -1.0
        if self.threshold_mode == "rel":
            return sign * metric < sign * best * (1.0 - sign * self.threshold)
        return sign * metric < sign * best - self.threshold

    def next_state(self, state: PlateauState, metric: Any, xp: Any) -> PlateauState:
        """The state after one report of ``metric``, computed with the array namespace ``xp`` (NumPy, or
        ``jax.numpy`` under jit: every choice is an ``xp.where``); NaN compares false, so never improves."""
        improved = self._improves(metric, state.best)
        best = xp.where(improved, metric, state.best)
        bad_reports = xp.where(improved, 0, state.bad_reports + 1)
        cooling = state.cooldown_left > 0
        cooldown_left = xp.where(cooling, state.cooldown_left - 1, state.cooldown_left)
        bad_reports = xp.where(cooling, 0, bad_reports)
        cut = bad_reports > self.patience
        ratio = xp.where(cut, xp.maximum(state.ratio * self.decay_ratio, self.min_ratio), state.ratio)
        cooldown_left = xp.where(cut, self.cooldown, cooldown_left)
        bad_reports = xp.where(cut, 0, bad_reports)
        return PlateauState(ratio, best, bad_reports, cooldown_left, state.reports + 1)

    def report(self, metric: float) -> float:
        """Record one evaluation of the metric; return the (possibly reduced) ratio."""
        number = checks.one_number(metric)
        if number is None:
            raise TypeError(
                f"metric must be a number or a one-element tensor, got {metric!r} ({type(metric).__name__})"
            )
        state = self.next_state(self.state, number, np)
        self.ratio, self.best = float(state.ratio), float(state.best)
        self.bad_reports, self.cooldown_left, self.reports = (
            int(state.bad_reports),
            int(state.cooldown_left),
            int(state.reports),
        )
        return self.ratio

    def state_dict(self) -> dict[str, Any]:
        """Settings and state as plain numbers and strings (safe for ``torch.load(weights_only=True)``)."""
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        names = {item.name for item in fields(self)}
        unknown = set(state) - names
        if unknown:
            raise ValueError(f"state has unknown keys {sorted(unknown)}; expected {sorted(names)}")
        for name, value in state.items():
            setattr(self, name, value)
