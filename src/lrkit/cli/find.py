"""``lrkit find``: run an LR range test on a built-in task or on the user's own training setup."""

from __future__ import annotations

import sys
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from lrkit.cli.entry import load_function
from lrkit.cli.options import json_option, lr_option, out_folder_option, seed_option
from lrkit.cli.output import print_json, stdout_to_stderr, writable_folder
from lrkit.report import write_report
from lrkit.torch.finder import FinderResult, find_lr, find_task_lr

ENTRY_RETURNS = (
    "(model, optimizer, loss_fn, train_loader), a transformers Trainer, "
    "or a LightningModule (with its train_dataloader, or as (module, loader or datamodule))"
)


def find_entry_lr(spec: str, **options: Any) -> FinderResult:
    """Call ``module:function`` and run the range test on what it returns (see ``ENTRY_RETURNS``)."""
    made = load_function(spec)()
    # the frameworks are looked up only if the user's code imported them (the CLI never imports them)
    trainer = getattr(sys.modules.get("transformers"), "Trainer", None)
    lightning = sys.modules.get("lightning.pytorch")
    module = getattr(lightning, "LightningModule", None)
    if trainer is not None and isinstance(made, trainer):
        from lrkit.integrations.hf import find_lr as find_trainer_lr

        return find_trainer_lr(made, **options)
    parts = tuple(made) if isinstance(made, tuple | list) else (made,)
    if module is not None and isinstance(parts[0], module) and len(parts) <= 2:
        from lrkit.integrations.lightning import find_lr as find_module_lr

        data = {} if len(parts) == 1 else _lightning_data(parts[1], lightning)
        return find_module_lr(parts[0], **data, **options)
    if len(parts) != 4:
        got = type(made).__name__
        if isinstance(made, tuple | list):
            got = f"a {got} of {len(parts)} items"
        raise click.UsageError(f"--entry {spec!r} must return {ENTRY_RETURNS}, got {got}")
    return find_lr(*parts, **options)


def _lightning_data(data: Any, lightning: Any) -> dict[str, Any]:
    if isinstance(data, lightning.LightningDataModule):
        return {"datamodule": data}
    return {"train_dataloaders": data}


@click.command()
@click.option(
    "--task",
    default=None,
    help="Built-in task (see `lrkit tasks`); the test costs --budget of a full run.",
)
@click.option(
    "--entry",
    default=None,
    help=f"module:function returning {ENTRY_RETURNS}.",
)
@lr_option("--min-lr", 1e-7, "Lowest LR of the sweep.")
@lr_option("--max-lr", 10.0, "Highest LR of the sweep.")
@click.option(
    "--steps",
    default=None,
    type=click.IntRange(min=2),
    help="Optimizer steps [default: 100, or --budget of a task's run].",
)
@click.option(
    "--budget",
    default=0.1,
    show_default=True,
    type=click.FloatRange(0, 1, min_open=True),
    help="With --task: fraction of a full run.",
)
@click.option(
    "--sweep",
    default="exponential",
    show_default=True,
    type=click.Choice(["exponential", "linear"]),
    help="How the LR rises: evenly in log LR, or in LR.",
)
@seed_option("Seed of the test.")
@out_folder_option("lrkit-find")
@json_option("the suggestion")
def command(
    task: str | None,
    entry: str | None,
    min_lr: float,
    max_lr: float,
    steps: int | None,
    budget: float,
    sweep: str,
    seed: int,
    out: str,
    as_json: bool,
) -> None:
    """Sweep the LR upwards, suggest the rate to train with, write range_test.png and range_test.csv."""
    if (task is None) == (entry is None):
        raise click.UsageError("give exactly one of --task NAME or --entry module:function")
    folder = writable_folder(out)
    options: dict[str, Any] = {"min_lr": min_lr, "max_lr": max_lr, "sweep": sweep, "seed": seed}
    if steps is not None:
        options["steps"] = steps
    name = task or entry
    files = {"plot": folder / "range_test.png", "csv": folder / "range_test.csv", "report": folder / "range_test.html"}
    with stdout_to_stderr(as_json):
        console = Console(width=max(Console().width, 100))
        with console.status("running the LR range test..."):
            if task is not None:
                result = find_task_lr(task, budget=budget, **options)
            else:
                result = find_entry_lr(entry, **options)
        if not as_json:
            console.print(summary(result, name))
        result.plot(path=files["plot"])
        result.trace.save(files["csv"])
        write_report(files["report"], finder=result, title=f"lrkit find: {name}")
        console.print(f"wrote {files['plot']}, {files['csv']} and {files['report']}")
    if as_json:
        print_json({"task": task, "entry": entry, **result_fields(result), "files": files})


def result_fields(result: FinderResult) -> dict[str, Any]:
    """The result as ``--json`` prints it (docs/finder.md lists the keys)."""
    full = result.meta.get("full_run_steps")
    return {
        "lr": result.lr,
        "range": result.range,
        "max_stable_lr": result.max_stable_lr,
        "group_lrs": result.group_lrs,
        "reason": result.reason,
        "evidence": dict(result.evidence),
        "steps": result.steps,
        "stopped": result.stopped,
        "full_run_steps": full,
        "full_run_fraction": result.steps / full if full else None,
    }


def summary(result: FinderResult, name: str) -> Table:
    """The result as a small table: the suggestion, the range, the edge and why."""
    table = Table(title=f"LR range test: {name}", show_header=False)
    table.add_column(style="bold")
    table.add_column()
    if result.lr is None:
        table.add_row("suggested lr", "[red]none[/]")
        table.add_row("why", result.reason)
    else:
        table.add_row("suggested lr", f"[green]{result.lr:.3g}[/]")
        if result.group_lrs is not None and len(result.group_lrs) > 1:
            table.add_row("per param group", ", ".join(f"{lr:.3g}" for lr in result.group_lrs))
        table.add_row("good range", f"{result.range[0]:.3g} .. {result.range[1]:.3g}")
        stable = (
            "not reached (raise --max-lr to see it)"
            if result.max_stable_lr is None
            else f"{result.max_stable_lr:.3g}"
        )
        table.add_row("max stable lr", stable)
        table.add_row("evidence", result.reason)
    table.add_row("steps", f"{result.steps} ({result.stopped})")
    full = result.meta.get("full_run_steps")
    if full:
        table.add_row("cost", f"{result.steps / full:.0%} of one full run ({full} steps)")
    return table
