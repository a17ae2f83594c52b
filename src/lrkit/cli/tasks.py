"""``lrkit tasks``: the built-in tasks and the facts a run needs."""

from __future__ import annotations

import click
from rich.console import Console
from rich.table import Table

from lrkit.tasks import list_tasks


@click.command()
def command() -> None:
    """List the built-in training tasks."""
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
