"""The guard: watches a live PyTorch run and keeps it out of trouble.

``Guard.step(loss)`` replaces ``optimizer.step()`` (and ``scheduler.step()``) in a plain loop. A
non-finite loss or gradient norm skips the step without touching parameters, optimizer state or
the schedule. A loss spike (:mod:`lrkit.spikes`) rolls back to the last good snapshot, skips a
window of batches and cuts the LR. With ``watch_every``, the curve since the last LR change is
also read by :func:`lrkit.diagnose` every so many steps, and a ``too_high`` or ``diverged`` verdict
cuts the LR (a rate too high rarely spikes: more often the loss stalls, swings or creeps back up).
Too many rollbacks without progress stop the run with :class:`GuardStop`. ``should_stop(val_loss)``
adds early stopping that restores the best weights.
Under torch.distributed the guard judges the losses and gradient norm averaged over the ranks, so
every rank skips, rolls back and stops at the same step and the replicas stay equal.
Every event goes to the run's Trace and to the ``lrkit.guard`` logger. The Lightning and Hugging
Face callbacks drive the same object through :meth:`Guard.judge` and :meth:`Guard.applied`.
"""

from __future__ import annotations

import copy
import inspect
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.amp.grad_scaler import OptState
from torch.optim.lr_scheduler import ReduceLROnPlateau

from lrkit import checks
from lrkit.diagnosis import diagnose
from lrkit.spikes import Baseline, SpikeRule, SpikeState, Verdict
from lrkit.torch.ranks import all_ranks_mean, distributed, rank
from lrkit.torch.scheduler import ScheduleLR
from lrkit.torch.snapshot import Snapshot
from lrkit.trace import Trace, TraceBuilder

logger = logging.getLogger("lrkit.guard")
_BUILT_BY_CALLBACKS = ("model", "optimizer", "scheduler", "scaler")  # what a framework supplies
_COUNTERS = ("steps", "skipped", "rollbacks", "lr_scale", "best_val_loss")  # state_dict's public part
_INNER_COUNTERS = ("applied", "since_best", "skip_left", "nonfinite_streak")
_RULE_PROGRESS = ("start", "best", "best_lr")  # the spike rule's memory of the loss's best


class GuardStop(RuntimeError):
    """The guard stopped the run: rollbacks kept failing to get past a spike."""


@dataclass(frozen=True)
class _Saved:
    """A good point to come back to: the snapshot, and the guard's own state at that moment."""

    snapshot: Snapshot
    step: int
    applied: int
    rule_state: SpikeState
    lr_scale: float


class Guard:
    """Guards a PyTorch training loop; call :meth:`step` where you would call ``optimizer.step()``.

    ``rule`` decides what a spike is; a snapshot is kept every ``snapshot_every`` applied steps (in
    CPU memory, or in ``directory``); a spike restores it, multiplies the LR by ``lr_factor`` and
    skips the next ``skip_batches`` batches; ``max_rollbacks`` rollbacks in a row without a new good
    snapshot raise :class:`GuardStop`. With ``watch_every``, every that many applied steps the
    losses since the last LR change (at least ``watch_every`` of them) are diagnosed, and a
    ``too_high`` or ``diverged`` verdict lowers the LR by the factor the diagnosis gives (3x, or
    10x when the evidence is far past its rules; no rollback: nothing broke, the rate is just too
    high to make progress), never below ``min_lr_scale`` of its start (a curve that reads too high
    even there is not the LR's doing). ``nonfinite_patience`` non-finite losses in a row also count
    as a spike. With ``patience``, :meth:`should_stop` stops after that many validations without a
    better ``val_loss`` (by more than ``min_delta``) and restores the best weights.
    """

    def __init__(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        *,
        scheduler: Any = None,
        scaler: Any = None,
        rule: SpikeRule | None = None,
        snapshot_every: int = 50,
        lr_factor: float = 0.3,
        skip_batches: int = 10,
        max_rollbacks: int = 3,
        nonfinite_patience: int = 5,
        patience: int | None = None,
        min_delta: float = 0.0,
        directory: str | Path | None = None,
        trace: TraceBuilder | None = None,
        watch_every: int | None = None,
        min_lr_scale: float = 1e-3,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        if not isinstance(optimizer, torch.optim.Optimizer):
            raise TypeError(f"optimizer must be a torch.optim.Optimizer, got {type(optimizer).__name__}")
        checks.steps_without_closure(optimizer, "the guard steps it once per batch")
        if rule is not None and not isinstance(rule, SpikeRule):
            raise TypeError(f"rule must be a lrkit.spikes.SpikeRule or None, got {type(rule).__name__}")
        if trace is not None and not isinstance(trace, TraceBuilder):
            raise TypeError(f"trace must be a lrkit.trace.TraceBuilder or None, got {type(trace).__name__}")
        if optimizer not in _wrapped(getattr(scheduler, "optimizer", optimizer)):  # it would schedule one nobody steps
            raise ValueError(
                f"scheduler ({type(scheduler).__name__}) is attached to another optimizer than the one "
                "given; build the scheduler on the optimizer the guard steps"
            )
        self.model, self.optimizer, self.scheduler, self.scaler = model, optimizer, scheduler, scaler
        self.rule = rule or SpikeRule()
        self.snapshot_every = checks.integer("snapshot_every", snapshot_every, minimum=1)
        self.lr_factor = checks.in_range("lr_factor", lr_factor, 0.0, 1.0, low_open=True, high_open=True)
        self.skip_batches = checks.integer("skip_batches", skip_batches, minimum=0)
        self.max_rollbacks = checks.integer("max_rollbacks", max_rollbacks, minimum=0)
        self.nonfinite_patience = checks.integer("nonfinite_patience", nonfinite_patience, minimum=1)
        self.patience = None if patience is None else checks.integer("patience", patience, minimum=1)
        self.min_delta = checks.non_negative("min_delta", min_delta)
        self.directory = directory
        self.watch_every = None if watch_every is None else checks.integer("watch_every", watch_every, minimum=10)
        self.min_lr_scale = checks.in_range("min_lr_scale", min_lr_scale, 0.0, 1.0, low_open=True)
        self.record = trace if trace is not None else TraceBuilder()
        self.steps = 0  # batches seen by step()/judge()
        self.skipped = 0  # steps not applied because the loss or gradients were not finite
        self.rollbacks = 0
        self.lr_scale = 1.0  # product of all LR cuts so far
        self.best_val_loss = math.inf
        self._applied = 0  # optimizer steps applied since the start (rolls back with the snapshot)
        self._rule_state = SpikeState()
        self._skip_left = 0
        self._nonfinite_streak = 0
        self._failed_rollbacks = 0
        self._since_best = 0
        self._watch_from = len(self.record)  # the first trace row at the current LR
        self._best: Snapshot | None = None
        self._held: tuple[Any, list[Any]] | None = None
        self._good = self._save(reuse=None)

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> dict[str, Any]:
        """Check the keyword options of a Guard to be built later (the Lightning and Hugging Face
        callbacks build theirs when training starts), so a typo or a bad value fails at once."""
        allowed = [name for name in inspect.signature(cls).parameters if name not in _BUILT_BY_CALLBACKS]
        checks.known_options("Guard", options, allowed)
        # the constructor checks every value (directory and trace need none); a probe made without
        # drawing from the caller's RNG, so making a callback does not change the run it guards
        probe = nn.ParameterList([torch.zeros(1)])
        cls(probe, torch.optim.SGD(probe.parameters(), lr=0.1), **{**options, "directory": None, "trace": None})
        return dict(options)

    # --- the plain-loop API ------------------------------------------------------------------

    def step(self, loss: torch.Tensor | float) -> bool:
        """Judge this step's loss and gradients, then step the optimizer (and scheduler) if sound.

        Returns whether the step was applied. Call after ``loss.backward()``, instead of
        ``optimizer.step()`` and ``scheduler.step()``. ``loss`` is the unscaled loss (with a
        GradScaler) of the whole step (with gradient accumulation, the mean over its micro-batches).
        Gradients you unscaled already (``scaler.unscale_``, to clip them) are not unscaled again; a
        ``ReduceLROnPlateau`` is not stepped here: it needs your metric.
        """
        loss_value = _number("loss", loss)  # before the scaler unscales: a refused loss changes nothing
        if self.scaler is not None and not _unscaled(self.scaler, self.optimizer):  # you may have, to clip
            self.scaler.unscale_(self.optimizer)
        norm, rollbacks = self.grad_norm(), self.rollbacks
        if not self.judge(loss_value, norm):  # a rollback (or GuardStop) restored the snapshot's scaler
            if self.scaler is not None and self.rollbacks == rollbacks:
                self._skip_scaler_step(overflow=norm is not None and not math.isfinite(norm))
            return False
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        if self.scheduler is not None and not isinstance(self.scheduler, ReduceLROnPlateau):
            self.scheduler.step()  # ReduceLROnPlateau needs your metric: you step it
        self.applied()
        return True

    def should_stop(self, val_loss: float) -> bool:
        """Record a validation loss; True once ``patience`` validations passed without a better one.

        The best weights are kept as a snapshot and restored when this returns True.
        """
        (val_loss,) = all_ranks_mean(_number("val_loss", val_loss))
        if len(self.record):
            self.record.set_val_loss(val_loss)
        if math.isfinite(val_loss) and val_loss < self.best_val_loss - self.min_delta:
            self.best_val_loss, self._since_best = val_loss, 0
            self._best = self._take(reuse=self._best)  # the previous best's memory holds the new one
            return False
        self._since_best += 1
        if self.patience is None or self._since_best < self.patience:
            return False
        restored = "best weights restored"
        if self._best is None:  # the best came before load_state_dict: its weights were not saved
            restored = "the best weights came before the resume and were not kept: the model keeps its last"
        else:
            self.restore_best()
        self._event(
            "early_stop",
            f"val_loss {val_loss:.4g} not below the best {self.best_val_loss:.4g} for "
            f"{self._since_best} validations; {restored}",
        )
        return True

    def restore_best(self) -> None:
        """Put back the weights (and optimizer state) of the best validation loss seen so far."""
        if self._best is None:
            if math.isfinite(self.best_val_loss):
                raise RuntimeError(
                    f"the best weights (val_loss {self.best_val_loss:.4g}) came before load_state_dict "
                    "and were not saved with the guard's state"
                )
            raise RuntimeError("no validation loss was recorded yet; call should_stop(val_loss) first")
        self._best.restore()

    def state_dict(self) -> dict[str, Any]:
        """The guard's memory, to checkpoint beside the model's: counters, the LR scale, the spike
        rule's recent losses, early stopping's best loss and patience. Plain numbers: no snapshot."""
        rule = self._rule_state
        return {
            **{name: getattr(self, name) for name in _COUNTERS},
            **{name: getattr(self, f"_{name}") for name in _INNER_COUNTERS},
            "recent": list(rule.recent),
            "accepted": rule.accepted,
            "streak": rule.streak,
            **{name: getattr(rule, name) for name in _RULE_PROGRESS},
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Go on from a :meth:`state_dict`. Call it after loading the model, optimizer and scheduler
        (their LRs hold the guard's cuts): the guard keeps a fresh snapshot of that state to roll back
        to. The best weights of early stopping are not in it; the best loss and patience are."""
        if not isinstance(state, dict):
            raise TypeError(f"state must be a dict from Guard.state_dict(), got {type(state).__name__}")
        expected = {*_COUNTERS, *_INNER_COUNTERS, "recent", "accepted", "streak"}
        if missing := sorted(expected - state.keys()):
            raise ValueError(f"state must come from Guard.state_dict(); it lacks {', '.join(missing)}")
        for name in _COUNTERS:
            setattr(self, name, state[name])
        for name in _INNER_COUNTERS:
            setattr(self, f"_{name}", state[name])
        recent = tuple(float(loss) for loss in state["recent"])
        # a state saved before the rule kept these has none: its rule never sees the LR raised
        default = SpikeState()
        progress = {name: float(state.get(name, getattr(default, name))) for name in _RULE_PROGRESS}
        self._rule_state = SpikeState(
            recent, int(state["accepted"]), int(state["streak"]), tuple(sorted(recent)), **progress
        )
        if self._best is not None:
            self._best.discard()
            self._best = None
        self._good = self._save(reuse=self._good.snapshot)
        self._failed_rollbacks = 0  # rollbacks count per snapshot
        self._watch_from = len(self.record)

    def close(self) -> None:
        """Delete the snapshots the guard keeps on disk (with ``directory``); the guard cannot roll
        back or restore the best weights afterwards. Used as a context manager, it closes on exit."""
        for snapshot in (self._good.snapshot, self._best):
            if snapshot is not None:
                snapshot.discard()

    def __enter__(self) -> Guard:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def rewind(self) -> int:
        """Go back to the last good snapshot (weights, optimizer, schedule, RNG) and nothing else;
        the gradients are cleared (the snapshot does not keep them: they belong to the step before it).

        Returns the step the snapshot was taken after; replaying the batches from there reproduces
        the run exactly. A spike does the same, then cuts the LR and skips batches.
        """
        good = self._good
        good.snapshot.restore()
        self.optimizer.zero_grad(set_to_none=True)
        self._rule_state, self._applied = good.rule_state, good.applied
        return good.step

    @property
    def last_good_step(self) -> int:
        """The number of batches seen when the snapshot a rollback returns to was taken."""
        return self._good.step

    @property
    def trace(self) -> Trace:
        """The run so far: one row per step (lr as applied, loss, gradient norm) and every event."""
        return self.record.build()

    def grad_norm(self) -> float | None:
        """The total L2 norm of the gradients the optimizer would apply (None if there are none;
        NaN or infinite when one of them is)."""
        grads = [p.grad for group in self.optimizer.param_groups for p in group["params"] if p.grad is not None]
        if not grads:
            return None
        # in float32: the norm of finite float16 gradients can pass float16's largest value, 65504
        try:  # one fused kernel, a few times cheaper than get_total_norm's grouping on small models
            return float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads, dtype=torch.float32))))
        except NotImplementedError:  # sparse gradients (nn.Embedding(sparse=True)): the norm of their values
            grads = [g.coalesce().values() if g.is_sparse else g for g in grads]
        except RuntimeError:  # gradients on several devices
            pass
        return math.hypot(*(float(torch.linalg.vector_norm(g, dtype=torch.float32)) for g in grads))

    # --- the core that the framework callbacks drive ---------------------------------------------

    def judge(self, loss: torch.Tensor | float, grad_norm: float | None = None) -> bool:
        """Decide about one step before the optimizer applies it; True means "apply it".

        ``grad_norm`` is the gradients' norm (``grad_norm()``), or None when not measured; a NaN
        or infinite norm skips the step like a non-finite loss.
        When this returns False the gradients have been cleared (``None``), so an optimizer step
        that runs anyway changes nothing; on a spike the last good snapshot is already restored.
        """
        loss_value = _number("loss", loss)
        step, self.steps = self.steps, self.steps + 1
        norm = math.nan if grad_norm is None else _number("grad_norm", grad_norm)
        if distributed():  # every rank judges the mean, so all take the same decision
            loss_value, norm = all_ranks_mean(loss_value, norm)
        self.record.add(step, self._lr(), loss_value, grad_norm=norm)
        if self._skip_left:
            self._skip_left -= 1
            return self._clear()
        if not (math.isfinite(loss_value) and (grad_norm is None or math.isfinite(norm))):
            return self._nonfinite(step, loss_value, norm)
        self._nonfinite_streak = 0
        before = self._rule_state
        self._rule_state, verdict = self.rule.update(before, loss_value, self._lr())
        if verdict is Verdict.SPIKE:
            baseline = Baseline.of(before.recent)
            self._rollback(
                step,
                f"loss {loss_value:.4g} against a running median of {baseline.median:.4g} "
                f"(robust sd {baseline.sigma:.3g}) for {self.rule.confirm} steps",
            )
            return self._clear()
        return True

    def applied(self) -> None:
        """Tell the guard the optimizer step it approved was applied (keeps snapshots on schedule)."""
        self._applied += 1
        due = self._applied // self.snapshot_every > self._good.applied // self.snapshot_every
        ready = self._rule_state.clean and len(self._rule_state.recent) >= self.rule.warmup_steps
        if due and ready:
            self._good = self._save(reuse=self._good.snapshot)
            self._failed_rollbacks = 0
        if self.watch_every is not None and self._applied % self.watch_every == 0:
            self._watch()

    def hold_schedule(self) -> None:
        """Remember the schedule (scheduler state, group LRs) so a framework's step can be undone.

        For callbacks whose framework steps the scheduler even when the guard refused the
        optimizer step; :meth:`release_schedule` puts the remembered state back.
        """
        state = None if self.scheduler is None else copy.deepcopy(self.scheduler.state_dict())
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        self._held = (state, [lr.clone() if isinstance(lr, torch.Tensor) else lr for lr in lrs])

    def release_schedule(self) -> None:
        """Undo any scheduler step since :meth:`hold_schedule` (does nothing if nothing is held)."""
        if self._held is None:
            return
        state, lrs = self._held
        self._held = None
        if state is not None:
            self.scheduler.load_state_dict(state)
        for group, lr in zip(self.optimizer.param_groups, lrs, strict=True):
            if isinstance(group["lr"], torch.Tensor):
                group["lr"].copy_(lr)  # a tensor LR (fused, capturable) is changed in place by schedulers
            else:
                group["lr"] = lr

    # --- internals -------------------------------------------------------------------------

    def _nonfinite(self, step: int, loss: float, grad_norm: float) -> bool:
        self.skipped += 1
        self._nonfinite_streak += 1
        what = f"loss {loss}" if not math.isfinite(loss) else f"gradient norm {grad_norm}"
        self._event("skip", f"{what}: step skipped (streak {self._nonfinite_streak})")
        overflow_only = self.scaler is not None and math.isfinite(loss)
        if self._nonfinite_streak >= self.nonfinite_patience and not overflow_only:
            self._nonfinite_streak = 0
            self._rollback(step, f"{self.nonfinite_patience} non-finite steps in a row")
        return self._clear()

    def _skip_scaler_step(self, overflow: bool) -> None:
        """End the GradScaler's step without an optimizer step: an overflow lowers the scale as
        ``scaler.step`` and ``update`` would; any other refused step leaves its scale and growth count alone."""
        state = self.scaler.state_dict()
        self.scaler.update()  # also forgets the unscale_, so the next step starts afresh
        if not overflow:
            self.scaler.load_state_dict(state)

    def _watch(self) -> None:
        """Diagnose the curve since the last LR change; cut the LR if it says the LR is too high."""
        rows = len(self.record)
        if rows - self._watch_from < self.watch_every or self.lr_scale <= self.min_lr_scale:
            return
        # only the rows since the last change are copied: the whole run is the evidence a descent
        # has ended on a floor, which a window of the floor alone would read as noise
        diagnosis = diagnose(self.record.build(slice(self._watch_from, rows)))
        if diagnosis.verdict not in ("too_high", "diverged"):
            return
        scale = max(self.lr_scale * diagnosis.lr_factor, self.min_lr_scale)  # the diagnosis's 3x or 10x
        self._cut_lrs(scale)
        floor = " (its floor, min_lr_scale: the watch cuts no further)" if scale == self.min_lr_scale else ""
        self._event("lr_cut", f"{diagnosis}: LR cut to {self.lr_scale:.3g}x{floor}")

    def _cut_lrs(self, scale: float) -> None:
        """Set the LR scale (relative to the start) to ``scale``; the watch starts afresh."""
        _scale_lrs(self.optimizer, self.scheduler, scale / self.lr_scale)
        self.lr_scale = scale
        self._watch_from = len(self.record)

    def _rollback(self, step: int, reason: str) -> None:
        good = self._good
        if self._failed_rollbacks >= self.max_rollbacks:
            self.rewind()
            cut, self.lr_scale = self.lr_scale, good.lr_scale  # the rewind put back the snapshot's LRs
            already = f", with the LR already cut to {cut:.3g}x its start" if cut < 1 else ""
            message = (
                f"lrkit.Guard stopped the run at step {step}: {reason}, after {self._failed_rollbacks} "
                f"rollbacks to the snapshot of step {good.step} without progress{already}. The model is "
                f"back at step {good.step}. Try starting at least {1 / min(cut, self.lr_factor):.3g}x "
                "lower (or run the range test), a warmup, gradient clipping, or look for bad batches in the data."
            )
            self._event("stop", message)
            raise GuardStop(message)
        target = self.lr_scale * self.lr_factor  # every rollback cuts further, even to one snapshot
        self.rewind()
        self.lr_scale = good.lr_scale  # the rewind put back the LRs of the snapshot
        self._cut_lrs(target)
        scale = self.lr_scale
        self._skip_left = self.skip_batches
        self.rollbacks += 1
        self._failed_rollbacks += 1
        self._event(
            "rollback",
            f"{reason}: rolled back to step {good.step}, LR cut to {scale:.3g}x, "
            f"skipping {self.skip_batches} batches",
        )

    def _take(self, *, reuse: Snapshot | None, optimizer_grads: bool = True) -> Snapshot:
        """A snapshot of the run, copied into the memory of ``reuse`` (discarded), if given."""
        return Snapshot._take(
            self.model, self.optimizer, self.scheduler, self.scaler, True, self.directory,
            optimizer_grads=optimizer_grads, reuse=reuse,
        )

    def _save(self, *, reuse: Snapshot | None) -> _Saved:
        """A new good point to come back to, in the memory of the last one (``reuse``). The
        gradients of the optimizer's parameters are left out: every restore of it (``rewind``)
        clears them."""
        snapshot = self._take(reuse=reuse, optimizer_grads=False)
        return _Saved(snapshot, self.steps, self._applied, self._rule_state, self.lr_scale)

    def _clear(self) -> bool:
        self.optimizer.zero_grad(set_to_none=True)
        return False

    def _lr(self) -> float:
        return float(self.optimizer.param_groups[0]["lr"])

    def _event(self, kind: str, detail: str) -> None:
        step = max(self.steps - 1, 0)
        self.record.event(step, kind, detail)
        if rank() == 0:  # under torch.distributed every rank takes the same step; one tells
            level = logging.INFO if kind == "early_stop" else logging.WARNING
            logger.log(level, "step %d: %s: %s", step, kind, detail)


def _number(name: str, value: object) -> float:
    """A loss as a float: a real number or a one-element tensor (NaN and infinity are losses too)."""
    if type(value) is float:  # the common case, every step
        return value
    allowed = f"{name} must be a number or a one-element tensor"
    if isinstance(value, torch.Tensor):
        if value.numel() != 1:
            raise ValueError(f"{allowed}, got a tensor of shape {tuple(value.shape)}")
        if value.dtype == torch.bool or value.is_complex():
            raise TypeError(f"{allowed}, got a tensor of dtype {value.dtype}")
        return float(value.item())
    if not checks.is_real(value):
        raise TypeError(f"{allowed}, got {value!r} ({type(value).__name__})")
    return float(value)


def _unscaled(scaler: Any, optimizer: torch.optim.Optimizer) -> bool:
    """Whether ``scaler.unscale_(optimizer)`` already ran this step (a second call raises)."""
    states = getattr(scaler, "_per_optimizer_states", None)  # torch keeps no public flag
    return isinstance(states, dict) and states.get(id(optimizer), {}).get("stage") is OptState.UNSCALED


def _wrapped(optimizer: Any) -> list[Any]:
    """The optimizer and those it wraps (accelerate's and Lightning's wrappers hold the real one)."""
    chain = [optimizer]
    while (inner := getattr(chain[-1], "optimizer", None)) is not None and len(chain) < 8:
        chain.append(inner)
    return chain


def _scale_lrs(optimizer: torch.optim.Optimizer, scheduler: Any, factor: float) -> None:
    """Multiply every group's LR, and every LR an attached scheduler computes from, by ``factor``.

    Covers lrkit's ScheduleLR (its ``scale``), torch's ``base_lrs`` schedulers and the cosine
    ones' ``eta_min``, CyclicLR's ``max_lrs``, ReduceLROnPlateau's ``min_lrs``, OneCycleLR's
    per-group ``max_lr``/``min_lr`` and the schedulers inside SequentialLR and ChainedScheduler,
    so any of them continues its shape at the lower level.
    """
    if isinstance(scheduler, ScheduleLR):
        scheduler.scale(factor)
        return
    for group in optimizer.param_groups:
        for key in ("lr", "initial_lr", "max_lr", "min_lr"):
            value = group.get(key)
            if isinstance(value, torch.Tensor):
                value.mul_(factor)  # a tensor LR (fused, capturable) is updated where it is
            elif isinstance(value, int | float):
                group[key] = value * factor
    for inner in _schedulers(scheduler):
        for name in ("base_lrs", "max_lrs", "min_lrs", "_last_lr"):  # _last_lr: what get_last_lr() logs
            if isinstance(getattr(inner, name, None), list):
                setattr(inner, name, [lr * factor for lr in getattr(inner, name)])
        if isinstance(getattr(inner, "eta_min", None), int | float):  # the cosine schedulers' floor
            inner.eta_min = inner.eta_min * factor


def _schedulers(scheduler: Any) -> list[Any]:
    """The scheduler and, for SequentialLR and ChainedScheduler, every scheduler inside it."""
    if scheduler is None:
        return []
    found = [scheduler]
    for inner in getattr(scheduler, "_schedulers", ()):
        found += _schedulers(inner)
    return found
