"""The Trace: an immutable record that round-trips through CSV and JSON lines."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit.trace import Event, Trace, TraceBuilder

floats = st.floats(allow_nan=True, allow_infinity=True, width=64)


@st.composite
def traces(draw):
    n = draw(st.integers(0, 30))
    steps = sorted(draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True)))
    column = st.lists(floats, min_size=n, max_size=n)
    optional = st.one_of(st.none(), column)
    events = draw(st.lists(st.builds(Event, st.sampled_from(steps or [0]), st.sampled_from(["rollback", "nan"]), st.text(max_size=10))))
    meta = draw(st.dictionaries(st.sampled_from(["task", "seed", "lr"]), st.one_of(st.integers(), st.text(max_size=8))))
    return Trace(steps, draw(column), draw(column), draw(optional), draw(optional), events=events, meta=meta)


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
