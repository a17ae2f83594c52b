"""LR sweeps used as a user with their own objective would: errors in it, studies made elsewhere,
resuming, bad arguments, and what the CLI says about each.

The objectives here that worker processes run are module-level, so a spawned helper imports them.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

import lrkit
from lrkit.cli.app import main
from lrkit.sweeps.storage import open_storage, parse_storage
from lrkit.sweeps.worker import ERROR
from sweep_objectives import always_nan, bowl

FAILING_LR = 1e-2  # the grid's middle LR (1e-4..1, 5 LRs), where ``raises_once`` raises


def raises_once(lr: float, report) -> float:
    """``bowl``, but the first call at ``FAILING_LR`` (in a process started with LRKIT_TEST_MARK=path)
    creates that path and raises, as a bug or an out-of-memory error in the user's code would."""
    marker = Path(os.environ["LRKIT_TEST_MARK"])
    if math.isclose(lr, FAILING_LR) and not marker.exists():
        marker.touch()
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
    return bowl(lr, report)


def raises_in_helper(lr: float, report) -> float:
    """Raises in a sweep's helper process (after writing its pid and LR to LRKIT_TEST_MARK); in
    the starting process it waits until that helper has exited, so the error comes mid-sweep."""
    marker = Path(os.environ["LRKIT_TEST_MARK"])
    if multiprocessing.parent_process() is not None:
        marker.write_text(f"{os.getpid()} {lr!r}")
        raise RuntimeError("CUDA out of memory in the helper")
    deadline = time.monotonic() + 120
    while not _exited(marker) and time.monotonic() < deadline:
        time.sleep(0.05)
    return (math.log10(lr) + 2) ** 2


def _exited(marker: Path) -> bool:
    """Whether the helper named in ``marker`` has exited (a zombie until its parent reaps it)."""
    if not marker.exists() or not marker.read_text():
        return False
    stat = Path(f"/proc/{marker.read_text().split()[0]}/stat")
    return not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z"


def past_the_best(lr: float, report) -> float:
    """Falls toward 0.1 until 0.05 and blows up above it: the better trials' parabola has its
    minimum past the highest of them."""
    return (math.log10(lr) + 1) ** 2 if lr < 0.05 else 1000.0


def journal_study(path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=open_storage(parse_storage(str(path))))


def bowl_sweep(*options: str) -> list[str]:
    """``lrkit sweep`` arguments for the bowl objective over 1e-4..1, then ``options``."""
    return ["sweep", "--entry", "sweep_objectives:bowl", "--min-lr", "1e-4", "--max-lr", "1", *options]


# --- an error in the user's objective ---------------------------------------------------------


def test_a_trial_an_error_stopped_runs_again_on_resume_so_the_grid_has_no_hole(
    tmp_path, monkeypatch
):
    """The error stops the sweep (it is the user's to fix) and says where; resuming runs that LR
    again instead of leaving it out of the grid."""
    monkeypatch.setenv("LRKIT_TEST_MARK", str(tmp_path / "raised"))
    journal = tmp_path / "sweep.journal"
    args = dict(min_lr=1e-4, max_lr=1.0, n_trials=5, sampler="grid", pruner=None, storage=journal)
    with pytest.raises(RuntimeError, match="out of memory") as raised:
        lrkit.sweep(raises_once, **args)
    assert "in trial #2 at lr=0.01; the sweep stopped. Run it again to resume" in "".join(
        raised.value.__notes__
    )
    failed = journal_study(journal, "test_sweep_acceptance:raises_once").get_trials(
        states=(TrialState.FAIL,)
    )
    assert [trial.user_attrs[ERROR] for trial in failed] == [
        "RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB"
    ]

    result = lrkit.sweep(raises_once, **args)
    complete = sorted(row.lr for row in result.trials if row.state == "complete")
    assert complete == pytest.approx([1e-4, 1e-3, 1e-2, 1e-1, 1.0])
    assert [
        row.retry_of
        for row in result.trials
        if row.lr == pytest.approx(1e-2) and row.state == "complete"
    ] == [2]


def test_an_error_in_a_helper_process_stops_the_sweep_as_one_in_the_first_does(
    tmp_path, monkeypatch, capsys
):
    """With --workers 2 the helper's error used to leave the sweep running on one worker, exit 0,
    and its trial never ran again."""
    marker = tmp_path / "raised"
    monkeypatch.setenv("LRKIT_TEST_MARK", str(marker))
    out = tmp_path / "out"
    code = main(
        [
            "sweep",
            "--entry",
            "test_sweep_acceptance:raises_in_helper",
            "--min-lr",
            "1e-4",
            "--max-lr",
            "1",
            "--trials",
            "6",
            "--sampler",
            "random",
            "--pruner",
            "none",
            "--workers",
            "2",
            "--out",
            str(out),
        ]
    )
    err = capsys.readouterr().err
    assert code == 1
    last = err.strip().splitlines()[-1]
    assert last.startswith("lrkit: error: worker process ")
    assert (
        "the objective raised in trial #" in last
        and "RuntimeError: CUDA out of memory in the helper" in last
    )
    assert "run the sweep again to resume" in last
    study = journal_study(out / "sweep.journal", "test_sweep_acceptance:raises_in_helper")
    lost = float(marker.read_text().split()[1])
    queued = [
        trial for trial in study.get_trials() if trial.system_attrs.get("failed_trial") is not None
    ]
    assert [trial.params["lr"] for trial in queued] == [lost]
    assert all(ERROR not in trial.user_attrs for trial in queued)  # the retry has not raised


# --- a study the sweep did not make -----------------------------------------------------------


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            dict(direction="maximize"),
            "was made to maximize; a sweep minimizes one, the validation loss",
        ),
        (dict(directions=["minimize", "minimize"]), "was made with 2 objectives"),
    ],
)
def test_a_study_of_another_direction_is_refused(tmp_path, make, message):
    """Joined before, a maximizing study turned TPE and the pruner against the loss (and a
    multi-objective one failed inside the user's objective, blamed on their code)."""
    journal = tmp_path / "sweep.journal"
    optuna.create_study(study_name="lr", storage=open_storage(parse_storage(str(journal))), **make)
    with pytest.raises(ValueError, match=message):
        lrkit.sweep(bowl, min_lr=1e-4, max_lr=1.0, n_trials=2, storage=journal, study="lr")


def test_a_study_other_code_filled_is_refused_and_its_trials_never_count(tmp_path, capsys):
    journal = tmp_path / "sweep.journal"
    other = optuna.create_study(study_name="lr", storage=open_storage(parse_storage(str(journal))))
    other.optimize(lambda trial: trial.suggest_float("x", 0, 1), n_trials=3)
    code = main(bowl_sweep("--trials", "4", "--storage", str(journal), "--study", "lr", "--out", str(tmp_path / "o")))
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip() == (
        f"lrkit: error: study 'lr' in {journal} was not made by an lrkit sweep (it holds trials but no lrkit "
        "settings): choose another study name"
    )
    assert len(other.get_trials()) == 3


# --- what the CLI says -------------------------------------------------------------------------


def test_running_again_says_the_study_already_holds_its_trials(tmp_path, capsys):
    """Run again after changing the objective, the sweep showed the old trials as its result with
    no word that nothing had run."""
    args = bowl_sweep("--pruner", "none", "--sampler", "random", "--out", str(tmp_path))
    assert main([*args, "--trials", "2"]) == 0
    assert "resuming" not in capsys.readouterr().out
    assert main([*args, "--trials", "3"]) == 0
    assert "resuming: 2 of its 3 trials finished before this run" in capsys.readouterr().out
    assert main([*args, "--trials", "3"]) == 0
    assert (
        "resuming: it already holds 3 finished trials, so none runs; raise --trials"
        in capsys.readouterr().out
    )


def test_a_fit_whose_minimum_lies_past_the_trials_is_not_called_its_minimum(tmp_path, capsys):
    args = [
        "sweep",
        "--entry",
        "test_sweep_acceptance:past_the_best",
        "--min-lr",
        "1e-4",
        "--max-lr",
        "1",
        "--trials",
        "5",
        "--sampler",
        "grid",
        "--pruner",
        "none",
        "--out",
        str(tmp_path),
    ]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert (
        "lr to train with 0.01: the highest of the best 3 complete trials, where a parabola in log LR through "
        "them is lowest within their span (its minimum lies beyond it)"
    ) in out
    assert "the minimum of a parabola" not in out


def test_repr_says_every_complete_trial_diverged():
    result = lrkit.sweep(always_nan, min_lr=1e-4, max_lr=1.0, n_trials=2, pruner=None)
    assert repr(result).startswith("SweepResult(no LR: every complete trial diverged, trials=2/2")


# --- bad arguments ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            dict(schedules="cosine"),
            TypeError,
            r"schedules must be a list of values, got 'cosine' \(str\); for one value write \['cosine'\]",
        ),
        (
            dict(schedules=[]),
            ValueError,
            r"schedules must hold at least one value, got \[\] \(None: not searched\)",
        ),
        (
            dict(schedules=["cosine"], warmup_steps=5),
            TypeError,
            r"warmup_steps must be a list of values, got 5 \(int\)",
        ),
        (
            dict(schedules=["cosine"], warmup_steps=()),
            ValueError,
            r"warmup_steps must hold at least one value, got \(\)",
        ),
        (dict(prior_lr=10.0), ValueError, r"prior_lr must be in \[0.0001, 1\], got 10.0"),
        (dict(study=5), TypeError, r"study must be a name \(a str\), got 5 \(int\)"),
    ],
)
def test_bad_search_options_name_the_argument(options, error, message):
    """Before, a string of kinds was read letter by letter, an empty list or an LR outside the
    range was silently ignored, and an int for warmup_steps failed as "'int' object is not iterable"."""
    with pytest.raises(error, match=message):
        lrkit.sweep(bowl, min_lr=1e-4, max_lr=1.0, n_trials=2, **options)


def test_cli_empty_schedules_is_one_line_and_exit_2(tmp_path, capsys):
    code = main(bowl_sweep("--schedules", "", "--out", str(tmp_path)))
    assert code == 2
    assert (
        capsys.readouterr().err
        == "lrkit: error: schedules must hold at least one value, got [] (None: not searched)\n"
    )


def test_a_database_without_its_driver_names_what_to_install():
    with pytest.raises(ConnectionError) as raised:
        lrkit.sweep(bowl, min_lr=1e-4, max_lr=1.0, storage="mysql://me:Secret-1@127.0.0.1:1/db")
    message = str(raised.value)
    assert (
        "lrkit[sweep] installs the PostgreSQL driver only: install a driver SQLAlchemy knows for mysql://"
        in message
    )
    assert "Secret-1" not in message


# --- storage URLs as shown -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("sqlite:///sweep.db", "sqlite:///sweep.db"),
        ("sqlite:////tmp/runs/sweep.db", "sqlite:////tmp/runs/sweep.db"),
        (
            "postgresql:///sweeps?host=/var/run/postgresql&password=pw",
            "postgresql:///sweeps?host=/var/run/postgresql&password=***",
        ),
    ],
)
def test_a_url_is_shown_as_given_but_its_password(url, shown):
    """Parsed and rebuilt, ``sqlite:///sweep.db`` was shown as ``sqlite:/sweep.db`` (and the
    absolute ``sqlite:////tmp/...`` as ``sqlite://tmp/...``, a host named tmp), in the study line,
    ``--json`` and the optuna-dashboard command, and a socket path in the query was re-quoted."""
    assert lrkit.sweeps.mask_url(url) == shown


def test_cli_tells_optuna_dashboard_the_sqlite_url_it_used(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    args = bowl_sweep("--trials", "2", "--pruner", "none", "--storage", "sqlite:///sweep.db", "--out", "out")
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("study 'sweep_objectives:bowl' in sqlite:///sweep.db: ")
    assert out.strip().endswith("browse it: optuna-dashboard sqlite:///sweep.db")


def reports_a_step_twice(lr: float, report) -> float:
    report(0, 2.0)
    report(0, 1.0)
    return (math.log10(lr) + 2) ** 2


def test_a_step_reported_twice_is_named_in_the_objectives_numbers():
    """Optuna's warning named the step counted from 1 (``step=1`` for the user's step 0)."""
    with pytest.warns(UserWarning) as caught:
        result = lrkit.sweep(reports_a_step_twice, min_lr=1e-4, max_lr=1.0, n_trials=1, pruner=None)
    assert [str(warning.message) for warning in caught] == [
        "report(step=0, ...) again: only the first value reported at a step counts; pass the 0-based index "
        "of the last step (or epoch) trained"
    ]
    assert caught[0].filename == __file__  # where the objective calls report
    assert len(result.finished) == 1


def test_a_warmup_longer_than_the_task_is_refused_before_the_study_is_made(tmp_path, capsys):
    """It failed only in the first trial that drew it, after the study had been made with it, so
    the study could not be resumed with a shorter one."""
    out = tmp_path / "out"
    code = main(
        [
            "sweep",
            "--task",
            "cancer-logreg",
            "--schedules",
            "cosine",
            "--warmup-steps",
            "0,1000",
            "--trials",
            "3",
            "--out",
            str(out),
        ]
    )
    assert code == 2
    assert capsys.readouterr().err == (
        "lrkit: error: --warmup-steps must be < 400, the steps of task 'cancer-logreg', got 1000\n"
    )
    assert not out.exists()


def test_an_objective_that_cannot_take_the_searched_schedule_is_refused_before_any_trial(tmp_path):
    """From Python it failed inside the first trial, after the study had been made with schedules."""
    journal = tmp_path / "sweep.journal"
    with pytest.raises(
        TypeError,
        match=r"objective must take the call the sweep makes, \(lr, report, schedule=\.\.\., "
        r"warmup_steps=\.\.\.\), got <function bowl .*>: got an unexpected keyword argument 'schedule'",
    ):
        lrkit.sweep(bowl, min_lr=1e-4, max_lr=1.0, schedules=["cosine"], storage=journal)
    assert not journal.exists()
