"""``GuardCallback`` for the Hugging Face Trainer: :class:`lrkit.Guard` driven by its callback events.

The Trainer does not hand callbacks the loss, so the callback reads ``outputs.loss`` from a forward
hook on the model (averaged over gradient-accumulation micro-batches). The step is judged in
``on_pre_optimizer_step`` (a refused step has its gradients cleared, so the optimizer step changes
nothing), the schedule held back in ``on_step_end`` when the step was refused, and ``eval_loss``
fed to early stopping in ``on_evaluate``. Needs the extra ``hf``.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers import TrainerCallback

from lrkit.torch.guard import Guard


class GuardCallback(TrainerCallback):
    """Guards a ``transformers.Trainer`` run; ``options`` are :class:`lrkit.Guard`'s.

    The guard is built at ``on_train_begin`` and available as ``callback.guard``.
    """

    def __init__(self, *, monitor: str = "eval_loss", **options: Any) -> None:
        if not isinstance(monitor, str):
            raise TypeError(f"monitor must be a metric name (str), got {type(monitor).__name__}")
        self.monitor = monitor
        self.options = Guard.check_options(options)
        self.guard: Guard | None = None
        self._losses: list[torch.Tensor] = []
        self._judged: bool | None = None
        self._hook: Any = None

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the real one
        lr_scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
        self.guard = Guard(model, optimizer, scheduler=lr_scheduler, **self.options)
        self._hook = model.register_forward_hook(self._capture)

    def on_train_end(self, args, state, control, **kwargs):
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def on_step_begin(self, args, state, control, **kwargs):
        self._losses = []

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if not self._losses:
            raise ValueError(
                "GuardCallback saw no loss: the model must return one (outputs.loss), so pass labels"
            )
        loss = torch.stack(self._losses).mean()
        self._losses = []
        self._judged = self.guard.judge(loss, self.guard.grad_norm())
        if not self._judged:
            self.guard.hold_schedule()

    def on_step_end(self, args, state, control, **kwargs):
        if self._judged is None:
            return
        if self._judged:
            self.guard.applied()
        else:
            self.guard.release_schedule()
        self._judged = None

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        value = (metrics or {}).get(self.monitor)
        if value is not None and self.guard is not None and self.guard.should_stop(float(value)):
            control.should_training_stop = True

    def _capture(self, module: torch.nn.Module, inputs: Any, output: Any) -> None:
        if not module.training or not torch.is_grad_enabled():
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach().float())
