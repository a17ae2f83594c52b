"""``lrkit tasks``: the built-in tasks and the facts a run needs."""

from __future__ import annotations

from typing import Any

import click
from rich.console import Console
from rich.table import Table

from lrkit.cli.options import json_option
from lrkit.cli.output import print_json
from lrkit.tasks import Task, list_tasks


@click.command()
@json_option("the tasks")
def command(as_json: bool) -> None:
    """List the built-in training tasks."""
    if as_json:
        print_json({"tasks": [task_fields(task) for task in list_tasks()]})
        return
    table = Table(title="lrkit built-in tasks")
    for header in ("task", "optimizer", "default LR", "steps", "schedule"):
        table.add_column(header, no_wrap=True)
    table.add_column("what it is")
    for task in list_tasks():
        table.add_row(
            task.name,
            task.optimizer_name,
            f"{task.default_lr:g}",
            str(task.steps),
            "warmup+cosine" if task.make_schedule else "constant",
            task.summary,
        )
    Console(width=max(Console().width, 120)).print(table)


def task_fields(task: Task) -> dict[str, Any]:
    """A task as ``--json`` prints it: ``schedule`` is its spec at the default LR, None when constant."""
    schedule = task.schedule(task.default_lr)
    return {
        "name": task.name,
        "summary": task.summary,
        "optimizer": task.optimizer_name,
        "default_lr": task.default_lr,
        "steps": task.steps,
        "schedule": None if schedule is None else repr(schedule),
        "metric": task.metric_name,
    }
