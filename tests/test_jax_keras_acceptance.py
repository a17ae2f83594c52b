"""Acceptance round for the optax and Keras adapters, used the way training scripts use them: resuming a
run with BackupAndRestore or load_weights, logging the rate with CSVLogger, optax chains and checkpoints."""

import contextlib
import csv
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lrkit import schedules as S
from lrkit.integrations.optax import optax_plateau, optax_schedule

os.environ.setdefault("KERAS_BACKEND", "torch")  # before keras is imported (the test process has no TensorFlow)
import keras  # noqa: E402

from lrkit.integrations.keras import KerasPlateau, KerasSchedule  # noqa: E402

WARMUP = "warmup(8) >> constant(0.05)"


def never_improving_plateau() -> S.Plateau:
    # no loss here beats an absolute threshold of 10: with patience=1 the reports of epochs 2 and 4 cut
    return S.Plateau(decay_ratio=0.5, patience=1, threshold=10.0, threshold_mode="abs")


class Interrupt(keras.callbacks.Callback):
    def __init__(self, epoch: int) -> None:
        super().__init__()
        self.epoch = epoch

    def on_epoch_end(self, epoch, logs=None):
        if epoch == self.epoch:
            raise KeyboardInterrupt  # a preempted job


def sgd_model(learning_rate):
    """Every gradient is 1 (inputs of ones, loss = mean(prediction)): the weight moves by the rate each step."""
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((1,)), keras.layers.Dense(1, use_bias=False, kernel_initializer="zeros")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=learning_rate), loss=lambda _, out: keras.ops.mean(out))
    return model


def backup_run(learning_rate, backup: Path, interrupt_at=None, epochs: int = 6):
    """The learning rate in force at each epoch end and the plateau's state, with BackupAndRestore."""
    model = sgd_model(learning_rate)
    plateau = never_improving_plateau()
    rates = []
    record = keras.callbacks.LambdaCallback(
        on_epoch_end=lambda epoch, logs: rates.append(float(keras.ops.convert_to_numpy(model.optimizer.learning_rate)))
    )
    callbacks = [KerasPlateau(plateau, "loss"), keras.callbacks.BackupAndRestore(str(backup)), record]
    if interrupt_at is not None:
        callbacks.append(Interrupt(interrupt_at))
    inputs = np.ones((32, 1), dtype="float32")
    with contextlib.suppress(KeyboardInterrupt):
        model.fit(inputs, inputs, batch_size=8, epochs=epochs, verbose=0, callbacks=callbacks)
    return rates, plateau.state_dict(), float(model.layers[0].get_weights()[0][0, 0])


@pytest.mark.parametrize("rate", ["float", "schedule"])
def test_backup_and_restore_resumes_the_plateau_cuts_where_they_were(tmp_path, rate):
    # before: the KerasSchedule's ratio and the plateau's state were not in the backup, so a resumed
    # run went back to the uncut rate (schedule) or to a fresh patience count (float)
    def learning_rate():
        return 0.05 if rate == "float" else KerasSchedule(WARMUP)

    full_rates, full_state, full_weight = backup_run(learning_rate(), tmp_path / "full")
    first_rates, _, _ = backup_run(learning_rate(), tmp_path / "cut", interrupt_at=3)
    resumed_rates, resumed_state, resumed_weight = backup_run(learning_rate(), tmp_path / "cut")
    assert len(first_rates) == 4 and len(resumed_rates) == 2
    np.testing.assert_allclose(first_rates + resumed_rates, full_rates, rtol=1e-6)
    assert resumed_state == full_state and full_state["ratio"] == 0.25
    assert resumed_weight == pytest.approx(full_weight, rel=1e-6)


def test_load_weights_restores_the_ratio_and_the_plateau_for_a_callback_given_the_model(tmp_path):
    schedule = KerasSchedule("constant(0.1)")
    model = sgd_model(schedule)
    plateau = S.Plateau(decay_ratio=0.5, patience=0, threshold=10.0, threshold_mode="abs")
    inputs = np.ones((32, 1), dtype="float32")
    model.fit(inputs, inputs, batch_size=8, epochs=3, verbose=0, callbacks=[KerasPlateau(plateau, "loss")])
    assert float(schedule.ratio.value) == 0.25
    model.save_weights(tmp_path / "run.weights.h5")

    fresh = sgd_model(KerasSchedule("constant(0.1)"))
    fresh_plateau = S.Plateau(decay_ratio=0.5, patience=0, threshold=10.0, threshold_mode="abs")
    callback = KerasPlateau(fresh_plateau, "loss")
    fresh.optimizer.build(fresh.trainable_variables)
    callback.set_model(fresh)  # what fit does first
    fresh.load_weights(tmp_path / "run.weights.h5")
    assert int(fresh.optimizer.iterations) == 12
    assert float(fresh.optimizer.learning_rate) == pytest.approx(0.025)
    assert fresh_plateau.state_dict() == plateau.state_dict()

    # a run without a KerasPlateau loads the same file as before (the plateau's group is left alone)
    plain = sgd_model(KerasSchedule("constant(0.1)"))
    plain.optimizer.build(plain.trainable_variables)
    plain.load_weights(tmp_path / "run.weights.h5")
    assert int(plain.optimizer.iterations) == 12
    # and a file saved without one leaves the callback's state as it is
    plain.save_weights(tmp_path / "plain.weights.h5")
    fresh.load_weights(tmp_path / "plain.weights.h5")
    assert fresh_plateau.state_dict() == plateau.state_dict()


def test_a_saved_model_keeps_the_cut_ratio_when_loaded(tmp_path):
    schedule = KerasSchedule("constant(0.1)")
    model = sgd_model(schedule)
    plateau = S.Plateau(decay_ratio=0.5, patience=0, threshold=10.0, threshold_mode="abs")
    inputs = np.ones((32, 1), dtype="float32")
    model.fit(inputs, inputs, batch_size=8, epochs=2, verbose=0, callbacks=[KerasPlateau(plateau, "loss")])
    model.save(tmp_path / "m.keras")
    loaded = keras.saving.load_model(tmp_path / "m.keras", safe_mode=False)  # the loss is a lambda
    assert isinstance(loaded.optimizer._learning_rate, KerasSchedule)
    assert float(loaded.optimizer.learning_rate) == pytest.approx(0.05)
    assert int(loaded.optimizer.iterations) == 8


def test_csvlogger_records_the_learning_rate_as_with_reduce_lr_on_plateau(tmp_path):
    # Keras' ReduceLROnPlateau puts the rate in the epoch's logs, so CSVLogger and TensorBoard record it;
    # KerasPlateau, which replaces it, did not
    model = sgd_model(KerasSchedule("constant(0.1)"))
    inputs = np.ones((32, 1), dtype="float32")
    plateau = S.Plateau(decay_ratio=0.5, patience=0, threshold=10.0, threshold_mode="abs")
    logger = keras.callbacks.CSVLogger(str(tmp_path / "log.csv"))
    model.fit(inputs, inputs, batch_size=8, epochs=3, verbose=0, callbacks=[KerasPlateau(plateau, "loss"), logger])
    with open(tmp_path / "log.csv", newline="") as file:
        rows = list(csv.DictReader(file))
    # the rate of each epoch, before its report's cut (the first report only sets the best loss)
    assert [float(row["learning_rate"]) for row in rows] == pytest.approx([0.1, 0.1, 0.05])


@pytest.mark.slow
def test_backup_and_restore_resumes_the_cut_ratio_on_the_jax_backend(tmp_path):
    script = (
        "import json, sys; from pathlib import Path; sys.path.insert(0, sys.argv[1]); "
        "import test_jax_keras_acceptance as t; tmp = Path(sys.argv[2]); "
        "full = t.backup_run(t.KerasSchedule(t.WARMUP), tmp / 'full'); "
        "first = t.backup_run(t.KerasSchedule(t.WARMUP), tmp / 'cut', interrupt_at=3); "
        "resumed = t.backup_run(t.KerasSchedule(t.WARMUP), tmp / 'cut'); "
        "print(json.dumps([full, first, resumed]))"
    )
    environment = os.environ | {"KERAS_BACKEND": "jax", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run(
        [sys.executable, "-c", script, str(Path(__file__).parent), str(tmp_path)],
        env=environment, capture_output=True, text=True, timeout=300, check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    full, first, resumed = json.loads(done.stdout.strip().splitlines()[-1])
    np.testing.assert_allclose(first[0] + resumed[0], full[0], rtol=1e-6)
    assert resumed[1] == full[1]
    assert resumed[2] == pytest.approx(full[2], rel=1e-6)


# ---- optax: chains, parameter groups, checkpoints ------------------------------------------------


def test_optax_chain_with_clipping_groups_and_a_pickled_state():
    params = {"body": jnp.zeros(2), "head": jnp.zeros(1)}
    optimizer = optax.chain(
        optax.clip_by_global_norm(10.0),
        optax.multi_transform(
            {"body": optax.sgd(S.constant(0.1)), "head": optax.sgd(optax_schedule("warmup(2) >> constant(1.0)"))},
            {"body": "body", "head": "head"},
        ),
        optax_plateau(S.Plateau(decay_ratio=0.5, patience=0)),
    )
    grads = {"body": jnp.ones(2), "head": jnp.ones(1)}

    @jax.jit
    def step(params, state, loss):
        updates, state = optimizer.update(grads, state, params, value=loss)
        return optax.apply_updates(params, updates), state

    state = optimizer.init(params)
    for loss in (1.0, 1.0):  # the second report cuts, at once
        params, state = step(params, state, loss)
    state = pickle.loads(pickle.dumps(jax.device_get(state)))  # a checkpoint of plain arrays
    params, state = step(params, state, 1.0)
    assert float(state[-1].ratio) == 0.25
    np.testing.assert_allclose(params["body"], -(0.1 + 0.05 + 0.025), rtol=1e-6)
    np.testing.assert_allclose(params["head"], -(0.0 + 0.25 + 0.25), rtol=1e-6)  # warmup 0, 0.5, 1.0 times ratios


def test_optax_plateau_takes_optax_reduce_on_plateau_decisions():
    rng = np.random.default_rng(0)
    losses = np.cumsum(rng.normal(0, 1, 60)) + 100
    theirs = optax.contrib.reduce_on_plateau(factor=0.5, patience=3, cooldown=2, rtol=1e-3, accumulation_size=1)
    ours = optax_plateau(S.Plateau(decay_ratio=0.5, patience=2, cooldown=2, threshold=1e-3))
    their_state, our_state = theirs.init(jnp.zeros(1)), ours.init(jnp.zeros(1))
    for loss in losses:
        _, their_state = theirs.update(jnp.ones(1), their_state, value=loss)
        _, our_state = ours.update(jnp.ones(1), our_state, value=loss)
        assert float(our_state.ratio) == pytest.approx(float(their_state.scale), rel=1e-6)
    assert float(our_state.ratio) < 1.0


def test_inject_hyperparams_reads_the_schedule_as_optax_does():
    schedule = S.warmup_cosine(1e-3, 1000, warmup_steps=100)
    reference = optax.warmup_cosine_decay_schedule(0.0, 1e-3, 100, 1000)
    optimizer = optax.inject_hyperparams(optax.adamw)(learning_rate=schedule)
    theirs = optax.inject_hyperparams(optax.adamw)(learning_rate=reference)
    params = jnp.ones(3)
    state, their_state = optimizer.init(params), theirs.init(params)
    update = jax.jit(optimizer.update)
    for _ in range(120):
        _, state = update(jnp.ones(3), state, params)
        _, their_state = theirs.update(jnp.ones(3), their_state, params)
    assert float(state.hyperparams["learning_rate"]) == pytest.approx(
        float(their_state.hyperparams["learning_rate"]), rel=1e-5
    )
    steps = jnp.asarray([0, 50, 100, 500, 999, 1000, 2**31 - 1], dtype=jnp.int32)
    np.testing.assert_allclose(jax.vmap(schedule)(steps), jax.vmap(reference)(steps), rtol=1e-5, atol=1e-10)
