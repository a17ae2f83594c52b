"""What a user sees in lrkit's figures: scales, labels, legends and marks, read off the Figure objects."""

import io
import math
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.colors import to_hex
from rich.console import Console

import lrkit
from lrkit.cli.demo import _figure, _table
from lrkit.cost import compare_cost
from lrkit.demo import DemoResult, DemoRow
from lrkit.plots import plot_cost, plot_finder, plot_schedule, plot_sweep, plot_traces
from lrkit.plots.curves import MAX_POINTS
from lrkit.schedules import parse
from lrkit.suggest import suggest
from lrkit.tasks import TrainResult
from lrkit.trace import Trace, TraceBuilder


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def curve(scale: float, steps: int = 300, *, lr: float = 1e-3, seed: int = 0) -> Trace:
    """A noisy training curve falling from ``scale`` towards a tenth of it."""
    rng = np.random.default_rng(seed)
    t = np.arange(steps)
    loss = scale * (np.exp(-t / 60) + 0.1) * np.exp(rng.normal(0, 0.05, steps))
    return Trace(step=t, lr=np.full(steps, lr), loss=loss)


def legend_texts(ax) -> list[str]:
    return [text.get_text() for text in ax.get_legend().get_texts()]


def inside(inner, outer) -> bool:
    return (
        inner.x0 >= outer.x0
        and inner.x1 <= outer.x1
        and inner.y0 >= outer.y0
        and inner.y1 <= outer.y1
    )


# --- the demo ------------------------------------------------------------------------------------


def demo_result(steps_to_target: dict[str, int | None], *, spikes: int = 0) -> DemoResult:
    """A demo's result as ``run_demo`` builds it, over made-up curves (no training)."""
    rows = []
    for index, (role, reached) in enumerate(steps_to_target.items()):
        trace = curve(2.3, lr=10.0**-index, seed=index)
        result = TrainResult("digits-mlp", 10.0**-index, 0, trace, 2.3, 0.3, 0.9, False, 1.0)
        rows.append(DemoRow(role, result, spikes, 0.9, reached))
    return DemoResult("digits-mlp", 0, 0.23, rows)


def test_demo_figure_names_the_target_and_dots_where_the_table_says_each_run_reached_it() -> None:
    result = demo_result({"too high": None, "too low": None, "chosen": 132, "found": 75})
    ax = _figure(result, ["high", "low", "chosen", "found"]).axes[0]
    assert any(text.startswith("target loss 0.23 ") for text in legend_texts(ax))
    dots = [
        line for line in ax.get_lines() if line.get_marker() == "o" and len(line.get_xdata()) == 1
    ]
    # the table counts steps trained through: step 131 is the 132nd
    assert sorted((float(d.get_xdata()[0]), float(d.get_ydata()[0])) for d in dots) == [
        (74, 0.23),
        (131, 0.23),
    ]


def test_demo_figure_gives_each_run_the_color_the_reports_figures_give_it() -> None:
    result = demo_result({"too high": None, "too low": None, "chosen": 132, "found": 75})
    ax = _figure(result, ["high", "low", "chosen", "found"]).axes[0]
    color = {line.get_label(): to_hex(line.get_color()) for line in ax.get_lines()}
    # the report draws found, chosen, then the rest (plot_traces' order), and costs found (C0)
    # against chosen (C1)
    assert [color[label] for label in ("found", "chosen", "high", "low")] == [
        to_hex(f"C{i}") for i in range(4)
    ]
    chosen, baseline = result.rows[3].result.trace, result.rows[2].result.trace
    cost = plot_cost(chosen, baseline, compare_cost(chosen, baseline)).axes[0]
    assert [
        to_hex(line.get_color()) for line in cost.get_lines() if "steps" in line.get_label()
    ] == [to_hex("C0"), to_hex("C1")]


def test_demo_table_counts_one_spike_in_the_singular() -> None:
    console = Console(file=io.StringIO(), width=140)
    console.print(_table(demo_result({"too high": None}, spikes=1)))
    printed = console.file.getvalue()
    assert "(1 spike)" in printed and "spikes" not in printed


# --- loss curves ---------------------------------------------------------------------------------


def test_runs_whose_curves_coincide_still_both_show() -> None:
    same = curve(2.3)
    ax = plot_traces([same, same], labels=["lr=0.001", "lr=0.00104"]).axes[0]
    first, second = ax.get_lines()[:2]
    assert first.get_marker() != second.get_marker()
    assert first.get_markevery()[0] != second.get_markevery()[0]  # marks placed apart, not on top
    handles = ax.get_legend().legend_handles
    assert [handle.get_marker() for handle in handles] == [first.get_marker(), second.get_marker()]


def test_a_one_step_run_shows_and_a_narrow_band_keeps_plain_ticks() -> None:
    one = Trace(step=[0], lr=[1e-3], loss=[2.3])
    two = Trace(step=[0, 1], lr=[1e-3, 1e-3], loss=[2.3, 2.1])
    ax = plot_traces([one, two], labels=["one", "two"]).axes[0]
    assert ax.get_lines()[0].get_marker() not in (
        "None",
        "",
        None,
    )  # a line through one point draws nothing
    assert ax.get_yscale() == "linear"  # a log axis over 2.1..2.3 labels its ticks 2.2 x 10^0
    assert plot_traces([curve(1e6), curve(1e-6)]).axes[0].get_yscale() == "log"


def test_a_run_that_ended_non_finite_is_named_in_the_legend() -> None:
    loss = np.append(curve(2.3, 100).loss, [np.nan] * 5)
    diverged = Trace(step=np.arange(105), lr=np.full(105, 1.0), loss=loss)
    ax = plot_traces([curve(2.3), diverged], labels=["ok", "lr=1"]).axes[0]
    assert "lr=1: non-finite from step 100" in legend_texts(ax)


# --- the diagnosis -------------------------------------------------------------------------------


def test_a_long_verdict_stays_inside_the_figure() -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(1000)
    flat = Trace(step=steps, lr=np.full(1000, 0.5), loss=1.8 + rng.normal(0, 0.3, 1000))
    diagnosis = lrkit.diagnose(flat)
    figure = diagnosis.plot()
    figure.canvas.draw()
    title = figure.axes[0].title
    assert len(diagnosis.action) > 60 and diagnosis.action.split()[-1] in title.get_text()
    assert inside(title.get_window_extent(), figure.bbox)


def test_the_diagnosis_legend_neither_covers_a_spike_nor_sits_under_the_lr_line() -> None:
    trace = curve(2.3, 800)
    loss = np.concatenate([trace.loss[:790], np.linspace(2, 1e4, 10), [np.nan] * 200])
    diverged = Trace(step=np.arange(1000), lr=np.full(1000, 1e-3), loss=loss)
    diagnosis = lrkit.diagnose(diverged)
    figure = diagnosis.plot()
    figure.canvas.draw()
    ax, lr_ax = figure.axes
    assert "1 spike" in legend_texts(ax)
    spikes = next(line for line in ax.get_lines() if line.get_label() == "1 spike")
    at = ax.transData.transform(np.column_stack([spikes.get_xdata(), spikes.get_ydata()]))
    legend = ax.get_legend().get_window_extent()
    assert not any(legend.contains(x, y) for x, y in at)
    assert (
        ax.get_zorder() > lr_ax.get_zorder()
    )  # the legend is drawn over the LR line, not under it


def test_an_lr_swept_over_decades_gets_a_log_axis_and_a_schedule_keeps_a_linear_one() -> None:
    swept = curve(2.3, 1500).replace(lr=np.geomspace(1e-9, 1e3, 1500))
    assert lrkit.diagnose(swept).plot().axes[1].get_yscale() == "log"
    cosine = curve(2.3, 1500).replace(
        lr=parse("warmup(100) >> cosine(peak=3e-4, steps=1400)")(np.arange(1500))
    )
    assert lrkit.diagnose(cosine).plot().axes[1].get_yscale() == "linear"


# --- the range test ------------------------------------------------------------------------------


def range_test(
    loss: np.ndarray, lrs: np.ndarray | None = None, *, diverged_at: int | None = None
) -> SimpleNamespace:
    """A range test's result as ``find_lr`` records it: loss against an LR rising (by default
    exponentially from 1e-7 to 10)."""
    lrs = np.geomspace(1e-7, 10, len(loss)) if lrs is None else lrs
    record = TraceBuilder(kind="range_test", planned_steps=len(loss))
    for step, (lr, value) in enumerate(zip(lrs, loss, strict=True)):
        record.add(step, float(lr), float(value))
    if diverged_at is not None:
        record.event(diverged_at, "diverged", f"loss {loss[diverged_at]:.4g}")
    trace = record.build()
    return SimpleNamespace(trace=trace, suggestion=suggest(trace))


def test_the_range_test_marks_the_lr_it_diverged_at_even_off_the_frame() -> None:
    x = np.linspace(0, 1, 60)
    loss = 2.3 - 1.2 * np.exp(-(((x - 0.75) / 0.12) ** 2))
    loss[-1] = 9.2  # far above the frame the rule's part of the curve sets
    result = range_test(loss, diverged_at=59)
    ax = plot_finder(result).axes[0]
    lr = float(result.trace.lr[59])
    assert f"diverged at lr {lr:.3g}" in legend_texts(ax)
    mark = next(line for line in ax.get_lines() if line.get_label().startswith("diverged"))
    assert mark.get_xdata()[0] == pytest.approx(lr)
    assert ax.get_ylim()[1] < 9.2  # the point itself is off the frame: only the mark shows it


def test_a_range_test_that_never_settled_keeps_its_reason_inside_and_its_losses_visible() -> None:
    rng = np.random.default_rng(0)  # a linear sweep to 1000: blown up from its second step
    loss = np.concatenate(
        [
            [2.32, 2.29, 1e7, 2.7e7, 4.4e7, 3.9e6, 4e4, 2e4, 1.8e3, 187],
            300 * np.exp(rng.normal(0, 0.3, 70)),
        ]
    )
    result = range_test(loss, np.linspace(1e-9, 1e3, 80))
    figure = plot_finder(result)
    figure.canvas.draw()
    ax = figure.axes[0]
    assert result.suggestion.lr is None and len(result.suggestion.reason) > 50
    assert inside(ax.title.get_window_extent(), figure.bbox)
    assert ax.get_yscale() == "log"  # on a linear axis, losses at 2.3 and 200 sit on the floor
    low, high = ax.get_ylim()
    assert low < 2.29 and high >= 4.4e7


# --- schedules -----------------------------------------------------------------------------------


def test_a_one_step_schedule_shows_its_step_on_whole_step_ticks() -> None:
    figure = plot_schedule(parse("warmup(5) >> constant(1e-3)"), 1)
    figure.canvas.draw()
    ax = figure.axes[0]
    assert ax.get_lines()[0].get_marker() not in ("None", "", None)
    low, high = ax.get_xlim()
    assert all(float(tick).is_integer() for tick in ax.get_xticks() if low <= tick <= high)


def test_a_schedule_decaying_over_decades_gets_a_log_axis_a_cosine_does_not() -> None:
    assert (
        plot_schedule(parse("exponential(1e3, 0.97, steps=1000)"), 1000).axes[0].get_yscale()
        == "log"
    )
    cosine = parse("warmup(500) >> cosine(peak=3e-4, steps=9500)")
    assert plot_schedule(cosine, 10_000).axes[0].get_yscale() == "linear"
    assert plot_schedule(cosine, 10_000, log_lr=True).axes[0].get_yscale() == "log"


def test_a_long_schedule_is_drawn_thinned() -> None:
    ax = plot_schedule(parse("warmup(10000) >> cosine(peak=3e-4, steps=990000)"), 1_000_000).axes[0]
    assert len(ax.get_lines()[0].get_xdata()) <= MAX_POINTS  # an SVG in the report stays small


# --- sweeps --------------------------------------------------------------------------------------


def test_diverged_trials_sit_on_the_top_edge_not_at_a_loss() -> None:
    def nan_above_0_1(lr, report):
        return math.nan if lr > 0.1 else 1.0 + (math.log10(lr) + 2) ** 2

    result = lrkit.sweep(
        nan_above_0_1, min_lr=1e-3, max_lr=1.0, n_trials=6, sampler="grid", pruner=None
    )
    figure = plot_sweep(result)
    figure.canvas.draw()
    ax = figure.axes[0]
    diverged = next(c for c in ax.collections if c.get_label().startswith("diverged"))
    at = diverged.get_offset_transform().transform(diverged.get_offsets())
    assert np.allclose(
        at[:, 1], ax.bbox.y1
    )  # the edge, above every finite trial, whatever the scale


def test_the_reports_recorded_lr_gets_a_log_axis_when_swept_over_decades(monkeypatch):
    from lrkit.report import document

    charts = []
    monkeypatch.setattr(document, "_chart", lambda figure, alt: charts.append(figure) or "")
    steps = np.arange(400)
    for lr, scale in ((np.geomspace(1e-9, 1e3, 400), "log"), (1e-3 * np.cos(steps / 800), "linear")):
        trace = Trace(step=steps, lr=lr, loss=np.exp(-steps / 100) + 0.1)
        document.render_report(runs={"run": trace})
        (recorded,) = [f for f in charts if f.axes[0].get_title().startswith("learning rate of")]
        assert recorded.axes[0].get_yscale() == scale
        charts.clear()
