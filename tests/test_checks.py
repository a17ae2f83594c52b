"""Argument checks: every message names the argument, the value and what is allowed."""

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit import checks


@given(st.floats(min_value=1e-300, max_value=1e300))
def test_positive_accepts_every_positive_finite(value):
    assert checks.positive("lr", value) == value


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "lr must be > 0, got 0"),
        (-1.0, ValueError, "lr must be > 0, got -1.0"),
        (math.inf, ValueError, "lr must be finite, got inf"),
        (math.nan, ValueError, "lr must be a number, got NaN"),
        ("1e-3", TypeError, "lr must be a number, got '1e-3' \\(str\\)"),
        (True, TypeError, "lr must be a number"),
    ],
)
def test_positive_refuses(value, error, message):
    with pytest.raises(error, match=message):
        checks.positive("lr", value)


def test_integer_refuses_floats_and_small_values():
    assert checks.integer("steps", 5, minimum=1) == 5
    with pytest.raises(TypeError, match="steps must be an integer, got 2.0"):
        checks.integer("steps", 2.0)
    with pytest.raises(ValueError, match="steps must be >= 1, got 0"):
        checks.integer("steps", 0, minimum=1)


def test_in_range_names_the_interval():
    assert checks.in_range("decay", 1.0, 0, 1, low_open=True) == 1.0
    with pytest.raises(ValueError, match=r"decay must be in \(0, 1\], got 0"):
        checks.in_range("decay", 0, 0, 1, low_open=True)


def test_one_of_and_ordered():
    assert checks.one_of("mode", "exp", ["exp", "linear"]) == "exp"
    with pytest.raises(ValueError, match="mode must be one of 'exp', 'linear'; got 'cubic'"):
        checks.one_of("mode", "cubic", ["exp", "linear"])
    with pytest.raises(ValueError, match="min_lr must be < max_lr, got min_lr=1 >= max_lr=0.1"):
        checks.ordered("min_lr", 1, "max_lr", 0.1)
