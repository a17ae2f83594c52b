"""Reduce-on-plateau as a controller beside a schedule: it keeps a ``ratio`` that drops when the
watched metric stops improving, and the caller multiplies any schedule's value by it, so warmup
followed by plateau reductions composes (which PyTorch's ReduceLROnPlateau cannot do)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from lrkit import checks

MODES = ("min", "max")
THRESHOLD_MODES = ("rel", "abs")


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

    def improves(self, metric: float) -> bool:
        """Whether ``metric`` beats the best so far by more than the threshold."""
        sign = 1.0 if self.mode == "min" else -1.0
        if self.threshold_mode == "rel":
            return sign * metric < sign * self.best * (1.0 - sign * self.threshold)
        return sign * metric < sign * self.best - self.threshold

    def report(self, metric: float) -> float:
        """Record one evaluation of the metric; return the (possibly reduced) ratio."""
        number = checks.one_number(metric)
        if number is None:
            raise TypeError(
                f"metric must be a number or a one-element tensor, got {metric!r} ({type(metric).__name__})"
            )
        metric = number
        self.reports += 1
        if self.improves(metric):
            self.best, self.bad_reports = float(metric), 0
        else:
            self.bad_reports += 1
        if self.cooldown_left > 0:
            self.cooldown_left -= 1
            self.bad_reports = 0
        if self.bad_reports > self.patience:
            self.ratio = max(self.ratio * self.decay_ratio, self.min_ratio)
            self.cooldown_left, self.bad_reports = self.cooldown, 0
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

