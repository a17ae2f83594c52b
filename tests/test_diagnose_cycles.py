"""diagnose under schedules that raise the LR on purpose (warm restarts, cyclical LRs): the loss is
compared at the ends of cycles, where the LR stands as low, and its answer to a raised LR is no
sign of a rate too high unless it undoes a large share of the progress."""

import dataclasses

import numpy as np

from lrkit.diagnosis import diagnose
from lrkit.schedules import CosineRestarts, Cyclic
from lrkit.tasks import get_task, train
from lrkit.trace import Trace

DIGITS_MLP_BEST = 0.005623413251903491  # benchmarks/results/ground_truth.json
TEACHER_STUDENT_BEST = 0.005623413251903491


def scheduled(name: str, schedule) -> object:
    return dataclasses.replace(get_task(name), make_schedule=schedule)


def test_cyclical_lr_far_too_high_is_not_told_to_raise_it():
    # 30x the grid-best LR under a triangular cycle ends at val 0.43 (0.094 at the best LR); the
    # falling half of the last cycle used to read as a late fall ("raise the LR about 3x")
    task = scheduled("digits-mlp", lambda peak, steps: Cyclic(peak / 10, peak, 60))
    result = diagnose(train(task, 30 * DIGITS_MLP_BEST).trace)
    assert result.verdict != "too_low" and result.lr_factor <= 1
    assert result.evidence.cycle_end_steps == (120, 240, 360, 480, 599)
    assert "overfitting" not in result.action


def test_cyclical_lr_at_the_best_rate_starting_low_has_no_spikes():
    # the LR starts at a tenth of its peak, so the first fall is slow: the noise of the first steps
    # used to stand above a smoothed start that saw only later, lower points (7 "spikes")
    task = scheduled("teacher-student", lambda peak, steps: Cyclic(peak / 10, peak, steps // 12))
    result = diagnose(train(task, TEACHER_STUDENT_BEST, steps=2400).trace)
    assert result.verdict == "healthy"
    assert result.evidence.spike_count == 0


def sgdr_run(steps: int = 600, seed: int = 0) -> Trace:
    """A healthy run under warm restarts (cycles of 40, 80, 160, 320 steps): the loss levels off
    at each cycle's end and climbs back part of the way after each restart."""
    rng = np.random.default_rng(seed)
    step = np.arange(steps)
    lr = CosineRestarts(0.1, 40, length_ratio=2)(step)
    base = 0.05 + 2.0 * np.exp(-step / 20)
    bump = 0.3 * lr / 0.1 * (step >= 40)  # the loss answers a raised LR
    loss = base + bump + rng.normal(0, 0.01, steps)
    val = np.full(steps, np.nan)
    val[19::20] = base[19::20] + bump[19::20] + 0.1
    return Trace(step=step, lr=lr, loss=loss, val_loss=val)


def test_warm_restarts_judge_the_trend_between_cycle_ends():
    # the last 30% of the run lies in the recovery from the last restart, where both losses fall
    # as the LR decays; between cycle ends, where the LR is as low, the loss has levelled off
    result = diagnose(sgdr_run())
    assert result.verdict == "healthy"
    assert result.evidence.cycle_end_steps == (39, 119, 279, 599)
    assert result.evidence.trend < 0.25


def test_the_plot_marks_the_cycle_ends_the_run_was_compared_at():
    trace = sgdr_run()
    figure = diagnose(trace).plot()
    (ends,) = [line for line in figure.axes[0].lines if line.get_label() == "4 cycle ends (compared)"]
    assert ends.get_xdata().tolist() == [39, 119, 279, 599]
    assert ends.get_ydata().tolist() == trace.loss[[39, 119, 279, 599]].tolist()
    plain = Trace(step=np.arange(300), lr=np.full(300, 0.1), loss=np.exp(-np.arange(300) / 50) + 0.1)
    labels = [line.get_label() for line in diagnose(plain).plot().axes[0].lines]
    assert not any("cycle ends" in label for label in labels)
