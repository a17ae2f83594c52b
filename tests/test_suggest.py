"""suggest(): the rule read from range-test curves, checked on synthetic families of curves."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from lrkit.suggest import (
    MARGIN,
    DivergenceWatch,
    Suggestion,
    divergence_index,
    ema,
    first_rise,
    smooth,
    suggest,
)
from lrkit.trace import Trace


def range_test(
    *,
    points: int = 80,
    low: float = -7.0,
    high: float = 1.0,
    valley: float = -2.0,
    width: float = 0.4,
    blowup: float = 0.5,
    noise: float = 0.02,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """A textbook range test in log10 LR: flat, a descent centred at ``valley``, a blow-up at ``blowup``."""
    x = np.linspace(low, high, points)
    descent = 1.0 / (1.0 + np.exp(-(x - valley) / width))
    explode = np.exp(np.clip(4.0 * (x - blowup), -50, 50))
    rng = np.random.default_rng(seed)
    loss = 2.0 - 1.5 * descent + explode + noise * rng.standard_normal(points)
    return 10.0**x, loss


def trace_of(lr: np.ndarray, loss: np.ndarray) -> Trace:
    return Trace(step=np.arange(len(lr)), lr=lr, loss=loss)


curves = st.fixed_dictionaries(
    {
        "points": st.integers(30, 150),
        "valley": st.floats(-5.0, -2.5),
        "width": st.floats(0.15, 0.6),
        "blowup": st.floats(-1.0, 0.8),
        "noise": st.floats(0.0, 0.1),
        "seed": st.integers(0, 1000),
    }
)


def test_textbook_curve_is_read_as_expected():
    lr, loss = range_test(valley=-3.0, blowup=-0.5, noise=0.01)
    result = suggest(trace_of(lr, loss))
    assert result.usable and isinstance(result, Suggestion)
    low, high = result.range
    assert low <= result.lr <= high <= result.max_stable_lr
    assert result.lr == pytest.approx(result.max_stable_lr / MARGIN)
    assert 1e-3 < result.lr < 1e-1  # past the middle of the descent, well below the blow-up
    assert result.evidence["min_loss_lr"] <= result.max_stable_lr < result.evidence["diverged_lr"]
    assert "below the last stable rate" in result.reason and "lr=" in repr(result)


@given(curves, st.floats(-1e3, 1e3), st.sampled_from([0.25, 0.5, 2.0, 64.0]))
def test_invariant_to_loss_offset_and_scale(curve, offset, scale):
    lr, loss = range_test(**curve)
    base = suggest(trace_of(lr, loss))
    moved = suggest(trace_of(lr, offset + scale * loss))
    assert (base.lr is None) == (moved.lr is None)
    if base.lr is not None:
        assert math.isclose(base.lr, moved.lr, rel_tol=1e-9)
        assert base.range == pytest.approx(moved.range, rel=1e-9)


@given(curves, st.floats(-4.0, 4.0))
def test_lr_scale_shift_moves_the_suggestion_by_the_same_factor(curve, decades):
    lr, loss = range_test(**curve)
    base = suggest(trace_of(lr, loss))
    shifted = suggest(trace_of(lr * 10.0**decades, loss))
    assert (base.lr is None) == (shifted.lr is None)
    if base.lr is not None:
        assert shifted.lr == pytest.approx(base.lr * 10.0**decades, rel=1e-6)


@given(curves)
@example({"points": 30, "valley": -3.0, "width": 0.5, "blowup": 0.0, "noise": 0.0625, "seed": 541})
def test_suggestion_sits_a_margin_below_the_edge_and_not_far_below_the_descent(curve):
    lr, loss = range_test(**curve)
    result = suggest(trace_of(lr, loss))
    assert result.usable and result.max_stable_lr is not None
    low, high = result.range
    assert low <= result.lr <= high <= result.max_stable_lr
    assert result.lr == pytest.approx(max(result.max_stable_lr / MARGIN, lr[0]))
    # the edge is not before the loss has done most of its falling, nor past the blow-up
    assert math.log10(result.max_stable_lr) > curve["valley"] - 0.5
    if "diverged_lr" in result.evidence:
        assert result.max_stable_lr < result.evidence["diverged_lr"]


@given(st.floats(-1e4, -1.0), st.integers(0, 100))
def test_divergence_is_detected_for_negative_losses(offset, seed):
    lr, loss = range_test(seed=seed, blowup=0.0)
    negative = loss - loss.max() + offset  # every loss negative
    assert np.all(negative < 0)
    assert divergence_index(negative, window=3) == divergence_index(loss, window=3) is not None
    result = suggest(trace_of(lr, negative))
    assert result.usable and result.max_stable_lr is not None


def test_divergence_is_read_on_the_training_loss_when_the_validation_loss_is_used():
    lr, loss = range_test(valley=-3.0, blowup=0.0, noise=0.02)
    # a validation loss with no noise at all: creeping up by 1e-4 at tiny rates is no blow-up,
    # though without noise to measure it against its shape is a blow-up's
    val = 2.0 - 1.5 / (1.0 + np.exp(-(np.log10(lr) + 3.0) / 0.4)) + np.exp(np.clip(4.0 * np.log10(lr), -50, 50))
    val[:30] = 2.0 + 1e-9 * 1.5 ** np.arange(30)
    trace = Trace(step=np.arange(len(lr)), lr=lr, loss=loss, val_loss=val)
    result = suggest(trace, use="val_loss")
    assert result.usable, result.reason
    assert result.evidence["diverged_lr"] == suggest(trace, use="loss").evidence["diverged_lr"]


def test_flat_noise_has_no_valley_and_says_why():
    rng = np.random.default_rng(0)
    lr = np.geomspace(1e-7, 1e-3, 60)
    result = suggest(trace_of(lr, 1.0 + 0.01 * rng.standard_normal(60)))
    assert not result.usable and result.lr is None and result.range is None
    assert "no more than its step-to-step noise" in result.reason and "no clear valley" in result.reason
    assert "no usable curve" in repr(result)
    falling_never = suggest(trace_of(lr, 1.0 + 1e-3 * np.arange(60)))
    assert falling_never.reason.startswith("the loss never fell below its first value and blew up")
    still = suggest(trace_of(lr, 1.0 + 1e-3 * np.arange(60)), window=60)  # too slow to call a blow-up
    assert still.reason.startswith("the loss did not fall during the test (no valley)")


def test_a_loss_that_is_nan_from_the_first_step_is_not_usable():
    lr = np.geomspace(1e-5, 1.0, 20)
    result = suggest(trace_of(lr, np.full(20, np.nan)))
    assert not result.usable and "nan from the first step" in result.reason


def test_too_few_points_before_divergence_are_not_usable():
    lr, loss = range_test(points=40)
    loss[5] = np.inf
    result = suggest(trace_of(lr, loss))
    assert not result.usable and "only 5 usable points" in result.reason


def test_still_falling_at_max_lr_says_so():
    lr, loss = range_test(high=-2.0, valley=-2.5, blowup=5.0, noise=0.0)
    result = suggest(trace_of(lr, loss))
    assert result.usable and result.max_stable_lr is None
    assert "still falling" in result.reason


def test_validation_column_is_used_when_recorded():
    lr, loss = range_test(valley=-4.0, noise=0.0)
    _, val = range_test(valley=-2.0, noise=0.0)
    trace = Trace(step=np.arange(len(lr)), lr=lr, loss=loss, val_loss=val)
    assert suggest(trace).lr == suggest(trace_of(lr, val)).lr
    assert suggest(trace, use="loss").lr == suggest(trace_of(lr, loss)).lr


def test_first_rise_finds_a_one_step_jump_and_ignores_noise():
    rng = np.random.default_rng(1)
    loss = np.concatenate(
        [np.linspace(2.0, 1.0, 30), [1.0, 1.6, 1.2, 3.0]]
    ) + 0.01 * rng.standard_normal(34)
    assert first_rise(loss, start=2.0, noise=0.01, window=2) == 31
    flat = 1.0 + 0.01 * rng.standard_normal(200)
    assert first_rise(flat, start=1.0, noise=0.01, window=2) is None


def test_ema_is_bias_corrected():
    assert np.allclose(ema(np.full(5, 3.0), window=4), 3.0)


def test_smooth_has_no_lag_on_a_line_and_gives_the_slope_against_log_lr():
    lr = np.geomspace(1e-6, 1.0, 25)
    loss = 3.0 - 0.5 * np.log10(lr)
    level, slope = smooth(lr, loss, window=3)
    assert np.allclose(level, loss) and np.allclose(slope, -0.5)


@given(st.lists(st.floats(-1e6, 1e6), min_size=1, max_size=40), st.floats(-1e3, 1e3))
def test_watch_never_fires_on_a_loss_that_only_falls(values, offset):
    watch = DivergenceWatch(window=3)
    falling = offset + np.sort(np.abs(values))[::-1]
    assert not any(watch.update(float(v)) for v in falling)


def test_watch_fires_on_non_finite_loss_at_once():
    assert DivergenceWatch().update(math.nan)
    assert DivergenceWatch().update(math.inf)


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"lr": [1e-3, 1e-4, 1e-2]}, ValueError, "trace.lr must not decrease"),
        ({"lr": [0.0, 1e-4, 1e-2]}, ValueError, "trace.lr must be finite and > 0"),  # a Trace allows 0
    ],
)
def test_bad_traces_are_refused(changes, error, message):
    trace = Trace(step=[0, 1, 2], lr=[1e-4, 1e-3, 1e-2], loss=[1.0, 0.9, 0.8]).replace(**changes)
    with pytest.raises(error, match=message):
        suggest(trace)


def test_bad_arguments_are_named():
    trace = Trace(step=[0, 1], lr=[1e-4, 1e-3], loss=[1.0, 0.9])
    with pytest.raises(TypeError, match="trace must be a lrkit Trace, got list"):
        suggest([1, 2])
    with pytest.raises(ValueError, match="use must be one of"):
        suggest(trace, use="train")
    with pytest.raises(ValueError, match="no val_loss column"):
        suggest(trace, use="val_loss")
    with pytest.raises(ValueError, match=r"window must be in \[0.5, inf\], got 0"):
        suggest(trace, window=0)
    with pytest.raises(ValueError, match="window must be in"):
        DivergenceWatch(window=0.5)


def test_a_test_that_blew_up_without_ever_falling_says_the_rates_were_too_high():
    lr = np.linspace(1e-9, 1e3, 60)  # a linear sweep over 12 decades: step 1 is already at 17
    loss = 2.3 * np.exp(np.arange(60) / 3.0)  # rising from the first step until it is inf
    loss[40:] = np.inf
    result = suggest(trace_of(lr, loss))
    assert not result.usable and "diverged_lr" in result.evidence
    assert result.reason.startswith("the loss never fell below its first value and blew up")
    assert "lower min_lr and max_lr" in result.reason and "use an exponential sweep" in result.reason
    exponential = suggest(trace_of(np.geomspace(1.0, 1e3, 60), loss))
    assert "lower min_lr and max_lr" in exponential.reason and "exponential" not in exponential.reason
