"""Long runs: a log of 200k steps is drawn with a bounded number of points, so figures and the HTML
report stay small and legible. Behaviour only: speed is measured outside the tests, never asserted."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib import pyplot as plt
from matplotlib.lines import Line2D

import lrkit
from lrkit.cost import compare_cost
from lrkit.plots import plot_cost, plot_traces
from lrkit.plots.curves import MAX_POINTS, thinned
from lrkit.report import document, render_report
from lrkit.trace import Event, Trace

STEPS = 200_000


def long_run(rate: float = 8.0, *, seed: int = 0, nonfinite: int = 0, events: int = 0) -> Trace:
    """A noisy decaying loss over ``STEPS`` steps under a cosine LR, validated every 1000 steps,
    with ``nonfinite`` skipped (infinite) steps and a guard event at each."""
    rng = np.random.default_rng(seed)
    t = np.arange(STEPS) / STEPS
    loss = 0.3 + 2.0 * np.exp(-rate * t) + 0.05 * rng.standard_normal(STEPS)
    skipped = np.sort(rng.choice(np.arange(10, STEPS - 10), nonfinite, replace=False))
    loss[skipped] = np.inf
    val = np.full(STEPS, np.nan)
    val[::1000] = 0.35 + 2.0 * np.exp(-rate * t[::1000])
    return Trace(
        step=np.arange(STEPS),
        lr=1e-3 * 0.5 * (1 + np.cos(np.pi * t)),
        loss=loss,
        val_loss=val,
        events=[Event(int(step), "skip", "loss inf: step skipped") for step in skipped[:events]],
        meta={"label": f"rate {rate:g}"},
    )


@pytest.fixture(scope="module")
def run() -> Trace:
    return long_run(nonfinite=50)


def lines(figure) -> list[Line2D]:
    return [line for ax in figure.axes for line in ax.get_lines()]


def test_thinned_keeps_each_bins_lowest_and_highest_point_in_order() -> None:
    y = np.random.default_rng(1).standard_normal(STEPS + 7)
    y[5000:9000] = np.nan  # a stretch with no value stays a gap
    x = np.arange(len(y))
    tx, ty = thinned(x, y)
    assert len(tx) <= MAX_POINTS
    assert tx[0] == 0 and tx[-1] == len(y) - 1 and (np.diff(tx) > 0).all()
    assert np.nanmax(ty) == np.nanmax(y) and np.nanmin(ty) == np.nanmin(y)
    assert np.isnan(ty).any()
    assert np.array_equal(ty, y[tx], equal_nan=True)  # points of the line, not made-up values
    short = np.arange(MAX_POINTS, dtype=float)
    assert np.array_equal(thinned(short, short)[1], short)


def test_plots_of_a_long_run_draw_at_most_max_points_a_line_with_its_extremes(run: Trace) -> None:
    other = long_run(4.0, seed=1)
    figures = [
        plot_traces([run, other]),
        lrkit.diagnose(run).plot(),
        plot_cost(run, other, compare_cost(run, other)),
    ]
    for figure in figures:
        drawn = lines(figure)
        assert drawn and all(len(line.get_xdata()) <= MAX_POINTS for line in drawn)
    loss = lines(figures[1])[0].get_ydata()
    finite = run.loss[np.isfinite(run.loss)]
    assert loss.max() == finite.max() and loss.min() == finite.min()  # the noise band and its spikes
    for figure in figures:
        plt.close(figure)


def test_overview_of_long_runs_draws_trends_over_noise_bands_and_marks_only_divergence(run: Trace) -> None:
    loss = long_run(4.0, seed=1).loss.copy()
    loss[150_000:] = np.nan
    diverged = long_run(4.0, seed=1).replace(loss=loss)
    figure = plot_traces([run, diverged], labels=["went on", "diverged"])
    ax = figure.axes[0]
    trends = [line for line in ax.get_lines() if line.get_label() in ("went on", "diverged")]
    assert [len(line.get_xdata()) for line in trends] == [2000, 2000]  # diagnose's smoothed curve
    assert all(line.get_alpha() is None for line in trends)  # drawn over the faint bands
    marked = [line.get_xdata()[0] for line in ax.get_lines() if line.get_linestyle() == ":"]
    assert marked == [150_000]  # not run's 50 skipped steps
    plt.close(figure)


def test_diagnosis_plot_of_a_long_run_says_it_went_on_past_skipped_steps(run: Trace) -> None:
    figure = lrkit.diagnose(run).plot()
    labels = figure.axes[0].get_legend_handles_labels()[1]
    assert any(label.startswith("first of 50 non-finite losses left out") for label in labels)
    val = next(line for line in lines(figure) if line.get_label() == "val_loss")
    assert val.get_marker() in ("None", "", None)  # 200 markers would merge into one blot
    plt.close(figure)


def test_report_of_long_runs_stays_small(run: Trace) -> None:
    page = render_report(runs=[run], baseline=long_run(4.0, seed=1))
    assert len(page) < 1_000_000  # every point drawn: 3.5 MB


def test_report_draws_many_guard_events_as_one_artist(monkeypatch) -> None:
    drawn = []
    chart = document._chart

    def spy(figure, alt):
        drawn.append((alt, [len(ax.collections) for ax in figure.axes], [len(ax.lines) for ax in figure.axes]))
        return chart(figure, alt)

    monkeypatch.setattr(document, "_chart", spy)
    render_report(runs=[long_run(nonfinite=500, events=500)])
    overview = next(found for found in drawn if found[0].startswith("training loss against step"))
    assert overview[1] == [1]  # one collection of 500 lines
    assert overview[2] == [3]  # the trend, its noise band and val_loss
