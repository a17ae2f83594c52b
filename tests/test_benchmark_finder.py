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


def test_the_limits_screen_interpolates_regret_and_recovers_a_known_margin():
    from benchmarks.finder_limits import Interpolated, analyse, run_case

    # a bowl in log LR with its best at 0.01: exact at grid points, linear between them
    regret = Interpolated({10.0**e: 1.0 + (e + 2) ** 2 for e in range(-5, 2)})
    assert regret(0.01) == 0.0 and regret(0.1) == 1.0
    assert regret(10**-1.5) == 0.5 and regret(1e-9) == 9.0  # clipped to the grid's ends
    # every landmark sits exactly 30x above the best LR: the hindsight margin is 30x, regret 0
    marks = {"edge": 0.3, "min": 0.3, "rise": 0.3, "div": 0.3}
    cases = [{"task": "t", "seed": s, "shipped": marks, "two-stage": marks} for s in range(3)]
    table = analyse(cases, {"t": ("built-in", regret, 0.01)})
    for row in table.values():
        assert math.isclose(row["mean_offset"], -math.log10(30)) and row["sd_offset"] == 0
        assert math.isclose(row["built-in"]["margin"], 30, rel_tol=0.07) and row["built-in"]["median"] < 0.05

    case = run_case(("cancer-logreg", 0))  # both tests of one task and seed run and read
    assert case["shipped"]["edge"] and case["two-stage"]["edge"]
