"""A bit-exact snapshot of everything training changes, restored in place on demand.

``Snapshot.take`` copies parameters, their gradients, buffers and train/eval flags, the optimizer's
state and param-group hyperparameters, an attached LR scheduler, a GradScaler and the RNG states
(torch CPU and CUDA, Python, NumPy) to CPU memory, or to a file in ``directory`` (written atomically,
read back with ``torch.load(weights_only=True)``). ``restore`` puts every value back into the
original tensor objects where it can, so references held by the user and the optimizer stay valid,
and leaves a GradScaler ready for a new step (a snapshot is a point between two steps).
Used as a context manager, the snapshot is restored on every exit, including exceptions and
KeyboardInterrupt. A runner that snapshots again and again (the guard) hands the snapshot it no
longer needs to the next one, whose copies go into its memory instead of freshly allocated memory.
"""

from __future__ import annotations

import copy
import random
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from lrkit.files import atomic_write


@dataclass(frozen=True)
class _Leaf:
    """Where one saved tensor went: its index in the flat CPU list and the device it came from."""

    index: int
    device: torch.device


@dataclass(frozen=True)
class _Slot:
    """One entry of a module's ``_parameters`` or ``_buffers``: the original object and its saved copy
    (``module`` None: a parameter the optimizer steps that no module of the model holds).
    ``grad_kept``: its gradient was not saved, and a restore leaves the gradient as it finds it."""

    module: nn.Module | None
    kind: str  # "_parameters" or "_buffers"
    name: str
    tensor: torch.Tensor | None
    value: _Leaf | None
    grad: _Leaf | None
    grad_kept: bool = False


class _Packer:
    """Copies tensors to CPU once each (tied weights are stored once) and records where they came from.

    ``spare``: CPU tensors of a snapshot no longer needed, reused as the copies of tensors of the
    same shape, strides and dtype (allocating and first touching fresh memory costs several times
    the copy itself on a large model). ``copy=False`` keeps the tensors themselves, for a snapshot
    serialised to a file at once: the file gets the bytes without a second copy held in memory.
    """

    def __init__(self, spare: list[torch.Tensor] | None = None, *, copy: bool = True) -> None:
        self.tensors: list[torch.Tensor] = []
        self._seen: dict[int, _Leaf] = {}
        self._copy = copy
        self._spare: dict[tuple, list[torch.Tensor]] = {}
        for tensor in spare or ():
            if _reusable(tensor):
                self._spare.setdefault(_layout(tensor), []).append(tensor)

    def tensor(self, tensor: torch.Tensor) -> _Leaf:
        leaf = self._seen.get(id(tensor))
        if leaf is None:
            self.tensors.append(self._saved(tensor.detach()))
            leaf = _Leaf(len(self.tensors) - 1, tensor.device)
            self._seen[id(tensor)] = leaf
        return leaf

    def _saved(self, tensor: torch.Tensor) -> torch.Tensor:
        if not self._copy:
            return tensor
        spare = self._spare.get(_layout(tensor)) if _reusable(tensor) else None
        if spare:  # same shape, strides and dtype: what .to(copy=True) would have made, bit for bit
            return spare.pop().copy_(tensor)
        return tensor.to("cpu", copy=True)

    def pack(self, value: Any) -> Any:
        """The value with every tensor inside (dicts, lists, tuples) replaced by a ``_Leaf``."""
        if isinstance(value, torch.Tensor):
            return self.tensor(value)
        if isinstance(value, dict):
            return {key: self.pack(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.pack(item) for item in value)
        return copy.deepcopy(value)


def _reusable(tensor: torch.Tensor) -> bool:
    """A plain dense tensor, whose copy into a spare of the same layout is bit-exact (and a spare
    that can be written outside ``torch.inference_mode``)."""
    return (
        tensor.layout == torch.strided
        and not tensor.is_quantized
        and not tensor.is_conj()
        and not tensor.is_neg()
        and not tensor.is_inference()
    )


def _layout(tensor: torch.Tensor) -> tuple:
    return (tuple(tensor.shape), tensor.stride(), tensor.dtype)


def _unpack(layout: Any, tensors: list[torch.Tensor]) -> Any:
    """A fresh copy of a packed value on its original devices."""
    if isinstance(layout, _Leaf):
        return tensors[layout.index].to(layout.device, copy=True)
    if isinstance(layout, dict):
        return {key: _unpack(item, tensors) for key, item in layout.items()}
    if isinstance(layout, list | tuple):
        return type(layout)(_unpack(item, tensors) for item in layout)
    return copy.deepcopy(layout)


def _fits(target: Any, saved: torch.Tensor, device: torch.device) -> bool:
    return (
        isinstance(target, torch.Tensor)
        and target.shape == saved.shape
        and target.dtype == saved.dtype
        and target.device == device
    )


def _put(target: torch.Tensor, leaf: _Leaf, tensors: list[torch.Tensor]) -> None:
    """Write a saved value into ``target`` itself (its data is replaced if shape, dtype or device changed)."""
    saved = tensors[leaf.index]
    with torch.no_grad():
        if _fits(target, saved, leaf.device):
            target.copy_(saved)
        else:
            target.data = saved.to(leaf.device, copy=True)


def _restore_mapping(
    current: dict, layout: dict, tensors: list[torch.Tensor], keep: tuple[str, ...] = ()
) -> None:
    """Make ``current`` equal ``layout`` key by key (except ``keep``), writing into tensors already there."""
    for key in [key for key in current if key not in layout and key not in keep]:
        del current[key]
    for key, saved in layout.items():
        target = current.get(key)
        if isinstance(saved, _Leaf) and isinstance(target, torch.Tensor):
            _put(target, saved, tensors)
        else:
            current[key] = _unpack(saved, tensors)


class Snapshot:
    """Saved training state; ``restore()`` puts it back bit for bit (use :meth:`take` to make one)."""

    def __init__(self) -> None:
        raise TypeError("make a Snapshot with Snapshot.take(model, optimizer, ...)")

    @classmethod
    def take(
        cls,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None = None,
        *,
        scheduler: Any = None,
        scaler: Any = None,
        rng: bool = True,
        directory: str | Path | None = None,
    ) -> Snapshot:
        """Copy the state of ``model`` (and whatever else is given) to CPU memory or to ``directory``."""
        return cls._take(model, optimizer, scheduler, scaler, rng, directory)

    @classmethod
    def _take(
        cls,
        model: nn.Module,
        optimizer: torch.optim.Optimizer | None,
        scheduler: Any,
        scaler: Any,
        rng: bool,
        directory: str | Path | None,
        *,
        optimizer_grads: bool = True,
        reuse: Snapshot | None = None,
    ) -> Snapshot:
        """``take``, with two options for lrkit's runners. ``optimizer_grads=False`` leaves out the
        gradients of the optimizer's parameters (a restore leaves them as they are: the guard clears
        them right after). ``reuse``: a snapshot no longer needed, discarded here; its memory holds
        the new copies."""
        _check_arguments(model, optimizer, scheduler, scaler, rng, directory)
        spare = None
        if reuse is not None:
            spare, reuse._tensors = reuse._tensors, None  # ours now: discard() must not drop them
            reuse.discard()
        self = object.__new__(cls)
        packer = _Packer(spare, copy=directory is None)
        stepped = set() if optimizer_grads or optimizer is None else {id(p) for p in _params(optimizer)}
        self._slots = _model_slots(model, packer, stepped)
        if optimizer is not None:  # e.g. a learnable weight of the loss, outside the model
            held = {id(slot.tensor) for slot in self._slots}
            free = {id(param): param for param in _params(optimizer) if id(param) not in held}
            self._slots += [_slot(None, "", "", param, packer, stepped) for param in free.values()]
        self._training = [(module, module.training) for module in model.modules()]
        self._optimizer = optimizer
        if optimizer is not None:
            self._groups = [
                (
                    group,
                    packer.pack({k: v for k, v in group.items() if k != "params"}),
                    list(group["params"]),
                )
                for group in optimizer.param_groups
            ]
            self._state = {
                param: packer.pack(optimizer.state[param])
                for param in _params(optimizer)
                if param in optimizer.state
            }
        self._scheduler = scheduler
        self._scheduler_state = (
            copy.deepcopy(scheduler.state_dict()) if scheduler is not None else None
        )
        self._scaler = scaler
        self._scaler_state = copy.deepcopy(scaler.state_dict()) if scaler is not None else None
        self._rng = _rng_state() if rng else None
        self._nbytes = sum(t.numel() * t.element_size() for t in packer.tensors)
        self._path: Path | None = None
        self._tensors: list[torch.Tensor] | None = packer.tensors
        if directory is not None:
            path = Path(directory) / f"lrkit-snapshot-{uuid.uuid4().hex}.pt"
            # atomic but not fsynced: the file lives as long as the run (save_checkpoint is for crashes)
            atomic_write(path, lambda handle: torch.save(packer.tensors, handle), durable=False)
            self._path, self._tensors = path, None
        return self

    @property
    def path(self) -> Path | None:
        """The file holding the tensors, or ``None`` when they are in CPU memory."""
        return self._path

    @property
    def nbytes(self) -> int:
        """Bytes of tensor data held (in memory or on disk)."""
        return self._nbytes

    def restore(self) -> None:
        """Put every saved value back; can be called any number of times."""
        tensors = self._load()
        for slot in self._slots:
            _restore_slot(slot, tensors)
        for module, training in self._training:
            module.training = training
        if self._optimizer is not None:
            self._restore_optimizer(tensors)
        if self._scheduler is not None:
            self._scheduler.load_state_dict(copy.deepcopy(self._scheduler_state))
        if self._scaler is not None and self._scaler_state:
            self._scaler.load_state_dict(copy.deepcopy(self._scaler_state))
        if self._scaler is not None:
            _ready(self._scaler)
        if self._rng is not None:
            _set_rng_state(self._rng)

    def discard(self) -> None:
        """Delete the snapshot's file, if it has one; the snapshot cannot be restored afterwards."""
        if self._path is not None:
            self._path.unlink(missing_ok=True)
        self._tensors = None
        self._path = None
        self._slots = []

    def __enter__(self) -> Snapshot:
        return self

    def __exit__(self, *exc_info: object) -> None:
        try:
            self.restore()
        finally:
            self.discard()

    def __repr__(self) -> str:
        where = str(self._path) if self._path is not None else "CPU memory"
        parts = [f"{len(self._slots)} tensors of the model"]
        if self._optimizer is not None:
            parts.append(f"{type(self._optimizer).__name__} state")
        if self._scheduler is not None:
            parts.append(type(self._scheduler).__name__)
        if self._scaler is not None:
            parts.append(type(self._scaler).__name__)
        if self._rng is not None:
            parts.append("RNG")
        return f"Snapshot({', '.join(parts)}; {self._nbytes / 2**20:.2f} MiB in {where})"

    def _load(self) -> list[torch.Tensor]:
        if self._tensors is not None:
            return self._tensors
        if self._path is None:
            raise RuntimeError("this snapshot was discarded; take a new one")
        # mapped, not read whole: each tensor is paged in as it is copied back, so a restore does
        # not hold a second full copy of the state in memory (the point of keeping it on disk)
        return torch.load(self._path, map_location="cpu", weights_only=True, mmap=True)

    def _restore_optimizer(self, tensors: list[torch.Tensor]) -> None:
        optimizer = self._optimizer
        optimizer.param_groups[:] = [group for group, _, _ in self._groups]
        for group, layout, params in self._groups:
            group["params"][:] = params
            _restore_mapping(group, layout, tensors, keep=("params",))
        for param in [p for p in optimizer.state if p not in self._state]:
            del optimizer.state[param]
        for param, layout in self._state.items():
            if param in optimizer.state:
                _restore_mapping(optimizer.state[param], layout, tensors)
            else:
                optimizer.state[param] = _unpack(layout, tensors)


def _model_slots(model: nn.Module, packer: _Packer, grads_kept: set[int]) -> list[_Slot]:
    return [
        _slot(module, kind, name, tensor, packer, grads_kept)
        for module in model.modules()
        for kind in ("_parameters", "_buffers")
        for name, tensor in getattr(module, kind).items()
    ]


def _slot(
    module: nn.Module | None,
    kind: str,
    name: str,
    tensor: torch.Tensor | None,
    packer: _Packer,
    grads_kept: set[int],
) -> _Slot:
    """The slot of ``tensor``; its gradient is saved unless ``id(tensor)`` is in ``grads_kept``."""
    value = None if tensor is None else packer.tensor(tensor)
    kept = tensor is not None and id(tensor) in grads_kept
    grad = None if tensor is None or kept or tensor.grad is None else packer.tensor(tensor.grad)
    return _Slot(module, kind, name, tensor, value, grad, kept)


def _restore_slot(slot: _Slot, tensors: list[torch.Tensor]) -> None:
    if slot.module is not None:
        getattr(slot.module, slot.kind)[slot.name] = slot.tensor
    if slot.tensor is None:
        return
    _put(slot.tensor, slot.value, tensors)
    if slot.grad_kept:
        return
    if slot.grad is None:
        slot.tensor.grad = None
    elif slot.tensor.grad is None:
        slot.tensor.grad = tensors[slot.grad.index].to(slot.grad.device, copy=True)
    else:
        _put(slot.tensor.grad, slot.grad, tensors)


def _ready(scaler: Any) -> None:
    """Forget an ``unscale_`` or ``step()`` the GradScaler saw since its last ``update()``, as ``update()``
    does: ``load_state_dict`` keeps them, and a scaler left "already unscaled" by an interrupted step
    would make the next ``scaler.step`` apply the gradients still multiplied by the scale."""
    per_optimizer = getattr(scaler, "_per_optimizer_states", None)  # torch keeps no public reset
    if isinstance(per_optimizer, dict):
        per_optimizer.clear()


def _params(optimizer: torch.optim.Optimizer) -> Iterator[torch.Tensor]:
    for group in optimizer.param_groups:
        yield from group["params"]


def _rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "python": random.getstate(),
        "numpy": np.random.get_state(),
    }
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


def _check_arguments(model, optimizer, scheduler, scaler, rng, directory) -> None:
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if optimizer is not None and not isinstance(optimizer, torch.optim.Optimizer):
        raise TypeError(
            f"optimizer must be a torch.optim.Optimizer or None, got {type(optimizer).__name__}"
        )
    for name, value in (("scheduler", scheduler), ("scaler", scaler)):
        if value is not None and not (
            hasattr(value, "state_dict") and hasattr(value, "load_state_dict")
        ):
            raise TypeError(
                f"{name} must have state_dict() and load_state_dict(), got {type(value).__name__}"
            )
    if not isinstance(rng, bool):
        raise TypeError(f"rng must be True or False, got {rng!r}")
    if directory is not None and not isinstance(directory, str | Path):
        raise TypeError(f"directory must be a path or None, got {type(directory).__name__}")
    if directory is not None and Path(directory).exists() and not Path(directory).is_dir():
        raise ValueError(f"directory must be a folder (or not exist yet), got the file {str(directory)!r}")
