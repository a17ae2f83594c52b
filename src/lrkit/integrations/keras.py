"""lrkit schedules and plateau cuts for Keras 3, on every backend.

``KerasSchedule`` is a ``LearningRateSchedule``: the formula runs in ``keras.ops``, so it stays inside
the backend's graph, times a ``ratio`` variable (1 unless plateau cuts lowered it); the config is the
spec string (and the ratio, once cut), so ``get_config``/``from_config`` and saved models round-trip.
``KerasPlateau`` is a callback that reports a logged metric to an lrkit ``Plateau`` at each epoch end
and applies its cuts, so warmup and plateau cuts compose, which Keras' ReduceLROnPlateau (it needs a
float learning rate) cannot do.
"""

from __future__ import annotations

import weakref
from typing import Any

import keras
import numpy as np

from lrkit import checks
from lrkit.schedules.base import Schedule
from lrkit.schedules.plateau import Plateau
from lrkit.schedules.spec import parse

try:  # what Keras' saving walks into (save_weights, model.save, BackupAndRestore, ModelCheckpoint)
    from keras.src.saving.keras_saveable import KerasSaveable as _KerasSaveable
except ImportError:  # pragma: no cover - Keras releases without it: the state is not saved with the weights
    _KerasSaveable = object

SAVED_AS = "lrkit_plateau"  # the optimizer attribute, so the weights file's group "optimizer/lrkit_plateau"
_PLATEAU_FIELDS = ("ratio", "best", "bad_reports", "cooldown_left", "reports")


class _KerasOps:
    """The few array functions lrkit's formulas use, in keras.ops."""

    int32 = "int32"
    cos = staticmethod(keras.ops.cos)
    exp = staticmethod(keras.ops.exp)
    log = staticmethod(keras.ops.log)
    sqrt = staticmethod(keras.ops.sqrt)
    floor = staticmethod(keras.ops.floor)
    where = staticmethod(keras.ops.where)
    minimum = staticmethod(keras.ops.minimum)
    maximum = staticmethod(keras.ops.maximum)

    @staticmethod
    def asarray(value: Any, dtype: str) -> Any:
        return keras.ops.cast(value, dtype)


@keras.saving.register_keras_serializable(package="lrkit")
class KerasSchedule(keras.optimizers.schedules.LearningRateSchedule):
    """Use an lrkit schedule (or spec string) as a Keras optimizer's ``learning_rate``.

    Its value is ``schedule(step) * ratio``; ``ratio`` is a ``keras.Variable`` (what ``KerasPlateau``
    lowers), kept in the config when it is not 1.
    """

    def __init__(self, schedule: Schedule | str, *, ratio: float = 1.0) -> None:
        super().__init__()
        self.schedule = parse(schedule, name="schedule")
        ratio = checks.non_negative("ratio", ratio)
        self.ratio = keras.Variable(ratio, dtype="float32", trainable=False, name="lrkit_ratio")

    def __call__(self, step: Any) -> Any:
        value = self.schedule.evaluate_traced(keras.ops.cast(step, "float32"), _KerasOps)
        return keras.ops.multiply(value, self.ratio)

    def get_config(self) -> dict[str, Any]:
        config: dict[str, Any] = {"schedule": repr(self.schedule)}
        ratio = float(self.ratio.value)
        if ratio != 1.0:
            config["ratio"] = ratio
        return config

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasSchedule:
        return cls(config["schedule"], ratio=config.get("ratio", 1.0))


class KerasPlateau(keras.callbacks.Callback):
    """At each epoch end, report ``logs[monitor]`` to ``plateau`` and apply a cut to the optimizer.

    A cut multiplies the optimizer's learning rate (a float) or its ``KerasSchedule``'s ratio by the
    plateau's new ratio over its old one, so a rate restored with a saved model is kept as it is.
    ``plateau`` keeps the state (``plateau.state_dict()`` to save it); its ``mode`` must suit the metric.
    Once the callback is given the model (``fit`` does it first), the plateau's state and the schedule's
    ratio are saved with the optimizer's weights (``save_weights``, ``model.save``, ``BackupAndRestore``,
    ``ModelCheckpoint``) and loaded back by a run that has a ``KerasPlateau`` too.
    """

    def __init__(self, plateau: Plateau, monitor: str = "val_loss") -> None:
        super().__init__()
        if not isinstance(plateau, Plateau):
            raise TypeError(f"plateau must be an lrkit Plateau, got {plateau!r} ({type(plateau).__name__})")
        if not isinstance(monitor, str):
            raise TypeError(
                f"monitor must be the name of a logged metric (a str), got {monitor!r} ({type(monitor).__name__})"
            )
        if not monitor:
            raise ValueError("monitor must be the name of a logged metric, e.g. 'val_loss', got ''")
        self.plateau = plateau
        self.monitor = monitor

    def set_model(self, model: Any) -> None:
        super().set_model(model)
        optimizer = getattr(model, "optimizer", None)
        if optimizer is not None and _KerasSaveable is not object:
            # before any on_train_begin, so BackupAndRestore (whatever its place) loads it back too
            setattr(optimizer, SAVED_AS, _SavedPlateau(self, model))

    def on_train_begin(self, logs: dict[str, Any] | None = None) -> None:
        self._learning_rate()  # a rate this cannot change fails now, not after the first epochs

    def on_epoch_end(self, epoch: int, logs: dict[str, Any] | None = None) -> None:
        if logs is None:
            logs = {}
        if self.monitor not in logs:
            hint = " (val_ metrics need validation data)" if self.monitor.startswith("val_") else ""
            raise ValueError(f"monitor {self.monitor!r} is not in the epoch's logs {sorted(logs)}{hint}")
        metric = logs[self.monitor]
        if checks.one_number(metric) is None:
            raise TypeError(f"logs[{self.monitor!r}] must be a number, got {metric!r} ({type(metric).__name__})")
        optimizer = self.model.optimizer
        if not hasattr(optimizer, "optimizers"):
            # the rate in force, for CSVLogger and TensorBoard, as Keras' ReduceLROnPlateau logs it
            logs["learning_rate"] = float(keras.ops.convert_to_numpy(optimizer.learning_rate))
        before = self.plateau.ratio
        after = self.plateau.report(metric)
        if after != before:
            self._cut(after / before)

    def _learning_rate(self) -> Any:
        """The optimizer's rate: its learning-rate variable, or the KerasSchedule it was given."""
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is None:
            raise ValueError("KerasPlateau needs a compiled model: model.compile(optimizer=...) first")
        optimizer = getattr(optimizer, "inner_optimizer", optimizer)  # a LossScaleOptimizer's own
        # Keras has no public way to get the schedule object back (``learning_rate`` evaluates it)
        rate = getattr(optimizer, "_learning_rate", None)
        if isinstance(rate, (KerasSchedule, keras.Variable)):
            return rate
        raise TypeError(
            "KerasPlateau needs the optimizer's learning_rate to be a float or an lrkit KerasSchedule, got "
            f"{type(rate).__name__}; wrap an lrkit schedule: learning_rate=KerasSchedule(...)"
        )

    def _cut(self, factor: float) -> None:
        rate = self._learning_rate()
        if isinstance(rate, keras.Variable):
            rate.assign(float(rate.value) * factor)
            return
        rate.ratio.assign(float(rate.ratio.value) * factor)
        if keras.backend.backend() == "jax":
            # JAX's compiled step reads only the model's and optimizer's variables from its state; the
            # schedule's ratio is a constant in it, so compile it again (once per cut) with the new one
            self.model.make_train_function(force=True)


class _SavedPlateau(_KerasSaveable):  # type: ignore[misc,valid-type]
    """A ``KerasPlateau``'s state and its schedule's ratio, saved by Keras with the optimizer's weights.

    An attribute of the optimizer, so Keras' saving stores it under ``optimizer/lrkit_plateau`` and
    leaves the optimizer's own variables as they are: a run without a ``KerasPlateau`` loads the file
    as before, and a file saved without it leaves the state as it is.
    """

    def __init__(self, callback: KerasPlateau, model: Any) -> None:
        self._callback = callback
        self._model = weakref.ref(model)  # not the model itself: Keras' saving would walk into it again

    def _obj_type(self) -> str:
        return "Loss"  # only picks the attributes Keras skips when it walks this (none of ours is saveable)

    def __reduce__(self) -> Any:  # not KerasSaveable's, which saves a whole model
        return (type(self), (self._callback, self._model()))

    def _schedule(self) -> KerasSchedule | None:
        optimizer = self._model().optimizer
        rate = getattr(getattr(optimizer, "inner_optimizer", optimizer), "_learning_rate", None)
        return rate if isinstance(rate, KerasSchedule) else None

    def save_own_variables(self, store: Any) -> None:
        state = self._callback.plateau.state
        for name in _PLATEAU_FIELDS:
            store[name] = np.asarray(getattr(state, name), dtype="float64")
        schedule = self._schedule()
        if schedule is not None:
            store["schedule_ratio"] = np.asarray(float(schedule.ratio.value), dtype="float64")

    def load_own_variables(self, store: Any) -> None:
        keys = set(store.keys())
        if not keys:  # saved without a KerasPlateau (or by an older lrkit): nothing to restore
            return
        missing = set(_PLATEAU_FIELDS) - keys
        if missing:
            raise ValueError(f"the saved lrkit plateau state lacks {sorted(missing)} (it has {sorted(keys)})")
        values: dict[str, Any] = {name: float(np.asarray(store[name])) for name in _PLATEAU_FIELDS}
        for name in ("bad_reports", "cooldown_left", "reports"):
            values[name] = int(values[name])
        self._callback.plateau.load_state_dict(values)
        schedule = self._schedule()
        if schedule is None or "schedule_ratio" not in keys:
            return
        ratio = float(np.asarray(store["schedule_ratio"]))
        if ratio != float(schedule.ratio.value):
            schedule.ratio.assign(ratio)
            model = self._model()
            if keras.backend.backend() == "jax" and getattr(model, "train_function", None) is not None:
                model.make_train_function(force=True)  # a compiled step holds the old ratio as a constant
