"""``lrkit diagnose LOGFILE``: read a training log, judge its learning rate, say what to do."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import click

from lrkit.cli.app import OUT_OF_RANGE
from lrkit.cli.options import json_option
from lrkit.cli.output import figure_file, print_json, stdout_to_stderr
from lrkit.diagnosis import diagnose
from lrkit.logs import FORMATS, parse_run, read_log
from lrkit.trace import Trace


def _run_value(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """``--run`` checked before any file is read: COLUMN=VALUE."""
    if value is not None:
        try:
            parse_run(value)
        except ValueError as error:
            raise click.BadParameter(str(error).replace("run must", "must"), ctx, param) from None
    return value


@click.command()
@click.argument("logfile", type=click.Path(exists=True, dir_okay=True, allow_dash=True, path_type=str))
@json_option("the diagnosis")
@click.option(
    "--plot",
    "plot_path",
    type=click.Path(dir_okay=False, path_type=str),
    help="Write the figure to this image (.png, .pdf, .svg, ...).",
)
@click.option(
    "--format",
    "log_format",
    type=click.Choice(FORMATS),
    help="Log format (default: from name and content).",
)
@click.option("--step", "step_column", help="Column (or TensorBoard tag) holding the step (default: found by name).")
@click.option("--loss", "loss_column", help="Column holding the training loss (default: found by name).")
@click.option("--lr", "lr_column", help="Column holding the learning rate (default: found by name).")
@click.option("--val-loss", "val_column", help="Column holding the validation loss (default: found by name).")
@click.option(
    "--run",
    metavar="COLUMN=VALUE",
    callback=_run_value,
    help="Read only the rows whose COLUMN holds VALUE: one run of a file holding several (e.g. role=chosen).",
)
def command(
    logfile: str,
    as_json: bool,
    plot_path: str | None,
    log_format: str | None,
    step_column: str | None,
    loss_column: str | None,
    lr_column: str | None,
    val_column: str | None,
    run: str | None,
) -> None:
    """Diagnose the learning rate from a training log (CSV, JSON lines, TensorBoard, Lightning);
    LOGFILE - reads it from standard input."""
    if plot_path is not None:
        figure_file(plot_path)
    with stdout_to_stderr(as_json), _as_file(logfile, log_format) as readable:
        try:
            trace = read_log(
                readable,
                format=log_format,
                step=step_column,
                loss=loss_column,
                lr=lr_column,
                val_loss=val_column,
                run=run,
            )
        except OUT_OF_RANGE as error:  # a field over the csv limit, a step past int64, JSON too deep
            raise ValueError(f"{logfile}: cannot read it: {str(error) or type(error).__name__}") from None
        try:
            result = diagnose(trace)
        except ValueError as error:
            raise ValueError(f"{_shown(trace, logfile, readable)}: {error}") from None
        if plot_path:
            from lrkit.plots import save_figure

            save_figure(result.plot(), plot_path)
    if as_json:
        print_json({"file": _shown(trace, logfile, readable), **result.to_dict(), "files": {"plot": plot_path}})
        return
    click.echo(f"{result.verdict} (confidence {result.confidence:.2f})")
    for reason in result.reasons:
        click.echo(f"  - {reason}")
    click.echo(f"action: {result.action}")
    if plot_path:
        click.echo(f"figure: {plot_path}")


STREAM_SUFFIXES = {"csv": ".csv", "jsonl": ".jsonl", "json": ".json", "tensorboard": ".tfevents"}


@contextlib.contextmanager
def _as_file(logfile: str, log_format: str | None) -> Iterator[str]:
    """The log as a file the readers can open more than once: a stream (``-`` for standard input,
    or a pipe such as /dev/stdin) is copied to a temporary file first; messages name the stream."""
    if logfile != "-" and (Path(logfile).is_file() or Path(logfile).is_dir()):
        yield logfile
        return
    shown = "<stdin>" if logfile == "-" else logfile
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / f"stdin{STREAM_SUFFIXES.get(log_format or '', '')}"
        with click.open_file(logfile, "rb") as source, open(copy, "wb") as handle:  # "-": standard input
            shutil.copyfileobj(source, handle)
        try:
            yield str(copy)
        except ValueError as error:
            raise ValueError(str(error).replace(str(copy), shown)) from None


def _shown(trace: Trace, logfile: str, readable: str) -> str:
    """The name a message gives the log: the file read, or the stream it came from."""
    return trace.meta.get("source", logfile) if readable == logfile else ("<stdin>" if logfile == "-" else logfile)
