"""``lrkit schedule SPEC --steps N``: a schedule's key values, and optionally its curve and a CSV."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from lrkit.cli.output import figure_file, writable_file
from lrkit.files import atomic_write_text
from lrkit.schedules import parse, phase_starts


@click.command()
@click.argument("spec")
@click.option("--steps", type=click.IntRange(min=1), required=True, help="How many steps to evaluate (0 .. N-1).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False, path_type=Path), help="Write the curve as an image (.png, .pdf, .svg, ...).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False, path_type=Path), help="Write step,lr rows.")
def command(spec: str, steps: int, plot_path: Path | None, csv_path: Path | None) -> None:
    """Show the schedule SPEC, e.g. 'warmup(500) >> cosine(peak=3e-4, steps=9500)'."""
    schedule = parse(spec)
    if csv_path is not None:
        writable_file(csv_path, "--csv")
    if plot_path is not None:
        figure_file(plot_path)
    grid = np.arange(steps)
    lrs = schedule(grid)
    console = Console()
    console.print(repr(schedule), markup=False, highlight=False, soft_wrap=True)
    table = Table()
    for header in ("", "step", "lr"):
        table.add_column(header)
    rows = [("first", 0), ("peak", int(np.argmax(lrs))), ("minimum", int(np.argmin(lrs))), ("last", steps - 1)]
    starts = phase_starts(schedule)
    rows += [(f"phase {index + 1} starts", start) for index, start in enumerate(starts) if 0 < start < steps]
    for label, step in rows:
        table.add_row(label, str(step), f"{lrs[step]:.6g}")
    console.print(table)
    if csv_path is not None:
        text = "step,lr\n" + "".join(f"{step},{lr!r}\n" for step, lr in zip(grid.tolist(), lrs.tolist(), strict=True))
        atomic_write_text(csv_path, text)
        click.echo(f"wrote {csv_path}")
    if plot_path is not None:
        from lrkit.plots.curves import save_figure
        from lrkit.plots.schedule import plot_schedule

        save_figure(plot_schedule(schedule, steps), plot_path)
        click.echo(f"wrote {plot_path}")
