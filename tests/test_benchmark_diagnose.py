"""The diagnose benchmark's labelling and its held-out report (the benchmark itself is run by hand)."""

from __future__ import annotations

import math

from benchmarks.diagnose import (
    HELDOUT_SETS,
    KEPT,
    balanced_accuracy,
    label,
    markdown,
    report,
)
from benchmarks.ground_truth import load_ground_truth
from benchmarks.heldout_tasks import NAMES, THIRD


def run(score: float, *, diverged: bool = False) -> dict:
    return {"score": score, "initial_val_loss": 2.0, "diverged": diverged}


def test_low_and_middle_factors_are_labelled_by_the_factor_alone():
    assert label(1 / 100, run(0.5), best_loss=0.5) == "too_low"
    assert label(1 / 30, run(0.5), best_loss=0.5) == "too_low"
    assert label(3.0, run(2.0, diverged=True), best_loss=0.5) == "healthy"


def test_a_high_factor_is_too_high_only_when_it_ends_worse():
    best, improvement = 0.5, 1.5
    worse = best + (1 - KEPT) * improvement * 1.01
    assert label(10.0, run(worse), best_loss=best) == "too_high"
    assert label(10.0, run(best + 0.01), best_loss=best) is None  # ambiguous: left out
    assert label(30.0, run(2.0, diverged=True), best_loss=best) == "too_high"


def test_balanced_accuracy_weighs_each_label_equally_and_counts_diverged_as_too_high():
    rows = [
        {"label": "too_high", "verdict": "diverged"},
        {"label": "too_low", "verdict": "plateau"},
        *[{"label": "healthy", "verdict": "healthy"}] * 8,
    ]
    assert math.isclose(balanced_accuracy(rows), 2 / 3)


def test_the_heldout_grid_covers_exactly_the_heldout_tasks():
    assert set(load_ground_truth(HELDOUT_SETS["first"][1])) == set(NAMES)


def test_the_heldout_report_names_its_grid_and_points_back_at_the_in_sample_one():
    truths = load_ground_truth(HELDOUT_SETS["first"][1])
    rows = [
        {
            "task": NAMES[0],
            "factor": factor,
            "label": name,
            "verdict": verdict,
            "diverged": factor == 3.0,
        }
        for factor, name, verdict in (
            (1 / 100, "too_low", "healthy"),
            (3.0, "healthy", "diverged"),
            (30.0, "too_high", "too_high"),
        )
    ]
    summary = report(rows, 1, 2.0, "cmd --heldout")
    assert summary["balanced_accuracy_design_tasks"] is None
    assert summary["healthy_called_diverged"] == summary["healthy_runs_that_diverged"] == 1
    text = markdown(summary, truths, heldout="first")
    assert "ground_truth_heldout.json" in text and "[diagnose.md](diagnose.md)" in text
    assert "Out of sample" in text and "History:" not in text
    assert f"| {NAMES[0]} | {truths[NAMES[0]].best_lr:.3g} | 33.3% |" in text


def test_the_third_sets_grid_covers_it_and_its_report_states_the_decision():
    tasks, truth_path, _, _, _ = HELDOUT_SETS["third"]
    assert set(load_ground_truth(truth_path)) == set(tasks) == set(THIRD)
    summary = report([], 0, 1.0, "cmd --heldout third")
    text = markdown(summary, load_ground_truth(truth_path), heldout="third")
    assert "ground_truth_heldout3.json" in text and "Decision written before" in text
