"""The held-out benchmark tasks: registered on request, deterministic per seed, and they learn."""

from __future__ import annotations

import pytest
from benchmarks.heldout_tasks import NAMES, SECOND, THIRD, register_heldout

from lrkit.tasks import get_task, list_tasks, registry, train


@pytest.fixture(autouse=True)
def private_registry(monkeypatch):
    """Register the held-out tasks into a copy of the registry, so other tests never list them."""
    list_tasks()  # the built-in tasks are loaded lazily: load them before copying
    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))


def test_registering_twice_is_harmless_and_adds_each_task_once():
    register_heldout()
    register_heldout()
    names = [task.name for task in list_tasks()]
    assert all(names.count(name) == 1 for name in NAMES + SECOND + THIRD)


@pytest.mark.parametrize("name", NAMES + SECOND + THIRD)
def test_each_task_is_deterministic_and_learns_at_its_default_rate(name):
    register_heldout()
    task = get_task(name)
    first, again = train(task, task.default_lr, seed=1), train(task, task.default_lr, seed=1)
    assert first.val_loss == again.val_loss and not first.diverged
    assert first.val_loss < 0.9 * first.initial_val_loss


@pytest.mark.parametrize("name", THIRD)
def test_every_task_of_the_third_set_decays_its_lr_below_half_its_peak(name):
    register_heldout()
    task = get_task(name)
    schedule = task.schedule(task.default_lr)
    assert schedule is not None and schedule(task.steps - 1) < 0.5 * task.default_lr
