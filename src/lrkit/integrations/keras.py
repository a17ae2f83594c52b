"""lrkit schedules for Keras 3: a ``LearningRateSchedule`` that works on every backend.

The formula runs in ``keras.ops``, so it stays inside the backend's graph; the config is the spec
string, so ``get_config``/``from_config`` (and saved models) round-trip.
"""

from __future__ import annotations

from typing import Any

import keras

from lrkit.schedules.base import Schedule
from lrkit.schedules.spec import parse


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
    """Use an lrkit schedule (or spec string) as a Keras optimizer's ``learning_rate``."""

    def __init__(self, schedule: Schedule | str) -> None:
        super().__init__()
        self.schedule = parse(schedule, name="schedule")

    def __call__(self, step: Any) -> Any:
        return self.schedule.evaluate_traced(keras.ops.cast(step, "float32"), _KerasOps)

    def get_config(self) -> dict[str, Any]:
        return {"schedule": repr(self.schedule)}

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> KerasSchedule:
        return cls(config["schedule"])
