"""``lrkit demo``: the same classifier at a too-high, a too-low and a well-chosen learning rate."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

import click
from matplotlib.figure import Figure
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from lrkit.cli.options import lr_limit, out_folder_option, seed_option
from lrkit.cli.output import live, writable_folder
from lrkit.cost import WINDOW, first_step
from lrkit.demo import DemoResult, run_demo
from lrkit.files import atomic_write_text
from lrkit.plots import plot_traces, save_figure
from lrkit.report import write_report
from lrkit.tasks import TrainResult, get_task


def _lr_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[float] | None:
    if value is None:
        return None
    try:
        lrs = [float(part) for part in value.split(",") if part.strip()]
    except ValueError:
        raise click.BadParameter(f"{value!r} is not a comma-separated list of numbers") from None
    if not lrs or any(not lr > 0 or lr == float("inf") for lr in lrs):
        raise click.BadParameter(f"{value!r}: every learning rate must be a finite number > 0")
    for lr in lrs:
        lr_limit(ctx, param, lr)
    return lrs


@click.command()
@click.option(
    "--task", default="digits-mlp", show_default=True, help="Built-in task (see `lrkit tasks`)."
)
@seed_option("Seed for weights and data order.")
@click.option(
    "--lrs",
    default=None,
    callback=_lr_list,
    help="Comma-separated learning rates: too high, too low, chosen "
    "[default: the task's LR x1000, /100 and x1; 1, 1e-5, 1e-3 for digits-mlp].",
)
@out_folder_option("lrkit-demo")
@click.option(
    "--find/--no-find",
    default=True,
    show_default=True,
    help="Add a row at the LR a range test finds.",
)
def command(task: str, seed: int, lrs: list[float] | None, out: str, find: bool) -> None:
    """Train one classifier at a too-high, a too-low and a good LR, and compare the curves."""
    task_spec = get_task(task)
    folder = writable_folder(out)
    console = Console(width=max(Console().width, 110))
    bars_console = Console(stderr=True)
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=bars_console,
        transient=True,
        disable=not live(bars_console),
    ) as progress:
        if find:
            progress.add_task("range test", total=None)
        bars: dict[int, TaskID] = {}

        def on_step(run: int, step: int, loss: float) -> None:
            if run not in bars:
                bars[run] = progress.add_task(f"run {run + 1}", total=task_spec.steps)
            progress.update(
                bars[run], completed=step + 1, description=f"run {run + 1}: loss {loss:.3g}"
            )

        result = run_demo(task_spec, lrs, seed=seed, find=find, on_step=on_step)
    console.print(_table(result))
    if result.finder is not None:
        console.print(f"range test: {result.finder!r}")
    for note in result.notes:
        console.print(f"[yellow]note:[/] {note}")
    png, csv_path = folder / "loss_curves.png", folder / "loss_curves.csv"
    labels = [f"lr={row.lr:.3g}" + (f" ({row.role})" if row.role else "") for row in result.rows]
    save_figure(_figure(result, labels), png)
    atomic_write_text(csv_path, _curves_csv(result))
    report = _report(result, labels, folder / "report.html")
    console.print(f"wrote {png}, {csv_path} and {report}")
    roles = {row.role for row in result.rows}
    picked = next((role for role in ("found", "chosen") if role in roles), None)
    if picked is not None:  # the CSV holds every run; diagnose reads one
        console.print(
            f"next: lrkit diagnose {csv_path} --run role={picked}", highlight=False, soft_wrap=True
        )


def _report_order(result: DemoResult) -> list[int]:
    """The rows' indices in the report's order: the found run, the chosen one, then the others."""
    first = {"found": 0, "chosen": 1}
    return sorted(range(len(result.rows)), key=lambda index: first.get(result.rows[index].role, 2))


def _figure(result: DemoResult, labels: list[str]) -> Figure:
    """Every run's loss curve, each in the color the report's figures give it, and the target loss
    with a dot where each run reached it by the table's measure (the moving mean of its losses)."""
    order = _report_order(result)
    colors = [f"C{order.index(index)}" for index in range(len(result.rows))]
    figure = plot_traces(
        [row.result.trace for row in result.rows],
        labels=labels,
        colors=colors,
        title=f"{result.task}: same model, seed {result.seed}, {len(result.rows)} learning rates",
    )
    ax = figure.axes[0]
    ax.axhline(
        result.target_loss,
        color="grey",
        linewidth=0.8,
        linestyle="-.",
        label=f"target loss {result.target_loss:.3g} (dot: reached, mean of {WINDOW} steps)",
    )
    for row, color in zip(result.rows, colors, strict=True):
        if row.steps_to_target is not None:
            step = first_step(row.result.trace) + row.steps_to_target - 1
            ax.plot(
                [step],
                [result.target_loss],
                "o",
                color=color,
                markeredgecolor="black",
                markersize=7,
                zorder=3,
            )
    ax.legend()
    return figure


def _report(result: DemoResult, labels: list[str], path: Path) -> Path:
    """The HTML report: the found (else chosen) run first, costed against the chosen (default) LR
    at the demo's own target loss."""
    by_role = {row.role: row for row in result.rows}
    baseline = by_role["chosen"].result if "found" in by_role and "chosen" in by_role else None
    return write_report(
        path,
        runs={labels[index]: result.rows[index].result for index in _report_order(result)},
        finder=result.finder,
        baseline=baseline,
        target_loss=result.target_loss if baseline is not None else None,
        title=f"lrkit demo: {result.task}",
    )


def _table(result: DemoResult) -> Table:
    """The runs side by side: each LR's role, losses, behaviour, steps to the target and time."""
    table = Table(title=f"{result.task}, seed {result.seed}: target loss {result.target_loss:.3g}")
    for header in ("LR", "role", "train loss", "val acc", "behaviour", "steps to target", "time"):
        table.add_column(header, justify="right" if header not in ("role", "behaviour") else "left")
    for row in result.rows:
        metric = row.result.metric
        table.add_row(
            f"{row.lr:.3g}",
            row.role,
            f"{row.result.final_loss:.4g}",
            "-" if metric is None else f"{metric:.1%}",
            row.behaviour
            + (f" ({row.spikes} spike{'s' if row.spikes > 1 else ''})" if row.spikes else ""),
            "never" if row.steps_to_target is None else str(row.steps_to_target),
            f"{_training_seconds(row.result):.1f}s",
        )
    return table


def _training_seconds(result: TrainResult) -> float:
    """The run's training loop alone (set-up, such as loading the data, left out) when timed."""
    per_step = result.trace.meta.get("seconds_per_step")
    return result.seconds if per_step is None else per_step * len(result.trace)


def _curves_csv(result: DemoResult) -> str:
    """Every run's curve, a row per step, as ``loss_curves.csv`` holds them (``role`` tells the runs apart)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["role", "lr", "step", "loss", "val_loss"])
    for row in result.rows:
        trace = row.result.trace
        val = trace.val_loss
        for i in range(len(trace)):
            val_cell = "" if val is None or math.isnan(val[i]) else repr(float(val[i]))
            writer.writerow(
                [row.role, repr(row.lr), int(trace.step[i]), repr(float(trace.loss[i])), val_cell]
            )
    return buffer.getvalue()
