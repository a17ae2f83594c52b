"""The Trace: an immutable record that round-trips through CSV and JSON lines."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.trace import Event, Trace, TraceBuilder

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)
rates = st.one_of(st.floats(min_value=0, allow_infinity=False, width=64), st.just(math.nan))


@st.composite
def traces(draw):
    n = draw(st.integers(0, 30))
    steps = sorted(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True)))
    column = st.lists(floats, min_size=n, max_size=n)
    optional = st.one_of(st.none(), column)
    events = draw(st.lists(st.builds(Event, st.sampled_from(steps or [0]), st.sampled_from(["rollback", "nan"]), st.text(max_size=10))))
    meta = draw(st.dictionaries(st.sampled_from(["task", "seed", "lr"]), st.one_of(st.integers(), st.text(max_size=8))))
    lr = draw(st.lists(rates, min_size=n, max_size=n))
    return Trace(steps, lr, draw(column), draw(optional), draw(optional), events=events, meta=meta)


@given(traces())
def test_csv_round_trip(trace):
    assert Trace.from_csv(trace.to_csv()) == trace


@given(traces())
def test_jsonl_round_trip(trace):
    assert Trace.from_jsonl(trace.to_jsonl()) == trace


def test_save_and_load_pick_the_format_by_suffix(tmp_path):
    trace = Trace([0, 1, 2], [0.1, 0.1, 0.05], [2.0, 1.5, math.nan], val_loss=[math.nan, 1.6, math.nan], meta={"seed": 1})
    for name in ("t.csv", "t.jsonl"):
        path = trace.save(tmp_path / name)
        assert Trace.load(path) == trace
    assert (tmp_path / "t.csv").read_text().splitlines()[1] == "step,lr,loss,val_loss"
    assert not list(tmp_path.glob(".*tmp"))


def test_trace_is_immutable():
    trace = Trace([0, 1], [1e-3, 1e-3], [1.0, 0.5])
    with pytest.raises(ValueError):
        trace.loss[0] = 3.0
    with pytest.raises(AttributeError):
        trace.loss = np.zeros(2)
    assert trace.replace(loss=[3.0, 2.0]).loss.tolist() == [3.0, 2.0]
    assert trace.loss.tolist() == [1.0, 0.5]


def test_columns_must_align():
    with pytest.raises(ValueError, match="lr has 1 values but step has 2"):
        Trace([0, 1], [1e-3], [1.0, 0.5])


@given(
    rates=st.lists(rates, min_size=1, max_size=20),
    bad=st.sampled_from([-1e-3, -5.0, -math.inf, math.inf]),
    data=st.data(),
)
def test_a_negative_or_infinite_lr_is_refused_naming_the_first_one(rates, bad, data):
    index = data.draw(st.integers(0, len(rates) - 1))
    lr = rates[:index] + [bad] + rates[index + 1 :]
    n = len(lr)
    with pytest.raises(ValueError, match=rf"lr must be >= 0 and finite \(NaN where unknown\), got {bad!r} at index {index}$"):
        Trace(range(n), lr, [1.0] * n)


def test_an_lr_of_zero_or_unknown_is_allowed():
    trace = Trace([0, 1, 2], [0.0, math.nan, 1e-3], [3.0, 2.0, 1.0])
    assert trace.lr[0] == 0.0 and np.isnan(trace.lr[1])


@pytest.mark.parametrize(
    ("columns", "error", "message"),
    [
        ({"loss": np.array(["a", "b", "c"])}, TypeError, r"loss must be a 1-D array of numbers, got 'a' \(str\) at index 0"),
        ({"lr": [1e-3, None, 1e-3]}, TypeError, r"lr must be a 1-D array of numbers, got None \(NoneType\) at index 1"),
        ({"loss": np.array([True, False, True])}, TypeError, r"loss must be a 1-D array of numbers, got True \(bool\) at index 0"),
        ({"val_loss": [1.0, 2.0, 1j]}, TypeError, r"val_loss must be a 1-D array of numbers, got 1j \(complex\) at index 2"),
        ({"loss": np.ones((3, 2))}, ValueError, r"loss must be a 1-D array of numbers, got shape \(3, 2\)"),
        ({"grad_norm": np.ones((1, 3))}, ValueError, r"grad_norm must be a 1-D array of numbers, got shape \(1, 3\)"),
        ({"loss": [[1.0, 2.0], [3.0]]}, ValueError, r"loss must be a 1-D array of numbers, got \[\[1.0, 2.0\], \[3.0\]\]"),
        ({"step": 0}, ValueError, r"step must be a 1-D array of numbers, got shape \(\)"),
        ({"step": [0, 1.5, 2]}, ValueError, r"step must hold whole numbers, got 1.5 at index 1"),
        ({"step": [0, 1, math.nan]}, ValueError, r"step must hold whole numbers, got nan at index 2"),
    ],
)
def test_columns_that_are_not_1d_numbers_are_refused_naming_the_column(columns, error, message):
    good = {"step": [0, 1, 2], "lr": [1e-3] * 3, "loss": [3.0, 2.0, 1.0]}
    with pytest.raises(error, match=message):
        Trace(**{**good, **columns})


def test_whole_float_steps_and_numeric_objects_are_numbers():
    from fractions import Fraction

    trace = Trace(np.array([0.0, 1.0, 2.0]), [1e-3] * 3, np.array([Fraction(3), 2, 1.0], dtype=object))
    assert trace.step.dtype == np.int64 and trace.step.tolist() == [0, 1, 2]
    assert trace.loss.dtype == np.float64 and trace.loss.tolist() == [3.0, 2.0, 1.0]


def test_builder_collects_steps_events_and_validation():
    builder = TraceBuilder(task="x")
    builder.add(0, 0.1, 2.0)
    builder.add(1, 0.1, 1.0)
    builder.set_val_loss(1.2)
    builder.event(1, "rollback", "spike")
    trace = builder.build()
    assert len(trace) == 2
    assert np.isnan(trace.val_loss[0]) and trace.val_loss[1] == 1.2
    assert trace.grad_norm is None
    assert trace.events == (Event(1, "rollback", "spike"),)
    assert "n=2" in repr(trace) and "1 events" in repr(trace)


def test_select_keeps_rows_and_their_events():
    trace = Trace([0, 1, 2, 3], [1, 2, 3, 4], [4, 3, 2, 1], events=[Event(0, "a"), Event(3, "b")])
    tail = trace.select(trace.step >= 2)
    assert tail.step.tolist() == [2, 3]
    assert tail.events == (Event(3, "b"),)
