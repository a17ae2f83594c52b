"""Learning-rate schedules as small frozen values: ``s(step)``, ``s(steps_array)``, ``a >> b``, and a
spec string from ``repr(s)`` that ``parse`` reads back. Pure Python + NumPy."""

from lrkit.schedules.base import Schedule
from lrkit.schedules.combinators import Clip, Noise, Overlay, Scale, Sequence, Warmup, phase_starts
from lrkit.schedules.composites import adam_warmup, one_cycle, step_decay, warmup_cosine, wsd
from lrkit.schedules.kinds import (
    Constant,
    Cosine,
    CosineRestarts,
    Cyclic,
    Exponential,
    InverseSqrt,
    InverseTime,
    Linear,
    MultiStep,
    OneMinusSqrt,
    Polynomial,
)
from lrkit.schedules.plateau import Plateau, PlateauState
from lrkit.schedules.spec import NAMES, parse

constant = Constant
exponential = Exponential
multistep = MultiStep
cosine = Cosine
cosine_restarts = CosineRestarts
linear = Linear
polynomial = Polynomial
one_minus_sqrt = OneMinusSqrt
inverse_sqrt = InverseSqrt
inverse_time = InverseTime
cyclic = Cyclic
warmup = Warmup
overlay = Overlay
scale = Scale
clip = Clip
noise = Noise


__all__ = [
    "NAMES",
    "Clip",
    "Constant",
    "Cosine",
    "CosineRestarts",
    "Cyclic",
    "Exponential",
    "InverseSqrt",
    "InverseTime",
    "Linear",
    "MultiStep",
    "Noise",
    "OneMinusSqrt",
    "Overlay",
    "Plateau",
    "PlateauState",
    "Polynomial",
    "Scale",
    "Schedule",
    "Sequence",
    "Warmup",
    "adam_warmup",
    "clip",
    "constant",
    "cosine",
    "cosine_restarts",
    "cyclic",
    "exponential",
    "inverse_sqrt",
    "inverse_time",
    "linear",
    "multistep",
    "noise",
    "one_cycle",
    "one_minus_sqrt",
    "overlay",
    "parse",
    "phase_starts",
    "polynomial",
    "scale",
    "step_decay",
    "warmup",
    "warmup_cosine",
    "wsd",
]
