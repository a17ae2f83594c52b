"""``lrkit sweep``: search the learning rate with Optuna and write the table, plot and CSV.

The study is kept in ``--storage`` (default: a journal file in ``--out``), so running the same
command again resumes it, and the same command on many machines with one PostgreSQL URL and
``--study`` name joins one study. ``--timeout`` bounds a run by time: no trial starts after it.
"""

from __future__ import annotations

import decimal
import json
import math
import os
import re
from dataclasses import asdict
from decimal import Decimal
from pathlib import Path

import click

from lrkit.cli.entry import load_function
from lrkit.cli.options import json_option, lr_limit, seed_option
from lrkit.cli.output import live, print_json, stdout_to_stderr, writable_file, writable_folder

MAX_WORKERS_PER_CPU = 4  # worker processes per core, at most, that one machine starts
PRUNER_CHOICES = ("hyperband", "successive_halving", "median", "none")
UNITS = {"d": 86400, "h": 3600, "m": 60, "s": 1}  # seconds in each, largest first
_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_AMOUNTS = re.compile("".join(f"(?:(?P<{unit}>{_NUMBER}){unit})?" for unit in UNITS))
_EXACT = decimal.Context(prec=400)  # digits enough to hold any float exactly: durations round-trip


def parse_duration(text: str) -> float:
    """Seconds from a duration: a number of seconds (``5400``) or amounts with units ``d``, ``h``,
    ``m``, ``s`` in that order (``90m``, ``2h``, ``1h30m``, ``1.5h``); raises ``ValueError``."""
    given, text = text, text.strip()
    match = _AMOUNTS.fullmatch(text)
    if re.fullmatch(_NUMBER, text):
        amounts = {"s": text}
    else:
        amounts = {unit: amount for unit, amount in (match.groupdict() if match else {}).items() if amount}
    if not amounts:
        raise ValueError(
            f"{given!r} is not a duration: give seconds (5400) or amounts with units d, h, m, s in that "
            "order (90m, 2h, 1h30m, 1.5h)"
        )
    with decimal.localcontext(_EXACT):
        seconds = float(sum(Decimal(amount) * UNITS[unit] for unit, amount in amounts.items()))
    if not 0 < seconds < math.inf:
        raise ValueError(f"{given!r} is not a duration: it must be more than 0 seconds, and finite")
    return seconds


def format_duration(seconds: float) -> str:
    """``seconds`` written as ``parse_duration`` reads it back exactly: ``2h``, ``1h30m``, ``0.5s``."""
    with decimal.localcontext(_EXACT):
        whole, fraction = divmod(Decimal(repr(float(seconds))), 1)
        rest, amounts = int(whole), []
        for size in UNITS.values():
            count, rest = divmod(rest, size)
            amounts.append(Decimal(count))
        amounts[-1] += fraction
        parts = [f"{amount.normalize():f}{unit}" for unit, amount in zip(UNITS, amounts, strict=True) if amount]
    return "".join(parts) or "0s"


class Duration(click.ParamType):
    """A click option holding seconds, given as ``parse_duration`` reads them."""

    name = "duration"

    def convert(self, value, param, ctx) -> float:
        if isinstance(value, float):
            return value
        try:
            return parse_duration(str(value))
        except ValueError as error:
            self.fail(str(error), param, ctx)


@click.command()
@click.option("--task", help="Built-in task to train (see `lrkit tasks`).")
@click.option("--entry", help="Your objective as module:function, called as function(lr, report) -> val_loss.")
@click.option("--min-lr", type=click.FloatRange(min=0, min_open=True), callback=lr_limit, help="Lowest LR (default: from the optimizer family).")
@click.option("--max-lr", type=click.FloatRange(min=0, min_open=True), callback=lr_limit, help="Highest LR (default: from the optimizer family).")
@click.option("--trials", type=click.IntRange(min=1), default=20, show_default=True, help="Finished trials the study should hold.")
@click.option("--sampler", type=click.Choice(["tpe", "random", "grid"]), default="tpe", show_default=True, help="How the LRs are picked: TPE (Bayesian), at random, or a grid even in log LR.")
@click.option("--pruner", type=click.Choice(PRUNER_CHOICES), default="hyperband", show_default=True, help="What stops a trial early on the losses it reports.")
@click.option("--storage", help="Journal file path or database URL (default: OUT/sweep.journal).")
@click.option("--study", "study_name", help="Study name to create or join (default: the task name, or module:function).")
@click.option("--out", default="lrkit-sweep", show_default=True, type=click.Path(file_okay=False), help="Folder for sweep.csv and sweep.png.")
@seed_option("Seed of the sampler (each trial draws from it and its number) and of a --task's training.")
@click.option("--workers", type=click.IntRange(min=1), default=1, show_default=True, help="Worker processes on this machine.")
@click.option("--schedules", help="Also search the schedule kind, from these (comma-separated: constant, cosine, linear).")
@click.option("--warmup-steps", help="With --schedules: warmup lengths to search (comma-separated, e.g. 0,30).")
@click.option("--heartbeat", type=click.IntRange(min=1), default=60, show_default=True, help="Seconds between database heartbeats; a trial silent for twice that is retried.")
@click.option("--timeout", type=Duration(), help="Time budget of this run (seconds, or 90m, 2h, 1h30m): no trial starts after it; running ones finish [default: none].")
@json_option("the LR to train with, the best trial, every trial and the compute spent")
def command(
    task: str | None,
    entry: str | None,
    min_lr: float | None,
    max_lr: float | None,
    trials: int,
    sampler: str,
    pruner: str,
    storage: str | None,
    study_name: str | None,
    out: str,
    seed: int,
    workers: int,
    heartbeat: int,
    schedules: str | None,
    warmup_steps: str | None,
    timeout: float | None,
    as_json: bool,
) -> None:
    """Search the learning rate (grid, random or TPE) with pruning, on one machine or many."""
    import optuna  # noqa: F401  (first, before any work: without it the app names the extra to install)

    from lrkit.sweeps import TaskObjective, mask_url
    from lrkit.sweeps.search import WorkerError, make_plan, open_study
    from lrkit.sweeps.storage import with_driver
    from lrkit.sweeps.worker import FINISHED

    if (task is None) == (entry is None):
        raise click.UsageError("give exactly one of --task NAME or --entry module:function")
    most = MAX_WORKERS_PER_CPU * (os.cpu_count() or 1)
    if workers > most:  # each is a process: a typo (--workers 1000) must not fork hundreds of them
        raise click.UsageError(
            f"--workers {workers} is more than {most} ({MAX_WORKERS_PER_CPU} per CPU core here); "
            "run more machines on one --storage instead"
        )
    with stdout_to_stderr(as_json):  # what the user's module prints as it is imported
        objective = TaskObjective(task, seed=seed) if task else load_function(
            entry, ("lr", "report"), ("schedule", "warmup_steps") if schedules else ()
        )
    missing = [option for option, value in (("--min-lr", min_lr), ("--max-lr", max_lr)) if value is None]
    if entry and missing:
        raise click.UsageError(
            f"--entry {entry!r} needs --min-lr and --max-lr (only a built-in --task has its own range), "
            f"missing {' and '.join(missing)}"
        )
    folder = writable_folder(out)
    plan = make_plan(
        objective, min_lr=min_lr, max_lr=max_lr, n_trials=trials, sampler=sampler,
        pruner=None if pruner == "none" else pruner,
        storage=str(folder / "sweep.journal") if storage is None else storage,
        study=(task or entry) if study_name is None else study_name, seed=seed, workers=workers,
        prior_lr=None, heartbeat_seconds=heartbeat, schedules=_listed(schedules, str, "--schedules"),
        warmup_steps=_listed(warmup_steps, int, "--warmup-steps"), timeout=timeout,
    )
    if plan.spec.kind == "journal":
        journal = Path(plan.spec.target).expanduser()
        if storage is not None:
            writable_file(journal, "--storage")
        _check_journal(journal, "--storage" if storage is not None else "--out")
    # fails fast (masked) on a storage it cannot reach or a mismatched study
    finished = len(open_study(plan).get_trials(deepcopy=False, states=FINISHED))
    budget = "" if plan.timeout is None else f", time budget {format_duration(plan.timeout)}"
    csv_path, png_path = folder / "sweep.csv", folder / "sweep.png"
    with stdout_to_stderr(as_json):
        click.echo(
            f"study {plan.study!r} in {plan.spec.shown}: lr {plan.min_lr:.3g}..{plan.max_lr:.3g}, "
            f"{plan.n_trials} trials, sampler {plan.sampler}, pruner {plan.pruner or 'none'}{budget}"
        )
        if finished:
            click.echo(_resuming(finished, plan.n_trials))
        try:
            result = _run_with_progress(plan, workers)
        except WorkerError as error:  # its traceback is above, as the user's own code's is
            raise click.ClickException(str(error)) from None
        if not as_json:
            _print_result(result)
        elif _best(result)[0] is None:  # the JSON's lr is null: say why where a person reads
            click.echo(_no_lr(result))
        result.to_csv(csv_path)
        if result.finished:
            from lrkit.plots import save_figure

            save_figure(result.plot(), png_path)
            click.echo(f"wrote {csv_path} and {png_path}")
        else:
            click.echo(f"wrote {csv_path} (no finished trial to plot)")
        if plan.spec.kind == "journal":
            click.echo(f"browse it: optuna-dashboard {plan.spec.target}")
        else:
            url = with_driver(plan.spec.target)
            shown = mask_url(url)
            click.echo(f"browse it: optuna-dashboard {shown}{' (with your password)' if shown != url else ''}")
    if as_json:
        files = {"csv": csv_path, "plot": png_path if result.finished else None}
        print_json({**result_fields(result, plan.spec.shown), "files": files})


def _resuming(finished: int, n_trials: int) -> str:
    """Say that the study already holds trials, so a run after a change to the objective does not
    pass its old trials off as new ones."""
    if finished < n_trials:
        return f"resuming: {finished} of its {n_trials} trials finished before this run"
    return (
        f"resuming: it already holds {finished} finished trials, so none runs; raise --trials to add "
        "more, or give another --study (or --out) to start afresh"
    )


def _check_journal(path: Path, option: str) -> None:
    """Refuse a file that is not an Optuna journal (one JSON operation a line), which Optuna would
    fail on with an AssertionError, a KeyError or a TypeError of its own."""
    try:
        with open(path, "rb") as handle:
            first = handle.readline(1 << 20)
    except FileNotFoundError:
        return
    except OSError as error:
        raise click.UsageError(f"{option}: cannot read the journal {str(path)!r}: {error.strerror or error}") from None
    if not first:
        return  # empty: a new journal
    try:
        operation = json.loads(first) if first.endswith(b"\n") else None
    except ValueError:
        operation = None
    if not isinstance(operation, dict) or "op_code" not in operation:
        raise click.UsageError(
            f"{option}: {str(path)!r} is not an Optuna journal file (one JSON operation a line); "
            "give another --storage path, or move that file away"
        )


def _listed(text: str | None, kind: type, option: str) -> list | None:
    if text is None:
        return None
    try:
        return [kind(item.strip()) for item in text.split(",") if item.strip()]
    except ValueError:
        raise click.UsageError(f"{option} must be a comma-separated list of {kind.__name__}, got {text!r}") from None


def _run_with_progress(plan, workers: int):
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from lrkit.sweeps.search import run_plan

    columns = (TextColumn("sweeping"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    console = Console(stderr=True)
    with Progress(*columns, console=console, transient=True, disable=not live(console)) as bar:
        job = bar.add_task("trials", total=plan.n_trials)
        return run_plan(plan, workers=workers, progress=lambda done, total: bar.update(job, completed=done))


TABLE_ROWS = 40  # the trials printed, around the best; sweep.csv holds them all


def _edge(best, finite: list, trials: list) -> str | None:
    """``"highest"`` or ``"lowest"`` when the best of three or more complete trials is at that end
    of every LR tried (a pruned or diverged trial beyond it shows the loss got worse there)."""
    if len(finite) < 3:
        return None
    lrs = [row.lr for row in trials if row.state in ("complete", "pruned")]
    return "highest" if best.lr == max(lrs) else "lowest" if best.lr == min(lrs) else None


def _shown(rows: list, best, table) -> list:
    """At most ``TABLE_ROWS`` rows, centred on the best trial; the table's caption counts the rest."""
    if len(rows) <= TABLE_ROWS:
        return rows
    centre = rows.index(best) if best in rows else 0
    start = min(max(0, centre - TABLE_ROWS // 2), len(rows) - TABLE_ROWS)
    below, above = start, len(rows) - start - TABLE_ROWS
    table.caption = f"{below} trials at lower LRs and {above} at higher LRs not shown: every trial is in sweep.csv"
    return rows[start : start + TABLE_ROWS]


def _best(result):
    """The best trial, or None when no complete trial has a finite loss; and those trials."""
    finite = [row for row in result.trials if row.state == "complete" and math.isfinite(row.val_loss)]
    return (result.best if finite else None), finite


def result_fields(result, storage: str) -> dict:
    """The result as ``--json`` prints it (docs/sweep.md lists the keys); ``storage`` as shown,
    a database URL's password masked."""
    best, finite = _best(result)
    return {
        "study": result.study,
        "storage": storage,
        "sampler": result.sampler,
        "pruner": result.pruner,
        "min_lr": result.min_lr,
        "max_lr": result.max_lr,
        "n_trials": result.n_trials,
        "lr": None if best is None else result.lr,
        "lr_fitted": best is not None and result.bowl is not None,
        "best": None if best is None else asdict(best),
        "edge": None if best is None else _edge(best, finite, result.trials),
        "finished": len(result.finished),
        "pruned": result.pruned,
        "steps_spent": result.steps_spent,
        "full_steps": result.full_steps,
        "grid_steps": result.grid_steps,
        "compute_fraction": result.compute_fraction,
        "timeout": result.timeout,
        "timed_out": result.timed_out,
        "trials": [asdict(row) for row in sorted(result.trials, key=lambda row: row.number)],
    }


def _print_result(result) -> None:
    from rich.console import Console
    from rich.table import Table

    best, finite = _best(result)
    searched = any(row.schedule is not None for row in result.trials)
    columns = ["trial", "lr", *(["schedule", "warmup"] if searched else []), "state", "val loss", "steps"]
    table = Table(*columns, title=f"study {result.study!r}")
    for row in _shown(sorted(result.trials, key=lambda row: row.lr), best, table):
        state = row.state + (" (diverged)" if row.diverged else "")
        if row.retry_of is not None:
            state += f" (retry of #{row.retry_of})"
        loss = "" if math.isnan(row.val_loss) else f"{row.val_loss:.4g}"
        if row is best:
            state += " (best)"
        style = "bold green" if row is best else ("dim" if row.state != "complete" else None)
        schedule = [row.schedule or "", "" if row.warmup_steps is None else str(row.warmup_steps)] if searched else []
        steps = "" if row.steps is None else str(row.steps)
        table.add_row(str(row.number), f"{row.lr:.3g}", *schedule, state, loss, steps, style=style)
    Console().print(table)
    if result.timed_out:
        click.echo(
            f"stopped at the {format_duration(result.timeout)} time budget after {len(result.finished)} "
            f"of {result.n_trials} trials"
        )
    if best is None:
        click.echo(_no_lr(result))
        return
    schedule = f", schedule {best.schedule} with {best.warmup_steps} warmup steps" if best.schedule else ""
    click.echo(f"best trial #{best.number}: lr {best.lr:.4g}{schedule}, validation loss {best.val_loss:.4g}")
    bowl = result.bowl
    if bowl is None:
        click.echo(f"lr to train with {result.lr:.4g} (the best trial's: the complete trials hold no bowl to fit)")
    elif bowl.lr in (min(bowl.lrs), max(bowl.lrs)):  # the vertex was kept within the fitted span
        side = "highest" if bowl.lr == max(bowl.lrs) else "lowest"
        click.echo(
            f"lr to train with {bowl.lr:.4g}: the {side} of the best {len(bowl.lrs)} complete trials, "
            f"where a parabola in log LR through them is lowest within their span (its minimum lies "
            f"beyond it)"
        )
    else:
        click.echo(
            f"lr to train with {bowl.lr:.4g}: the minimum of a parabola in log LR through the best "
            f"{len(bowl.lrs)} complete trials (fitted loss {float(bowl.loss(bowl.lr)):.4g})"
        )
    edge = _edge(best, finite, result.trials)
    if edge:
        click.echo(f"note: the best trial is the {edge} LR tried; the best rate may lie beyond it")
    if result.compute_fraction is not None:
        click.echo(
            f"steps spent {result.steps_spent:,}: {result.compute_fraction:.0%} of a full grid of "
            f"{len(result.finished)} LRs x {result.full_steps:,} steps ({result.grid_steps:,})"
        )



def _no_lr(result) -> str:
    """Why a sweep has no LR to train with, and what to do."""
    if any(row.state == "complete" for row in result.trials):
        return "no LR to train with: every complete trial diverged; lower --max-lr"
    if result.timed_out:
        return (
            "no LR to train with: no trial completed within the time budget; run the command again "
            "to resume with a fresh budget, or give a longer --timeout"
        )
    return "no complete trial yet"
