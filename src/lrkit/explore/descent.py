"""Gradient descent on a 2D surface with the real ``torch.optim`` optimizers, so the explorer's
paths are exactly what PyTorch would do, and a range test on the same surface.

The parameter is one float64 tensor of two numbers; its gradient is the surface's exact gradient.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import torch

from lrkit import checks
from lrkit.landscapes import Surface, stability_limit
from lrkit.suggest import DivergenceWatch
from lrkit.trace import Trace, TraceBuilder

MAX_STEPS = 2000
MOMENTUM = 0.9
ESCAPE = 100.0  # a path this many box sizes from the origin is stopped

OPTIMIZERS: dict[str, Callable[[list[torch.Tensor], float], torch.optim.Optimizer]] = {
    "sgd": lambda params, lr: torch.optim.SGD(params, lr=lr),
    "momentum": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=MOMENTUM),
    "nesterov": lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=MOMENTUM, nesterov=True),
    "adagrad": lambda params, lr: torch.optim.Adagrad(params, lr=lr),
    "rmsprop": lambda params, lr: torch.optim.RMSprop(params, lr=lr),
    "adam": lambda params, lr: torch.optim.Adam(params, lr=lr),
    "adamw": lambda params, lr: torch.optim.AdamW(params, lr=lr),
}
OPTIMIZER_TITLES = {
    "sgd": "SGD",
    "momentum": f"SGD + momentum {MOMENTUM}",
    "nesterov": f"Nesterov (momentum {MOMENTUM})",
    "adagrad": "AdaGrad",
    "rmsprop": "RMSProp",
    "adam": "Adam",
    "adamw": "AdamW (weight decay 0.01)",
}

Schedule = Callable[[np.ndarray], np.ndarray]  # steps -> LRs, as every lrkit schedule is


@dataclass(frozen=True)
class Descent:
    """One path: positions before each step (and after the last), the loss and LR at each step,
    and, if the path diverged, the step from which its loss stayed above the starting loss."""

    optimizer: str
    lr: float
    x: np.ndarray
    y: np.ndarray
    loss: np.ndarray
    step_lr: np.ndarray
    diverged_at: int | None

    @property
    def diverged(self) -> bool:
        return self.diverged_at is not None

    def to_json(self) -> dict:
        return {
            "optimizer": self.optimizer,
            "lr": self.lr,
            "x": _finite_list(self.x),
            "y": _finite_list(self.y),
            "loss": _finite_list(self.loss),
            "step_lr": _finite_list(self.step_lr),
            "diverged_at": self.diverged_at,
        }


def optimizer_limit(surface: Surface, optimizer: str) -> float | None:
    """The stability limit of ``optimizer`` on ``surface`` (None for adaptive optimizers or
    surfaces without constant curvature)."""
    checks.one_of("optimizer", optimizer, OPTIMIZERS)
    if optimizer == "sgd":
        return stability_limit(surface)
    if optimizer in ("momentum", "nesterov"):
        return stability_limit(surface, momentum=MOMENTUM, nesterov=optimizer == "nesterov")
    return None


def descend(
    surface: Surface,
    optimizer: str,
    lr: float,
    *,
    steps: int = 200,
    start: Sequence[float] | None = None,
    schedule: Schedule | None = None,
) -> Descent:
    """Run ``steps`` steps of ``optimizer`` from ``start`` (default: the surface's start).

    With a ``schedule``, the LR at step t is ``lr * schedule(t) / max(schedule)``: the schedule
    gives the shape and ``lr`` its peak. The run stops early once the loss is not finite or the
    point has flown far out of the drawing box.
    """
    return descend_many(surface, optimizer, [lr], steps=steps, start=start, schedule=schedule)[0]


def descend_many(
    surface: Surface,
    optimizer: str,
    lrs: Sequence[float],
    *,
    steps: int = 200,
    start: Sequence[float] | None = None,
    schedule: Schedule | None = None,
) -> list[Descent]:
    """:func:`descend` at several LRs at once: one optimizer, one param group per LR. Groups
    share no state, so each path is exactly what it would be alone, for one ``step()`` call."""
    checks.one_of("optimizer", optimizer, OPTIMIZERS)
    lrs = [checks.positive("lr", lr) for lr in lrs]
    if not lrs:
        raise ValueError("lrs must hold at least one learning rate, got none")
    steps = checks.integer("steps", steps, minimum=1)
    if steps > MAX_STEPS:
        raise ValueError(f"steps must be <= {MAX_STEPS}, got {steps}")
    walkers = _Walkers(surface, optimizer, _start(surface, start), len(lrs))
    rates = [_rates(lr, steps, schedule) for lr in lrs]
    xs, ys, losses = ([[] for _ in lrs] for _ in range(3))
    live = list(range(len(lrs)))
    with np.errstate(over="ignore", invalid="ignore"):  # a diverging point overflows to inf
        for step in range(steps + 1):
            for i in list(live):
                x, y = walkers.position(i)
                xs[i].append(x)
                ys[i].append(y)
                if step == steps:  # the point after the last step
                    continue
                loss = float(surface.value_fn(np.float64(x), np.float64(y)))
                losses[i].append(loss)
                if not math.isfinite(loss) or _escaped(surface, x, y):
                    walkers.stop(i)
                    live.remove(i)
                else:
                    walkers.push(i, x, y, rates[i][step])
            if step == steps or not live:
                break
            walkers.step()
    paths = []
    for i, lr in enumerate(lrs):
        loss = np.array(losses[i])
        paths.append(Descent(optimizer, lr, np.array(xs[i]), np.array(ys[i]), loss, rates[i][: len(loss)], _diverged_at(loss)))
    return paths


def range_test(
    surface: Surface,
    optimizer: str,
    *,
    start: Sequence[float] | None = None,
    min_lr: float = 1e-5,
    max_lr: float = 10.0,
    steps: int = 100,
) -> Trace:
    """An LR range test on the surface: the LR grows exponentially from ``min_lr`` to ``max_lr``
    over ``steps`` steps of ``optimizer``; it stops where lrkit's range test would (the
    divergence rule of :mod:`lrkit.suggest`) or once the point leaves the box."""
    checks.one_of("optimizer", optimizer, OPTIMIZERS)
    min_lr = checks.positive("min_lr", min_lr)
    max_lr = checks.positive("max_lr", max_lr)
    checks.ordered("min_lr", min_lr, "max_lr", max_lr)
    steps = checks.integer("steps", steps, minimum=2)
    if steps > MAX_STEPS:
        raise ValueError(f"steps must be <= {MAX_STEPS}, got {steps}")
    walkers = _Walkers(surface, optimizer, _start(surface, start), 1)
    record = TraceBuilder(kind="range_test", surface=surface.name, optimizer=optimizer)
    watch = DivergenceWatch()
    with np.errstate(over="ignore", invalid="ignore"):
        for step, rate in enumerate(np.geomspace(min_lr, max_lr, steps)):
            x, y = walkers.position(0)
            loss = float(surface.value_fn(np.float64(x), np.float64(y)))
            record.add(step, float(rate), loss)
            if watch.update(loss) or _escaped(surface, x, y):
                record.event(step, "stopped", f"loss {loss:.4g} diverged at lr {rate:.3g}")
                break
            walkers.push(0, x, y, rate)
            walkers.step()
    return record.build()


class _Walkers:
    """Points on a surface, each a float64 parameter in its own param group of one real
    ``torch.optim`` optimizer, moved by the surface's exact gradient."""

    def __init__(self, surface: Surface, optimizer: str, start: tuple[float, float], count: int) -> None:
        self.surface = surface
        self.points = [torch.tensor(start, dtype=torch.float64, requires_grad=True) for _ in range(count)]
        groups = [{"params": [point]} for point in self.points]
        self.optimizer = OPTIMIZERS[optimizer](groups, 1.0)

    def position(self, i: int) -> tuple[float, float]:
        x, y = self.points[i].detach().tolist()
        return x, y

    def push(self, i: int, x: float, y: float, lr: float) -> None:
        """Give point ``i`` its gradient at (x, y) and its LR for the next step."""
        gx, gy = self.surface.gradient_fn(np.float64(x), np.float64(y))
        self.points[i].grad = torch.tensor([float(gx), float(gy)], dtype=torch.float64)
        self.optimizer.param_groups[i]["lr"] = float(lr)

    def stop(self, i: int) -> None:
        """Leave point ``i`` where it is: optimizers skip parameters without a gradient."""
        self.points[i].grad = None

    def step(self) -> None:
        self.optimizer.step()


def _start(surface: Surface, start: Sequence[float] | None) -> tuple[float, float]:
    if start is None:
        return surface.start
    if len(start) != 2:
        raise ValueError(f"start must be two numbers (x, y), got {start!r}")
    return checks.finite("start x", start[0]), checks.finite("start y", start[1])


def _rates(lr: float, steps: int, schedule: Schedule | None) -> np.ndarray:
    if schedule is None:
        return np.full(steps, lr)
    shape = np.asarray(schedule(np.arange(steps)), dtype=float)
    peak = shape.max()
    if not np.isfinite(shape).all() or peak <= 0:
        raise ValueError("schedule must give finite values >= 0 with a positive peak")
    return lr * shape / peak


def _diverged_at(losses: np.ndarray) -> int | None:
    """The step after the last one whose loss was finite and at most the starting loss."""
    below = np.flatnonzero(np.isfinite(losses) & (losses <= losses[0]))
    last = int(below[-1]) if len(below) else -1
    return None if last == len(losses) - 1 else last + 1


def _escaped(surface: Surface, x: float, y: float) -> bool:
    width = surface.x_range[1] - surface.x_range[0]
    height = surface.y_range[1] - surface.y_range[0]
    return not abs(x) <= ESCAPE * width or not abs(y) <= ESCAPE * height


def _finite_list(values: np.ndarray) -> list[float | None]:
    return [float(v) if math.isfinite(v) else None for v in values]
