"""`lrkit demo`: the three behaviours show in the numbers, and the files are written."""

import csv

import numpy as np
import pytest

from lrkit.cli.app import main
from lrkit.demo import count_spikes, demo_lrs, run_demo
from lrkit.tasks import get_task


@pytest.fixture(scope="module")
def demo():
    return run_demo("digits-mlp", seed=0, find=True)


def test_too_high_too_low_and_chosen_behave_as_described(demo):
    high, low, chosen, _ = demo.rows
    assert [row.role for row in demo.rows] == ["too high", "too low", "chosen", "found"]
    assert high.behaviour in ("diverged", "blew up", "oscillated") and high.result.metric < 0.5
    assert low.behaviour == "barely moved" and low.progress < 0.2 and low.steps_to_target is None
    assert chosen.behaviour == "converged" and chosen.result.metric > 0.9
    assert chosen.steps_to_target is not None and chosen.steps_to_target < 300
    assert demo.notes == []


def test_found_row_trains_at_the_range_tests_suggestion(demo):
    found = demo.rows[-1]
    assert found.lr == demo.finder.lr
    assert demo.finder.steps <= 0.1 * 600
    assert found.behaviour == "converged" and found.result.metric > 0.9
    assert found.steps_to_target is not None


def test_same_seed_starts_every_rate_from_the_same_loss(demo):
    first_losses = {row.result.trace.loss[0] for row in demo.rows}
    assert len(first_losses) == 1
    assert demo.target_loss == pytest.approx(0.1 * first_losses.pop())


def test_default_rates_follow_the_task_so_each_role_behaves_as_named():
    task = get_task("teacher-student")
    assert demo_lrs(task) == (task.default_lr * 1000, task.default_lr / 100, task.default_lr)
    assert demo_lrs("digits-mlp") == (1.0, 1e-5, 1e-3)  # the bundled demo's rates
    result = run_demo(task, seed=0)
    assert [(row.role, row.lr) for row in result.rows] == list(zip(["too high", "too low", "chosen"], demo_lrs(task), strict=True))
    assert [row.behaviour for row in result.rows] == ["blew up", "barely moved", "converged"]
    assert result.notes == []


def test_the_demo_report_costs_the_found_rate_against_the_default_at_the_demo_target(demo, tmp_path):
    from lrkit.cli.demo import _report

    labels = [f"lr={row.lr:.3g} ({row.role})" for row in demo.rows]
    html = _report(demo, labels, tmp_path / "report.html").read_text()
    found, chosen = demo.rows[-1], demo.rows[2]
    assert f"lr={found.lr:.3g} (found) reaches loss {demo.target_loss:.3g} in " in html
    assert f"steps to target, lr={found.lr:.3g} (found)" in html
    assert f"steps to target, lr={chosen.lr:.3g} (chosen)<" in html  # the default LR is the baseline


def test_a_loss_that_blew_up_and_came_back_is_not_called_an_oscillation():
    result = run_demo("teacher-student", seed=0, find=False)
    high = result.rows[0]
    assert np.nanmax(high.result.trace.loss) > 10 * high.result.trace.loss[0]
    assert high.behaviour == "blew up" and not any("neither diverged nor spiked" in note for note in result.notes)


def test_demo_says_so_when_a_rate_does_not_behave_as_its_role():
    result = run_demo("digits-mlp", [1e-3, 1e-3, 1e-3], seed=0)
    assert any("meant to be too high" in note for note in result.notes)
    assert any("meant to be too low" in note for note in result.notes)


def test_spikes_are_judged_against_progress_not_raw_noise():
    rng = np.random.default_rng(0)
    smooth = 2.0 * np.exp(-np.arange(400) / 50) + 0.02
    noisy = smooth * np.exp(rng.normal(0, 0.15, size=400))  # multiplicative mini-batch noise
    assert count_spikes(noisy) == 0
    spiked = noisy.copy()
    spiked[[150, 300]] = 3.0
    assert count_spikes(spiked) == 2
    assert count_spikes(np.array([2.0, 1.0, np.nan])) == 1


def test_cli_writes_table_png_and_csv(tmp_path, capsys):
    out = tmp_path / "demo"
    assert main(["demo", "--task", "cancer-logreg", "--lrs", "100,1e-5,1", "--no-find", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    for text in ("too high", "too low", "chosen", "steps to target", "val acc"):
        assert text in printed
    png = (out / "loss_curves.png").read_bytes()
    assert png.startswith(b"\x89PNG")
    rows = list(csv.DictReader((out / "loss_curves.csv").open()))
    assert {row["lr"] for row in rows} == {"100.0", "1e-05", "1.0"}
    assert len(rows) == 3 * 400
    assert sorted(path.name for path in out.iterdir()) == ["loss_curves.csv", "loss_curves.png", "report.html"]
    assert "<html" in (out / "report.html").read_text()
    # the hint it ends with runs: diagnose the chosen run out of the CSV of every run
    hint = printed.strip().splitlines()[-1]
    assert hint == f"next: lrkit diagnose {out / 'loss_curves.csv'} --run role=chosen"
    assert main(hint.removeprefix("next: lrkit ").split() + ["--json"]) == 0
    assert '"verdict"' in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--task", "nope"], "unknown task 'nope'"),
        (["--lrs", "1,0,1e-3"], "every learning rate must be a finite number > 0"),
        (["--lrs", "1,-3"], "every learning rate must be a finite number > 0"),
        (["--lrs", "fast"], "is not a comma-separated list of numbers"),
        (["--seed", "x"], "'x' is not a valid integer"),
        (["--seed", "99999999999999999999"], "--seed"),
        (["--seed", "-1"], "--seed"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys, args, message):
    out = tmp_path / "out"
    assert main(["demo", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lrkit: error:") and message in err
    assert "Traceback" not in err
    assert not out.exists()  # a failed command leaves no empty --out folder


def test_unwritable_out_fails_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["demo", "--out", str(blocker / "sub")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "cannot be written" in err
