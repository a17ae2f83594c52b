"""Lightning (extra ``lightning``): the range test on a LightningModule, and :class:`lrkit.Guard` as a
callback.

:func:`find_lr` runs :func:`lrkit.find_lr` on a module as its own ``configure_optimizers`` and
``training_step`` define it, with no Trainer (the module's state comes back exactly as it was).

The loss is taken in ``on_before_backward``, the step judged in ``on_before_optimizer_step`` (a
refused step has its gradients cleared, so Lightning's optimizer step changes nothing), the
schedule held back in ``on_train_batch_end`` when the step was refused, and the monitored
validation metric fed to early stopping in ``on_validation_end``.
"""

from __future__ import annotations

import itertools
import warnings
from collections.abc import Iterable
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.core.optimizer import _configure_optimizers
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.parsing import lightning_hasattr, lightning_setattr

from lrkit.torch.finder import FinderResult
from lrkit.torch.finder import find_lr as _find_lr
from lrkit.torch.guard import Guard


def find_lr(
    module: pl.LightningModule,
    train_dataloaders: Iterable[Any] | None = None,
    *,
    datamodule: pl.LightningDataModule | None = None,
    attribute: str | None = None,
    **options: Any,
) -> FinderResult:
    """The LR range test on ``module``: its ``training_step`` gives the loss, its
    ``configure_optimizers`` the optimizer (a fresh one, as ``fit`` would make).

    The batches come from ``train_dataloaders``, else ``datamodule`` (prepared and set up for
    ``"fit"``), else the module's own ``train_dataloader()``. ``options`` are :func:`lrkit.find_lr`'s
    (``steps``, ``min_lr``, ``max_lr``, ``accumulation_steps``, ``precision``, ...). With
    ``attribute`` (e.g. ``"lr"``), a usable suggestion is written where Lightning's Tuner writes
    it (``module.<attribute>`` or ``module.hparams[attribute]``).
    """
    if not isinstance(module, pl.LightningModule):
        raise TypeError(f"module must be a lightning.pytorch.LightningModule, got {type(module).__name__}")
    if not module.automatic_optimization:
        raise ValueError(
            "module uses manual optimization (automatic_optimization=False); the range test steps "
            "the optimizer itself, so it needs a training_step that returns the loss"
        )
    if attribute is not None and not lightning_hasattr(module, attribute):
        raise ValueError(
            f"attribute={attribute!r} is neither an attribute of {type(module).__name__} nor one of its hparams"
        )
    loader = _train_loader(module, train_dataloaders, datamodule)
    optimizer = _only_optimizer(module.configure_optimizers())
    batch_index = itertools.count()

    def training_loss(model: pl.LightningModule, batch: Any) -> Any:
        loss = model.training_step(batch, next(batch_index))
        if loss is None:
            raise ValueError(
                f"{type(model).__name__}.training_step returned None; the range test needs the loss "
                "(a tensor, or a dict with 'loss')"
            )
        return loss

    with warnings.catch_warnings():  # self.log() outside a Trainer warns on every call, and does nothing
        warnings.filterwarnings("ignore", message=r".*self\.log\(\)")
        result = _find_lr(module, optimizer, training_loss, loader, **options)
    if attribute is not None and result.lr is not None:
        lightning_setattr(module, attribute, result.lr)
    return result


def _train_loader(
    module: pl.LightningModule, loaders: Iterable[Any] | None, datamodule: pl.LightningDataModule | None
) -> Iterable[Any]:
    if loaders is not None and datamodule is not None:
        raise ValueError("pass train_dataloaders or datamodule, not both")
    if loaders is not None:
        return loaders
    if datamodule is not None:
        if not isinstance(datamodule, pl.LightningDataModule):
            raise TypeError(
                f"datamodule must be a lightning.pytorch.LightningDataModule, got {type(datamodule).__name__}"
            )
        datamodule.prepare_data()  # as Trainer.fit would, before setup
        datamodule.setup("fit")
        return datamodule.train_dataloader()
    if not is_overridden("train_dataloader", module):
        raise ValueError(
            f"no training batches: pass train_dataloaders or datamodule, or define "
            f"{type(module).__name__}.train_dataloader()"
        )
    return module.train_dataloader()


def _only_optimizer(configured: Any) -> torch.optim.Optimizer:
    """The one optimizer ``configure_optimizers`` returned, in any of the forms Lightning accepts."""
    if configured is None:
        raise ValueError("configure_optimizers returned None; the range test needs an optimizer")
    optimizers, _, _ = _configure_optimizers(configured)
    if len(optimizers) != 1:
        raise ValueError(
            f"configure_optimizers returned {len(optimizers)} optimizers; the range test sweeps exactly one"
        )
    return optimizers[0]


class GuardCallback(pl.Callback):
    """Guards a Lightning run; ``options`` are :class:`lrkit.Guard`'s (``patience`` for early stopping).

    The guard is built at ``fit`` start on the first optimizer and its first scheduler; it is
    available as ``callback.guard`` (its ``trace`` holds every step and event).
    """

    def __init__(self, *, monitor: str = "val_loss", **options: Any) -> None:
        super().__init__()
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name (str), got {type(monitor).__name__}")
        self.monitor = monitor
        self.options = Guard.check_options(options)
        self.guard: Guard | None = None
        self._losses: list[torch.Tensor] = []
        self._judged: bool | None = None  # the verdict on this batch's optimizer step, if any

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"GuardCallback guards exactly one optimizer, got {len(trainer.optimizers)}")
        configs = trainer.lr_scheduler_configs
        scheduler = configs[0].scheduler if configs else None
        self.guard = Guard(pl_module, trainer.optimizers[0], scheduler=scheduler, **self.options)

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        self._losses.append(loss.detach())

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        loss = torch.stack(self._losses).mean() if self._losses else torch.tensor(float("nan"))
        self._losses = []
        self._judged = self.guard.judge(loss, self.guard.grad_norm())
        if not self._judged:
            self.guard.hold_schedule()

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        if self._judged is None:
            return  # accumulating gradients: no optimizer step in this batch
        if self._judged:
            self.guard.applied()
        else:
            self.guard.release_schedule()
        self._judged = None

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None or self.guard is None:
            return
        if self.guard.should_stop(float(value)):
            trainer.should_stop = True
