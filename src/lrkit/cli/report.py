"""``lrkit report``: one self-contained HTML page from saved Traces and training logs."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

from lrkit.cli import diagnose
from lrkit.cli.options import json_option
from lrkit.cli.output import print_json, stdout_to_stderr, writable_file
from lrkit.cost import CostComparison, seconds_per_step
from lrkit.logs import read_log
from lrkit.report import write_report
from lrkit.report.document import (
    NOT_RISING,
    TIME_SOURCES,
    compare_runs,
    cost_sentence,
    is_range_test,
    rate_note,
    time_problems,
)
from lrkit.trace import Trace

# ``lrkit diagnose``'s column options and --run, and the report's own --time (parameter name ->
# ``read_log`` keyword), so both commands read logs alike
COLUMNS = {
    "step_column": "step",
    "loss_column": "loss",
    "lr_column": "lr",
    "val_column": "val_loss",
    "time_column": "time",
    "run": "run",
}


def _with_diagnose_columns(command: click.Command) -> click.Command:
    command.params.extend(param for param in diagnose.command.params if param.name in COLUMNS)
    return command


def _read(path: str, columns: dict[str, str | None]) -> Trace:
    trace = read_log(path, **{COLUMNS[name]: value for name, value in columns.items()})
    if "label" in trace.meta or "lr" in trace.meta:
        return trace
    return trace.replace(meta={**trace.meta, "label": Path(path).stem})


@_with_diagnose_columns
@click.command()
@click.argument("traces", nargs=-1, type=click.Path(exists=True))
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--finder", type=click.Path(exists=True), help="Range-test trace (found among TRACES when not given).")
@click.option("--baseline", type=click.Path(exists=True), help="Run at the default LR to compare the first run with.")
@click.option("--schedule", help="Schedule spec the runs used, e.g. 'warmup(50) >> cosine(peak=1e-3, steps=550)'.")
@click.option(
    "--target-loss", type=float,
    help="Loss both runs race to (default: the higher of the two runs' final smoothed losses).",
)
@click.option("--price-per-gpu-hour", type=float, help="Price of one GPU-hour, to show the money saved.")
@click.option(
    "--time", "time_column",
    help="Column holding the wall-clock time (seconds or ISO-8601), to time the steps (default: found by name).",
)
@click.option("--title", default="lrkit report", show_default=True, help="Title of the page.")
@json_option("the files read and, with --baseline, the cost figures")
def command(
    traces: tuple[str, ...],
    out: str,
    finder: str | None,
    baseline: str | None,
    schedule: str | None,
    target_loss: float | None,
    price_per_gpu_hour: float | None,
    title: str,
    as_json: bool,
    **columns: str | None,
) -> None:
    """Write an HTML report from TRACES (lrkit traces or logs): range test, curves, diagnosis, cost.

    The first training run is the chosen one; a range-test trace (kind range_test) among TRACES is
    used as the range test. --step, --loss, --lr, --val-loss and --time name columns in every file
    read, and --run picks the rows of one run in each.
    """
    writable_file(out, "--out")
    for read_from in (*traces, finder, baseline):
        if read_from is not None and Path(read_from).exists() and Path(out).exists() and Path(out).samefile(read_from):
            raise click.UsageError(f"--out {out!r} is {read_from!r}, a log it reads; writing the page would replace it")
    for option, value in (("--target-loss", target_loss), ("--price-per-gpu-hour", price_per_gpu_hour)):
        if value is not None and baseline is None:
            raise click.UsageError(f"{option} needs --baseline, the run to compare the chosen one with")
    with stdout_to_stderr(as_json):
        read = [(path, _read(path, columns)) for path in traces]
        finder, finder_trace = _range_test(finder, read, columns)
        runs = [(path, trace) for path, trace in read if trace.meta.get("kind") != "range_test"]
        baseline_trace = None if baseline is None else _read(baseline, columns)
        path = write_report(
            out,
            runs=[trace for _, trace in runs],
            finder=finder_trace,
            schedule=schedule,
            baseline=baseline_trace,
            target_loss=target_loss,
            price_per_gpu_hour=price_per_gpu_hour,
            title=title,
        )
        click.echo(f"wrote {path}")
        comparison = None
        if baseline_trace is not None and runs:
            comparison = compare_runs(runs[0][1], baseline_trace, finder_trace, target_loss, price_per_gpu_hour)
            if not as_json:
                click.echo(cost_sentence(comparison, runs[0][0], baseline))  # the report's cost line, here too
                note = rate_note(comparison, runs[0][0], baseline)
                if note is not None:
                    click.echo(note)  # the step times it is counted with, and where they came from
        if price_per_gpu_hour is not None:
            _note_untimed([*runs[:1], (baseline, baseline_trace)])
    if as_json:
        print_json(
            {
                "runs": [name for name, _ in runs],
                "finder": finder,
                "baseline": baseline,
                "cost": None if comparison is None else cost_fields(comparison),
                "files": {"report": path},
            }
        )


def _range_test(
    finder: str | None, read: list[tuple[str, Trace]], columns: dict[str, str | None]
) -> tuple[str | None, Trace | None]:
    """The range test to show and its file: ``--finder``'s, else the one range-test trace among those read."""
    if finder is not None:
        finder_trace = _read(finder, columns)
        if not is_range_test(finder_trace):
            raise click.UsageError(f"--finder {finder!r} is not a range test: {NOT_RISING}")
        return finder, finder_trace
    found = [(path, trace) for path, trace in read if trace.meta.get("kind") == "range_test"]
    if len(found) > 1:
        raise click.UsageError(f"{len(found)} range-test traces given; name the one to show with --finder")
    return found[0] if found else (None, None)


def _note_untimed(runs: list[tuple[str, Trace]]) -> None:
    """Say on stderr which of the runs compared recorded no time, so that no money saved is shown."""
    untimed = [(name, trace) for name, trace in runs if seconds_per_step(trace) is None]
    if untimed:
        click.echo(
            f"lrkit: note: no money saved shown: {' and '.join(name for name, _ in untimed)} recorded no time "
            f"({TIME_SOURCES}){time_problems(untimed)}",
            err=True,
        )


def cost_fields(c: CostComparison) -> dict[str, Any]:
    """The cost comparison as ``--json`` prints it (docs/report.md lists the keys)."""
    return {
        "target_loss": c.target_loss,
        "target_given": c.target_given,
        "chosen": {**asdict(c.chosen), "seconds": c.chosen.seconds},
        "baseline": {**asdict(c.baseline), "seconds": c.baseline.seconds},
        "search_steps": c.search_steps,
        "chosen_total_steps": c.chosen_total_steps,
        "baseline_steps": c.baseline_steps,
        "at_least": c.at_least,
        "steps_saved": c.steps_saved,
        "speedup": c.speedup,
        "seconds_saved": c.seconds_saved,
        "gpu_hours_saved": c.gpu_hours_saved,
        "price_per_gpu_hour": c.price_per_gpu_hour,
        "money_saved": c.money_saved,
    }
