"""lrkit schedules inside optax (under jit) and Keras 3 (torch backend): same values as NumPy."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch

from lrkit import ScheduleLR
from lrkit import schedules as S
from lrkit.integrations.optax import optax_schedule

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported (the test process has no TensorFlow)
import keras  # noqa: E402

from lrkit.integrations.keras import KerasSchedule  # noqa: E402

SCHEDULES = [
    S.warmup_cosine(1e-3, 100, warmup_steps=10),
    S.noise(S.cosine_restarts(0.1, 10, length_ratio=2, peak_ratio=0.5, cycles=3), 0.2, seed=5),
    S.cyclic(1e-3, 1e-2, 5, mode="triangular2"),
    S.one_cycle(0.1, 60, up_steps=14, three_phase=True, anneal="linear"),
    S.clip(S.scale(S.multistep(0.1, [3, 7]), 2.0), min_lr=0.01),
    S.wsd(1e-3, 80, 10, 30, cooldown="1-sqrt") >> S.inverse_sqrt(1e-5, 100),
    S.step_decay(1.0, 41, 0.5),
    S.polynomial(1.0, 5, power=1.5) >> S.polynomial(0.5, 49, power=0.5),  # XLA's t * (1/41) floors one step early unless corrected
    S.cyclic(0.1, 1.0, 47, down_steps=49),
    S.inverse_time(0.1, 0.5, decay_steps=7),
    S.warmup(5) >> S.inverse_time(1.0, 2.0, decay_steps=49, staircase=True),  # 49 * (1/49) again
    *(NEW_FORMS := [
        S.overlay(S.warmup(7, start_ratio=0.01)) >> S.cosine(1e-3, 49, end=1e-5),  # timm's warmup_prefix=False
        S.overlay(S.constant(0.5, steps=4)) >> S.overlay(S.warmup(10)) >> S.cosine_restarts(1.0, 20, cycles=3),
        S.exponential(1e-3, 0.9, steps=30) >> S.cyclic(1e-4, 1e-3, 7, steps=41) >> S.inverse_sqrt(1e-4, 10, steps=5)
        >> S.constant(1e-5),
        S.warmup(10) >> S.multistep(1.0, [3], steps=9) >> S.inverse_time(0.5, 1.0, steps=20) >> S.linear(0.1, 0.0, 49),
        S.warmup(10) >> S.cosine(1e-3, 49, waves=1.5, exponent=2.0) >> S.cosine(1e-3, 41, end=1e-4, waves=3.0),
        S.warmup(49, start_ratio=0.1, shape="1-sqrt") >> S.constant(1.0, steps=20) >> S.one_minus_sqrt(1.0, 40, end=0.1),
    ]),
]
FLOAT32 = 2e-6  # both run in float32


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_optax_schedule_under_jit_matches_numpy(schedule):
    learning_rate = jax.jit(optax_schedule(schedule))
    values = np.array([float(learning_rate(jnp.int32(step))) for step in range(120)])
    np.testing.assert_allclose(values, schedule(np.arange(120)), rtol=FLOAT32, atol=FLOAT32 * 1e-3)


def test_a_schedule_is_optax_learning_rate_directly():
    schedule = S.warmup(3) >> S.constant(0.5)
    optimizer = optax.sgd(learning_rate=schedule)
    params = jnp.ones(2)
    state = optimizer.init(params)
    update = jax.jit(optimizer.update)
    steps = []
    for _ in range(5):
        updates, state = update(jnp.ones(2), state)
        steps.append(float(-updates[0]))
    np.testing.assert_allclose(steps, schedule(np.arange(5)), rtol=FLOAT32)


def test_jax_arrays_of_steps_evaluate_with_jax_numpy():
    schedule = S.cosine(peak=1.0, steps=10)
    values = schedule(jnp.arange(12))
    assert isinstance(values, jax.Array)
    np.testing.assert_allclose(np.asarray(values), schedule(np.arange(12)), atol=1e-6)


@pytest.mark.parametrize("schedule", SCHEDULES, ids=repr)
def test_keras_schedule_matches_numpy(schedule):
    adapter = KerasSchedule(schedule)
    values = np.array([float(adapter(step)) for step in range(120)])
    np.testing.assert_allclose(values, schedule(np.arange(120)), rtol=FLOAT32, atol=FLOAT32 * 1e-3)


def test_keras_config_round_trips_through_the_spec():
    adapter = KerasSchedule("warmup(10) >> cosine(peak=0.001, steps=90)")
    config = keras.optimizers.schedules.serialize(adapter)
    restored = keras.optimizers.schedules.deserialize(config)
    assert isinstance(restored, KerasSchedule)
    assert restored.schedule == adapter.schedule
    assert adapter.get_config() == {"schedule": "warmup(10) >> cosine(peak=0.001, steps=90)"}


def test_keras_optimizer_follows_the_schedule():
    schedule = S.warmup(4) >> S.constant(0.2)
    optimizer = keras.optimizers.SGD(learning_rate=KerasSchedule(schedule))
    weight = keras.Variable(np.ones(1, dtype="float32"))
    seen = []
    for _ in range(6):
        seen.append(float(optimizer.learning_rate))
        optimizer.apply_gradients([(keras.ops.ones(1), weight)])
    np.testing.assert_allclose(seen, schedule(np.arange(6)), rtol=FLOAT32)


@pytest.mark.parametrize("schedule", NEW_FORMS, ids=repr)
def test_torch_schedule_lr_follows_overlays_lengths_waves_and_the_1_sqrt_warmup_exactly(schedule):
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    scheduler = ScheduleLR(optimizer, repr(schedule))
    seen = []
    for _ in range(120):
        seen.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    assert seen == schedule(np.arange(120)).tolist()


@pytest.mark.parametrize("adapter", [optax_schedule, KerasSchedule], ids=["optax", "keras"])
def test_a_warmup_with_nothing_after_it_is_refused_when_the_adapter_is_built(adapter):
    # not at the first evaluation, deep inside a jit or fit
    with pytest.raises(ValueError, match=r"warmup\(10\) rises to the phase after it, but nothing follows it"):
        adapter("warmup(10)")
    with pytest.raises(ValueError, match=r"overlay\(warmup\(10\)\) lies over the phase after it, but nothing follows it"):
        adapter("overlay(warmup(10))")
