"""The same seed gives the same curve on the same machine, and a run leaves the caller's RNG alone."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

import lrkit
from lrkit.tasks import Task, get_task, train
from lrkit.tasks.loading import cross_entropy


def _rng_state():
    return torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate()


def _same_rng(a, b) -> bool:
    return torch.equal(a[0], b[0]) and np.array_equal(a[1], b[1]) and a[2] == b[2]


def test_train_leaves_the_callers_rng_as_it_was():
    train("cancer-logreg", 1e-2, seed=0, steps=2)  # first-call imports (scikit-learn draws from random)
    torch.manual_seed(7)
    np.random.seed(7)
    random.seed(7)
    before = _rng_state()
    train("cancer-logreg", 1e-2, seed=3, steps=30)
    assert _same_rng(before, _rng_state())


def test_a_run_with_dropout_follows_its_seed_not_the_callers_rng():
    base = get_task("digits-mlp")

    def model(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        return nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 10))

    task = Task(
        name="dropout-probe", summary="", optimizer_name="Adam", default_lr=1e-3, steps=30,
        make_model=model, make_optimizer=base.make_optimizer, make_loaders=base.make_loaders,
        loss_fn=cross_entropy,
    )
    runs = []
    for caller_seed in (1, 2):
        torch.manual_seed(caller_seed)
        runs.append(train(task, 1e-3, seed=5).trace.loss)
    other = train(task, 1e-3, seed=6).trace.loss
    assert np.array_equal(runs[0], runs[1])
    assert not np.array_equal(runs[0], other)


def test_the_pretrained_body_does_not_depend_on_the_thread_count(tmp_path, monkeypatch):
    from lrkit.tasks import digits

    threads = torch.get_num_threads()
    bodies = []
    try:
        for count, folder in ((1, "one"), (2, "two")):
            monkeypatch.setenv("LRKIT_CACHE", str(tmp_path / folder))
            digits.pretrained_body_state.cache_clear()
            torch.set_num_threads(count)  # whoever makes the cache first sets it for good
            bodies.append(digits.pretrained_body_state())
            assert torch.get_num_threads() == count
    finally:
        torch.set_num_threads(threads)
        digits.pretrained_body_state.cache_clear()
    one, two = bodies
    assert one.keys() == two.keys()
    assert all(torch.equal(one[key], two[key]) for key in one)


def test_a_range_test_replays_byte_for_byte(tmp_path):
    paths = []
    for index, seed in enumerate((3, 3, 4)):
        path = tmp_path / f"range_{index}.csv"
        lrkit.find_task_lr("cancer-logreg", seed=seed).trace.save(path)
        paths.append(path.read_bytes())
    assert paths[0] == paths[1]
    assert paths[0] != paths[2]


@pytest.mark.parametrize("sampler", ["random", "tpe"])
def test_a_one_worker_sweep_replays(sampler):
    def rows(seed):
        result = lrkit.sweep("cancer-logreg", n_trials=4, sampler=sampler, seed=seed)
        return [(t.number, t.lr, t.state, t.val_loss, t.steps) for t in result.trials]

    first = rows(0)
    assert rows(0) == first
    assert rows(1) != first


def test_find_task_lr_leaves_the_callers_rng_as_it_was():
    torch.manual_seed(9)
    state = torch.get_rng_state()
    lrkit.find_task_lr("cancer-logreg", steps=5)
    assert torch.equal(state, torch.get_rng_state())
