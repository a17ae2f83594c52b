"""``lrkit schedule SPEC --steps N``: a schedule's key values, and optionally its curve and a CSV."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from lrkit.cli.options import json_option
from lrkit.cli.output import figure_file, print_json, stdout_to_stderr, writable_file
from lrkit.files import atomic_write_text
from lrkit.schedules import parse, phase_starts

# the most steps evaluated: the grid and its rates take 16 bytes a step in memory (1.6 GB here), and a
# CSV of as many rows is already a few GB
MAX_STEPS = 100_000_000


@click.command()
@click.argument("spec")
@click.option("--steps", type=click.IntRange(min=1, max=MAX_STEPS), required=True, help="How many steps to evaluate (0 .. N-1).")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the curve as an image (.png, .pdf, .svg, ...).")
@click.option("--csv", "csv_path", type=click.Path(dir_okay=False), help="Write step,lr rows.")
@json_option("the key values")
def command(spec: str, steps: int, plot_path: str | None, csv_path: str | None, as_json: bool) -> None:
    """Show the key values of the schedule SPEC, such as 'warmup(500) >> cosine(peak=3e-4, steps=9500)'."""
    schedule = parse(spec)
    csv_file: Path | None = None if csv_path is None else writable_file(csv_path, "--csv")
    plot_file: Path | None = None if plot_path is None else figure_file(plot_path)
    grid = np.arange(steps)
    lrs = schedule(grid)
    points = {"first": 0, "peak": int(np.argmax(lrs)), "minimum": int(np.argmin(lrs)), "last": steps - 1}
    phases = [(index + 1, start) for index, start in enumerate(phase_starts(schedule)) if start < steps]
    with stdout_to_stderr(as_json):
        if not as_json:
            console = Console()
            console.print(repr(schedule), markup=False, highlight=False, soft_wrap=True)
            table = Table()
            for header in ("", "step", "lr"):
                table.add_column(header)
            rows = [*points.items(), *((f"phase {phase} starts", start) for phase, start in phases if start > 0)]
            for label, step in rows:
                table.add_row(label, str(step), f"{lrs[step]:.6g}")
            console.print(table)
        if csv_file is not None:
            text = "step,lr\n" + "".join(f"{step},{lr!r}\n" for step, lr in zip(grid.tolist(), lrs.tolist(), strict=True))
            atomic_write_text(csv_file, text)
            click.echo(f"wrote {csv_file}")
        if plot_file is not None:
            from lrkit.plots.curves import save_figure
            from lrkit.plots.schedule import plot_schedule

            save_figure(plot_schedule(schedule, steps), plot_file)
            click.echo(f"wrote {plot_file}")
    if as_json:
        print_json(
            {
                "spec": repr(schedule),
                "steps": steps,
                **{label: {"step": step, "lr": float(lrs[step])} for label, step in points.items()},
                "phases": [{"phase": phase, "step": start, "lr": float(lrs[start])} for phase, start in phases],
                "files": {"csv": csv_file, "plot": plot_file},
            }
        )
