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
