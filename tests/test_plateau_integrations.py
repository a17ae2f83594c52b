"""Reduce-on-plateau in optax (a jit-safe gradient transformation) and Keras (a callback), taking the
same decisions as ``Plateau.report``, composed with any schedule (warmup first, then cuts)."""

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler

from lrkit import schedules as S
from lrkit.integrations.optax import optax_plateau

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported (the test process has no TensorFlow)
import keras  # noqa: E402

from lrkit.integrations.keras import KerasPlateau, KerasSchedule  # noqa: E402

FLOAT32 = 2e-6


# ---- optax: the same decisions as Plateau.report -----------------------------------------------


@st.composite
def plateaus(draw):
    return S.Plateau(
        decay_ratio=draw(st.floats(0.05, 0.95)),
        patience=draw(st.integers(0, 4)),
        threshold=draw(st.sampled_from([0.0, 1e-4, 0.01, 0.5])),
        threshold_mode=draw(st.sampled_from(["rel", "abs"])),
        mode=draw(st.sampled_from(["min", "max"])),
        cooldown=draw(st.integers(0, 3)),
        min_ratio=draw(st.sampled_from([0.0, 0.01, 0.3])),
    )


# repeated values and small steps make plateaus; NaN and the infinities are metrics too (not subnormal
# numbers: XLA on CPU flushes them to zero)
metrics = st.one_of(
    st.floats(-3.0, 3.0, allow_subnormal=False),
    st.sampled_from([1.0, 0.99, 0.9999, 0.5, 0.0, -1.0, math.nan, math.nan, math.inf, -math.inf]),
)


def run_optax(plateau: S.Plateau, values: list[float]) -> S.PlateauState:
    """Every state the optax transformation passes through, under jit (``lax.scan`` compiles the loop)."""
    transformation = optax_plateau(plateau)
    params = jnp.ones(3)

    def step(state, value):
        updates, state = transformation.update(params, state, params, value=value)
        return state, (state, updates)

    run = jax.jit(lambda values: jax.lax.scan(step, transformation.init(params), values)[1])
    states, updates = run(jnp.asarray(values))
    np.testing.assert_array_equal(updates, np.repeat(np.asarray(states.ratio)[:, None], 3, axis=1))
    return states


@settings(max_examples=40)
@given(plateaus(), st.lists(metrics, min_size=1, max_size=40))
def test_optax_takes_the_decisions_of_report_under_jit(plateau, values):
    with jax.enable_x64(True):
        states = run_optax(plateau, values)
    expected = []
    for value in values:
        plateau.report(value)
        expected.append(plateau.state)
    for name in S.PlateauState._fields:
        ours = np.asarray(getattr(states, name))
        assert np.array_equal(ours, [getattr(state, name) for state in expected]), name


def test_optax_cuts_where_torch_reduce_on_plateau_does():
    losses = [1.0, 0.9, 0.9, 0.95, 0.91, 0.92, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.49, 0.7, 0.7, 0.7, 0.7, math.nan, 0.7]
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2, cooldown=1, threshold=0.01)
    expected = []
    for loss in losses:
        reference.step(loss)
        expected.append(optimizer.param_groups[0]["lr"])
    with jax.enable_x64(True):
        ratios = run_optax(S.Plateau(decay_ratio=0.5, patience=2, cooldown=1, threshold=0.01), losses).ratio
    assert np.asarray(ratios).tolist() == expected
    assert expected[-1] == 0.125


def test_optax_starts_from_the_plateaus_state_and_leaves_it_alone():
    plateau = S.Plateau(decay_ratio=0.5, patience=0)
    for loss in (1.0, 2.0, 2.0):
        plateau.report(loss)
    assert plateau.ratio == 0.25
    transformation = optax_plateau(plateau)
    state = transformation.init(jnp.zeros(1))
    assert float(state.ratio) == 0.25 and float(state.best) == 1.0 and int(state.reports) == 3
    _, state = jax.jit(transformation.update)(jnp.ones(1), state, value=0.5)
    assert float(state.best) == 0.5 and int(state.reports) == 4
    assert plateau.best == 1.0 and plateau.reports == 3


def test_optax_value_none_reports_nothing_but_still_scales():
    transformation = optax_plateau(S.Plateau(decay_ratio=0.5, patience=0))
    update = jax.jit(transformation.update)
    state = transformation.init(jnp.zeros(2))
    for loss in (1.0, 1.0):
        _, state = update(jnp.ones(2), state, value=loss)
    updates, quiet = update(jnp.ones(2), state, value=None)
    assert np.array_equal(updates, [0.5, 0.5])
    assert all(np.array_equal(a, b) for a, b in zip(quiet, state, strict=True))


def test_a_real_optax_loop_cuts_when_the_loss_stalls():
    # least squares with label noise: the loss falls to the noise floor, then stalls
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(128, 4)), dtype=jnp.float32)
    y = x @ jnp.array([1.0, -2.0, 0.5, 3.0]) + jnp.asarray(rng.normal(scale=0.5, size=128), dtype=jnp.float32)
    schedule = S.warmup(10) >> S.constant(0.05)
    optimizer = optax.chain(optax.sgd(schedule), optax_plateau(S.Plateau(decay_ratio=0.5, patience=5, threshold=1e-3)))

    def loss_fn(w):
        return jnp.mean((x @ w - y) ** 2)

    @jax.jit
    def train_step(w, state):
        loss, grads = jax.value_and_grad(loss_fn)(w)
        updates, state = optimizer.update(grads, state, w, value=loss)
        return optax.apply_updates(w, updates), state, loss, grads, updates

    w, state = jnp.zeros(4), optimizer.init(jnp.zeros(4))
    losses, ratios = [], []
    for step in range(300):
        w, state, loss, grads, updates = train_step(w, state)
        losses.append(float(loss))
        ratios.append(float(state[1].ratio))
        np.testing.assert_allclose(updates, -schedule(step) * ratios[-1] * grads, rtol=1e-5)  # warmup, then cuts

    replay = S.Plateau(decay_ratio=0.5, patience=5, threshold=1e-3)
    np.testing.assert_allclose(ratios, [replay.report(loss) for loss in losses], rtol=FLOAT32)
    first_cut = ratios.index(0.5)
    assert first_cut > 20  # not while the loss was falling fast
    stalled = losses[first_cut - 5 : first_cut + 1]
    assert min(stalled) >= min(losses[: first_cut - 5]) * (1 - 1e-3)  # patience + 1 steps without improvement
    assert ratios[-1] < 0.5


def test_optax_plateau_refuses_bad_input():
    with pytest.raises(TypeError, match=r"plateau must be an lrkit Plateau, got 0.5 \(float\)"):
        optax_plateau(0.5)
    with pytest.raises(ValueError, match=r"patience must be < 2147483647 for optax"):
        optax_plateau(S.Plateau(patience=2**31))
    transformation = optax_plateau(S.Plateau())
    state = transformation.init(jnp.zeros(2))
    with pytest.raises(ValueError, match=r"value must be one number \(the metric\), got an array of shape \(2,\)"):
        jax.jit(transformation.update)(jnp.ones(2), state, value=jnp.ones(2))
    with pytest.raises(TypeError, match="value must be a real number"):
        transformation.update(jnp.ones(2), state, value=True)
    with pytest.raises(TypeError, match="value"):
        transformation.update(jnp.ones(2), state)


# ---- Keras: a callback that cuts a float rate or a KerasSchedule's ratio ------------------------


def applied_rates(learning_rate, plateau, *, epochs: int = 6, steps: int = 4) -> list[float]:
    """The mean learning rate SGD really applied in each epoch of ``model.fit``: with inputs of ones and
    the loss ``mean(prediction)``, every gradient is 1, so a weight moves by exactly the rate each step."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss=lambda _, out: keras.ops.mean(out))
    weights = [0.0]
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: weights.append(float(model.layers[0].get_weights()[0][0, 0]))
    )
    inputs = np.ones((8 * steps, 1), dtype="float32")
    model.fit(inputs, inputs, batch_size=8, epochs=epochs, verbose=0, callbacks=[record, KerasPlateau(plateau, "loss")])
    return (-np.diff(weights) / steps).tolist()


def never_improving_plateau() -> S.Plateau:
    # an absolute threshold no loss here can beat: every epoch after the first is without improvement,
    # so with patience=1 the third epoch's report cuts, and the fifth's
    return S.Plateau(decay_ratio=0.5, patience=1, threshold=10.0, threshold_mode="abs")


RATIOS = [1.0, 1.0, 1.0, 0.5, 0.5, 0.25]  # in force during each of the 6 epochs
WARMUP = S.warmup(8) >> S.constant(0.05)


def expected_rates(schedule: S.Schedule, steps: int = 4) -> list[float]:
    return [float(np.mean(schedule(np.arange(e * steps, (e + 1) * steps)))) * ratio for e, ratio in enumerate(RATIOS)]


@pytest.mark.parametrize("rate", ["float", "schedule"])
def test_keras_cuts_apply_to_a_float_rate_and_on_top_of_a_warmup(rate):
    if rate == "float":
        learning_rate, schedule = 0.05, S.constant(0.05)
    else:
        learning_rate, schedule = KerasSchedule(WARMUP), WARMUP
    plateau = never_improving_plateau()
    np.testing.assert_allclose(applied_rates(learning_rate, plateau), expected_rates(schedule), rtol=1e-5)
    assert plateau.ratio == 0.25 and plateau.reports == 6
    if rate == "schedule":
        assert float(learning_rate.ratio.value) == 0.25


@pytest.mark.slow
def test_keras_cuts_reach_the_compiled_step_on_the_jax_backend():
    # JAX compiles the step with the schedule's ratio as a constant: without a new compile at each cut,
    # the cut would never be applied (the torch backend reads the variable at every step)
    script = (
        "import json, sys; sys.path.insert(0, sys.argv[1]); import test_plateau_integrations as t; "
        "print(json.dumps([t.applied_rates(0.05, t.never_improving_plateau()), "
        "t.applied_rates(t.KerasSchedule(t.WARMUP), t.never_improving_plateau())]))"
    )
    tests = str(Path(__file__).parent)
    environment = os.environ | {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script, tests], env=environment, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    float_rates, schedule_rates = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(float_rates, expected_rates(S.constant(0.05)), rtol=1e-5)
    np.testing.assert_allclose(schedule_rates, expected_rates(WARMUP), rtol=1e-5)


def test_keras_fit_cuts_after_patience_epochs_without_improvement():
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(96, 4)).astype("float32")
    y = (x @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(scale=0.5, size=96)).astype("float32")[:, None]
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    plateau = S.Plateau(decay_ratio=0.5, patience=2, threshold=0.01)
    rates = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_begin=lambda epoch, logs: rates.append(float(model.optimizer.learning_rate.value))
    )
    history = model.fit(
        x[:64], y[:64], validation_data=(x[64:], y[64:]), batch_size=16, epochs=14, verbose=0,
        callbacks=[record, KerasPlateau(plateau)],
    )
    # the epoch that ends patience + 1 epochs without beating the best val_loss by 1%, found by hand
    losses, best, bad, cut = history.history["val_loss"], math.inf, 0, None
    for epoch, loss in enumerate(losses):
        best, bad = (loss, 0) if loss < best * 0.99 else (best, bad + 1)
        if bad > 2:
            cut = epoch
            break
    assert cut is not None and cut >= 5, losses  # the loss first fell, then stalled at the noise floor
    assert rates[: cut + 1] == pytest.approx([0.1] * (cut + 1))
    assert rates[cut + 1] == pytest.approx(0.05)


def test_a_cut_schedule_is_saved_with_its_ratio_and_old_configs_still_load(tmp_path):
    schedule = KerasSchedule(WARMUP)
    assert schedule.get_config() == {"schedule": repr(WARMUP)}  # as saved before ratios existed
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=schedule), loss="mse")
    inputs = np.ones((16, 1), dtype="float32")
    model.fit(inputs, inputs, batch_size=8, epochs=3, verbose=0, callbacks=[KerasPlateau(never_improving_plateau(), "loss")])
    assert schedule.get_config() == {"schedule": repr(WARMUP), "ratio": 0.5}
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert float(restored.optimizer.learning_rate) == pytest.approx(0.5 * WARMUP(6), rel=FLOAT32)
    old = KerasSchedule.from_config({"schedule": repr(WARMUP)})
    assert float(old.ratio.value) == 1.0 and float(old(20)) == pytest.approx(0.05)


def test_keras_plateau_refuses_bad_input():
    with pytest.raises(TypeError, match=r"plateau must be an lrkit Plateau, got 'val_loss' \(str\)"):
        KerasPlateau("val_loss")
    with pytest.raises(TypeError, match=r"monitor must be the name of a logged metric \(a str\), got 3"):
        KerasPlateau(S.Plateau(), monitor=3)
    with pytest.raises(ValueError, match="monitor must be the name of a logged metric"):
        KerasPlateau(S.Plateau(), monitor="")
    with pytest.raises(ValueError, match="ratio must be >= 0, got -0.5"):
        KerasSchedule(WARMUP, ratio=-0.5)

    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.1), loss="mse")
    inputs = np.ones((8, 1), dtype="float32")
    with pytest.raises(ValueError, match=r"monitor 'val_loss' is not in the epoch's logs \['loss'\] \(val_ metrics need validation data\)"):
        model.fit(inputs, inputs, epochs=1, verbose=0, callbacks=[KerasPlateau(S.Plateau())])

    decay = keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.5)
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=decay), loss="mse")
    with pytest.raises(TypeError, match="learning_rate to be a float or an lrkit KerasSchedule, got ExponentialDecay"):
        model.fit(inputs, inputs, epochs=1, verbose=0, callbacks=[KerasPlateau(S.Plateau(), "loss")])

    plateau = S.Plateau()
    callback = KerasPlateau(plateau, "accuracy")
    callback.set_model(model)
    with pytest.raises(TypeError, match=r"logs\['accuracy'\] must be a number, got 'high'"):
        callback.on_epoch_end(0, {"accuracy": "high"})
    assert plateau.reports == 0
