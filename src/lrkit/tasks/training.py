"""The plain training loop that runs a built-in task at one learning rate and records its Trace.

The demo, the benchmarks' ground truth and the built-in sweep objectives all train through here,
so they agree on what "a full run at this LR" means.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from lrkit import checks
from lrkit.tasks.registry import Task, callers_rng_kept, get_task
from lrkit.torch.loaders import cycle
from lrkit.trace import Trace, TraceBuilder


@dataclass(frozen=True)
class TrainResult:
    """One full training run of a task: its Trace and the numbers people compare runs by."""

    task: str
    lr: float
    seed: int
    trace: Trace
    initial_val_loss: float
    val_loss: float
    metric: float | None
    diverged: bool
    seconds: float

    @property
    def score(self) -> float:
        """Final validation loss, with a run that diverged or ended worse than it began scored at
        its initial loss (so a blow-up never looks better than not training)."""
        return self.initial_val_loss if self.diverged else self.val_loss

    @property
    def final_loss(self) -> float:
        """Mean training loss over the last 10% of steps run (NaN if the last step was not finite)."""
        losses = self.trace.loss
        tail = losses[-max(1, len(losses) // 10) :]
        return float(tail.mean()) if len(tail) else math.nan


def evaluate(task: Task, model: nn.Module, loader) -> tuple[float, float | None]:
    """Mean validation loss and metric (for example accuracy) over a whole loader."""
    was_training = model.training
    model.eval()
    total_loss, total_metric, count = 0.0, 0.0, 0
    with torch.no_grad():
        for batch in loader:
            size = len(batch[0])
            total_loss += float(task.loss_fn(model, batch)) * size
            if task.metric_fn is not None:
                correct, seen = task.metric_fn(model, batch)
                total_metric += correct / seen * size
            count += size
    model.train(was_training)
    metric = total_metric / count if task.metric_fn is not None else None
    return total_loss / count, metric


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run with ``count`` intra-op threads, then restore the caller's setting."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train(
    task: Task | str,
    lr: float,
    *,
    seed: int = 0,
    steps: int | None = None,
    eval_every: int | None = None,
    threads: int | None = 1,
    on_step: Callable[[int, float], None] | None = None,
    on_eval: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Train ``task`` from scratch at ``lr`` (the peak, if the task has a schedule).

    The run stops early once the loss is not finite. ``on_step(step, loss)`` is called after each
    step; ``on_eval(step, val_loss)`` after each evaluation (raise from it to stop, as an Optuna
    pruner does). ``threads`` pins torch's intra-op threads for the run (1 is fastest for these
    small models and keeps runs comparable); ``None`` leaves the setting alone. The caller's torch
    RNG state is the same afterwards.
    """
    task = get_task(task) if isinstance(task, str) else task
    lr = checks.positive("lr", lr)
    seed = checks.integer("seed", seed)
    steps = task.steps if steps is None else checks.integer("steps", steps, minimum=1)
    eval_every = checks.integer("eval_every", eval_every or max(1, steps // 10), minimum=1)
    with torch_threads(threads), callers_rng_kept():  # the caller's RNG comes back as it was
        return _train(task, lr, seed, steps, eval_every, on_step, on_eval)


def _train(task, lr, seed, steps, eval_every, on_step, on_eval) -> TrainResult:
    started = time.perf_counter()
    model = task.model(seed)  # seeds torch's RNG: what the run draws (dropout) follows from the seed
    optimizer = task.optimizer(model.parameters(), lr)
    schedule = task.schedule(lr, steps)
    train_loader, val_loader = task.loaders(seed)
    record = TraceBuilder(task=task.name, optimizer=task.optimizer_name, seed=seed, lr=lr)

    initial_val_loss, metric = evaluate(task, model, val_loader)
    val_loss, diverged = initial_val_loss, False
    model.train()
    looping = time.perf_counter()
    for step, batch in zip(range(steps), cycle(train_loader), strict=False):
        step_lr = lr if schedule is None else schedule(step)
        for group in optimizer.param_groups:
            group["lr"] = step_lr
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(model, batch)
        loss_value = loss.item()
        if not math.isfinite(loss_value):
            record.add(step, step_lr, loss_value)
            record.event(step, "diverged", f"loss is {loss_value}")
            diverged = True
            break
        loss.backward()
        optimizer.step()
        record.add(step, step_lr, loss_value)
        if on_step is not None:
            on_step(step, loss_value)
        if (step + 1) % eval_every == 0 or step + 1 == steps:
            val_loss, metric = evaluate(task, model, val_loader)
            record.set_val_loss(val_loss)
            if on_eval is not None:
                on_eval(step, val_loss)

    # what a step costs (evaluations included, the one-off setup of model and data not), saved
    # with the trace for lrkit.cost and the report
    record.meta["seconds_per_step"] = (time.perf_counter() - looping) / len(record)
    if diverged or not math.isfinite(val_loss) or val_loss >= initial_val_loss:
        diverged = True
    return TrainResult(
        task=task.name,
        lr=lr,
        seed=seed,
        trace=record.build(),
        initial_val_loss=initial_val_loss,
        val_loss=val_loss if not diverged or math.isfinite(val_loss) else math.nan,
        metric=metric,
        diverged=diverged,
        seconds=time.perf_counter() - started,
    )
