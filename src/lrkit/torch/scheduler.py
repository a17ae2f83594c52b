"""ScheduleLR: any lrkit schedule (optionally times a plateau controller) as a PyTorch LR scheduler.

It speaks ``LRScheduler``'s protocol (``step()``, ``get_last_lr()``, ``state_dict()``,
``load_state_dict()``) and is an instance of it, so it drops into existing loops, Lightning and
checkpoints. Each param group keeps its ratio to the largest group's LR at construction: that group
follows the schedule exactly, the others stay in proportion (per-layer rates survive).
"""

from __future__ import annotations

import warnings
import weakref
from functools import wraps
from typing import Any

import numpy as np
import torch
from torch.optim import Optimizer
from torch.optim.lr_scheduler import LRScheduler

from lrkit.schedules.base import Schedule
from lrkit.schedules.plateau import Plateau
from lrkit.schedules.spec import parse

BLOCK = 256  # steps evaluated per vectorised call; blocks are aligned so values never depend on history


class ScheduleLR(LRScheduler):
    """Set every param group's LR to ``ratio * schedule(step) * plateau.ratio`` at each ``step()``.

    The constructor only sets the step-0 LRs (it adds no keys to the param groups); ``report(metric)``
    feeds the plateau controller and applies a cut at once.
    """

    def __init__(self, optimizer: Optimizer, schedule: Schedule | str, *, plateau: Plateau | None = None) -> None:
        if not isinstance(optimizer, Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        if plateau is not None and not isinstance(plateau, Plateau):
            raise TypeError(f"plateau must be an lrkit Plateau, got {type(plateau).__name__}")
        if not isinstance(schedule, (Schedule, str)):
            raise TypeError(f"schedule must be an lrkit Schedule or spec string, got {type(schedule).__name__}")
        schedule = parse(schedule, name="schedule")
        lrs = [float(group["lr"]) for group in optimizer.param_groups]
        top = max(lrs)
        if not top > 0:
            raise ValueError(f"optimizer param groups must have an lr > 0 to take ratios from, got {lrs}")
        self.optimizer = optimizer
        self.schedule = schedule
        self.plateau = plateau
        self.ratios = [lr / top for lr in lrs]
        self.base_lrs = lrs
        self.last_epoch = 0
        self._step_count = 1
        self._block = -1
        self._values: list[float] = []
        _track_optimizer_steps(optimizer)
        self._apply()

    def _value(self, step: int) -> float:
        block, index = divmod(step, BLOCK)
        if block != self._block:
            steps = np.arange(block * BLOCK, (block + 1) * BLOCK)
            self._values = self.schedule(steps).tolist()
            self._block = block
        return self._values[index]

    def get_lr(self) -> list[float]:
        """The LRs for the current step (what ``step()`` has just set)."""
        value = self._value(self.last_epoch)
        if self.plateau is not None:
            value *= self.plateau.ratio
        return [ratio * value for ratio in self.ratios]

    def _apply(self) -> None:
        lrs = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].fill_(lr)
            else:
                group["lr"] = lr
        self._last_lr = lrs

    def step(self, epoch: None = None) -> None:  # type: ignore[override]
        """Advance one step (call it after ``optimizer.step()``)."""
        if epoch is not None:
            raise TypeError("ScheduleLR.step() takes no epoch; the schedule is evaluated at its own count")
        if self._step_count == 1 and not getattr(self.optimizer, "_opt_called", False):
            warnings.warn(
                "Detected call of `lr_scheduler.step()` before `optimizer.step()`: call `optimizer.step()` "
                "first, or the first value of the learning rate schedule is skipped.",
                UserWarning,
                stacklevel=2,
            )
        self._step_count += 1
        self.last_epoch += 1
        self._apply()

    def scale(self, factor: float) -> None:
        """Multiply every group's LR, from now on, by ``factor`` (kept in ``state_dict``): how the guard
        cuts a rate that proved too high without breaking the schedule's shape."""
        if not (isinstance(factor, int | float) and not isinstance(factor, bool) and factor > 0 and np.isfinite(factor)):
            raise ValueError(f"factor must be a finite number > 0, got {factor!r}")
        self.ratios = [ratio * factor for ratio in self.ratios]
        self.base_lrs = [lr * factor for lr in self.base_lrs]
        self._apply()

    def report(self, metric: float) -> float:
        """Feed the plateau controller one evaluation; a cut takes effect immediately. Returns its ratio."""
        if self.plateau is None:
            raise ValueError("report() needs a plateau controller: ScheduleLR(optimizer, schedule, plateau=Plateau())")
        ratio = self.plateau.report(metric)
        self._apply()
        return ratio

    def state_dict(self) -> dict[str, Any]:
        """Step count, group ratios, the schedule's spec and the plateau state: plain values only."""
        return {
            "last_epoch": self.last_epoch,
            "_step_count": self._step_count,
            "schedule": repr(self.schedule),
            "ratios": list(self.ratios),
            "base_lrs": list(self.base_lrs),
            "plateau": None if self.plateau is None else self.plateau.state_dict(),
            "_last_lr": list(self._last_lr),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a saved state; like PyTorch's schedulers it leaves the optimizer's LRs to the optimizer's own state."""
        ratios = list(state_dict["ratios"])
        if len(ratios) != len(self.optimizer.param_groups):
            raise ValueError(
                f"state has {len(ratios)} param group ratios but the optimizer has {len(self.optimizer.param_groups)} groups"
            )
        self.schedule = parse(state_dict["schedule"])
        self._block = -1
        self.ratios = ratios
        self.base_lrs = list(state_dict["base_lrs"])
        self.last_epoch = int(state_dict["last_epoch"])
        self._step_count = int(state_dict["_step_count"])
        self._last_lr = list(state_dict["_last_lr"])
        if state_dict["plateau"] is None:
            self.plateau = None
        else:
            self.plateau = self.plateau or Plateau()
            self.plateau.load_state_dict(state_dict["plateau"])


def _track_optimizer_steps(optimizer: Optimizer) -> None:
    """Mark ``optimizer._opt_called`` on each ``optimizer.step()``, the way PyTorch's schedulers do, so a
    scheduler stepped first can warn; an optimizer already wrapped by a scheduler is left as it is."""
    if hasattr(optimizer.step, "_wrapped_by_lr_sched"):
        return
    owner = weakref.ref(optimizer)
    func = optimizer.step.__func__  # type: ignore[attr-defined]

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        opt = owner()
        opt._opt_called = True  # type: ignore[union-attr]
        return func.__get__(opt, opt.__class__)(*args, **kwargs)

    wrapper._wrapped_by_lr_sched = True  # type: ignore[attr-defined]
    optimizer.step = wrapper  # type: ignore[method-assign]
