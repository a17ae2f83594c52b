"""The report as one self-contained HTML page: the range test, the schedule, the training curves
with their diagnosis, guard events and what the LR choice costs.

Charts are lrkit's own matplotlib figures, embedded as SVG data URIs: no script, no network, and
the file opens anywhere. Nothing in it depends on the time or machine it was made on.
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import matplotlib
import numpy as np
from matplotlib import pyplot as plt
from matplotlib.figure import Figure

from lrkit import checks
from lrkit.cost import CostComparison, RunCost, compare_cost, steps_trained
from lrkit.diagnosis import MIN_POINTS, Diagnosis, diagnose
from lrkit.plots import plot_diagnosis, plot_finder, plot_schedule, plot_traces
from lrkit.plots.cost import plot_cost
from lrkit.plots.curves import mostly_near_zero, thinned
from lrkit.schedules import Schedule, parse
from lrkit.suggest import Suggestion, suggest
from lrkit.trace import Trace

# where a run's time can come from, for the messages that say it has none
TIME_SOURCES = (
    "a log's time column such as time, wall_time or timestamp, or meta 'seconds' or 'seconds_per_step', "
    "as lrkit.tasks.train writes"
)
NO_TIME = f"a run recorded no time ({TIME_SOURCES})"
NOT_RISING = "its learning rate does not rise step by step (and its meta has no kind 'range_test')"
EVIDENCE_SHOWN = ("start", "best", "best_step", "end", "spike_count", "noise_to_progress", "trend", "late_rise")

STYLE = """
body { font-family: system-ui, sans-serif; max-width: 1000px; margin: 1.5rem auto; padding: 0 1rem; color: #222; }
h1 { font-size: 1.6rem; } h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid #ddd; }
h3 { font-size: 1.05rem; }
img.chart { width: 100%; max-width: 960px; height: auto; display: block; margin: 0.5rem 0; }
table { border-collapse: collapse; margin: 0.5rem 0; font-size: 0.9rem; }
td, th { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f4f4f4; }
.verdict { font-weight: 600; } .note { color: #555; } code { background: #f4f4f4; padding: 0 0.2rem; }
"""


@dataclass(frozen=True)
class Run:
    """One training run in the report: a label and its Trace."""

    label: str
    trace: Trace


@dataclass(frozen=True)
class RangeTest:
    """A range-test Trace with lrkit's suggestion for it (what ``plot_finder`` draws)."""

    trace: Trace
    suggestion: Suggestion


def as_trace(run: Any, name: str) -> Trace:
    """A Trace from a Trace or a result that holds one (``.trace``), with a finite loss to show."""
    trace = run if isinstance(run, Trace) else getattr(run, "trace", None)
    if not isinstance(trace, Trace):
        raise TypeError(f"{name} must be a Trace or a result with a .trace, got {type(run).__name__}")
    if not np.isfinite(trace.loss).any():
        where = trace.meta.get("source", name)
        raise ValueError(f"{where}: no finite loss (every value is NaN or infinite): nothing to chart or diagnose")
    return trace


def is_range_test(trace: Trace) -> bool:
    """Whether ``trace`` is a range test: lrkit's say so in their metadata (kind range_test); any
    other is one when its learning rate rises step by step."""
    if trace.meta.get("kind") == "range_test":
        return True
    lr = trace.lr
    return len(lr) >= 2 and bool((lr > 0).all() and (np.diff(lr) > 0).all())


def label_of(trace: Trace, fallback: str) -> str:
    meta = trace.meta
    if "label" in meta:
        return str(meta["label"])
    if "lr" in meta:
        return f"lr={float(meta['lr']):g}"
    return fallback


def as_runs(runs: Sequence[Any] | Mapping[str, Any]) -> list[Run]:
    """Runs from a list (labels from their metadata) or a mapping label -> run."""
    if isinstance(runs, Mapping):
        return [Run(str(label), as_trace(run, f"runs[{label!r}]")) for label, run in runs.items()]
    if isinstance(runs, (Trace, str)):
        raise TypeError("runs must be a list of Traces (or a mapping label -> Trace), not a single one")
    out = []
    for i, run in enumerate(runs):
        trace = as_trace(run, f"runs[{i}]")
        out.append(Run(label_of(trace, f"run {i + 1}"), trace))
    return out


def as_range_test(finder: Any) -> RangeTest:
    """A range test from its Trace or from a ``FinderResult`` (which already holds the suggestion)."""
    suggestion = getattr(finder, "suggestion", None)
    trace = as_trace(finder, "finder")
    if not is_range_test(trace):
        raise ValueError(f"finder is not a range test: {NOT_RISING}")
    return RangeTest(trace, suggestion if isinstance(suggestion, Suggestion) else suggest(trace))


def render_report(
    *,
    runs: Sequence[Any] | Mapping[str, Any] = (),
    finder: Any = None,
    schedule: Schedule | str | None = None,
    baseline: Any = None,
    target_loss: float | None = None,
    price_per_gpu_hour: float | None = None,
    title: str = "lrkit report",
) -> str:
    """The report's HTML text (see :func:`lrkit.report.write_report` for the arguments)."""
    chosen_runs = as_runs(runs)
    range_test = None if finder is None else as_range_test(finder)
    schedule = None if schedule is None else parse(schedule, name="schedule")
    baseline_run = None
    if baseline is not None:
        trace = as_trace(baseline, "baseline")
        # a baseline that is also among the runs (the demo's default LR) keeps that run's label
        baseline_run = next((run for run in chosen_runs if run.trace == trace), Run(label_of(trace, "baseline"), trace))
    if not chosen_runs and range_test is None:
        raise ValueError("nothing to report: give runs, a finder (range test), or both")
    if baseline_run is not None and not chosen_runs:
        raise ValueError("baseline needs a chosen run to compare with: pass runs=[...] too")
    for name, value in (("target_loss", target_loss), ("price_per_gpu_hour", price_per_gpu_hour)):
        if value is not None and baseline_run is None:
            raise ValueError(f"{name} needs a baseline to compare the chosen run with: pass baseline=... too")
    if target_loss is not None:
        target_loss = checks.finite("target_loss", target_loss)
    if price_per_gpu_hour is not None:
        price_per_gpu_hour = checks.non_negative("price_per_gpu_hour", price_per_gpu_hour)

    every = chosen_runs + ([baseline_run] if baseline_run and baseline_run not in chosen_runs else [])
    diagnoses = [_diagnosis(run.trace) for run in every]
    comparison = None
    if baseline_run is not None:
        finder_trace = None if range_test is None else range_test.trace
        comparison = compare_runs(chosen_runs[0].trace, baseline_run.trace, finder_trace, target_loss, price_per_gpu_hour)
    labels = None if comparison is None else (chosen_runs[0].label, baseline_run.label)
    parts = [f"<h1>{_e(title)}</h1>", _summary(range_test, every, diagnoses, comparison, labels)]
    if range_test is not None:
        parts.append(_range_test_section(range_test))
    if chosen_runs:
        parts.append(_schedule_section(chosen_runs[0], schedule))
        parts.append(_curves_section(every, diagnoses))
        parts.append(_events_section(every))
    if comparison is not None:
        parts.append(_cost_section(chosen_runs[0], baseline_run, comparison))
    body = "\n".join(parts)
    return (
        '<!doctype html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<link rel="icon" href="data:,">\n<title>{_e(title)}</title>\n<style>{STYLE}</style>\n'
        f"</head>\n<body>\n{body}\n</body>\n</html>\n"
    )


def _summary(
    range_test: RangeTest | None,
    runs: list[Run],
    diagnoses: list[Diagnosis | None],
    comparison: CostComparison | None,
    labels: tuple[str, str] | None,
) -> str:
    items = []
    if range_test is not None:
        found = range_test.suggestion
        items.append(
            f"Range test: no suggestion ({found.reason})" if found.lr is None
            else f"Range test suggests lr {found.lr:.3g}"
            + ("" if found.range is None else f" (good range {found.range[0]:.3g} to {found.range[1]:.3g})")
        )
    for run, diagnosis in zip(runs, diagnoses, strict=True):
        verdict = "not diagnosed (too few steps)" if diagnosis is None else f"{diagnosis.verdict}: {diagnosis.action}"
        items.append(f"{run.label}: {verdict}")
    if comparison is not None and labels is not None:
        items.append(cost_sentence(comparison, *labels))
        price = comparison.price_per_gpu_hour
        if comparison.steps_saved is not None and comparison.money_saved is None and price is not None:
            items.append(f"No money saved shown at {price:g} per GPU-hour: {NO_TIME}")
    return "<section id='summary'><ul>" + "".join(f"<li>{_e(item)}</li>" for item in items) + "</ul></section>"


def _range_test_section(test: RangeTest) -> str:
    found = test.suggestion
    rows = [("steps spent", str(steps_trained(test.trace)))]
    if found.lr is not None:
        rows.append(("suggested LR", f"{found.lr:.3g}"))
    if found.range is not None:
        rows.append(("good range", f"{found.range[0]:.3g} to {found.range[1]:.3g}"))
    rows.append(("loss blows up from", "not reached" if found.max_stable_lr is None else f"{found.max_stable_lr:.3g}"))
    rows.append(("why", found.reason))
    chart = _chart(plot_finder(test), "loss against learning rate, the suggestion and range marked")
    return _section("range-test", "Range test", chart + _facts(rows))


def _schedule_section(run: Run, schedule: Schedule | None) -> str:
    if schedule is not None:
        steps = max(len(run.trace), schedule.length or 0, 1)
        figure = plot_schedule(schedule, steps, title=repr(schedule))
        text = f"<p>Schedule <code>{_e(repr(schedule))}</code> over {steps} steps.</p>"
        return _section("schedule", "Schedule", text + _chart(figure, "learning rate against step"))
    lr = run.trace.lr[np.isfinite(run.trace.lr)]
    if not len(lr):
        text = f"<p class='note'>{_e(run.label)} recorded no learning rate (give its schedule to show it).</p>"
        return _section("schedule", "Schedule", text)
    if lr.min() == lr.max():
        return _section("schedule", "Schedule", f"<p>{_e(run.label)} trained at a constant learning rate of {lr[0]:.3g}.</p>")
    figure, ax = plt.subplots(figsize=(8, 3), layout="constrained")
    ax.plot(*thinned(run.trace.step, run.trace.lr), linewidth=1.4)
    if mostly_near_zero(lr):  # an LR swept or decayed over decades: a linear axis shows zero
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel("learning rate")
    ax.grid(True, alpha=0.3)
    ax.set_title(f"learning rate of {run.label}, as recorded")
    return _section("schedule", "Schedule", _chart(figure, "learning rate against step"))


def _curves_section(runs: list[Run], diagnoses: list[Diagnosis | None]) -> str:
    overview = plot_traces([run.trace for run in runs], labels=[run.label for run in runs],
                           title="training loss of every run")
    ax = overview.axes[0]
    steps = [event.step for run in runs for event in run.trace.events]
    if steps:  # one artist for all: a long guarded run can log hundreds of skipped steps
        ax.vlines(steps, 0, 1, transform=ax.get_xaxis_transform(), color="C3", linewidth=0.8, alpha=0.5)
    chart = _chart(overview, "training loss against step for every run")
    per_run = []  # each run's heading, verdict, chart and evidence, under the table of them all
    summary = []
    for run, diagnosis in zip(runs, diagnoses, strict=True):
        per_run.append(f"<h3>{_e(run.label)}</h3>")
        if diagnosis is None:
            per_run.append(f"<p class='note'>Too few steps to diagnose (needs at least {MIN_POINTS}).</p>")
            summary.append((run.label, "-", "-", "-"))
            continue
        per_run.append(
            f"<p><span class='verdict'>{_e(diagnosis.verdict)}</span> "
            f"(confidence {diagnosis.confidence:.2f}): {_e('; '.join(diagnosis.reasons))}. "
            f"<b>{_e(diagnosis.action)}</b></p>"
        )
        per_run.append(_chart(plot_diagnosis(run.trace, diagnosis), f"diagnosis of {run.label}"))
        evidence = diagnosis.evidence.to_dict()
        per_run.append(_table(("evidence", "value"), [(key, _number(evidence[key])) for key in EVIDENCE_SHOWN]))
        summary.append((run.label, diagnosis.verdict, f"{diagnosis.confidence:.2f}", _number(evidence["end"])))
    table = _table(("run", "verdict", "confidence", "final loss"), summary)
    return _section("curves", "Training curves and diagnosis", chart + table + "".join(per_run))


def _events_section(runs: list[Run]) -> str:
    rows = [(run.label, str(e.step), e.kind, e.detail) for run in runs for e in run.trace.events]
    if not rows:
        return _section("events", "Guard events", "<p class='note'>No events were recorded.</p>")
    return _section("events", "Guard events", _table(("run", "step", "event", "detail"), rows))


def compare_runs(
    chosen: Trace,
    baseline: Trace,
    finder: Trace | None,
    target_loss: float | None,
    price_per_gpu_hour: float | None,
) -> CostComparison:
    """The cost comparison the report shows: the range test's steps are charged to the chosen run."""
    return compare_cost(
        chosen,
        baseline,
        target_loss=target_loss,
        search_steps=0 if finder is None else steps_trained(finder),
        price_per_gpu_hour=price_per_gpu_hour,
    )


def measured_on(c: CostComparison) -> str:
    """Which log column the target loss was judged on, when it is not plainly ``loss`` (a
    validation loss, say), as "the 'val_loss' column"; "" otherwise."""
    chosen, baseline = c.loss_columns
    if {chosen, baseline} <= {None, "loss"}:
        return ""
    if chosen == baseline:
        return f"the {chosen!r} column"
    return f"the {chosen or 'loss'!r} column for the chosen run, {baseline or 'loss'!r} for the baseline"


def cost_sentence(c: CostComparison, chosen: str, baseline: str) -> str:
    """The summary's line on cost: where the chosen run got to, against the baseline."""
    column = measured_on(c)
    loss = f"loss {c.target_loss:.3g}" + (f" ({column})" if column else "")
    if c.chosen_total_steps is None:
        why = "" if c.chosen.failure is None else f" ({c.chosen.failure})"
        return f"{chosen} never reached {loss}{why}: it saves nothing ({_never_against(c, chosen, baseline)})"
    against = f"{c.baseline_steps} for {baseline}" + (" (which never got there)" if c.at_least else "")
    text = (
        f"{chosen} reaches {loss} in {c.chosen_total_steps} steps"
        + (" (range test included)" if c.search_steps else "")
        + f" against {against}: {_saved(c.steps_saved, c.at_least, f'{abs(c.steps_saved)} steps')}"
    )
    if c.seconds_saved is not None:
        text += f", {_saved(c.seconds_saved, c.at_least, duration(abs(c.seconds_saved)))}"
    if c.money_saved is not None:
        text += f", {_saved(c.money_saved, c.at_least, f'{abs(c.money_saved):.4g}')} at {c.price_per_gpu_hour:g} per GPU-hour"
    return text


def _never_against(c: CostComparison, chosen: str, baseline: str) -> str:
    """When the chosen run never reached the target: what the baseline did, and how much more the
    choice cost when that is known (it ran, range test included, past the baseline's steps)."""
    ran = c.chosen.run_steps + c.search_steps
    tried = f"{chosen} did not in {ran} steps" + (" (range test included)" if c.search_steps else "")
    if c.baseline.steps is None:
        return f"neither did {baseline}, in {c.baseline.run_steps} steps; {tried}"
    text = f"{baseline} got there in {c.baseline.steps} steps; {tried}"
    if ran >= c.baseline.steps:
        text += f": at least {ran - c.baseline.steps} steps more"
    return text


def duration(seconds: float) -> str:
    """A time in the unit that reads best: "0.997 ms", "45 s", "12.5 min", "3.2 h"."""
    for unit, size in (("h", 3600), ("min", 60), ("s", 1)):
        if seconds >= 2 * size:
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s" if seconds >= 1 or seconds == 0 else f"{seconds * 1e3:.3g} ms"


def _saved(value: float, at_least: bool, amount: str) -> str:
    """A saving in words from its ``amount`` (of the size of ``value``): "at least 12 steps saved",
    or "at most 5 steps more" when it is a loss."""
    return _bound(value, at_least) + amount + (" saved" if value >= 0 else " more")


def _bound(value: float, at_least: bool) -> str:
    """With ``at_least`` the saving is a lower bound (the baseline never got there), so a loss is an
    upper bound."""
    if not at_least:
        return ""
    return "at least " if value >= 0 else "at most "


def _cost_section(chosen: Run, baseline: Run, comparison: CostComparison) -> str:
    c = comparison
    basis = "given" if c.target_given else "chosen by lrkit: the higher of the two runs' final levels"
    column = measured_on(c)
    rows = [
        ("target loss", f"{c.target_loss:.4g}"),
        ("target set how", basis),
        *([("loss judged on", column)] if column else []),
        (f"steps to target, {chosen.label}", _to_target(c.chosen)),
        (f"steps to target, {baseline.label}", _to_target(c.baseline)),
        ("steps spent choosing (range test)", str(c.search_steps)),
    ]
    saved = c.steps_saved
    if saved is None:
        against = _never_against(c, chosen.label, baseline.label)
        rows.append(("steps saved", f"none: {chosen.label} never reached the target ({against})"))
    else:
        bound = _bound(saved, c.at_least)
        # a ratio of steps: the times differ by it only where both runs step at one rate
        speed = f"{c.speedup:.2f}x fewer steps" if c.speedup >= 1 else f"{1 / c.speedup:.2f}x more steps"
        rows.append(_saving_row("steps", saved, f"{bound}{abs(saved)} ({bound}{speed})"))
    if c.seconds_saved is not None:
        hours = f"{abs(c.gpu_hours_saved):.3g} GPU-hours, counting one GPU per run"
        amount = f"{duration(abs(c.seconds_saved))} ({hours})"
        rows.append(_saving_row("time", c.seconds_saved, _bound(c.seconds_saved, c.at_least) + amount))
    elif saved is not None:
        rows.append(("time saved", f"unknown: {NO_TIME}{time_problems((run.label, run.trace) for run in (chosen, baseline))}"))
    if c.money_saved is not None:
        amount = f"{abs(c.money_saved):.4g} at {c.price_per_gpu_hour:g} per GPU-hour"
        rows.append(_saving_row("money", c.money_saved, _bound(c.money_saved, c.at_least) + amount))
    elif saved is not None and c.price_per_gpu_hour is not None:
        rows.append(("money saved", f"unknown at {c.price_per_gpu_hour:g} per GPU-hour: {NO_TIME}"))
    figure = plot_cost(chosen.trace, baseline.trace, c, labels=(chosen.label, baseline.label))
    note = rate_note(c, chosen.label, baseline.label)
    chart = _chart(figure, "both runs racing to the target loss")
    return _section("cost", "What the choice costs", chart + _facts(rows) + ("" if note is None else f"<p class='note'>{_e(note)}</p>"))


def _saving_row(what: str, value: float, amount: str) -> tuple[str, str]:
    """A "... saved" row, or an "extra ..." row when the choice cost more than the baseline."""
    if value >= 0:
        return f"{what} saved", amount
    return ("extra cost" if what == "money" else f"extra {what}"), amount


def _to_target(cost: RunCost) -> str:
    """Steps (and time) a run took to reach the target, or "never" in how many steps and why."""
    if cost.steps is None:
        why = "" if cost.failure is None else f"; {cost.failure}"
        return f"never (in {cost.run_steps} steps{why})"
    if cost.seconds is None:
        return str(cost.steps)
    # hours of training read as hours, not "3.6e+04 s"; under a second stays in seconds
    return f"{cost.steps} ({duration(cost.seconds) if cost.seconds >= 1 else f'{cost.seconds:.3g} s'})"


def rate_note(c: CostComparison, chosen: str, baseline: str) -> str | None:
    """The step times the time saved is computed with, as measured, and where each came from (a
    log's own clock, or the time the run recorded), so the sums can be checked."""
    runs = ((chosen, c.chosen), (baseline, c.baseline))
    rates = c.chosen.seconds_per_step, c.baseline.seconds_per_step
    if rates[0] is not None and rates[1] is not None and math.isclose(rates[0], rates[1], rel_tol=1e-9):
        text = f"Time at {duration(rates[0])} per step for both runs, as measured."
    else:
        known = [f"{duration(cost.seconds_per_step)} per step for {label}" for label, cost in runs
                 if cost.seconds_per_step is not None]
        if not known:
            return None
        text = "Measured " + " and ".join(known) + "."
    sources = [(label, cost.time_source) for label, cost in runs if cost.time_source is not None]
    if not sources:
        return text
    if len(sources) == 2 and sources[0][1] == sources[1][1]:
        return text + f" Time from {sources[0][1]} for both runs."
    return text + " Time from " + " and ".join(f"{source} for {label}" for label, source in sources) + "."


def time_problems(runs: Iterable[tuple[str, Trace]]) -> str:
    """Why a log's clock was left out (``read_log``'s ``time_problem``), for each (label, trace)
    that has one, as "; label: why" clauses."""
    return "".join(f"; {label}: {trace.meta['time_problem']}" for label, trace in runs if "time_problem" in trace.meta)


def _diagnosis(trace: Trace) -> Diagnosis | None:
    return diagnose(trace) if len(trace) >= MIN_POINTS else None


def _section(anchor: str, title: str, body: str) -> str:
    """A section of the page under its heading; ``anchor`` is its id."""
    return f"<section id='{anchor}'><h2>{title}</h2>{body}</section>"


def _chart(figure: Figure, alt: str) -> str:
    """The figure as an inline SVG image (closed afterwards)."""
    buffer = io.BytesIO()
    with matplotlib.rc_context({"svg.hashsalt": "lrkit", "svg.fonttype": "none"}):
        figure.savefig(buffer, format="svg", metadata={"Date": None})
    plt.close(figure)
    data = base64.b64encode(buffer.getvalue()).decode()
    return f'<img class="chart" alt="{_e(alt)}" src="data:image/svg+xml;base64,{data}">'


def _table(headers: tuple[str, ...], rows: list[tuple[str, ...]]) -> str:
    head = "<tr>" + "".join(f"<th>{_e(h)}</th>" for h in headers) + "</tr>"
    body = "".join("<tr>" + "".join(f"<td>{_e(cell)}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table>{head}{body}</table>"


def _facts(rows: list[tuple[str, str]]) -> str:
    """A two-column table of named facts."""
    body = "".join(f"<tr><th>{_e(name)}</th><td>{_e(value)}</td></tr>" for name, value in rows)
    return f"<table>{body}</table>"


def _number(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)
