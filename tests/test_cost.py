"""What an LR choice costs: steps and time to a target loss, and the money saved."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.cost import (
    compare_cost,
    moving_mean,
    seconds_per_step,
    steps_to_reach,
    steps_to_target,
    time_source,
)
from lrkit.trace import Trace


def decay(tau: float, steps: int, **meta: object) -> Trace:
    """A loss falling as exp(-t / tau)."""
    t = np.arange(steps)
    return Trace(step=t, lr=np.full(steps, 0.1), loss=np.exp(-t / tau), meta=meta)


@given(
    st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=60),
    st.integers(1, 12),
)
def test_moving_mean_is_the_mean_of_the_last_window(values: list[float], window: int) -> None:
    means = moving_mean(np.array(values), window)
    for i, got in enumerate(means):
        want = np.mean(values[max(0, i + 1 - window) : i + 1])
        assert got == pytest.approx(want, rel=1e-9, abs=1e-6)


def test_moving_mean_is_nan_at_a_non_finite_loss_and_leaves_it_out_after() -> None:
    means = moving_mean(np.array([1.0, 3.0, math.inf, 1.0, 5.0]), 2)
    assert means[:2].tolist() == [1.0, 2.0] and np.isnan(means[2])
    assert means[3:].tolist() == [1.0, 3.0]  # a skipped step (the guard's) does not end the run


@given(tau=st.floats(2, 50), target=st.floats(0.01, 0.9))
def test_steps_to_target_on_an_exponential_decay(tau: float, target: float) -> None:
    trace = decay(tau, 1000)
    first = int(np.flatnonzero(np.exp(-np.arange(1000) / tau) <= target)[0])
    assert steps_to_target(trace, target, window=1) == first + 1


@given(every=st.integers(1, 100), start=st.integers(0, 1000))
def test_a_log_written_every_n_steps_counts_steps_by_its_step_column(every: int, start: int) -> None:
    dense = decay(40, 2000, seconds=2.0)
    rows = np.arange(0, 2000, every)
    sparse = Trace(step=start + rows, lr=dense.lr[rows], loss=dense.loss[rows], meta={"seconds": 2.0})
    before = 0 if start > every else start  # steps before the first row: none for a log that starts mid-run
    reached = steps_to_target(sparse, 0.2, window=1)
    assert reached == before + int(np.flatnonzero(dense.loss[rows] <= 0.2)[0]) * every + 1
    cost = compare_cost(sparse, sparse, target_loss=0.2)
    assert cost.chosen.run_steps == before + rows[-1] + 1  # steps the run covers, not rows logged
    assert seconds_per_step(sparse) == pytest.approx(2.0 / (before + rows[-1] + 1))


def test_a_target_never_reached_is_none() -> None:
    assert steps_to_target(decay(10, 50), 1e-9) is None


def test_faster_run_saves_steps_time_and_money() -> None:
    chosen = decay(10, 400, seconds=4.0)  # 10 ms per step
    baseline = decay(50, 400, seconds=4.0)
    cost = compare_cost(chosen, baseline, target_loss=0.05, search_steps=20, price_per_gpu_hour=3.0)
    assert cost.chosen.steps < cost.baseline.steps
    assert cost.steps_saved == cost.baseline.steps - cost.chosen.steps - 20
    assert cost.speedup == pytest.approx(cost.baseline.steps / (cost.chosen.steps + 20))
    assert cost.seconds_saved == pytest.approx(cost.steps_saved * 0.01)
    assert cost.money_saved == pytest.approx(cost.seconds_saved / 3600 * 3.0)
    assert not cost.at_least


@given(tau_a=st.floats(3, 80), tau_b=st.floats(3, 80))
def test_default_target_is_the_higher_final_loss_and_swapping_negates_the_saving(tau_a: float, tau_b: float) -> None:
    a, b = decay(tau_a, 300), decay(tau_b, 300)
    forward, backward = compare_cost(a, b), compare_cost(b, a)
    assert forward.chosen.steps is not None and forward.baseline.steps is not None
    assert forward.target_loss == backward.target_loss
    assert forward.target_loss == max(moving_mean(a.loss)[-1], moving_mean(b.loss)[-1])
    assert forward.steps_saved == -backward.steps_saved


def test_baseline_that_never_gets_there_gives_a_lower_bound() -> None:
    cost = compare_cost(decay(5, 200), decay(500, 200), target_loss=0.01)
    assert cost.baseline.steps is None and cost.at_least
    assert cost.steps_saved == 200 - cost.chosen.steps


def test_chosen_run_that_never_gets_there_saves_nothing() -> None:
    cost = compare_cost(decay(500, 200), decay(5, 200), target_loss=0.01)
    assert cost.steps_saved is None and cost.speedup is None and cost.money_saved is None


def test_time_is_unknown_without_recorded_seconds() -> None:
    cost = compare_cost(decay(10, 100), decay(20, 100), price_per_gpu_hour=2.0)
    assert seconds_per_step(decay(10, 100)) is None
    assert cost.seconds_saved is None and cost.money_saved is None
    assert seconds_per_step(decay(10, 100, seconds_per_step=0.5)) == 0.5


def test_each_run_says_where_its_step_time_came_from() -> None:
    logged = decay(10, 400, seconds_per_step=0.5, time_source="the log's 'time' column")  # as read_log sets it
    recorded = decay(50, 400, seconds=40.0)
    cost = compare_cost(logged, recorded, target_loss=0.05)
    assert cost.chosen.time_source == "the log's 'time' column"
    assert cost.baseline.time_source == "the run's recorded meta 'seconds'"
    assert cost.seconds_saved == pytest.approx(cost.baseline.steps * 0.1 - cost.chosen.steps * 0.5)
    assert time_source(decay(10, 100, seconds_per_step=0.1)) == "the run's recorded meta 'seconds_per_step'"
    assert time_source(decay(10, 100, time_source="a clock")) is None  # no time, whatever it names


def test_diverged_run_is_compared_on_the_loss_the_other_reaches() -> None:
    blown = Trace(step=np.arange(5), lr=np.ones(5), loss=[2.0, 5.0, 50.0, math.inf, math.nan])
    cost = compare_cost(blown, decay(10, 100))
    assert cost.chosen.steps is None and cost.baseline.steps is not None


def test_bad_arguments_are_named() -> None:
    with pytest.raises(ValueError, match="price_per_gpu_hour must be >= 0, got -1"):
        compare_cost(decay(5, 50), decay(9, 50), price_per_gpu_hour=-1)
    with pytest.raises(ValueError, match="search_steps must be >= 0"):
        compare_cost(decay(5, 50), decay(9, 50), search_steps=-3)
    with pytest.raises(TypeError, match="baseline must be a Trace, got list"):
        compare_cost(decay(5, 50), [1.0, 0.5])
    with pytest.raises(ValueError, match="target_loss must be a number, got NaN"):
        compare_cost(decay(5, 50), decay(9, 50), target_loss=math.nan)
    nothing = Trace(step=[0, 1], lr=[1, 1], loss=[math.nan, math.nan])
    with pytest.raises(ValueError, match="neither run ended below where it began"):
        compare_cost(nothing, nothing)


def test_two_runs_of_one_task_share_a_step_time_so_saved_steps_are_saved_seconds() -> None:
    chosen = decay(10, 400, task="digits-mlp", seconds_per_step=0.0011)  # timing noise between runs
    baseline = decay(12, 400, task="digits-mlp", seconds_per_step=0.0009)
    cost = compare_cost(chosen, baseline, target_loss=0.05)
    assert cost.chosen.seconds_per_step == cost.baseline.seconds_per_step == pytest.approx(0.001)
    assert cost.steps_saved > 0 and cost.seconds_saved == pytest.approx(cost.steps_saved * 0.001)
    other = compare_cost(decay(10, 400, task="a", seconds_per_step=0.0011), baseline, target_loss=0.05)
    assert other.chosen.seconds_per_step == 0.0011  # different models keep their own step times


def test_a_run_that_passes_the_target_and_then_blows_up_never_reaches_it():
    falls = np.linspace(2.0, 0.1, 100)
    blown = Trace(step=np.arange(110), lr=np.full(110, 0.1), loss=np.concatenate([falls, np.full(10, np.nan)]))
    sound = Trace(step=np.arange(100), lr=np.full(100, 0.1), loss=falls)
    assert steps_to_target(blown, 0.5) == steps_to_target(sound, 0.5) is not None  # it did pass it
    assert steps_to_reach(blown, 0.5) is None  # but a failed run reaches nothing (demo and report agree)
    assert steps_to_reach(sound, 0.5) == steps_to_target(sound, 0.5)
