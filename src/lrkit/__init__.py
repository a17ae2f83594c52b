"""lrkit: find, schedule, watch and adapt the learning rate of neural network training.

The public API is loaded lazily so that ``import lrkit`` stays light (no torch until needed).
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# public name -> "module:attribute"
_API: dict[str, str] = {
    "Trace": "lrkit.trace:Trace",
    "TraceBuilder": "lrkit.trace:TraceBuilder",
    "Event": "lrkit.trace:Event",
    "get_task": "lrkit.tasks:get_task",
    "list_tasks": "lrkit.tasks:list_tasks",
    "train": "lrkit.tasks:train",
    "Guard": "lrkit.torch.guard:Guard",
    "GuardStop": "lrkit.torch.guard:GuardStop",
    "save_checkpoint": "lrkit.torch.checkpoint:save_checkpoint",
    "load_checkpoint": "lrkit.torch.checkpoint:load_checkpoint",
    "parse_schedule": "lrkit.schedules:parse",
    "Plateau": "lrkit.schedules:Plateau",
    "ScheduleLR": "lrkit.torch.scheduler:ScheduleLR",
    "find_lr": "lrkit.torch.finder:find_lr",
    "find_task_lr": "lrkit.torch.finder:find_task_lr",
    "FinderResult": "lrkit.torch.finder:FinderResult",
    "Suggestion": "lrkit.suggest:Suggestion",
    "Snapshot": "lrkit.torch.snapshot:Snapshot",
    "sweep": "lrkit.sweeps:sweep",
    "SweepResult": "lrkit.sweeps:SweepResult",
    "TaskObjective": "lrkit.sweeps:TaskObjective",
    "diagnose": "lrkit.diagnosis:diagnose",
    "Diagnosis": "lrkit.diagnosis:Diagnosis",
    "read_log": "lrkit.logs:read_log",
    "param_groups": "lrkit.torch.groups:param_groups",
    "describe_groups": "lrkit.torch.groups:describe_groups",
    "recommend_finetune_lr": "lrkit.torch.finetune:recommend_finetune_lr",
    "FinetuneAdvice": "lrkit.torch.finetune:FinetuneAdvice",
    "write_report": "lrkit.report:write_report",
    "compare_cost": "lrkit.cost:compare_cost",
    "CostComparison": "lrkit.cost:CostComparison",
    "get_surface": "lrkit.landscapes:get_surface",
    "descend": "lrkit.explore:descend",
}

__all__ = ["__version__", *_API]


def __getattr__(name: str) -> Any:
    target = _API.get(name)
    if target is None:
        raise AttributeError(f"module 'lrkit' has no attribute {name!r}")
    module, attribute = target.split(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
