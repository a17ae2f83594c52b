"""A sweep's time budget (``timeout=``, ``--timeout``): no trial starts after its deadline, a trial
running then finishes, and every local worker keeps the same deadline.

Timing is asserted as behaviour with wide margins, never as speed: a trial of ``napping`` sleeps at
least ``NAP_SECONDS``, so a budget bounds how many trials can start however slow the machine is.
"""

from __future__ import annotations

import math
import os
import string
import time

import optuna
import pytest
from hypothesis import given
from hypothesis import strategies as st
from optuna.trial import TrialState

import lrkit
from lrkit.cli.app import main
from lrkit.cli.sweep import UNITS, format_duration, parse_duration
from lrkit.sweeps.storage import open_storage, parse_storage
from sweep_objectives import NAP_SECONDS, bowl, napping, slow_bowl

BOUNDS = {"min_lr": 1e-5, "max_lr": 1.0, "pruner": None}


def test_no_trial_starts_after_the_deadline():
    started = time.monotonic()
    result = lrkit.sweep(napping, **BOUNDS, n_trials=20, timeout=2.0)
    elapsed = time.monotonic() - started
    # trial k starts at >= k * NAP_SECONDS after the deadline was set: only k = 0..6 fit in 2 s
    assert 3 <= len(result.finished) <= math.ceil(2.0 / NAP_SECONDS) == 7
    assert elapsed >= 2.0  # it did not stop before the budget was spent
    assert result.timed_out and result.timeout == 2.0
    assert all(row.state == "complete" for row in result.trials)
    assert repr(result).endswith(f", timed out at timeout=2s, study={result.study!r})")


def test_a_trial_running_at_the_deadline_finishes_and_counts():
    started = time.monotonic()
    result = lrkit.sweep(slow_bowl, **BOUNDS, n_trials=5, timeout=0.5)
    assert time.monotonic() - started >= 1.6  # the whole trial ran
    (row,) = result.trials
    assert (row.state, row.steps) == ("complete", 100)  # every report, to the last step
    assert row.val_loss == (math.log10(row.lr) + 2) ** 2
    assert result.timed_out and result.finished == (row,)
    assert result.lr == result.best_lr == row.lr  # one trial: no bowl to fit, still an LR
    assert len(result.to_csv().splitlines()) == 2
    assert result.plot().axes[0].get_xscale() == "log"


def test_local_workers_share_the_deadline_set_when_the_sweep_starts(tmp_path, monkeypatch):
    log = tmp_path / "trials.log"
    monkeypatch.setenv("LRKIT_TEST_LOG", str(log))
    monkeypatch.setenv("LRKIT_TEST_LATE", f"1.5:{os.getpid()}")  # the helper joins >= 1.5 s after the sweep starts
    journal = tmp_path / "sweep.journal"
    started = time.monotonic()
    result = lrkit.sweep(napping, **BOUNDS, n_trials=200, storage=journal, workers=2, timeout=5.0)
    assert time.monotonic() - started >= 5.0
    runs = [line.split() for line in log.read_text().splitlines()]
    assert len({pid for pid, _, _ in runs}) == 2  # both took part
    # a helper keeping a deadline of its own, from when it joined, would start trials until >= 6.2 s
    assert max(float(start) for _, start, _ in runs) <= started + 5.0 + 1.0
    assert result.timed_out and len(result.finished) == len(runs) < 200
    study = optuna.load_study(study_name=result.study, storage=open_storage(parse_storage(journal)))
    assert not study.get_trials(states=(TrialState.RUNNING, TrialState.WAITING))  # helpers finished theirs


def test_a_resumed_sweep_gets_a_fresh_budget_and_n_trials_still_caps_it(tmp_path):
    journal = tmp_path / "sweep.journal"
    first = lrkit.sweep(napping, **BOUNDS, n_trials=40, storage=journal, study="s", timeout=1.0)
    again = lrkit.sweep(napping, **BOUNDS, n_trials=40, storage=journal, study="s", timeout=1.0)
    assert first.timed_out and again.timed_out
    assert len(again.finished) > len(first.finished) and again.trials[: len(first.trials)] == first.trials
    capped = lrkit.sweep(bowl, **BOUNDS, n_trials=3, timeout=600)
    assert len(capped.finished) == 3 and not capped.timed_out
    assert not lrkit.sweep(bowl, **BOUNDS, n_trials=3).timed_out


@pytest.mark.parametrize(
    ("timeout", "error", "message"),
    [
        ("2h", TypeError, "timeout must be a number of seconds (or None: no time budget), got '2h' (str)"),
        (True, TypeError, "timeout must be a number of seconds (or None: no time budget), got True (bool)"),
        (0, ValueError, "timeout must be > 0, got 0"),
        (-1.5, ValueError, "timeout must be > 0, got -1.5"),
        (math.nan, ValueError, "timeout must be a number, got NaN"),
        (math.inf, ValueError, "timeout must be finite, got inf"),
    ],
)
def test_a_bad_timeout_is_refused_before_any_trial(timeout, error, message):
    with pytest.raises(error) as raised:
        lrkit.sweep(bowl, **BOUNDS, timeout=timeout)
    assert str(raised.value) == message


# --- the command line ---------------------------------------------------------------------------

ENTRY = ["sweep", "--entry", "sweep_objectives:napping", "--min-lr", "1e-5", "--max-lr", "1", "--pruner", "none"]


def test_cli_says_the_budget_ended_the_sweep_and_writes_what_it_has(tmp_path, capsys):
    assert main([*ENTRY, "--trials", "40", "--timeout", "1", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    rows = (tmp_path / "sweep.csv").read_text().splitlines()[1:]
    assert 1 <= len(rows) <= math.ceil(1 / NAP_SECONDS)
    assert "40 trials, sampler tpe, pruner none, time budget 1s\n" in out
    assert f"stopped at the 1s time budget after {len(rows)} of 40 trials\n" in out
    assert "best trial #" in out and "lr to train with" in out
    assert (tmp_path / "sweep.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_budget_over_before_any_trial_says_there_is_no_lr(tmp_path, capsys):
    assert main([*ENTRY, "--trials", "5", "--timeout", "0.000001", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "stopped at the 0.000001s time budget after 0 of 5 trials\n" in out
    assert "no LR to train with: no trial completed within the time budget" in out
    assert "lr to train with" not in out.replace("no LR to train with", "")
    assert f"wrote {tmp_path / 'sweep.csv'} (no finished trial to plot)" in out
    assert (tmp_path / "sweep.csv").read_text().splitlines() == ["number,lr,state,val_loss,steps,diverged,retry_of,schedule,warmup_steps"]
    assert not (tmp_path / "sweep.png").exists()


def test_cli_without_a_timeout_says_nothing_of_one(tmp_path, capsys):
    assert main([*ENTRY, "--trials", "2", "--out", str(tmp_path)]) == 0
    assert "budget" not in capsys.readouterr().out


@pytest.mark.parametrize("value", ["0", "0s", "0h0m", "-5", "2x", "1h30", "30m1h", "1 h", "inf", "nan", "", "2H"])
def test_cli_bad_timeout_is_one_line_and_exit_2(value, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([*ENTRY, "--timeout", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"lrkit: error: Invalid value for '--timeout': {value!r} is not a duration") and err.count("\n") == 1
    assert not out.exists()


# --- durations: 90m, 2h, 1h30m ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("5400", 5400), ("90m", 5400), ("1h30m", 5400), ("1.5h", 5400), ("2h", 7200), ("2d", 172800),
     ("1d2h3m4.5s", 93784.5), (".5s", 0.5), ("0.25", 0.25), (" 45s ", 45), ("0h1m", 60)],
)
def test_durations_read_as_seconds(text, seconds):
    assert parse_duration(text) == seconds


@given(st.floats(min_value=0, exclude_min=True, allow_infinity=False))
def test_a_formatted_duration_parses_back_exactly(seconds):
    assert parse_duration(format_duration(seconds)) == seconds


@given(st.tuples(st.integers(0, 400), st.integers(0, 23), st.integers(0, 59), st.integers(0, 59)).filter(any))
def test_whole_amounts_add_up_and_format_as_written(amounts):
    text = "".join(f"{amount}{unit}" for amount, unit in zip(amounts, UNITS, strict=True) if amount)
    assert parse_duration(text) == sum(amount * size for amount, size in zip(amounts, UNITS.values(), strict=True))
    assert format_duration(parse_duration(text)) == text


@given(st.lists(st.sampled_from(list(UNITS)), min_size=2, max_size=4), st.integers(1, 99))
def test_units_repeated_or_out_of_order_are_refused(units, amount):
    if units == sorted(set(units), key=list(UNITS).index):
        return  # in order, each once: a duration
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration("".join(f"{amount}{unit}" for unit in units))


@given(st.text(min_size=1).filter(lambda text: set(text.strip()) - set(string.digits + "." + "".join(UNITS))))
def test_any_other_character_is_refused(text):
    with pytest.raises(ValueError, match="is not a duration"):
        parse_duration(text)
