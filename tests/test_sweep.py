"""LR sweeps on Optuna: search, pruning, storage (journal file, real PostgreSQL), crash recovery, CLI."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from optuna.trial import TrialState

import lrkit
from lrkit.cli.app import main
from lrkit.sweeps import (
    SCHEDULE_KINDS,
    TaskObjective,
    build_schedule,
    default_bounds,
    grid_lrs,
    mask_url,
)
from lrkit.sweeps.result import fit_bowl
from lrkit.sweeps.storage import open_storage, parse_storage
from lrkit.sweeps.worker import WORKER
from postgres import free_port, postgres_cluster
from sweep_objectives import always_nan, bowl, flat, quick, returns_none, rising

TESTS = Path(__file__).parent
WORKER_ENV = {**os.environ, "PYTHONPATH": f"{TESTS}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}


@pytest.fixture(scope="session")
def postgres_url():
    with postgres_cluster() as url:
        yield url


STARTED: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def stop_leftover_workers():
    """A failing test must not leave its worker processes running."""
    yield
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.communicate()


def start(*command: str, env: dict | None = None) -> subprocess.Popen:
    process = subprocess.Popen(
        list(command), env={**WORKER_ENV, **(env or {})}, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    STARTED.append(process)
    return process


def cli_worker(*args: str, env: dict | None = None) -> subprocess.Popen:
    """``lrkit sweep ARGS`` in a process of its own (a worker as another machine would run it)."""
    code = "import sys; from lrkit.cli.app import main; sys.exit(main(sys.argv[1:]))"
    return start(sys.executable, "-c", code, "sweep", *args, env=env)


def load(storage: str | Path, study: str) -> optuna.Study:
    return optuna.load_study(study_name=study, storage=open_storage(parse_storage(storage)))


def wait_for(path: Path, process: subprocess.Popen, seconds: float = 300) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


# --- search -----------------------------------------------------------------------------------


def test_tpe_sweep_finds_the_best_lr_and_repeats_for_a_seed():
    first = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=16, pruner=None, seed=3)
    again = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=16, pruner=None, seed=3)
    assert len(first.finished) == 16
    assert abs(math.log10(first.best_lr) + 2) < 0.5  # bowl's minimum is at 1e-2
    assert first.best_loss == min(row.val_loss for row in first.trials)
    assert first.to_csv() == again.to_csv()
    assert repr(first).startswith(f"SweepResult(lr={first.lr:.3g}, best_lr={first.best_lr:.3g}, best_loss=")
    assert all(1e-5 <= row.lr <= 1.0 for row in first.trials)


def test_random_and_tpe_draw_differently_per_seed():
    one = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=5, sampler="random", pruner=None, seed=0)
    two = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=5, sampler="random", pruner=None, seed=1)
    assert [row.lr for row in one.trials] != [row.lr for row in two.trials]


def test_grid_sampler_tries_a_log_spaced_grid_over_the_range():
    result = lrkit.sweep(bowl, min_lr=1e-4, max_lr=1.0, n_trials=5, sampler="grid", pruner=None)
    assert [row.lr for row in result.trials] == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert result.best_lr == pytest.approx(1e-2)
    assert grid_lrs(1e-3, 1e-1, 1) == pytest.approx([1e-2])


@pytest.mark.parametrize("pruner", ["hyperband", "successive_halving", "median"])
def test_pruners_stop_bad_lrs_early_and_cost_less_than_a_grid(pruner):
    result = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=24, sampler="random", pruner=pruner)
    pruned = [row for row in result.trials if row.state == "pruned"]
    assert pruned, "no trial was pruned"
    assert all(row.steps < 100 for row in pruned)
    assert result.full_steps == 100
    assert result.grid_steps == 24 * 100
    assert result.steps_spent < result.grid_steps
    assert result.compute_fraction == pytest.approx(result.steps_spent / result.grid_steps)
    assert ",pruned," in result.to_csv()
    assert result.best.state == "complete"
    rows = list(csv.DictReader(io.StringIO(result.to_csv())))
    assert [float(row["lr"]) for row in rows] == [row.lr for row in result.trials]  # every digit kept
    assert [float(row["val_loss"]) for row in rows if row["val_loss"]] == [
        row.val_loss for row in result.trials if not math.isnan(row.val_loss)
    ]


def test_the_task_lr_is_tried_first_and_bounds_come_from_the_optimizer_family():
    task = lrkit.get_task("cancer-logreg")
    objective = TaskObjective("cancer-logreg")
    assert objective.prior_lr == task.default_lr
    low, high = objective.bounds
    assert low < task.default_lr < high
    assert default_bounds("Adam") == (1e-5, 1e-1)
    assert default_bounds("SGD(momentum=0.9)") == (1e-4, 1.0)
    assert default_bounds("Shampoo", 0.5) == (0.005, 50.0)
    result = lrkit.sweep(lambda lr, report: bowl(lr, report), min_lr=1e-4, max_lr=1.0, n_trials=2, prior_lr=3e-3)
    assert result.trials[0].lr == pytest.approx(3e-3)


def test_a_non_finite_loss_stops_the_trial_as_diverged():
    def blows_up_above_0_1(lr, report):
        for step in range(5):
            report(step, math.nan if lr > 0.1 and step >= 1 else 1.0 + lr)
        return 1.0 + lr

    result = lrkit.sweep(blows_up_above_0_1, min_lr=0.2, max_lr=1.0, n_trials=2, sampler="random", pruner=None)
    assert all(row.diverged and row.state == "pruned" and row.steps == 2 for row in result.trials)
    with pytest.raises(ValueError, match="no complete trial"):
        result.best  # noqa: B018

    def ends_in_nan_above_0_1(lr, report):
        return math.nan if lr > 0.1 else 1.0 + lr

    result = lrkit.sweep(ends_in_nan_above_0_1, min_lr=1e-3, max_lr=1.0, n_trials=6, sampler="grid", pruner=None)
    assert [(row.state, row.diverged, row.val_loss) for row in result.trials if row.lr > 0.1] == [
        ("complete", True, math.inf)
    ] * 2  # the worst result, not a failure to retry
    assert result.best_lr == pytest.approx(1e-3)


def test_plot_shows_loss_against_log_lr_with_pruned_trials(tmp_path):
    result = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=16, sampler="random", pruner="median")
    figure = result.plot()
    ax = figure.axes[0]
    assert ax.get_xscale() == "log"
    labels = [text.get_text() for text in ax.get_legend().get_texts()]
    assert any(label.startswith("pruned") for label in labels)
    assert any(label.startswith("best trial") for label in labels)
    assert any(label.startswith("fit through") for label in labels)
    assert f"lr to train with: {result.lr:.3g}" in labels
    path = lrkit.plots.save_figure(figure, tmp_path / "sweep.png")
    assert path.read_bytes()[:4] == b"\x89PNG"


# --- the LR to train with: a curve through the trials, not the luckiest one --------------------


@given(
    vertex=st.floats(-4.0, -1.0),
    curvature=st.floats(0.05, 5.0),
    floor=st.floats(0.0, 3.0),
    offsets=st.lists(st.floats(-1.5, 1.5), min_size=3, max_size=12, unique=True),
)
def test_fit_bowl_finds_the_vertex_of_a_noise_free_parabola(vertex, curvature, floor, offsets):
    xs = [vertex + offset for offset in offsets]
    fit = fit_bowl([10.0**x for x in xs], [floor + curvature * (x - vertex) ** 2 for x in xs])
    ranked = sorted((floor + curvature * (x - vertex) ** 2, x) for x in xs)
    kept = [x for _, x in ranked[: max(3, math.ceil(len(xs) / 2))]]
    if max(kept) - min(kept) < 0.1 or len({round(x, 6) for x in kept}) < 3:
        assert fit is None
        return
    assert fit is not None
    # the better half's span holds the vertex unless every kept trial lies on one side of it
    assert min(kept) - 1e-6 <= math.log10(fit.lr) <= max(kept) + 1e-6
    if min(kept) <= vertex <= max(kept):
        assert math.log10(fit.lr) == pytest.approx(vertex, abs=1e-5)
    assert float(fit.loss(fit.lr)) == pytest.approx(floor + curvature * (math.log10(fit.lr) - vertex) ** 2, abs=1e-6)


def test_fit_bowl_averages_out_the_noise_that_picks_a_lucky_trial():
    rng = np.random.default_rng(0)
    fitted_errors, trial_errors = [], []
    for _ in range(200):
        x = rng.uniform(-3.5, -0.5, 10)  # true best at log10 lr = -2
        loss = 1.0 + 0.1 * (x + 2) ** 2 + rng.normal(0, 0.02, x.size)
        fit, best = fit_bowl(10.0**x, loss), x[np.argmin(loss)]
        fitted_errors.append(abs((best if fit is None else math.log10(fit.lr)) + 2))  # as result.lr does
        trial_errors.append(abs(best + 2))
    assert np.median(fitted_errors) < 0.75 * np.median(trial_errors)


def test_fit_bowl_gives_up_without_a_bowl_and_names_bad_input():
    assert fit_bowl([1e-3, 1e-2], [1.0, 0.5]) is None  # too few trials
    assert fit_bowl([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.8, 0.6, 0.4]) is None  # a straight fall: no curvature
    convex = fit_bowl([1e-3, 1e-2, 1e-1, 1.0], [1.0, 0.5, 0.3, 0.25])  # still falling, ever slower
    assert convex is not None and 1e-2 <= convex.lr <= 1.0  # within the better half's span
    assert fit_bowl([1e-3, 1e-2, 1e-1], [1.0, 2.0, 1.0]) is None  # opens downward
    assert fit_bowl([1e-3, 1e-2, 1e-1, 1.0], [1.0, 1.0, 1.0, 1.0]) is None  # flat
    assert fit_bowl([1e-2, 1.01e-2, 1.02e-2], [1.0, 0.9, 1.0]) is None  # spans too little to trust
    assert fit_bowl([1e-3, 1e-2, 1e-1, 1.0], [1.0, math.nan, math.inf, 0.9]) is None  # 2 finite left
    with pytest.raises(ValueError, match="lrs and losses must have the same length, got 3 and 2"):
        fit_bowl([1e-3, 1e-2, 1e-1], [1.0, 0.5])


def test_result_lr_is_the_fitted_minimum_among_the_best_schedules_trials():
    result = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=8, sampler="random", pruner=None, seed=1)
    assert result.bowl is not None and math.log10(result.lr) == pytest.approx(-2, abs=1e-6)
    assert abs(math.log10(result.best_lr) + 2) > 1e-3  # no trial sat exactly at the minimum
    assert repr(result).startswith(f"SweepResult(lr={result.lr:.3g}, best_lr={result.best_lr:.3g}")
    few = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=2, sampler="random", pruner=None)
    assert few.bowl is None and few.lr == few.best_lr


def test_flat_or_straight_losses_hold_no_bowl_and_a_diverged_lr_is_never_recommended():
    for objective in (flat, rising):
        result = lrkit.sweep(objective, min_lr=1e-5, max_lr=1.0, n_trials=8, pruner="none", seed=0)
        assert result.bowl is None and result.lr == result.best_lr
    all_diverged = lrkit.sweep(always_nan, min_lr=1e-5, max_lr=1.0, n_trials=3, pruner=None)
    with pytest.raises(ValueError, match="has no trial with a finite validation loss: all 3 complete trials diverged"):
        all_diverged.lr  # noqa: B018
    with pytest.raises(TypeError, match=r"the objective must return the validation loss as a number, got None"):
        lrkit.sweep(returns_none, min_lr=1e-5, max_lr=1.0, n_trials=1, pruner=None)


def test_cli_says_when_every_trial_diverged_or_the_best_sits_at_an_edge(tmp_path, capsys):
    bounds = ["--min-lr", "1e-5", "--max-lr", "1", "--pruner", "none"]
    assert main(["sweep", "--entry", "sweep_objectives:always_nan", *bounds, "--trials", "3", "--out", str(tmp_path / "a")]) == 0
    assert "no LR to train with: every complete trial diverged; lower --max-lr" in capsys.readouterr().out
    json_run = ["--trials", "3", "--out", str(tmp_path / "j"), "--json"]
    assert main(["sweep", "--entry", "sweep_objectives:always_nan", *bounds, *json_run]) == 0
    out, err = capsys.readouterr()
    assert json.loads(out)["lr"] is None  # the JSON's null LR is explained where a person reads
    assert "no LR to train with: every complete trial diverged; lower --max-lr" in err
    assert main(["sweep", "--entry", "sweep_objectives:rising", *bounds, "--trials", "6", "--out", str(tmp_path / "b")]) == 0
    assert "note: the best trial is the lowest LR tried; the best rate may lie beyond it" in capsys.readouterr().out


def test_the_edge_note_counts_pruned_and_diverged_trials_as_tried():
    from types import SimpleNamespace

    from lrkit.cli.sweep import _edge

    def row(lr, state="complete"):
        return SimpleNamespace(lr=lr, state=state)

    finite = [row(0.01), row(0.1), row(1.0)]
    assert _edge(finite[0], finite, finite) == "lowest"
    assert _edge(finite[0], finite, [row(0.001, "pruned"), *finite]) is None  # tried lower: it was worse
    assert _edge(finite[2], finite, [*finite, row(3.0, "complete")]) is None  # a diverged trial above
    assert _edge(finite[2], finite, [*finite, row(3.0, "failed")]) == "highest"  # a failure shows nothing


def test_an_objective_may_return_and_report_one_element_tensors_but_not_text():
    def tensor_loss(lr, report):
        report(0, torch.tensor([bowl(lr, lambda *_: None)]))
        return torch.tensor(bowl(lr, lambda *_: None))

    result = lrkit.sweep(tensor_loss, min_lr=1e-4, max_lr=1.0, n_trials=3, sampler="random", pruner=None)
    assert [row.state for row in result.trials] == ["complete"] * 3
    assert result.best_loss == pytest.approx(min(bowl(row.lr, lambda *_: None) for row in result.trials))
    for returned, shown in ((torch.ones(2), "tensor"), ("0.5", "'0.5' (str)"), (torch.tensor(True), "tensor")):
        with pytest.raises(TypeError, match=f"must return the validation loss as a number, got {re.escape(shown)}"):
            lrkit.sweep(lambda lr, report, r=returned: r, min_lr=1e-4, max_lr=1.0, n_trials=1, pruner=None)
    with pytest.raises(TypeError, match=r"report\(step, value\): value must be the validation loss as a number, got '1'"):
        lrkit.sweep(lambda lr, report: report(0, "1"), min_lr=1e-4, max_lr=1.0, n_trials=1, pruner=None)


def test_an_entry_that_cannot_take_the_call_is_one_line(tmp_path, capsys, monkeypatch):
    (tmp_path / "wrong_entries.py").write_text(
        "def setup(size):\n    pass\n\ndef train(lr):\n    return lr\n\n"
        "def train_schedule(lr, report, *, schedule, warmup_steps):\n    return lr\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    bounds = ["--min-lr", "1e-4", "--max-lr", "1", "--out", str(tmp_path / "o")]
    assert main(["find", "--entry", "wrong_entries:setup", "--out", str(tmp_path / "o")]) == 2
    assert "--entry 'wrong_entries:setup': lrkit calls it as setup(), but missing a required argument: 'size'" in capsys.readouterr().err
    assert main(["sweep", "--entry", "wrong_entries:train", *bounds]) == 2
    assert "lrkit calls it as train(lr, report), but too many positional arguments" in capsys.readouterr().err
    assert main(["sweep", "--entry", "wrong_entries:train_schedule", *bounds]) == 2
    assert "train_schedule(lr, report), but missing a required argument: 'schedule'" in capsys.readouterr().err
    args = [*bounds, "--trials", "2", "--schedules", "constant"]
    assert main(["sweep", "--entry", "wrong_entries:train_schedule", *args]) == 0
    sys.modules.pop("wrong_entries", None)


def test_schedule_kind_and_warmup_are_searched_with_the_lr():
    seen = []

    def train(lr, report, *, schedule, warmup_steps):
        seen.append((schedule, warmup_steps))
        return bowl(lr, report) + {"constant": 1.0, "cosine": 0.0}[schedule] + warmup_steps / 100

    result = lrkit.sweep(train, min_lr=1e-4, max_lr=1.0, n_trials=12, sampler="random", pruner=None,
                         schedules=["constant", "cosine"], warmup_steps=[0, 50])
    assert {(row.schedule, row.warmup_steps) for row in result.trials} == set(seen)
    assert set(seen) == {("constant", 0), ("constant", 50), ("cosine", 0), ("cosine", 50)}
    assert (result.best.schedule, result.best.warmup_steps) == ("cosine", 0)
    if result.bowl is not None:  # fitted through the best schedule's trials only
        best_kind = {row.lr for row in result.trials if (row.schedule, row.warmup_steps) == ("cosine", 0)}
        assert all(any(math.isclose(lr, other) for other in best_kind) for lr in result.bowl.lrs)
    assert result.to_csv().splitlines()[0].endswith(",schedule,warmup_steps")
    with pytest.raises(ValueError, match="schedules must be one of 'constant', 'cosine', 'linear'; got 'step'"):
        lrkit.sweep(train, min_lr=1e-4, max_lr=1.0, schedules=["step"])
    with pytest.raises(ValueError, match="warmup_steps needs schedules"):
        lrkit.sweep(train, min_lr=1e-4, max_lr=1.0, warmup_steps=[10])


@given(
    kind=st.sampled_from(SCHEDULE_KINDS),
    peak=st.floats(1e-6, 10.0),
    steps=st.integers(2, 5000),
    warmup=st.floats(0.0, 0.99),
)
def test_built_schedules_warm_up_to_the_peak_and_never_pass_it(kind, peak, steps, warmup):
    warmup_steps = min(int(warmup * steps), steps - 1)
    schedule = build_schedule(kind, peak, steps, warmup_steps)
    values = schedule(np.arange(steps + 1))
    assert values.max() <= peak * (1 + 1e-9)
    assert schedule(warmup_steps) == pytest.approx(peak)
    assert values.min() >= 0
    if warmup_steps:
        assert values[0] < peak and np.all(np.diff(values[: warmup_steps + 1]) >= 0)
    if kind != "constant":
        assert values[-1] == pytest.approx(0.0, abs=1e-12)
    with pytest.raises(ValueError, match=f"warmup_steps must be < steps={steps}"):
        build_schedule(kind, peak, steps, steps)


# --- storage: journal file, resume, crash recovery ----------------------------------------------


def test_running_again_resumes_and_counts_finished_trials(tmp_path):
    journal = tmp_path / "sweep.journal"
    first = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=5, storage=journal, study="s")
    more = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=8, storage=journal, study="s")
    assert len(first.finished) == 5 and len(more.finished) == 8
    assert more.trials[:5] == first.trials
    done = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=8, storage=journal, study="s")
    assert done.trials == more.trials  # nothing left to do
    with pytest.raises(ValueError, match="was made with min_lr=1e-05"):
        lrkit.sweep(bowl, min_lr=1e-4, max_lr=1.0, n_trials=8, storage=journal, study="s")


def test_api_and_cli_join_the_same_study_by_default(tmp_path, capsys):
    """One journal, the CLI first and the API second: the API resumes the CLI's study (same name, so
    the same Hyperband brackets) instead of starting another."""
    journal = tmp_path / "sweep.journal"
    bounds = ["--min-lr", "1e-5", "--max-lr", "1"]
    assert main(["sweep", "--entry", "sweep_objectives:bowl", *bounds, "--trials", "3", "--sampler", "random",
                 "--storage", str(journal), "--out", str(tmp_path / "o")]) == 0
    result = lrkit.sweep(bowl, min_lr=1e-5, max_lr=1.0, n_trials=3, sampler="random", storage=journal)
    assert result.study == "sweep_objectives:bowl"
    assert len(result.finished) == 3  # nothing new trained: the CLI's three trials count
    assert lrkit.sweep("cancer-logreg", n_trials=1, pruner=None).study == "cancer-logreg"
    assert lrkit.sweep(lambda lr, report: lr, min_lr=1e-3, max_lr=1.0, n_trials=1).study == "lrkit-sweep"


def test_embedded_default_with_two_processes_loses_nothing(tmp_path, monkeypatch):
    folder = tmp_path / "rendezvous"
    folder.mkdir()
    monkeypatch.setenv("LRKIT_TEST_RENDEZVOUS", f"{folder}:2")
    journal = tmp_path / "sweep.journal"
    result = lrkit.sweep(quick, min_lr=1e-5, max_lr=1.0, n_trials=16, pruner=None, storage=journal, workers=2)
    study = load(journal, "sweep_objectives:quick")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 16 == len(result.finished)
    assert len({trial.number for trial in complete}) == 16
    assert len({trial.user_attrs[WORKER] for trial in complete}) == 2
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))


def test_journal_trial_of_a_killed_process_is_retried_with_the_same_lr(tmp_path):
    journal, marker = tmp_path / "sweep.journal", tmp_path / "hung"
    args = ["--entry", "sweep_objectives:hang_once", "--min-lr", "1e-5", "--max-lr", "1", "--trials", "4",
            "--sampler", "random", "--pruner", "none", "--storage", str(journal), "--study", "s", "--out", str(tmp_path)]
    worker = cli_worker(*args, env={"LRKIT_TEST_HANG": str(marker)})
    wait_for(marker, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    result = lrkit.sweep(quick, min_lr=1e-5, max_lr=1.0, n_trials=4, sampler="random", pruner=None,
                         storage=journal, study="s")
    lost = float(marker.read_text())
    failed = [row for row in result.trials if row.state == "failed"]
    assert [row.lr for row in failed] == [lost]
    retried = [row for row in result.trials if row.retry_of == failed[0].number]
    assert [(row.lr, row.state) for row in retried] == [(lost, "complete")]
    assert len(result.finished) == 4


# --- storage: many workers on one real PostgreSQL study -----------------------------------------


def test_four_workers_fill_one_postgres_study_exactly(postgres_url, tmp_path):
    """Three workers through the API and one through the CLI, as four machines would run them."""
    rendezvous = tmp_path / "rendezvous"
    rendezvous.mkdir()
    env = {"LRKIT_TEST_RENDEZVOUS": f"{rendezvous}:4"}
    code = ("import sys, lrkit, sweep_objectives; lrkit.sweep(sweep_objectives.quick, min_lr=1e-5, max_lr=1.0, "
            "n_trials=40, sampler='random', pruner=None, storage=sys.argv[1], study='four')")
    workers = [start(sys.executable, "-c", code, postgres_url, env=env) for _ in range(3)]
    workers.append(
        cli_worker("--entry", "sweep_objectives:quick", "--min-lr", "1e-5", "--max-lr", "1", "--trials", "40",
                   "--sampler", "random", "--pruner", "none", "--storage", postgres_url, "--study", "four",
                   "--out", str(tmp_path), env=env)
    )
    outputs = [worker.communicate(timeout=600) for worker in workers]
    for worker, (_, stderr) in zip(workers, outputs, strict=True):
        if worker.returncode:
            print(stderr)  # shown in full when the test fails
    assert [worker.returncode for worker in workers] == [0] * 4
    study = load(postgres_url, "four")
    complete = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(complete) == 40
    assert len({trial.number for trial in complete}) == 40
    assert len({trial.user_attrs[WORKER] for trial in complete}) == 4
    assert len({trial.params["lr"] for trial in complete}) == 40  # workers never drew the same LR
    cli_stdout, cli_stderr = outputs[-1]
    assert "study 'four' in postgresql://lrkit:***@127.0.0.1:" in cli_stdout
    assert "optuna-dashboard postgresql+psycopg2://lrkit:***@127.0.0.1:" in cli_stdout
    assert "Pw-" not in cli_stdout + cli_stderr
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 41


def test_killed_postgres_worker_trial_is_failed_by_heartbeat_and_retried(postgres_url, tmp_path):
    marker = tmp_path / "hung"
    worker = cli_worker("--entry", "sweep_objectives:hang_once", "--min-lr", "1e-5", "--max-lr", "1", "--trials", "5",
                        "--sampler", "tpe", "--pruner", "none", "--storage", postgres_url, "--study", "killed",
                        "--heartbeat", "1", "--out", str(tmp_path), env={"LRKIT_TEST_HANG": str(marker)})
    wait_for(marker, worker)
    worker.send_signal(signal.SIGKILL)
    worker.wait()
    result = lrkit.sweep(quick, min_lr=1e-5, max_lr=1.0, n_trials=5, pruner=None, storage=postgres_url,
                         study="killed", heartbeat_seconds=1)
    lost = float(marker.read_text())
    study = load(postgres_url, "killed")
    failed = study.get_trials(states=(TrialState.FAIL,))
    assert [trial.params["lr"] for trial in failed] == [lost]
    retried = [trial for trial in study.get_trials() if trial.system_attrs.get("failed_trial") == failed[0].number]
    assert [(trial.params["lr"], trial.state) for trial in retried] == [(lost, TrialState.COMPLETE)]
    assert len(study.get_trials(states=(TrialState.COMPLETE,))) == 5 == len(result.finished)


# --- storage arguments and passwords ------------------------------------------------------------


def test_sqlite_is_refused_for_several_workers_with_the_reason(tmp_path):
    with pytest.raises(ValueError, match="SQLite locks the whole file"):
        lrkit.sweep(quick, min_lr=1e-4, max_lr=1.0, storage=f"sqlite:///{tmp_path}/s.db", workers=2)
    with pytest.raises(ValueError, match="workers=2 needs a storage that processes share"):
        lrkit.sweep(quick, min_lr=1e-4, max_lr=1.0, workers=2)
    one = lrkit.sweep(bowl, min_lr=1e-4, max_lr=1.0, n_trials=2, storage=f"sqlite:///{tmp_path}/s.db")
    assert len(one.finished) == 2


def test_unknown_storage_scheme_is_refused_without_its_password():
    with pytest.raises(ValueError, match="redis://u:\\*\\*\\*@host") as error:
        parse_storage("redis://u:hunter2@host/0")
    assert "hunter2" not in str(error.value)


@given(
    user=st.text("abcdefghij_", min_size=1, max_size=8),
    password=st.text("KLMNOPQRSTUVWXYZ0123456789!$-.~", min_size=1, max_size=16),
    host=st.sampled_from(["db.example.org", "127.0.0.1:5432", "[::1]:6543"]),
    scheme=st.sampled_from(["postgresql", "postgresql+psycopg2", "mysql"]),
)
def test_mask_url_never_shows_the_password(user, password, host, scheme):
    url = f"{scheme}://{user}:{password}@{host}/sweeps"
    shown = mask_url(url)
    assert password not in shown.split("@")[0].split("//")[1]
    assert shown == f"{scheme}://{user}:***@{host}/sweeps"
    assert password not in repr(parse_storage(url)).split("@")[0].split("//")[1]
    assert mask_url(f"{scheme}://{host}/db") == f"{scheme}://{host}/db"
    in_query = f"{scheme}://{user}@{host}/sweeps?sslmode=require&password={password}"
    assert mask_url(in_query) == f"{scheme}://{user}@{host}/sweeps?sslmode=require&password=***"


def test_an_unreachable_storage_with_a_password_in_the_query_never_prints_it(tmp_path, capsys):
    url = f"postgresql://me@127.0.0.1:{free_port()}/db?password=s3cretpw"
    code = main(["sweep", *ENTRY, "--trials", "1", "--storage", url, "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("lrkit: error:") and "s3cretpw" not in err and "password=***" in err


# --- CLI ----------------------------------------------------------------------------------------


def test_cli_sweeps_a_built_in_task_and_writes_table_plot_and_csv(tmp_path, capsys):
    out = tmp_path / "out"
    args = ["sweep", "--task", "cancer-logreg", "--trials", "3", "--pruner", "none", "--out", str(out),
            "--schedules", "constant,cosine", "--warmup-steps", "0,40"]
    code = main(args)
    stdout = capsys.readouterr().out
    assert code == 0
    assert "best trial #" in stdout and "lr to train with" in stdout
    assert "steps spent" in stdout and "(best)" in stdout
    assert f"optuna-dashboard {out / 'sweep.journal'}" in stdout
    lines = (out / "sweep.csv").read_text().splitlines()
    assert lines[0] == "number,lr,state,val_loss,steps,diverged,retry_of,schedule,warmup_steps"
    assert lines[1].startswith("0,0.01,complete,")  # the task's own LR goes first
    assert len(lines) == 4
    assert all(line.split(",")[-2] in ("constant", "cosine") for line in lines[1:])
    assert (out / "sweep.png").read_bytes()[:4] == b"\x89PNG"
    assert main(args) == 0  # run again: the study is complete, nothing new trains
    assert (out / "sweep.csv").read_text().splitlines() == lines


ENTRY = ["--entry", "sweep_objectives:bowl", "--min-lr", "1e-4", "--max-lr", "1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([*ENTRY, "--min-lr", "1", "--max-lr", "0.1"], "--min-lr must be < --max-lr, got --min-lr=1.0 >= --max-lr=0.1"),
        ([*ENTRY, "--min-lr", "0"], "'--min-lr': 0.0 is not in the range x>0"),
        ([*ENTRY, "--max-lr", "-1"], "'--max-lr': -1.0 is not in the range x>0"),
        ([*ENTRY, "--trials", "0"], "'--trials': 0 is not in the range x>=1"),
        ([*ENTRY, "--sampler", "bayes"], "'--sampler': 'bayes' is not one of 'tpe', 'random', 'grid'"),
        ([*ENTRY, "--pruner", "asha"], "'--pruner': 'asha' is not one of 'hyperband', 'successive_halving'"),
        ([*ENTRY, "--task", "cancer-logreg"], "give exactly one of --task NAME or --entry module:function"),
        ([], "give exactly one of --task NAME or --entry module:function"),
        (["--entry", "nowhere:f"], "--entry 'nowhere:f': cannot import 'nowhere'"),
        (["--task", "mnist"], "unknown task 'mnist'; known tasks:"),
        (
            ["--entry", "sweep_objectives:bowl", "--trials", "2"],
            "--entry 'sweep_objectives:bowl' needs --min-lr and --max-lr (only a built-in --task has its own range), "
            "missing --min-lr and --max-lr",
        ),
        (["--entry", "sweep_objectives:bowl", "--min-lr", "1e-4"], "needs --min-lr and --max-lr (only a built-in --task has its own range), missing --max-lr"),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrkit: error: ") and err.count("\n") == 1
    assert message in err
    assert not out.exists()  # a failed command leaves no empty --out folder


def test_cli_journal_storage_that_cannot_be_written_names_storage_before_training(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    journal = blocker / "sweep.journal"
    assert main(["sweep", *ENTRY, "--storage", str(journal), "--out", str(tmp_path / "out")]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"lrkit: error: --storage {str(journal)!r} cannot be written: {str(blocker)!r}: Not a directory\n"
    assert captured.out == ""
    assert not (tmp_path / "out").exists()


def test_cli_unreachable_storage_is_one_line_without_the_password(tmp_path, capsys):
    url = f"postgresql://sweeper:Hidden-42@127.0.0.1:{free_port()}/sweeps"
    args = ["sweep", "--entry", "sweep_objectives:bowl", "--min-lr", "1e-4", "--max-lr", "1", "--storage", url,
            "--out", str(tmp_path)]
    assert main(args) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("lrkit: error: cannot open storage postgresql://sweeper:***@127.0.0.1:")
    assert captured.err.count("\n") == 1
    assert "Hidden-42" not in captured.err + captured.out


def test_cli_prints_the_trials_around_the_best_and_the_csv_keeps_them_all(tmp_path, capsys):
    args = ["--min-lr", "1e-5", "--max-lr", "1", "--pruner", "none", "--sampler", "random", "--trials", "60"]
    assert main(["sweep", "--entry", "sweep_objectives:bowl", *args, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("│") and "complete" in line]
    assert len(rows) == 40 and sum("(best)" in line for line in rows) == 1
    assert "not shown: every trial is in sweep.csv" in " ".join(out.split())
    assert len((tmp_path / "sweep.csv").read_text().splitlines()) == 61
