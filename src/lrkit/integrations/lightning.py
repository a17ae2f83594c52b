"""``GuardCallback`` for Lightning: :class:`lrkit.Guard` driven by a Trainer's hooks (extra ``lightning``).

The loss is taken in ``on_before_backward``, the step judged in ``on_before_optimizer_step`` (a
refused step has its gradients cleared, so Lightning's optimizer step changes nothing), the
schedule held back in ``on_train_batch_end`` when the step was refused, and the monitored
validation metric fed to early stopping in ``on_validation_end``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from lrkit.torch.guard import Guard


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
