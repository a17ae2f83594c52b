"""Every built-in task is deterministic per seed and learns at its rule-of-thumb LR."""

import numpy as np
import pytest
import torch

import lrkit
from lrkit.tasks import get_task, list_tasks, train

TASKS = [task.name for task in list_tasks()]


def test_registry_lists_the_six_tasks():
    assert TASKS == ["charlm", "digits-mlp", "digits-cnn", "finetune-digits", "teacher-student", "cancer-logreg"]


@pytest.mark.parametrize("name", TASKS)
def test_same_seed_same_losses_other_seed_other_losses(name):
    first = train(name, get_task(name).default_lr, seed=3, steps=25)
    again = train(name, get_task(name).default_lr, seed=3, steps=25)
    other = train(name, get_task(name).default_lr, seed=4, steps=25)
    assert np.array_equal(first.trace.loss, again.trace.loss)
    timed = {"seconds_per_step"}  # wall time, measured: the one thing a seed cannot fix
    assert first.trace.meta.keys() >= timed
    untimed = lambda trace: trace.replace(meta={k: v for k, v in trace.meta.items() if k not in timed})  # noqa: E731
    assert untimed(first.trace) == untimed(again.trace)
    assert not np.array_equal(first.trace.loss, other.trace.loss)


@pytest.mark.parametrize("name", TASKS)
def test_default_lr_trains_well_below_the_initial_loss(name):
    result = train(name, get_task(name).default_lr, seed=0)
    assert not result.diverged
    assert len(result.trace) == get_task(name).steps
    assert result.final_loss < 0.7 * result.trace.loss[0]
    assert result.val_loss < 0.8 * result.initial_val_loss
    if result.metric is not None:
        assert result.metric > 0.8


def test_task_pieces_fit_together():
    task = lrkit.get_task("digits-mlp")
    model = task.model(seed=0)
    train_loader, val_loader = task.loaders(seed=0)
    inputs, targets = next(iter(train_loader))
    assert inputs.shape == (64, 64) and targets.dtype == torch.int64
    loss = task.loss_fn(model, (inputs, targets))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert sum(len(batch[0]) for batch in val_loader) == 450


def test_charlm_warms_up_then_decays_to_zero():
    schedule = get_task("charlm").schedule(1e-3, 300)
    values = np.array([schedule(step) for step in range(300)])
    peak = int(np.argmax(values))
    assert 0 < peak < 60
    assert np.all(np.diff(values[: peak + 1]) > 0)
    assert np.all(np.diff(values[peak:]) <= 1e-12)
    assert values.max() == pytest.approx(1e-3)
    assert values[-1] < 1e-5


def test_finetune_body_is_pretrained_and_cached(tmp_path, monkeypatch):
    from lrkit.tasks import digits

    monkeypatch.setenv("LRKIT_CACHE", str(tmp_path))
    digits.pretrained_body_state.cache_clear()
    state = digits.pretrained_body_state()
    files = list(tmp_path.glob("finetune-digits-body-*.pt"))
    assert len(files) == 1
    loaded = torch.load(files[0], weights_only=True)
    assert all(torch.equal(loaded[key], state[key]) for key in state)
    digits.pretrained_body_state.cache_clear()
    # a pre-trained body already separates digits 0-4: fine-tuning starts far below chance
    result = train("finetune-digits", 1e-3, seed=0, steps=5)
    assert result.initial_val_loss < 2.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"lr": 0.0}, "lr must be > 0"),
        ({"lr": -1e-3}, "lr must be > 0"),
        ({"lr": float("nan")}, "lr must be a number"),
        ({"lr": 1e-3, "seed": 1.5}, "seed must be an integer"),
        ({"lr": 1e-3, "steps": 0}, "steps must be >= 1"),
    ],
)
def test_bad_arguments_name_what_is_allowed(kwargs, message):
    with pytest.raises((ValueError, TypeError), match=message):
        train("digits-mlp", **kwargs)


def test_unknown_task_lists_the_known_ones():
    with pytest.raises(ValueError, match="unknown task 'nope'; known tasks: cancer-logreg, charlm"):
        get_task("nope")


def test_non_finite_loss_stops_the_run_and_scores_at_the_initial_loss():
    result = train("teacher-student", 1e6, seed=0, steps=200)
    assert result.diverged
    assert result.score == result.initial_val_loss
