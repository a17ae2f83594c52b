"""A JAX/optax and a Keras user's checks of lrkit's schedules: odd steps (negative, NumPy floats, past
float32's exact integers), durations past int32, error messages, and a Keras model saved mid-schedule."""

import os
import re
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from lrkit import schedules as S
from lrkit.integrations.optax import optax_schedule
from schedule_strategies import cyclic, schedules

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported (the test process has no TensorFlow)
import keras  # noqa: E402

from lrkit.integrations.keras import KerasSchedule  # noqa: E402

FLOAT32 = 2e-6


@pytest.mark.parametrize("step", [np.float64(3.0), np.float32(-2.0), np.float64(np.nan), np.bool_(True)], ids=repr)
def test_numpy_non_integer_scalars_are_refused_like_python_floats(step):
    with pytest.raises(TypeError, match="step must be an int or an array of ints, got"):
        S.warmup_cosine(1e-3, 100, warmup_steps=10)(step)


@settings(max_examples=15)
@given(schedules, st.integers(1, 10**6))
def test_a_negative_jax_step_reads_as_step_zero(schedule, before):
    # NumPy refuses a negative step; a traced one cannot raise, so it must not give a rate NumPy never
    # would (a warmup read backwards goes negative, a polynomial rises above its peak).
    values = np.asarray(schedule(jnp.array([-before, -1, 0], dtype=jnp.int32)), dtype=np.float64)
    np.testing.assert_allclose(values, schedule(0), rtol=FLOAT32, atol=FLOAT32 * 1e-3)


@pytest.mark.parametrize("adapter", [optax_schedule, KerasSchedule], ids=["optax", "keras"])
def test_the_adapters_read_a_negative_step_as_step_zero(adapter):
    schedule = S.warmup(10) >> S.polynomial(1.0, 100, power=2.0)
    assert float(adapter(schedule)(-5)) == schedule(0) == 0.0
    assert float(adapter(S.polynomial(1.0, 100, power=2.0))(-50)) == 1.0


@settings(max_examples=15)
@given(cyclic(), st.lists(st.integers(2**24, 2**31 - 1), min_size=8, max_size=8))
def test_cyclic_stays_within_its_bounds_past_float32s_exact_steps(schedule, steps):
    # beyond 2**24 float32 cannot place a step inside its cycle; the rate must still stay in bounds
    values = np.asarray(schedule(jnp.asarray(steps, dtype=jnp.int32)), dtype=np.float64)
    assert np.all(values >= schedule.min_lr * (1 - FLOAT32))
    assert np.all(values <= schedule.max_lr * (1 + FLOAT32))


LONG = [
    S.cosine_restarts(1e-3, 1000, length_ratio=2, cycles=30) >> S.constant(1e-5),
    S.warmup(3_000_000_000) >> S.constant(1.0),
    S.multistep(1.0, [5, 3_000_000_000]),
    S.step_decay(1.0, 3_000_000_000, 0.5),
    S.exponential(1.0, 0.5, decay_steps=3_000_000_000),
    S.inverse_sqrt(1.0, 3_000_000_000),
    S.cyclic(0.1, 1.0, 3_000_000_000),
]


@pytest.mark.parametrize("schedule", LONG, ids=repr)
def test_durations_past_int32_work_under_jit_and_keras(schedule):
    steps = np.array([0, 7, 123_456, 10**7])
    expected = schedule(steps)
    under_jit = np.asarray(jax.jit(optax_schedule(schedule))(jnp.asarray(steps, dtype=jnp.int32)))
    np.testing.assert_allclose(under_jit, expected, rtol=FLOAT32, atol=FLOAT32 * 1e-3)
    in_keras = np.array([float(KerasSchedule(schedule)(int(step))) for step in steps])
    np.testing.assert_allclose(in_keras, expected, rtol=FLOAT32, atol=FLOAT32 * 1e-3)


def test_noise_keeps_varying_past_int32_steps_without_warnings():
    noisy = S.noise(S.constant(1.0), 0.5, seed=3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        values = noisy(np.arange(2**31 - 4, 2**31 + 60))
        assert noisy(10**10) != noisy(10**10 + 1)
    assert len(np.unique(values)) == len(values)
    assert np.all((values >= 0.5) & (values < 1.5))


@pytest.mark.parametrize(
    ("spec", "advice", "fixed"),
    [
        ("constant(1) >> constant(2)", "give it one with steps=N (constant(..., steps=N)) or put it last",
         "constant(2, steps=5) >> constant(1)"),
        ("scale(cosine_restarts(1, 10), 2) >> constant(1)",
         "give it one with cycles=N (cosine_restarts(..., cycles=N)) or put it last",
         "scale(cosine_restarts(1, 10, cycles=2), 2) >> constant(1)"),
        ("exponential(1, 0.5) >> constant(1)", "give it one with steps=N (exponential(..., steps=N)) or put it last",
         "exponential(1, 0.5, steps=5) >> constant(1)"),
        ("clip(multistep(1, [5]), min_lr=0.1) >> constant(1)", "(multistep(..., steps=N))",
         "clip(multistep(1, [5], steps=8), min_lr=0.1) >> constant(1)"),
        ("inverse_sqrt(1, 10) >> constant(1)", "(inverse_sqrt(..., steps=N))", "inverse_sqrt(1, 10, steps=5) >> constant(1)"),
        ("inverse_time(1, 0.5) >> constant(1)", "(inverse_time(..., steps=N))", "inverse_time(1, 0.5, steps=5) >> constant(1)"),
        ("cyclic(0.1, 1, 4) >> constant(1)", "(cyclic(..., steps=N))", "cyclic(0.1, 1, 4, steps=5) >> constant(1)"),
    ],
)
def test_a_phase_without_a_length_says_how_to_give_it_one(spec, advice, fixed):
    # every open-ended kind takes the argument the message names, and the advised spec works
    with pytest.raises(ValueError, match=r"has no length, so nothing can follow it; .*" + re.escape(advice)):
        S.parse(spec)
    schedule = S.parse(fixed)
    assert schedule.phases[0].length is not None
    assert schedule(schedule.starts[1]) == 1.0 and schedule(10_000) == 1.0


@pytest.mark.parametrize("metric", ["0.5", True, None, torch.ones(2)], ids=repr)
def test_plateau_refuses_what_is_not_a_number_naming_the_metric(metric):
    plateau = S.Plateau()
    with pytest.raises(TypeError, match="metric must be a number or a one-element tensor, got"):
        plateau.report(metric)
    assert plateau.reports == 0


def test_plateau_takes_numbers_arrays_and_tensors_of_one_element():
    plateau = S.Plateau(decay_ratio=0.5, patience=0)
    for metric in (1.0, np.float32(0.9), torch.tensor(0.8), jnp.float32(0.7), 2):
        plateau.report(metric)
    assert plateau.best == pytest.approx(0.7) and plateau.ratio == 0.5


def test_a_keras_model_saved_mid_schedule_resumes_on_it(tmp_path):
    schedule = S.warmup(5) >> S.cosine(peak=0.05, steps=45, end=1e-3)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=KerasSchedule(schedule)), loss="mse")
    inputs = np.random.default_rng(0).normal(size=(32, 3)).astype("float32")
    targets = inputs @ np.array([1.0, -2.0, 0.5], dtype="float32")
    model.fit(inputs, targets, batch_size=8, epochs=2, verbose=0)
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert restored.optimizer.get_config()["learning_rate"]["config"] == {"schedule": repr(schedule)}
    assert int(restored.optimizer.iterations) == 8
    assert float(restored.optimizer.learning_rate) == pytest.approx(schedule(8), rel=FLOAT32)
    restored.fit(inputs, targets, batch_size=8, epochs=1, verbose=0)
    assert float(restored.optimizer.learning_rate) == pytest.approx(schedule(12), rel=FLOAT32)
