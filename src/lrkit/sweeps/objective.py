"""Sweep objectives: the ``train(lr, report) -> val_loss`` protocol, and one ready for each task.

``report(step, value)`` takes the 0-based index of the last step (or epoch) trained and the
validation loss there; it raises ``optuna.TrialPruned`` when the pruner says stop, so an objective
only has to call it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Protocol

from lrkit import checks
from lrkit.schedules import Constant, Cosine, Linear, Schedule, Warmup

Report = Callable[[int, float], None]
SCHEDULE_KINDS = ("constant", "cosine", "linear")


class Objective(Protocol):
    """``train(lr, report) -> val_loss``; when the sweep searches schedules it also passes
    ``schedule=`` (a kind from ``SCHEDULE_KINDS``) and ``warmup_steps=``."""

    def __call__(self, lr: float, report: Report) -> float: ...


def build_schedule(kind: str, peak: float, steps: int, warmup_steps: int = 0) -> Schedule:
    """A linear warmup to ``peak`` over ``warmup_steps`` (if any), then ``kind`` over the rest:
    constant, or a cosine or linear decay to 0 at ``steps``."""
    checks.one_of("schedule", kind, SCHEDULE_KINDS)
    steps = checks.integer("steps", steps, minimum=2)
    warmup_steps = checks.integer("warmup_steps", warmup_steps, minimum=0)
    if warmup_steps >= steps:
        raise ValueError(f"warmup_steps must be < steps={steps}, got {warmup_steps}")
    rest = steps - warmup_steps
    if kind == "constant":
        main: Schedule = Constant(peak)
    elif kind == "cosine":
        main = Cosine(peak=peak, steps=rest)
    else:
        main = Linear(start=peak, end=0.0, steps=rest)
    return Warmup(warmup_steps) >> main if warmup_steps else main


# Adaptive methods normalise each step by a running gradient scale, so their useful rates sit
# about a decade below plain SGD's, which scale the raw gradient.
_ADAPTIVE = ("adam", "adamw", "nadam", "radam", "adamax", "rmsprop", "lion")
_PLAIN = ("sgd", "adagrad", "lars")
ADAPTIVE_BOUNDS = (1e-5, 1e-1)
PLAIN_BOUNDS = (1e-4, 1.0)


def default_bounds(optimizer_name: str, default_lr: float | None = None) -> tuple[float, float]:
    """The LR range to search for an optimizer family, widened to contain ``default_lr``.

    An unknown family gets two decades either side of ``default_lr``.
    """
    family = optimizer_name.split("(", 1)[0].strip().lower()
    if family in _ADAPTIVE:
        low, high = ADAPTIVE_BOUNDS
    elif family in _PLAIN:
        low, high = PLAIN_BOUNDS
    elif default_lr is not None:
        low, high = default_lr / 100, default_lr * 100
    else:
        raise ValueError(
            f"no default LR range for optimizer {optimizer_name!r}; pass min_lr and max_lr "
            f"(known families: {', '.join(_ADAPTIVE + _PLAIN)})"
        )
    if default_lr is not None:
        low, high = min(low, default_lr / 10), max(high, default_lr * 10)
    return low, high


@dataclass(frozen=True)
class TaskObjective:
    """Trains a built-in task at the asked LR with ``lrkit.tasks.train``, reporting each evaluation.

    Picklable, so worker processes can run it. ``min_lr``/``max_lr`` come from the optimizer family
    and ``prior_lr`` is the task's rule-of-thumb LR (tried first).
    """

    task: str
    seed: int = 0
    eval_every: int | None = None

    def __post_init__(self) -> None:
        from lrkit.tasks import get_task

        get_task(self.task)
        checks.integer("seed", self.seed)
        if self.eval_every is not None:
            checks.integer("eval_every", self.eval_every, minimum=1)

    @property
    def steps(self) -> int:
        return self._task().steps

    @property
    def report_every(self) -> int:
        return self.eval_every or max(1, self.steps // 10)

    @property
    def prior_lr(self) -> float:
        return self._task().default_lr

    @property
    def bounds(self) -> tuple[float, float]:
        task = self._task()
        return default_bounds(task.optimizer_name, task.default_lr)

    def __call__(self, lr: float, report: Report, *, schedule: str | None = None, warmup_steps: int = 0) -> float:
        """Train at peak ``lr``, under the task's own schedule unless ``schedule`` names a kind."""
        from lrkit.tasks import train

        task = self._task()
        if schedule is not None:
            build_schedule(schedule, lr, task.steps, warmup_steps)  # bad arguments fail before training
            task = replace(task, make_schedule=lambda peak, steps: build_schedule(schedule, peak, steps, warmup_steps))
        result = train(task, lr, seed=self.seed, eval_every=self.report_every, on_eval=report)
        spent = getattr(report, "spent", None)
        if spent is not None:
            spent(len(result.trace))  # counts the steps of a run that diverged between evaluations
        return result.score

    def _task(self):
        from lrkit.tasks import get_task

        return get_task(self.task)
