"""The LR range test on a real PyTorch model: sweep the LR upwards, record the loss, suggest a rate.

Everything the test touches (parameters, gradients, buffers, optimizer state and LRs, an attached
scheduler, a GradScaler, RNG states, the loader's shuffling generators) is snapshotted first and
restored on every exit, including an exception or KeyboardInterrupt.

How ``loss_fn`` is read:

- an ``nn.Module`` (``nn.CrossEntropyLoss()``) is a criterion: the batch is ``(inputs, targets)``
  and the loss is ``loss_fn(model(inputs), targets)``;
- any other callable gets the model and the whole batch: ``loss_fn(model, batch)``, so batches
  may be tuples, dicts or anything else;
- ``None`` means the model computes its own loss: ``model(**batch)`` for a dict,
  ``model(*batch)`` for a tuple or list, ``model(batch)`` otherwise; the output is the loss, or
  has it as ``.loss`` or ``["loss"]`` (as Hugging Face models do).
"""

from __future__ import annotations

import contextlib
import inspect
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from lrkit import checks
from lrkit.suggest import DivergenceWatch, Suggestion, default_window, suggest
from lrkit.torch.loaders import cycle
from lrkit.torch.ranks import all_ranks_mean, rank
from lrkit.torch.snapshot import Snapshot
from lrkit.trace import Trace, TraceBuilder

PRECISIONS = ("fp32", "bf16", "fp16")


@dataclass(frozen=True)
class FinderResult:
    """A finished range test: the suggestion, each param group's rate, and the recorded Trace."""

    suggestion: Suggestion
    trace: Trace
    group_lrs: tuple[float, ...] | None
    steps: int
    stopped: str
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def lr(self) -> float | None:
        """The rate to train with; with several param groups, the largest group's (see ``group_lrs``)."""
        return self.suggestion.lr

    @property
    def range(self) -> tuple[float, float] | None:
        return self.suggestion.range

    @property
    def max_stable_lr(self) -> float | None:
        return self.suggestion.max_stable_lr

    @property
    def evidence(self) -> Mapping[str, float]:
        return self.suggestion.evidence

    @property
    def reason(self) -> str:
        return self.suggestion.reason

    def plot(self, ax: Any = None, *, path: str | Path | None = None) -> Any:
        """Loss against LR (log x) with the suggestion and range marked; ``path`` also saves it, in the
        format its extension names.

        Under torch.distributed only rank 0 draws; other ranks return ``None``.
        """
        if rank() != 0:
            return None
        from lrkit.plots import plot_finder, save_figure

        figure = plot_finder(self, ax=ax)
        if path is not None:
            save_figure(figure, path)
        return figure

    def __repr__(self) -> str:
        if self.lr is None:
            return (
                f"FinderResult(no usable curve: {self.reason}; {self.steps} steps, {self.stopped})"
            )
        low, high = self.range
        stable = "not reached" if self.max_stable_lr is None else f"{self.max_stable_lr:.3g}"
        groups = ""
        if self.group_lrs is not None and len(self.group_lrs) > 1:
            groups = ", group_lrs=[" + ", ".join(f"{lr:.3g}" for lr in self.group_lrs) + "]"
        return (
            f"FinderResult(lr={self.lr:.3g}, range={low:.3g}..{high:.3g}, max_stable_lr={stable}"
            f"{groups}; {self.steps} steps, {self.stopped})"
        )


def find_lr(
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[..., Any] | None,
    train_loader: Iterable[Any],
    *,
    min_lr: float = 1e-7,
    max_lr: float = 10.0,
    steps: int = 100,
    sweep: str = "exponential",
    accumulation_steps: int = 1,
    val_loader: Iterable[Any] | None = None,
    val_batches: int | None = None,
    precision: str = "fp32",
    scheduler: Any = None,
    scaler: Any = None,
    stop_on_divergence: bool = True,
    seed: int = 0,
    directory: str | Path | None = None,
) -> FinderResult:
    """Run an LR range test from ``min_lr`` to ``max_lr`` over ``steps`` optimizer steps.

    Param groups are scaled together, keeping the ratios of their current LRs: the swept LR (and
    ``result.lr``) is the largest group's, ``result.group_lrs`` gives each group's. With
    ``accumulation_steps`` > 1, each step averages that many micro-batches. With ``val_loader``, each
    step also measures the validation loss (over ``val_batches`` batches, or all) and the
    suggestion is read from it. ``precision`` "bf16" autocasts to bfloat16 (CPU or CUDA); "fp16"
    autocasts to float16 with a GradScaler (CUDA only; pass ``scaler`` to use yours). Pass an
    attached ``scheduler`` so it is restored too. The test is deterministic for a given ``seed``.
    """
    _check_objects(model, optimizer, loss_fn, train_loader, val_loader)
    min_lr, max_lr = checks.positive("min_lr", min_lr), checks.positive("max_lr", max_lr)
    checks.ordered("min_lr", min_lr, "max_lr", max_lr)
    steps = checks.integer("steps", steps, minimum=2)
    checks.one_of("sweep", sweep, ("exponential", "linear"))
    accumulation_steps = checks.integer("accumulation_steps", accumulation_steps, minimum=1)
    if val_batches is not None:
        val_batches = checks.integer("val_batches", val_batches, minimum=1)
    checks.one_of("precision", precision, PRECISIONS)
    seed = checks.integer("seed", seed)
    if not isinstance(stop_on_divergence, bool):
        raise TypeError(f"stop_on_divergence must be True or False, got {stop_on_divergence!r}")
    device = _device(model)
    if precision == "fp16" and device.type != "cuda":
        raise ValueError(
            f"precision='fp16' needs a CUDA model (got device {device}); use 'bf16' on CPU"
        )
    if precision == "fp16" and scaler is None:
        scaler = torch.amp.GradScaler("cuda")

    references = [float(group["lr"]) for group in optimizer.param_groups]
    top = max(references)
    ratios = [lr / top for lr in references] if top > 0 else [1.0] * len(references)
    schedule = (
        np.geomspace(min_lr, max_lr, steps)
        if sweep == "exponential"
        else np.linspace(min_lr, max_lr, steps)
    )
    run = _Run(model, optimizer, loss_fn, precision, scaler, device, accumulation_steps)
    generators = _loader_generators(train_loader) + _loader_generators(val_loader)
    generator_states = [generator.get_state() for generator in generators]
    kept = _own_workers(train_loader, val_loader)
    try:
        with Snapshot.take(
            model, optimizer, scheduler=scheduler, scaler=scaler, directory=directory
        ):
            torch.manual_seed(seed)
            started = time.perf_counter()
            with torch.enable_grad():  # the test trains, even when called under torch.no_grad()
                trace, stopped = run.sweep(
                    schedule, ratios, train_loader, val_loader, val_batches, stop_on_divergence
                )
    finally:
        for generator, state in zip(generators, generator_states, strict=True):
            generator.set_state(state)
        for loader, iterator in kept:
            if loader._iterator is not None:
                loader._iterator._shutdown_workers()
            loader._iterator = iterator
    seconds = time.perf_counter() - started
    trace = trace.replace(
        meta={
            **trace.meta,
            "min_lr": min_lr,
            "max_lr": max_lr,
            "sweep": sweep,
            "seed": seed,
            "planned_steps": steps,  # sets the smoothing window, so a saved trace reads the same
        }
    )
    suggestion = suggest(trace)  # its window follows meta["planned_steps"], as for a saved trace
    group_lrs = None if suggestion.lr is None else tuple(suggestion.lr * ratio for ratio in ratios)
    meta = {**trace.meta, "sweep_seconds": seconds}
    return FinderResult(suggestion, trace, group_lrs, len(trace), stopped, meta)


def check_options(options: dict[str, Any], *, supplied: tuple[str, ...] = ("scheduler", "scaler")) -> dict[str, Any]:
    """Check the keyword options of a :func:`find_lr` to be run later (the Lightning callback runs
    it when ``fit`` starts), so a typo or a bad value fails at once: ``find_lr``'s own checks run
    on a probe model and stop when it asks for its first batch. ``supplied`` names options the
    caller fills in itself."""
    allowed = [
        name
        for name, parameter in inspect.signature(find_lr).parameters.items()
        if parameter.kind is parameter.KEYWORD_ONLY and name not in supplied
    ]
    checks.known_options("find_lr", options, allowed)
    checks.one_of("precision", options.get("precision", "fp32"), PRECISIONS)
    probe = nn.ParameterList([torch.zeros(1)])  # made without drawing from the caller's RNG
    # fp16 needs CUDA, which the probe is not on; a directory is only written when the test runs
    probing = {**options, "precision": "fp32", "directory": None}
    with contextlib.suppress(_Checked):
        find_lr(probe, torch.optim.SGD(probe.parameters(), lr=0.1), None, _Unread(), **probing)
    return dict(options)


class _Checked(Exception):
    """The probe's options passed every check: the test asked for a batch."""


class _Unread:
    def __iter__(self) -> Iterator[Any]:
        raise _Checked


def find_task_lr(
    task: Any,
    *,
    seed: int = 0,
    budget: float = 0.1,
    validation: bool = False,
    threads: int | None = 1,
    **options: Any,
) -> FinderResult:
    """Range test for a built-in task (name or Task) costing ``budget`` of one full run's steps.

    ``validation=True`` reads the suggestion from the task's validation loss; ``options`` go to
    :func:`find_lr` (``steps`` overrides the budget). ``threads`` pins torch's intra-op threads.
    """
    from lrkit.tasks import get_task
    from lrkit.tasks.registry import callers_rng_kept
    from lrkit.tasks.training import torch_threads

    task = get_task(task) if isinstance(task, str) else task
    budget = checks.in_range("budget", budget, 0.0, 1.0, low_open=True)
    seed = checks.integer("seed", seed)
    options.setdefault("steps", max(2, int(budget * task.steps)))
    with torch_threads(threads), callers_rng_kept():  # making the model seeds torch's RNG
        model = task.model(seed)
        optimizer = task.optimizer(model.parameters(), task.default_lr)
        train_loader, val_loader = task.loaders(seed)
        if validation:
            options["val_loader"] = val_loader
        result = find_lr(model, optimizer, task.loss_fn, train_loader, seed=seed, **options)
    about = {"task": task.name, "full_run_steps": task.steps}
    trace = result.trace.replace(meta={**result.trace.meta, **about})
    meta = {**result.meta, **about}
    return FinderResult(
        result.suggestion, trace, result.group_lrs, result.steps, result.stopped, meta
    )


class _Run:
    """The training step of a range test: forward (autocast if asked), backward, optimizer step."""

    def __init__(
        self, model, optimizer, loss_fn, precision, scaler, device, accumulation_steps
    ) -> None:
        self.model, self.optimizer, self.loss_fn = model, optimizer, loss_fn
        self.scaler, self.device, self.accumulation_steps = scaler, device, accumulation_steps
        dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
        self.autocast = (
            (lambda: torch.autocast(device.type, dtype=dtype))
            if dtype is not None
            else contextlib.nullcontext
        )

    def loss(self, batch: Any) -> torch.Tensor:
        batch = _to_device(batch, self.device)
        with self.autocast():
            return _compute_loss(self.model, self.loss_fn, batch)

    def step(self, batches: Iterator[Any]) -> float:
        """One optimizer step over ``accumulation_steps`` micro-batches; the mean loss over ranks.

        Every rank runs the same forward and backward passes even when a loss is not finite, so
        collective operations (DDP's gradient all-reduce) stay matched; the update is skipped then.
        """
        self.optimizer.zero_grad(set_to_none=True)
        total = 0.0
        for _ in range(self.accumulation_steps):
            loss = self.loss(next(batches))
            if self.accumulation_steps > 1:
                loss = loss / self.accumulation_steps
            total += loss.item()
            (self.scaler.scale(loss) if self.scaler is not None else loss).backward()
        (total,) = all_ranks_mean(total, device=self.device)
        if not math.isfinite(total):
            return total
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        return total

    def validate(self, loader: Iterable[Any], limit: int | None) -> float:
        was_training = self.model.training
        self.model.eval()
        total, count = 0.0, 0
        with torch.no_grad():
            for i, batch in enumerate(loader):
                if limit is not None and i >= limit:
                    break
                total += self.loss(batch).item()
                count += 1
        self.model.train(was_training)
        if count == 0:
            raise ValueError("val_loader is empty; it must yield at least one batch")
        return total / count

    def sweep(self, schedule, ratios, train_loader, val_loader, val_batches, stop_on_divergence):
        record = TraceBuilder(kind="range_test", optimizer=type(self.optimizer).__name__)
        watch = DivergenceWatch(window=default_window(len(schedule)))
        batches = cycle(train_loader)
        self.model.train()
        stopped = f"swept all {len(schedule)} steps"
        for step, lr in enumerate(schedule):
            for group, ratio in zip(self.optimizer.param_groups, ratios, strict=True):
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].fill_(float(lr) * ratio)  # a tensor LR (fused, capturable) stays one
                else:
                    group["lr"] = float(lr) * ratio
            loss = self.step(batches)
            val_loss = math.nan
            if val_loader is not None and math.isfinite(loss):
                validated = self.validate(val_loader, val_batches)
                (val_loss,) = all_ranks_mean(validated, device=self.device)
            record.add(step, float(lr), loss, val_loss=val_loss)
            if watch.update(loss):  # divergence is read on the training loss in every mode
                record.event(step, "diverged", f"loss {loss:.4g} at lr {lr:.3g}")
                if stop_on_divergence or not math.isfinite(loss):
                    stopped = f"stopped at step {step}: the loss diverged at lr {lr:.3g}"
                    break
        return record.build(), stopped


def _compute_loss(model: nn.Module, loss_fn: Callable[..., Any] | None, batch: Any) -> torch.Tensor:
    if isinstance(loss_fn, nn.Module):
        if not isinstance(batch, list | tuple) or len(batch) != 2:
            raise TypeError(
                "a criterion loss_fn (an nn.Module) needs (inputs, targets) batches; "
                "pass loss_fn(model, batch) for other batch structures"
            )
        inputs, targets = batch
        loss = loss_fn(model(inputs), targets)
    elif loss_fn is not None:
        loss = loss_fn(model, batch)
    elif isinstance(batch, Mapping):
        loss = model(**batch)
    elif isinstance(batch, list | tuple):
        loss = model(*batch)
    else:
        loss = model(batch)
    if not isinstance(loss, torch.Tensor):
        output = loss
        is_mapping = isinstance(output, Mapping)
        loss = output.get("loss") if is_mapping else getattr(output, "loss", output)
        if loss is None:  # a Hugging Face model called without labels leaves its loss out
            source = "the model's output" if loss_fn is None else "the output of loss_fn"
            keys = f" (keys: {', '.join(map(str, output))})" if is_mapping else ""
            raise TypeError(
                f"{source} ({type(output).__name__}) has no loss: its 'loss' is missing or "
                f"None{keys}; put the labels in the batch so the model computes its loss, "
                "or pass a loss_fn"
            )
    if not isinstance(loss, torch.Tensor):
        source = "the model" if loss_fn is None else "loss_fn"
        raise TypeError(
            f"the loss must be a single-element tensor, got {type(loss).__name__} from {source}; "
            "return the loss tensor itself (or an output that carries it as .loss or ['loss'])"
        )
    if loss.numel() != 1:
        raise ValueError(
            f"the loss must be a single-element tensor, got shape {tuple(loss.shape)}; reduce it (e.g. .mean())"
        )
    return loss if loss.dtype == torch.float32 and loss.dim() == 0 else loss.float().reshape(())


def _to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True) if batch.device != device else batch
    if isinstance(batch, Mapping):
        return type(batch)({key: _to_device(value, device) for key, value in batch.items()})
    if isinstance(batch, list | tuple) and not hasattr(batch, "_fields"):
        return type(batch)(_to_device(value, device) for value in batch)
    return batch


def _device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    raise ValueError("model has no parameters; there is nothing to train")


def _loader_generators(loader: Any) -> list[torch.Generator]:
    """Seeded generators a loader draws its order from, so iterating it here leaves them as they were.

    Samplers nest (a DataLoader over a ``BatchSampler(RandomSampler(...))``), so every
    ``sampler``/``batch_sampler`` reachable from the loader is searched.
    """
    found: list[torch.Generator] = []
    pending, seen = [loader], set()
    while pending:
        owner = pending.pop()
        if owner is None or id(owner) in seen:
            continue
        seen.add(id(owner))
        generator = getattr(owner, "generator", None)
        if isinstance(generator, torch.Generator) and all(generator is not g for g in found):
            found.append(generator)
        pending += [getattr(owner, "batch_sampler", None), getattr(owner, "sampler", None)]
    return found


def _own_workers(*loaders: Any) -> list[tuple[DataLoader, Any]]:
    """Set aside the worker processes of loaders that keep theirs (``persistent_workers``), so the
    test starts its own: yours are neither reset nor advanced (nor their RNG), and the next epoch
    starts fresh workers from the rewound generator as it would have. Returns what to put back."""
    kept: list[tuple[DataLoader, Any]] = []
    for loader in loaders:
        persistent = isinstance(loader, DataLoader) and loader.persistent_workers
        if persistent and all(loader is not k for k, _ in kept):
            kept.append((loader, loader._iterator))
            loader._iterator = None
    return kept


def _check_objects(model, optimizer, loss_fn, train_loader, val_loader) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}"
        )
    checks.steps_without_closure(optimizer, "the range test steps it once per batch")
    if not any(param.requires_grad for group in optimizer.param_groups for param in group["params"]):
        raise ValueError(
            "optimizer has no parameter that requires grad (every one is frozen): the range test "
            "would train nothing; unfreeze the layers to tune, or give an optimizer over them"
        )
    if loss_fn is not None and not callable(loss_fn):
        raise TypeError(f"loss_fn must be callable or None, got {type(loss_fn).__name__}")
    for name, loader in (("train_loader", train_loader), ("val_loader", val_loader)):
        if loader is None and name == "val_loader":
            continue
        if not isinstance(loader, Iterable):
            raise TypeError(
                f"{name} must be iterable (a DataLoader or a list of batches), got {type(loader).__name__}"
            )
        if isinstance(loader, Iterator):
            raise TypeError(
                f"{name} must be re-iterable (a DataLoader or a list), got an iterator "
                f"({type(loader).__name__}); the range test would consume it"
            )
