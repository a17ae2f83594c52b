"""A one-task smoke run of the finder benchmark (the full benchmark is run by hand, not in CI)."""

from __future__ import annotations

import math

from benchmarks.finder import budget_steps, choose_all

from lrkit.tasks import get_task


def test_every_row_chooses_an_lr_within_the_budget_on_one_task():
    task = get_task("cancer-logreg")
    chosen = choose_all(task, seed=0)
    assert set(chosen) == {"lrkit", "lrkit val", "torch-lr-finder", "lightning", "min-loss/10", "default"}
    for row, entry in chosen.items():
        assert entry["lr"] > 0 and math.isfinite(entry["lr"]), row
        assert entry["steps"] <= budget_steps(task) == task.steps // 10, row
    assert chosen["default"] == {"lr": task.default_lr, "steps": 0}
    assert not chosen["lrkit"].get("fallback")
