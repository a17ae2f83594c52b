"""A one-task smoke run of the finder benchmark (the full benchmark is run by hand, not in CI)."""

from __future__ import annotations

import math

from benchmarks.finder import budget_steps, choose_all

from lrkit.tasks import get_task


def test_every_row_chooses_an_lr_within_the_budget_on_one_task():
    task = get_task("cancer-logreg")
    chosen = choose_all(task, seed=0)
    assert set(chosen) == {"lrkit", "lrkit val", "lrkit min/10", "torch-lr-finder", "lightning", "min-loss/10", "default"}
    for row, entry in chosen.items():
        assert entry["lr"] > 0 and math.isfinite(entry["lr"]), row
        assert entry["steps"] <= budget_steps(task) == task.steps // 10, row
    assert chosen["default"] == {"lr": task.default_lr, "steps": 0}
    assert not chosen["lrkit"].get("fallback")


def test_the_preregistered_switch_needs_a_lower_median_and_no_higher_worst():
    from benchmarks.finder_heldout import decision

    def summary(median, worst):
        return {
            "lrkit": {"median_regret": 0.3, "worst_regret": 1.0},
            "lrkit min/10": {"median_regret": median, "worst_regret": worst},
        }

    assert decision(summary(0.2, 1.0))[-1].endswith("switch.")
    assert "no switch" in decision(summary(0.3, 0.5))[-1]  # equal median: no
    assert "no switch" in decision(summary(0.1, 1.5))[-1]  # higher worst: no
