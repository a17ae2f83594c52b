"""The peak fine-tuning LR for a pre-trained model, next to the rate the same model wants from scratch.

Two range tests: one on the pre-trained model with its layer-wise param groups (scaled together,
ratios kept), one on a re-initialised copy with one LR for all. Pre-trained layers usually want
rates 10 to 100 times below the from-scratch rate; the advice says what this model wants.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from lrkit import checks
from lrkit.torch.finder import FinderResult, find_lr
from lrkit.torch.groups import param_groups

OptimizerFactory = Callable[[Any], torch.optim.Optimizer]


@dataclass(frozen=True)
class FinetuneAdvice:
    """The fine-tuning rate to pass as ``param_groups(model, lr, ...)``, and how it compares.

    ``peak_lr`` is the fastest group's rate (the head's, unless ``head_lr_mult`` is below
    ``layer_decay``); ``scratch_lr`` is the range test's rate for the re-initialised model;
    ``scratch_ratio`` is ``scratch_lr / peak_lr``. Each is ``None`` when its range test found no usable curve.
    """

    lr: float | None
    peak_lr: float | None
    scratch_lr: float | None
    finetune: FinderResult
    scratch: FinderResult | None

    @property
    def scratch_ratio(self) -> float | None:
        if self.peak_lr is None or self.scratch_lr is None:
            return None
        return self.scratch_lr / self.peak_lr

    def __repr__(self) -> str:
        if self.lr is None:
            return f"FinetuneAdvice(no usable fine-tuning curve: {self.finetune.reason})"
        text = f"FinetuneAdvice(lr={self.lr:.3g}, peak_lr={self.peak_lr:.3g}"
        if self.scratch_ratio is None:
            return text + ", no from-scratch rate to compare)"
        ratio = self.scratch_ratio
        compared = f"{ratio:.3g}x below" if ratio >= 1 else f"{1 / ratio:.3g}x above"
        return text + f", {compared} the from-scratch {self.scratch_lr:.3g})"


def recommend_finetune_lr(
    model: nn.Module,
    make_optimizer: OptimizerFactory,
    loss_fn: Callable[..., Any] | None,
    train_loader: Iterable[Any],
    *,
    layer_decay: float | None = None,
    head: str | Sequence[str] | None = None,
    head_lr_mult: float = 1.0,
    weight_decay: float | None = None,
    no_decay: str | Sequence[str] | None = None,
    depths: Mapping[str, int] | None = None,
    scratch_lr: float | None = None,
    seed: int = 0,
    **finder_options: Any,
) -> FinetuneAdvice:
    """Range-test ``model`` with its fine-tuning param groups and recommend the peak LR.

    ``make_optimizer`` builds the optimizer from param groups (``torch.optim.AdamW``, or a
    ``functools.partial`` of one); the group options are those of ``param_groups``. Unless
    ``scratch_lr`` is given, a second range test on a re-initialised copy (``reset_parameters``
    of every module) measures the from-scratch rate. ``model`` is left exactly as it was.
    ``finder_options`` go to ``find_lr`` (``min_lr``, ``max_lr``, ``steps``, ``val_loader``, ...).
    """
    if not callable(make_optimizer):
        raise TypeError(
            f"make_optimizer must build an optimizer from param groups (e.g. torch.optim.AdamW), "
            f"got {type(make_optimizer).__name__}"
        )
    if scratch_lr is not None:
        scratch_lr = checks.positive("scratch_lr", scratch_lr)
    seed = checks.integer("seed", seed)
    groups = param_groups(
        model,
        1.0,
        layer_decay=layer_decay,
        head=head,
        head_lr_mult=head_lr_mult,
        weight_decay=weight_decay,
        no_decay=no_decay,
        depths=depths,
    )
    top = max(group["lr"] for group in groups)
    finetune = find_lr(
        model, make_optimizer(groups), loss_fn, train_loader, seed=seed, **finder_options
    )
    peak = finetune.suggestion.lr
    scratch = None
    if scratch_lr is None:
        scratch = _scratch_test(model, make_optimizer, loss_fn, train_loader, seed, finder_options)
        scratch_lr = scratch.lr
    return FinetuneAdvice(
        lr=None if peak is None else peak / top,
        peak_lr=peak,
        scratch_lr=scratch_lr,
        finetune=finetune,
        scratch=scratch,
    )


def _scratch_test(
    model, make_optimizer, loss_fn, train_loader, seed, finder_options
) -> FinderResult:
    """The range test on a re-initialised copy of ``model`` with one LR for all its parameters."""
    fresh = copy.deepcopy(model).requires_grad_(True)
    with torch.random.fork_rng(devices=list(range(torch.cuda.device_count()))):
        torch.manual_seed(seed)
        for module in fresh.modules():
            reset = getattr(module, "reset_parameters", None)
            if callable(reset):
                reset()
    optimizer = make_optimizer([{"params": list(fresh.parameters()), "lr": 1.0}])
    return find_lr(fresh, optimizer, loss_fn, train_loader, seed=seed, **finder_options)
