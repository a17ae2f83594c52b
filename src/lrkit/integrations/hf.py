"""Hugging Face Trainer (extra ``hf``): the range test on a Trainer, and :class:`lrkit.Guard` as a callback.

:func:`find_lr` runs :func:`lrkit.find_lr` on the model, optimizer, loss and training batches the
Trainer itself would use, and leaves the Trainer as it found it (no optimizer created behind
its back: setting ``args.learning_rate`` afterwards takes effect).

``GuardCallback``: :class:`lrkit.Guard` driven by the Trainer's callback events.

The Trainer does not hand callbacks the loss, so the callback reads ``outputs.loss`` from a forward
hook on the model (averaged over gradient-accumulation micro-batches, or summed when the Trainer
gave the model ``num_items_in_batch``: each micro-batch's loss is then its share of the step's).
The step is judged in ``on_pre_optimizer_step`` (a refused step has its gradients cleared, so the
optimizer step changes nothing), the schedule held back in ``on_step_end`` when the step was
refused, and ``eval_loss`` fed to early stopping in ``on_evaluate`` (during ``train()`` only). Needs the extra ``hf``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from transformers import Trainer, TrainerCallback
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from lrkit.files import atomic_write_text
from lrkit.torch.finder import FinderResult, check_options
from lrkit.torch.finder import find_lr as _find_lr
from lrkit.torch.guard import Guard, GuardStop, logger

SAVED_AS = "lrkit_guard.json"


def find_lr(trainer: Trainer, **options: Any) -> FinderResult:
    """The LR range test on ``trainer``: its model, the optimizer ``create_optimizer`` makes (or the
    one given to the Trainer), its ``compute_loss`` and its training batches.

    Gradient accumulation and bf16/fp16 follow ``trainer.args`` unless ``options`` say otherwise;
    ``options`` are :func:`lrkit.find_lr`'s (``steps``, ``min_lr``, ``max_lr``, ...). Train with
    the result by setting ``trainer.args.learning_rate = result.lr`` before ``trainer.train()``.
    """
    if not isinstance(trainer, Trainer):
        raise TypeError(f"trainer must be a transformers.Trainer, got {type(trainer).__name__}")
    options = check_options(options, supplied=())  # a typo is named with the options there are
    args = trainer.args
    options.setdefault("accumulation_steps", args.gradient_accumulation_steps)
    options.setdefault("precision", "bf16" if args.bf16 else "fp16" if args.fp16 else "fp32")
    given = trainer.optimizer  # an optimizer passed to the Trainer stays; one made here is dropped after
    try:
        optimizer = trainer.create_optimizer()
        loader = trainer.get_train_dataloader()
        return _find_lr(
            trainer.model, optimizer, lambda model, batch: trainer.compute_loss(model, batch), loader, **options
        )
    finally:
        trainer.optimizer = given


class GuardCallback(TrainerCallback):
    """Guards a ``transformers.Trainer`` run; ``options`` are :class:`lrkit.Guard`'s.

    The guard is built at ``on_train_begin`` and available as ``callback.guard``. Its memory
    (:meth:`lrkit.Guard.state_dict`) is written into every checkpoint folder the Trainer saves
    (``lrkit_guard.json``), and read back when ``train(resume_from_checkpoint=...)`` resumes from
    one in ``output_dir``.
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
        self._shares = False  # the losses are shares of the step's (the model got num_items_in_batch)
        self._devices = 1
        self._training = False  # evaluate() outside train() feeds nothing to early stopping

    def on_train_begin(self, args, state, control, model=None, optimizer=None, lr_scheduler=None, **kwargs):
        if getattr(args, "label_smoothing_factor", 0) > 0:
            raise ValueError(
                f"GuardCallback reads the loss from the model's outputs (outputs.loss), but with "
                f"label_smoothing_factor={args.label_smoothing_factor} the Trainer takes the labels "
                "away from the model and computes the loss itself; use label_smoothing_factor=0 "
                "(or a model that smooths its own loss)"
            )
        self._remove_hook()  # one left by a train() that raised (GuardStop) before on_train_end
        optimizer = getattr(optimizer, "optimizer", optimizer)  # accelerate's wrapper holds the real one
        lr_scheduler = getattr(lr_scheduler, "scheduler", lr_scheduler)
        self.guard = Guard(model, optimizer, scheduler=lr_scheduler, **self.options)
        if state.global_step > 0:  # resumed: the optimizer and scheduler are loaded by now
            self._resume(_saved_state(args, state.global_step), state.global_step)
        # with num_items_in_batch each device's loss is its share of the sum over all devices
        self._devices = args.world_size if getattr(args, "average_tokens_across_devices", False) else 1
        self._losses, self._judged, self._shares = [], None, False
        self._hook = model.register_forward_hook(self._capture, with_kwargs=True)
        self._training = True

    def on_train_end(self, args, state, control, **kwargs):
        self._remove_hook()

    def on_step_begin(self, args, state, control, **kwargs):
        self._losses, self._shares = [], False

    def on_pre_optimizer_step(self, args, state, control, **kwargs):
        if not self._losses:
            raise ValueError(
                "GuardCallback saw no loss: the model must return one (outputs.loss), so the Trainer "
                "must give it the labels (no compute_loss_func, no compute_loss that keeps them back)"
            )
        losses = torch.stack(self._losses)
        loss = losses.sum() * self._devices if self._shares else losses.mean()
        self._losses, self._shares = [], False
        try:
            self._judged = self.guard.judge(loss, self.guard.grad_norm())
        except GuardStop:
            self._remove_hook()  # the Trainer never reaches on_train_end
            raise
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

    def on_save(self, args, state, control, **kwargs):
        if self.guard is not None and state.is_world_process_zero:  # every rank holds the same state
            text = json.dumps(self.guard.state_dict())
            atomic_write_text(_saved_state(args, state.global_step), text)

    def on_evaluate(self, args, state, control, metrics=None, **kwargs):
        if not self._training:  # trainer.evaluate() before or after train(): not the run's validation
            return
        value = (metrics or {}).get(self.monitor)
        if value is not None and self.guard is not None and self.guard.should_stop(float(value)):
            control.should_training_stop = True

    def _resume(self, path: Path, step: int) -> None:
        if path.is_file():
            self.guard.load_state_dict(json.loads(path.read_text()))
        else:
            logger.warning(
                "step %d: resumed without the guard's state (no %s): its counters, LR scale and "
                "spike baseline start afresh; the LR cuts made before are in the restored scheduler",
                step,
                path,
            )

    def _remove_hook(self) -> None:
        self._training = False
        if self._hook is not None:
            self._hook.remove()
            self._hook = None

    def _capture(self, module: torch.nn.Module, inputs: Any, kwargs: dict[str, Any], output: Any) -> None:
        if not module.training or not torch.is_grad_enabled():
            return
        loss = output.get("loss") if isinstance(output, dict) else getattr(output, "loss", None)
        if isinstance(loss, torch.Tensor):
            self._losses.append(loss.detach().float())
            # the model normalized its loss by the tokens of the whole accumulated step
            self._shares = self._shares or kwargs.get("num_items_in_batch") is not None


def _saved_state(args: Any, step: int) -> Path:
    """Where the guard's state of checkpoint ``step`` lives: beside the Trainer's own files."""
    return Path(args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{step}" / SAVED_AS
