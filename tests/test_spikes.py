"""The pure spike rule: what counts as a spike, what never does, and how it rejects bad settings."""

from __future__ import annotations

import math
import random

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.spikes import Baseline, SpikeRule, SpikeState, Verdict, find_spikes

positive_losses = st.lists(st.floats(1e-6, 1e6, allow_nan=False), min_size=1, max_size=200)


def noisy(n: int, seed: int, level: float = 1.0, spread: float = 0.2) -> list[float]:
    rng = random.Random(seed)
    return [level * (1 + spread * rng.uniform(-1, 1)) for _ in range(n)]


def test_a_sustained_jump_is_a_spike_at_its_confirming_step():
    rule = SpikeRule(confirm=3)
    losses = noisy(60, seed=0) + [10.0, 12.0, 11.0, 1.0]
    assert find_spikes(losses, rule) == [62]


def test_fewer_anomalous_steps_than_confirm_is_only_suspect():
    rule = SpikeRule(confirm=3)
    state = SpikeState()
    for loss in noisy(30, seed=1):
        state, _ = rule.update(state, loss)
    verdicts = []
    for loss in (20.0, 20.0, 1.0):
        state, verdict = rule.update(state, loss)
        verdicts.append(verdict)
    assert verdicts == [Verdict.SUSPECT, Verdict.SUSPECT, Verdict.OK]
    assert state.clean and 20.0 not in state.recent


def test_warmup_judges_only_large_relative_rises():
    rule = SpikeRule(warmup_steps=20, warmup_rise=2.0, confirm=2)
    # an exploding first step (a classic too-high LR) is caught before the noise is measurable
    assert find_spikes([2.3, 400.0, 150.0, 3.0], rule) == [2]
    # a noisy start, even 2.5x the median for a while, is not a spike
    assert find_spikes([1.0, 2.5, 2.5, 2.5, 0.9], rule) == []
    verdicts = [rule.update(SpikeState(), 1.0)[1]]
    assert verdicts == [Verdict.WARMUP]


def test_nonfinite_losses_leave_the_state_alone():
    rule = SpikeRule()
    state, _ = rule.update(SpikeState(), 1.0)
    for bad in (math.nan, math.inf, -math.inf):
        after, verdict = rule.update(state, bad)
        assert verdict is Verdict.NONFINITE and after == state


@given(positive_losses)
def test_a_curve_that_never_rises_never_spikes(losses):
    assert find_spikes(sorted(losses, reverse=True)) == []


@given(st.floats(1e-3, 1e3), st.integers(1, 300))
def test_a_flat_curve_never_spikes(level, n):
    assert find_spikes([level] * n) == []


@given(st.integers(0, 10_000), st.integers(2, 5))
def test_isolated_outliers_in_a_noisy_curve_never_spike(seed, confirm):
    rng = random.Random(seed)
    losses = noisy(300, seed)
    for index in range(25, 300, confirm + rng.randint(1, 5)):
        for offset in range(confirm - 1):  # a burst one shorter than confirm
            if index + offset < len(losses):
                losses[index + offset] *= rng.uniform(5, 50)
    assert find_spikes(losses, SpikeRule(confirm=confirm)) == []


@given(positive_losses, st.integers(-20, 20))
def test_verdicts_do_not_depend_on_the_loss_scale(losses, power):
    scale = 2.0**power  # exact in floating point, so no rounding can flip a comparison
    assert find_spikes(losses) == find_spikes([loss * scale for loss in losses])


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), max_size=120), st.integers(3, 40))
def test_the_state_keeps_the_last_window_accepted_losses_sorted_alongside(losses, window):
    rule = SpikeRule(window=window, warmup_steps=3)
    state = SpikeState()
    accepted = []
    for loss in losses:
        state, verdict = rule.update(state, loss)
        if verdict in (Verdict.OK, Verdict.WARMUP):
            accepted.append(loss)
    assert list(state.recent) == accepted[-window:]
    assert list(state.ordered) == sorted(state.recent)
    assert state.accepted == len(accepted)


@given(st.lists(st.floats(-1e3, 1e3, allow_nan=False), min_size=1, max_size=60))
def test_baseline_is_the_median_and_scaled_mad(values):
    baseline = Baseline.of(values)
    median = float(np.median(values))
    assert baseline.median == pytest.approx(median, abs=1e-9)
    assert baseline.sigma == pytest.approx(1.4826 * float(np.median(np.abs(np.array(values) - median))), abs=1e-9)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"window": 2}, "window must be >= 3, got 2"),
        ({"warmup_steps": 60, "window": 50}, "warmup_steps must be <= window"),
        ({"threshold": 0}, "threshold must be > 0, got 0"),
        ({"rise": -0.1}, "rise must be >= 0, got -0.1"),
        ({"warmup_rise": -1}, "warmup_rise must be >= 0, got -1"),
        ({"confirm": 0}, "confirm must be >= 1, got 0"),
    ],
)
def test_bad_settings_name_the_argument(options, message):
    with pytest.raises(ValueError, match=message):
        SpikeRule(**options)


def test_wrong_types_are_refused():
    with pytest.raises(TypeError, match="confirm must be an integer, got 2.0"):
        SpikeRule(confirm=2.0)
    with pytest.raises(ValueError, match="losses must hold at least one value"):
        Baseline.of([])


@pytest.mark.parametrize(
    ("losses", "message"),
    [
        ("abc", r"losses must be a sequence of numbers, got 'abc' \(str\)$"),
        (3.0, r"losses must be a sequence of numbers, got 3.0 \(float\)$"),
        (None, r"losses must be a sequence of numbers, got None \(NoneType\)$"),
        ([1.0, "2.0"], r"losses must be a sequence of numbers, got '2.0' \(str\) at index 1$"),
        ([1.0, 0.5, True], r"losses must be a sequence of numbers, got True \(bool\) at index 2$"),
        (np.ones((4, 2)), r"losses must be a sequence of numbers, got array\(\[1., 1.\]\) \(ndarray\) at index 0$"),
    ],
)
def test_losses_that_are_not_numbers_are_refused_naming_losses(losses, message):
    with pytest.raises(TypeError, match=message):
        find_spikes(losses)


def test_a_rule_that_is_not_a_spike_rule_is_refused():
    with pytest.raises(TypeError, match=r"rule must be a SpikeRule or None, got 3 \(int\)"):
        find_spikes([1.0, 2.0], rule=3)


@given(losses=st.lists(st.one_of(st.floats(), st.integers(-10**6, 10**6)), max_size=60))
def test_any_numbers_nan_and_infinity_included_are_losses(losses):
    assert find_spikes(losses) == find_spikes(np.array(losses, dtype=np.float64))
