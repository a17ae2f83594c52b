"""LR sweeps on Optuna: grid, random and TPE search with pruning, from one process to many machines.

The package is ``sweeps`` (not ``sweep``) so that ``lrkit.sweep`` stays the function: importing a
submodule named ``lrkit.sweep`` would rebind that attribute to the module.
"""

from lrkit.sweeps.objective import SCHEDULE_KINDS, TaskObjective, build_schedule, default_bounds
from lrkit.sweeps.result import SweepResult, TrialRow
from lrkit.sweeps.search import PRUNERS, SAMPLERS, grid_lrs, sweep
from lrkit.sweeps.storage import mask_url

__all__ = [
    "PRUNERS",
    "SAMPLERS",
    "SCHEDULE_KINDS",
    "SweepResult",
    "TaskObjective",
    "TrialRow",
    "build_schedule",
    "default_bounds",
    "grid_lrs",
    "mask_url",
    "sweep",
]
