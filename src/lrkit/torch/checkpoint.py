"""Training checkpoints on disk: written atomically, read back without running any pickled code.

``save_checkpoint`` writes the state dicts of a model, optimizer, scheduler, grad scaler and
:class:`lrkit.Guard` (plus a step and a few plain values) through :func:`lrkit.files.atomic_write`, so a crash or SIGKILL at any
moment leaves the previous checkpoint whole. ``load_checkpoint`` reads with
``torch.load(weights_only=True)``: a file that carries a pickle payload is refused, not executed.
"""

from __future__ import annotations

import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lrkit import checks
from lrkit.files import atomic_write

FORMAT = "lrkit-checkpoint"
VERSION = 1
_PARTS = ("model", "optimizer", "scheduler", "scaler", "guard")  # loaded in this order: the guard last


@dataclass(frozen=True)
class Checkpoint:
    """What a checkpoint file held besides the state dicts it loaded: its step and extra values."""

    path: Path
    step: int
    extra: Mapping[str, Any] = field(default_factory=dict)


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: Any = None,
    scaler: Any = None,
    guard: Any = None,
    step: int = 0,
    extra: Mapping[str, int | float | str | bool] | None = None,
) -> Path:
    """Write the training state to ``path`` atomically (the old file stays whole until replaced)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    step = checks.integer("step", step, minimum=0)
    extra = dict(extra or {})
    for key, value in extra.items():
        if not isinstance(key, str) or not isinstance(value, int | float | str | bool):
            raise TypeError(
                f"extra must map strings to plain numbers, strings or booleans, got {key!r}: {value!r}"
            )
    payload: dict[str, Any] = {"format": FORMAT, "version": VERSION, "step": step, "extra": extra}
    for name, part in zip(_PARTS, (model, optimizer, scheduler, scaler, guard), strict=True):
        if part is not None:
            payload[name] = part.state_dict()
    return atomic_write(path, lambda handle: torch.save(payload, handle))


def load_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    *,
    scheduler: Any = None,
    scaler: Any = None,
    guard: Any = None,
) -> Checkpoint:
    """Load ``path`` into the given objects; a file that is not a plain lrkit checkpoint is refused.

    A ``guard`` (:class:`lrkit.Guard`) is loaded last, so the snapshot it keeps holds the loaded state.
    """
    path = Path(path)
    payload = read_checkpoint(path)
    for name, part in zip(_PARTS, (model, optimizer, scheduler, scaler, guard), strict=True):
        if part is None:
            continue
        if name not in payload:
            raise ValueError(f"{path}: the checkpoint holds no {name} state, but a {name} was given")
        part.load_state_dict(payload[name])
    return Checkpoint(path, payload["step"], payload["extra"])


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The raw payload of a checkpoint file, read with ``weights_only=True`` and checked."""
    path = Path(path)
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise ValueError(
            f"{path}: refused to load: the file holds more than tensors and plain values "
            f"(a pickle payload that would run code); only open it if you trust it. ({first})"
        ) from None
    except (RuntimeError, EOFError) as error:
        raise ValueError(f"{path}: not a readable checkpoint (damaged or not written by torch.save): {error}") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise ValueError(f"{path}: not an lrkit checkpoint (no '{FORMAT}' format marker)")
    if payload.get("version") != VERSION:
        raise ValueError(f"{path}: checkpoint version {payload.get('version')!r} is not supported; expected {VERSION}")
    return payload
