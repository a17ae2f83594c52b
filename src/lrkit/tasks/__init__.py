"""Built-in training tasks: small, real, deterministic per seed, no network."""

from lrkit.tasks.registry import Task, get_task, list_tasks, register
from lrkit.tasks.training import TrainResult, evaluate, train

__all__ = ["Task", "TrainResult", "evaluate", "get_task", "list_tasks", "register", "train"]
