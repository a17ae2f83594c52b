"""Lightning (extra ``lightning``): the range test on a LightningModule, before ``fit`` or as a
callback at its start, and :class:`lrkit.Guard` as a callback.

:func:`find_lr` runs :func:`lrkit.find_lr` on a module as its own ``configure_optimizers`` and
``training_step`` define it, with no Trainer (the module's state comes back exactly as it was).
:class:`FinderCallback` runs it at ``on_fit_start`` on the batches ``fit`` was given, then makes the
optimizer ``fit`` has already built (Lightning builds it in the strategy's setup, just before
``on_fit_start``) train at the suggestion.

In :class:`GuardCallback` the loss is taken in ``on_before_backward``, the step judged in
``on_before_optimizer_step`` (a refused step has its gradients cleared, so Lightning's optimizer
step changes nothing), the schedule held back in ``on_train_batch_end`` when the step was
refused, and the monitored validation metric fed to early stopping in ``on_validation_end``.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.core.optimizer import (
    _configure_optimizers,
    _init_optimizers_and_lr_schedulers,
)
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities import CombinedLoader
from lightning.pytorch.utilities.model_helpers import is_overridden
from lightning.pytorch.utilities.parsing import (
    lightning_getattr,
    lightning_hasattr,
    lightning_setattr,
)

from lrkit import checks
from lrkit.torch.finder import FinderResult, check_options
from lrkit.torch.finder import find_lr as _find_lr
from lrkit.torch.guard import Guard

logger = logging.getLogger("lrkit.finder")
_ATTRIBUTES = ("lr", "learning_rate")  # what the callback looks for, in Lightning's order
_PRECISIONS = {"bf16-mixed": "bf16", "16-mixed": "fp16"}  # the Trainer's autocast, as find_lr names it


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
    _check_module(module)
    if attribute is not None:
        _check_attribute(module, attribute)
    options = check_options(options, supplied=())  # a typo is named with the options there are
    return _sweep(module, _train_loader(module, train_dataloaders, datamodule), attribute, options)


def _check_module(module: pl.LightningModule) -> None:
    if not isinstance(module, pl.LightningModule):
        raise TypeError(f"module must be a lightning.pytorch.LightningModule, got {type(module).__name__}")
    if not module.automatic_optimization:
        raise ValueError(
            "module uses manual optimization (automatic_optimization=False); the range test steps "
            "the optimizer itself, so it needs a training_step that returns the loss"
        )


def _check_attribute(module: pl.LightningModule, attribute: str) -> str:
    if not lightning_hasattr(module, attribute):
        raise ValueError(
            f"attribute={attribute!r} is neither an attribute of {type(module).__name__} nor one of its hparams"
        )
    return attribute


def _sweep(
    module: pl.LightningModule, loader: Iterable[Any], attribute: str | None, options: dict[str, Any]
) -> FinderResult:
    optimizer = _only_optimizer(module.configure_optimizers())
    for group in optimizer.param_groups:  # the rates as configured, before a scheduler's first factor
        group["lr"] = group.get("initial_lr", group["lr"])
    batch_index = itertools.count()

    def training_loss(model: pl.LightningModule, batch: Any) -> Any:
        loss = model.training_step(batch, next(batch_index))
        if loss is None:
            raise ValueError(
                f"{type(model).__name__}.training_step returned None; the range test needs the loss "
                "(a tensor, or a dict with 'loss')"
            )
        return loss

    with _logging_off(module):
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


@contextlib.contextmanager
def _logging_off(module: pl.LightningModule) -> Iterator[None]:
    """``self.log()`` does nothing during the test: its losses are not the run's metrics (and outside
    a training loop Lightning warns on every call, or refuses it at ``on_fit_start``)."""
    module.log = module.log_dict = _ignore  # instance attributes, in front of the methods
    try:
        yield
    finally:
        del module.log, module.log_dict


def _ignore(*args: Any, **kwargs: Any) -> None:
    return None


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


class FinderCallback(pl.Callback):
    """lrkit's range test when ``fit`` starts, in place of Lightning's ``LearningRateFinder``.

    The test runs on the batches ``fit`` was given (its loaders, its datamodule, or the module's own
    ``train_dataloader()``), with the Trainer's ``accumulate_grad_batches`` and mixed precision
    unless ``options`` (:func:`lrkit.find_lr`'s) say otherwise. The suggestion is written to
    ``module.<attribute>`` (``None``: ``lr``, else ``learning_rate``, on the module or its hparams)
    and reaches the optimizer ``fit`` trains with; the result is kept as ``callback.result``.
    """

    def __init__(self, *, attribute: str | None = None, **options: Any) -> None:
        super().__init__()
        if attribute is not None and not isinstance(attribute, str):
            raise TypeError(f"attribute must be a name (str) or None, got {type(attribute).__name__}")
        self.attribute = attribute
        self.options = check_options(options)
        self.result: FinderResult | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.fast_dev_run:
            _tell(trainer, logging.WARNING, "range test skipped: fast_dev_run is on")
            return
        if trainer.ckpt_path is not None:
            _tell(
                trainer,
                logging.WARNING,
                "range test skipped: fit resumes from %s, whose optimizer state (and LR) it restores",
                trainer.ckpt_path,
            )
            return
        _check_module(pl_module)
        if self.attribute is None:
            attribute = _lr_attribute(pl_module)
        else:
            attribute = _check_attribute(pl_module, self.attribute)
        before = lightning_getattr(pl_module, attribute)
        options = {
            "accumulation_steps": trainer.accumulate_grad_batches,
            "precision": _PRECISIONS.get(trainer.precision, "fp32"),
            **self.options,
        }
        result = self.result = _sweep(pl_module, _fit_loader(trainer), attribute, options)
        if result.lr is None:
            _tell(trainer, logging.WARNING, "range test: no suggestion (%s); fit keeps its LR", result.reason)
            return
        _train_at(trainer, pl_module, result, before)
        _tell(trainer, logging.INFO, "range test: %r; %s and the optimizer set to it", result, attribute)


def _lr_attribute(module: pl.LightningModule) -> str:
    found = next((name for name in _ATTRIBUTES if lightning_hasattr(module, name)), None)
    if found is None:
        raise ValueError(
            f"{type(module).__name__} has neither 'lr' nor 'learning_rate' (as an attribute or in its "
            "hparams); pass attribute= the name configure_optimizers reads the LR from"
        )
    return found


def _fit_loader(trainer: pl.Trainer) -> Iterable[Any]:
    """The training batches ``fit`` reads: the loader given to it, else its datamodule's or the
    module's ``train_dataloader()`` (called once more: ``fit`` calls it again for itself)."""
    loader = trainer.fit_loop._data_source.dataloader()
    if isinstance(loader, list | tuple | Mapping | CombinedLoader):
        raise ValueError(
            f"fit was given several train loaders ({type(loader).__name__}); the range test reads one"
        )
    return loader


def _train_at(
    trainer: pl.Trainer, module: pl.LightningModule, result: FinderResult, before: Any
) -> None:
    """Make the optimizer and schedulers ``fit`` built before ``on_fit_start`` what it would have
    built with the suggestion in the attribute: ``configure_optimizers`` once more, its
    hyperparameters copied into the objects Lightning holds (they keep their identity). When
    ``configure_optimizers`` does not read the attribute, the param groups are set to
    ``result.group_lrs`` (the ratios the test kept)."""
    optimizer, configs = trainer.optimizers[0], trainer.lr_scheduler_configs
    fresh, fresh_configs = _init_optimizers_and_lr_schedulers(module)
    rebuilt = _group_lrs(fresh[0]) != _group_lrs(optimizer)
    if rebuilt and len(fresh_configs) == len(configs):
        for group, made in zip(optimizer.param_groups, fresh[0].param_groups, strict=True):
            group.update((key, value) for key, value in made.items() if key != "params")
        for config, made in zip(configs, fresh_configs, strict=True):
            config.scheduler.load_state_dict(made.scheduler.state_dict())
        return
    if before == result.lr:
        return
    for group, lr in zip(optimizer.param_groups, result.group_lrs, strict=True):
        group["lr"] = lr
    if configs:
        _tell(
            trainer,
            logging.WARNING,
            "configure_optimizers does not read the LR from the attribute, so its LR scheduler was "
            "built without the suggestion and may set the LR back",
        )


def _group_lrs(optimizer: torch.optim.Optimizer) -> list[dict[str, float | None]]:
    """Every rate in the param groups: ``lr`` and what schedulers add (``initial_lr``, ...)."""
    return [
        {key: checks.one_number(value) for key, value in group.items() if key.endswith("lr")}
        for group in optimizer.param_groups
    ]


def _tell(trainer: pl.Trainer, level: int, message: str, *args: Any) -> None:
    """Log once, on rank 0."""
    if trainer.is_global_zero:
        logger.log(level, message, *args)


class GuardCallback(pl.Callback):
    """Guards a Lightning run; ``options`` are :class:`lrkit.Guard`'s (``patience`` for early stopping).

    The guard is built when training starts (``on_train_start``: after ``fit(ckpt_path=...)`` has
    restored the optimizer and schedulers) on the first optimizer, its first scheduler and the
    ``"16-mixed"`` GradScaler, if any; it is available as ``callback.guard`` (its ``trace`` holds
    every step and event). Only the validations of ``fit`` feed its early stopping.
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
        self._scaler: Any = None
        self._resumed: dict[str, Any] | None = None  # the guard's state from fit(ckpt_path=...)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if len(trainer.optimizers) != 1:
            raise ValueError(f"GuardCallback guards exactly one optimizer, got {len(trainer.optimizers)}")
        self.guard = None  # built at on_train_start (a fit resumed from ckpt_path has restored its state by then)

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Not at on_fit_start: ``fit(ckpt_path=...)`` loads the optimizer and scheduler states after
        # it, and the guard's first snapshot (what an early rollback returns to) must hold them.
        configs = trainer.lr_scheduler_configs
        scheduler = configs[0].scheduler if configs else None
        self._scaler = getattr(trainer.precision_plugin, "scaler", None)  # "16-mixed": a GradScaler
        self.guard = Guard(
            pl_module, trainer.optimizers[0], scheduler=scheduler, scaler=self._scaler, **self.options
        )
        if self._resumed is not None:
            self.guard.load_state_dict(self._resumed)
            self._resumed = None
        self._losses, self._judged = [], None

    def state_dict(self) -> dict[str, Any]:
        """The guard's memory (:meth:`lrkit.Guard.state_dict`), kept in Lightning's checkpoints."""
        return {} if self.guard is None else self.guard.state_dict()

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._resumed = state_dict or None  # loaded into the guard once it is built, at on_train_start

    def on_before_backward(self, trainer: pl.Trainer, pl_module: pl.LightningModule, loss: torch.Tensor) -> None:
        # Lightning hands the loss as it goes into backward: divided by accumulate_grad_batches
        # (automatic optimization) and multiplied by the GradScaler's scale ("16-mixed"); the guard
        # judges (and records) the loss of the batch itself.
        loss = loss.detach().float()
        if self._scaler is not None:
            loss = loss / self._scaler.get_scale()
        if pl_module.automatic_optimization:
            loss = loss * trainer.accumulate_grad_batches
        self._losses.append(loss)

    def on_before_optimizer_step(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if self.guard is None:
            return
        if not self._losses:  # no backward in this step (training_step returned None): nothing to judge
            return
        loss = torch.stack(self._losses).mean()
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
        if trainer.sanity_checking or trainer.state.fn != TrainerFn.FITTING:  # not trainer.validate()
            return
        value = trainer.callback_metrics.get(self.monitor)
        if value is None or self.guard is None:
            return
        if self.guard.should_stop(float(value)):
            trainer.should_stop = True
