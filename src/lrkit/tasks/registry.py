"""What a built-in task is, and the registry that names them.

A task is a small, real training problem, deterministic per seed, with its data bundled or
generated. It gives everything a training loop needs: a model, an optimizer for a learning rate,
a loss, train and validation loaders, a step budget, an optional schedule and a rule-of-thumb LR.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from lrkit import checks

Batch = tuple[torch.Tensor, ...]
LossFn = Callable[[nn.Module, Batch], torch.Tensor]
Loaders = tuple[Iterable[Batch], Iterable[Batch]]
# peak LR and total steps -> (step -> LR); built from lrkit.schedules
ScheduleFactory = Callable[[float, int], Callable[[int], float]]


@dataclass(frozen=True)
class Task:
    """A built-in training task; every factory takes the seed or LR it depends on."""

    name: str
    summary: str
    optimizer_name: str
    default_lr: float
    steps: int
    make_model: Callable[[int], nn.Module]
    make_optimizer: Callable[[Iterable[nn.Parameter], float], torch.optim.Optimizer]
    make_loaders: Callable[[int], Loaders]
    loss_fn: LossFn
    metric_name: str | None = None
    metric_fn: Callable[[nn.Module, Batch], tuple[float, int]] | None = None
    make_schedule: ScheduleFactory | None = None

    def model(self, seed: int = 0) -> nn.Module:
        """A freshly initialised model; the same seed gives the same weights."""
        return self.make_model(checks.integer("seed", seed))

    def optimizer(self, params: Iterable[nn.Parameter], lr: float) -> torch.optim.Optimizer:
        return self.make_optimizer(params, checks.positive("lr", lr))

    def loaders(self, seed: int = 0) -> Loaders:
        """Train and validation loaders; the seed fixes the shuffling order."""
        return self.make_loaders(checks.integer("seed", seed))

    def schedule(self, lr: float, steps: int | None = None) -> Callable[[int], float] | None:
        """The LR at each step for peak ``lr``, or ``None`` when the task trains at a constant rate."""
        if self.make_schedule is None:
            return None
        return self.make_schedule(checks.positive("lr", lr), steps or self.steps)


@contextmanager
def callers_rng_kept() -> Iterator[None]:
    """Let the body seed and draw from torch's RNG, then put the caller's state back (the CPU
    generator, and every CUDA device's once CUDA is in use)."""
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        yield


_TASKS: dict[str, Task] = {}


def register(task: Task) -> Task:
    if task.name in _TASKS:
        raise ValueError(f"task {task.name!r} is already registered")
    _TASKS[task.name] = task
    return task


def get_task(name: str) -> Task:
    """The built-in task called ``name``."""
    _load_builtin()
    if name not in _TASKS:
        known = ", ".join(sorted(_TASKS))
        raise ValueError(f"unknown task {name!r}; known tasks: {known}")
    return _TASKS[name]


def list_tasks() -> list[Task]:
    """Every registered task, in registration order."""
    _load_builtin()
    return list(_TASKS.values())


def _load_builtin() -> None:
    # importing the modules registers their tasks
    from lrkit.tasks import charlm, digits, synthetic, tabular  # noqa: F401
