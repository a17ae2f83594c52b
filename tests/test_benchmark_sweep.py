"""The sweep benchmark end to end on one cheap held-out task (the full benchmark is run by hand)."""

from __future__ import annotations

import json

from benchmarks import sweep as benchmark


def test_one_held_out_sweep_scores_the_fit_and_the_best_trial(tmp_path, monkeypatch):
    monkeypatch.setattr(benchmark, "RESULTS", tmp_path)
    task = "heldout3-diabetes-sgdm-exponential"
    assert benchmark.main(["--set", "third", "--tasks", task, "--seeds", "0", "--trials", "4"]) == 0
    (row,) = json.loads((tmp_path / "sweep_heldout3.json").read_text())["runs"]
    assert row["task"] == task and row["n_trials"] == 4
    assert 1e-5 <= row["lr"] <= 10 and 1e-5 <= row["best_lr"] <= 10
    assert (row["lr"] == row["best_lr"]) == (row["loss"] == row["trial_loss"])
    assert 0 < row["compute"] < 1 and row["steps"] > 0
    report = (tmp_path / "sweep_heldout3.md").read_text()
    assert f"| {task} | 0 |" in report
    assert "| `result.lr` (fit) | " in report and "| best trial | " in report
    assert "--set third" in report
