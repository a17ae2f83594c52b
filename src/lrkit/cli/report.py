"""``lrkit report``: one self-contained HTML page from saved Traces and training logs."""

from __future__ import annotations

from pathlib import Path

import click

from lrkit.cli.output import writable_file
from lrkit.logs import read_log
from lrkit.trace import Trace


def _read(path: str) -> Trace:
    trace = read_log(path)
    if "label" in trace.meta or "lr" in trace.meta:
        return trace
    return trace.replace(meta={**trace.meta, "label": Path(path).stem})


@click.command()
@click.argument("traces", nargs=-1, type=click.Path(exists=True))
@click.option("--out", default="report.html", show_default=True, type=click.Path(dir_okay=False), help="HTML file to write.")
@click.option("--finder", type=click.Path(exists=True), help="Range-test trace (found among TRACES when not given).")
@click.option("--baseline", type=click.Path(exists=True), help="Run at the default LR to compare the first run with.")
@click.option("--schedule", help="Schedule spec the runs used, e.g. 'warmup(50) >> cosine(peak=1e-3, steps=550)'.")
@click.option("--target-loss", type=float, help="Loss both runs race to (default: the best both reach).")
@click.option("--price-per-gpu-hour", type=float, help="Price of one GPU-hour, to show the money saved.")
@click.option("--title", default="lrkit report", show_default=True, help="Title of the page.")
def command(
    traces: tuple[str, ...],
    out: str,
    finder: str | None,
    baseline: str | None,
    schedule: str | None,
    target_loss: float | None,
    price_per_gpu_hour: float | None,
    title: str,
) -> None:
    """Write an HTML report from TRACES (lrkit traces or logs): range test, curves, diagnosis, cost.

    The first training run is the chosen one; a range-test trace (kind range_test) among TRACES is
    used as the range test.
    """
    from lrkit.report import write_report

    writable_file(out, "--out")
    runs = [_read(path) for path in traces]
    found = [trace for trace in runs if trace.meta.get("kind") == "range_test"]
    if finder is not None:
        finder_trace = _read(finder)
    elif len(found) > 1:
        raise click.UsageError(f"{len(found)} range-test traces given; name the one to show with --finder")
    else:
        finder_trace = found[0] if found else None
    runs = [trace for trace in runs if trace.meta.get("kind") != "range_test"]
    path = write_report(
        out,
        runs=runs,
        finder=finder_trace,
        schedule=schedule,
        baseline=None if baseline is None else _read(baseline),
        target_loss=target_loss,
        price_per_gpu_hour=price_per_gpu_hour,
        title=title,
    )
    click.echo(f"wrote {path}")
