"""Param groups for fine-tuning: a learning rate per layer depth, no weight decay where it hurts.

``param_groups`` turns a model into the list of group dicts any ``torch.optim`` optimizer takes:
the head at ``lr``, each layer below at ``lr * layer_decay**depth``, biases, 1-D parameters and
normalization weights without weight decay, frozen parameters left out. Each group also carries ``"name"`` and
``"depth"`` for people to read; optimizers keep such keys and save them in ``state_dict``.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrkit import checks
from lrkit.depths import assign_depths, matching


def param_groups(
    model: nn.Module,
    lr: float,
    *,
    layer_decay: float | None = None,
    head: str | Sequence[str] | None = None,
    head_lr_mult: float = 1.0,
    weight_decay: float | None = None,
    no_decay: str | Sequence[str] | None = None,
    depths: Mapping[str, int] | None = None,
) -> list[dict[str, Any]]:
    """Param groups with layer-wise LR decay, ready for ``torch.optim.AdamW(groups)`` and friends.

    Depth 0 is the head (``lr * head_lr_mult``); a parameter at depth ``d`` gets
    ``lr * layer_decay**d`` (``layer_decay=None`` keeps one LR). Depths are found from the names of
    all parameters, frozen ones included, so freezing moves no depth; frozen parameters are then
    left out (see ``lrkit.depths.assign_depths``). ``head`` names the head by glob pattern,
    ``depths`` maps glob patterns to depths instead; a tied parameter (GPT-2's ``lm_head.weight``
    is ``transformer.wte.weight``) is listed once, under its first name, and a pattern may name it
    by either. Biases (names ending in ``bias``), 1-D parameters, parameters of normalization
    modules, those a module's ``no_weight_decay()`` names (timm's hook) and names matching
    ``no_decay`` get ``weight_decay=0``; the others get ``weight_decay``, or the optimizer's
    default if ``None``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    lr = checks.positive("lr", lr)
    decay_factor = 1.0 if layer_decay is None else layer_decay
    decay_factor = checks.in_range("layer_decay", decay_factor, 0.0, 1.0, low_open=True)
    head_lr_mult = checks.positive("head_lr_mult", head_lr_mult)
    if weight_decay is not None:
        weight_decay = checks.non_negative("weight_decay", weight_decay)

    everything = list(model.named_parameters())
    if not everything:
        raise ValueError(f"model has no parameters ({type(model).__name__} holds none)")
    named = [(name, param) for name, param in everything if param.requires_grad]
    if not named:
        raise ValueError("model has no trainable parameters (every one has requires_grad=False)")
    tied = _tied(model)
    # depths follow the whole model, so freezing part of it moves no other part (as in timm)
    layering = assign_depths(
        [name for name, _ in everything],
        depths=depths,
        head=head,
        frozen={name for name, param in everything if not param.requires_grad},
        tied=tied,
    )
    undecayed = _undecayed(model, named, no_decay, tied)

    groups: dict[tuple[int, bool], dict[str, Any]] = {}
    for name, param in named:
        depth, decayed = layering.depth[name], name not in undecayed
        key = (depth, decayed)
        if key not in groups:
            scale = head_lr_mult if depth == 0 else decay_factor**depth
            group: dict[str, Any] = {"params": [], "lr": lr * scale}
            if not decayed:
                group["weight_decay"] = 0.0
            elif weight_decay is not None:
                group["weight_decay"] = weight_decay
            label = layering.labels[depth]
            group["name"] = label if decayed else f"{label} (no decay)"
            group["depth"] = depth
            groups[key] = group
        groups[key]["params"].append(param)
    # the head first (so find_lr's group_lrs[0] is the head's rate), then down to the embeddings
    return [groups[key] for key in sorted(groups, key=lambda key: (key[0], not key[1]))]


def _tied(model: nn.Module) -> dict[str, list[str]]:
    """The other names of each shared parameter (GPT-2's ``lm_head.weight`` is
    ``transformer.wte.weight``), by the one name ``named_parameters`` lists it under."""
    first: dict[int, str] = {}
    tied: dict[str, list[str]] = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        if id(param) in first:
            tied.setdefault(first[id(param)], []).append(name)
        else:
            first[id(param)] = name
    return tied


def _undecayed(
    model: nn.Module,
    named: list[tuple[str, nn.Parameter]],
    no_decay: str | Sequence[str] | None,
    tied: Mapping[str, list[str]],
) -> set[str]:
    """Names of biases, 1-D parameters, normalization modules' parameters, the parameters a
    module's ``no_weight_decay()`` lists, and ``no_decay`` matches.

    timm's rule (``ndim <= 1``, a bias, or named by a module's ``no_weight_decay()`` hook, as
    timm's ViT does its ``pos_embed`` and ``cls_token``) joined with Hugging Face's (every
    parameter of a norm module), so a norm over several dimensions, whose weight is 2-D, is not
    decayed either.
    """
    in_norms = {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if _is_norm(module)
        for name, _ in module.named_parameters(recurse=False)
    }
    listed = {
        f"{module_name}.{name}" if module_name else name
        for module_name, module in model.named_modules()
        if callable(getattr(module, "no_weight_decay", None))
        for name in module.no_weight_decay()
    }
    skipped = {
        name
        for name, param in named
        if name.endswith("bias") or param.ndim <= 1 or name in in_norms or name in listed
    }
    if no_decay is not None:
        skipped |= matching("no_decay", [name for name, _ in named], no_decay, tied)
    return skipped


def _is_norm(module: nn.Module) -> bool:
    # by class name, so custom norms (LlamaRMSNorm, T5LayerNorm) count as torch's own do
    return any("norm" in cls.__name__.lower() for cls in type(module).__mro__)


@dataclass(frozen=True)
class GroupRow:
    """One param group as a person reads it."""

    name: str
    depth: int | None
    lr: float
    weight_decay: float | None
    params: int


@dataclass(frozen=True, repr=False)
class GroupTable:
    """The groups of an optimizer or of ``param_groups``: printing it shows a table."""

    rows: tuple[GroupRow, ...]

    @property
    def params(self) -> int:
        return sum(row.params for row in self.rows)

    def __rich__(self):
        from rich.table import Table

        table = Table(title=f"{len(self.rows)} param groups, {self.params:,} parameters")
        for column in ("group", "depth", "lr", "weight decay", "parameters"):
            table.add_column(column, justify="left" if column == "group" else "right")
        for row in self.rows:
            table.add_row(
                row.name,
                "" if row.depth is None else str(row.depth),
                f"{row.lr:.3g}",
                "default" if row.weight_decay is None else f"{row.weight_decay:g}",
                f"{row.params:,}",
            )
        return table

    def __str__(self) -> str:
        from rich.console import Console

        text = io.StringIO()
        Console(file=text, width=120, color_system=None).print(self)
        return text.getvalue().rstrip()

    __repr__ = __str__


def describe_groups(groups: Iterable[Mapping[str, Any]] | torch.optim.Optimizer) -> GroupTable:
    """A table of param groups (from ``param_groups`` or an optimizer): name, depth, LR, weight decay, size."""
    if isinstance(groups, torch.optim.Optimizer):
        groups = groups.param_groups
    rows = []
    for index, group in enumerate(groups):
        if not isinstance(group, Mapping) or "params" not in group or "lr" not in group:
            raise TypeError(
                f"groups[{index}] must be a param group dict with 'params' and 'lr', got {group!r}"
            )
        params = [group["params"]] if isinstance(group["params"], torch.Tensor) else group["params"]
        rows.append(
            GroupRow(
                name=str(group.get("name", f"group {index}")),
                depth=group.get("depth"),
                lr=float(group["lr"]),
                weight_decay=group.get("weight_decay"),
                params=sum(param.numel() for param in params),
            )
        )
    return GroupTable(tuple(rows))
