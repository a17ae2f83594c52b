"""``lrkit`` in scripts and CI: ``--json`` on stdout alone, the same options everywhere, clean pipes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import click
import numpy as np
import pytest

from lrkit.cli.app import COMMANDS, _user_code, cli, main
from lrkit.tasks import list_tasks
from lrkit.trace import Trace

TESTS = Path(__file__).parent
CHEAP_FIND = ["find", "--task", "cancer-logreg", "--budget", "0.05"]  # 20 steps of logistic regression


def strict_json(text: str) -> dict:
    """The one JSON object ``text`` holds; NaN or Infinity (not JSON) fail the test."""

    def refuse(token: str) -> None:
        raise AssertionError(f"{token} in the JSON output: JSON has no such number")

    data = json.loads(text, parse_constant=refuse)
    assert isinstance(data, dict)
    return data


def falling(lr: float, rate: float, seconds_per_step: float) -> Trace:
    steps = np.arange(200)
    loss = 0.1 + np.exp(-rate * steps)
    return Trace(steps, np.full(200, lr), loss, meta={"seconds_per_step": seconds_per_step})


# --- --json: one object on stdout, everything else on stderr ---------------------------------------


def test_find_json_gives_the_suggestion_range_and_edge(tmp_path: Path, capsys):
    assert main([*CHEAP_FIND, "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    data = strict_json(captured.out)
    assert data["task"] == "cancer-logreg" and data["entry"] is None
    assert data["lr"] > 0 and data["range"][0] < data["lr"] < data["range"][1]
    assert data["max_stable_lr"] is None or data["max_stable_lr"] >= data["lr"]
    assert data["steps"] == 20 and data["full_run_steps"] == 400 and data["full_run_fraction"] == pytest.approx(0.05)
    assert set(data["files"]) == {"plot", "csv", "report"} and all(Path(p).exists() for p in data["files"].values())
    assert "wrote" in captured.err and "suggested lr" not in captured.out + captured.err


def test_find_json_pipes_into_a_script_even_when_the_users_code_prints(tmp_path: Path):
    (tmp_path / "chatty.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            print("importing chatty")

            def setup():
                print("building the model")
                torch.manual_seed(0)
                x = torch.randn(64, 4)
                y = (x.sum(1, keepdim=True) > 0).float()
                model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
                batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 64, 16)]
                return model, torch.optim.SGD(model.parameters(), lr=0.1), nn.BCEWithLogitsLoss(), batches
            """
        )
    )
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "200"}
    done = subprocess.run(
        [sys.executable, "-m", "lrkit", "find", "--entry", "chatty:setup", "--steps", "20", "--out", "o", "--json"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    data = strict_json(done.stdout)  # `lrkit find ... --json | jq .lr`
    assert data["entry"] == "chatty:setup" and data["task"] is None and data["steps"] == 20
    assert "importing chatty" in done.stderr and "building the model" in done.stderr
    assert "\x1b" not in done.stdout + done.stderr  # no colour codes or cursor moves in a pipe


def test_sweep_json_gives_the_lr_to_train_with_the_best_trial_and_the_compute(tmp_path: Path, capsys):
    args = ["sweep", "--task", "cancer-logreg", "--trials", "3", "--sampler", "grid", "--pruner", "none"]
    assert main([*args, "--out", str(tmp_path), "--json"]) == 0
    captured = capsys.readouterr()
    data = strict_json(captured.out)
    assert data["study"] == "cancer-logreg" and data["n_trials"] == 3 and len(data["trials"]) == 3
    assert data["best"]["lr"] in [trial["lr"] for trial in data["trials"]]
    assert data["lr"] > 0 and isinstance(data["lr_fitted"], bool) and data["edge"] in (None, "lowest", "highest")
    assert data["steps_spent"] == 1200 and data["grid_steps"] == 1200 and data["compute_fraction"] == 1.0
    assert data["timed_out"] is False and data["timeout"] is None
    assert Path(data["files"]["csv"]).exists() and Path(data["files"]["plot"]).exists()
    assert set(data["trials"][0]) == {
        "number", "lr", "state", "val_loss", "steps", "diverged", "retry_of", "schedule", "warmup_steps",
    }
    assert f"study 'cancer-logreg' in {tmp_path / 'sweep.journal'}" in captured.err and "wrote" in captured.err


def test_sweep_json_writes_nan_losses_as_null(tmp_path: Path, capsys, monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    bounds = ["--min-lr", "1e-5", "--max-lr", "1", "--pruner", "none", "--trials", "2"]
    assert main(["sweep", "--entry", "sweep_objectives:always_nan", *bounds, "--out", str(tmp_path), "--json"]) == 0
    data = strict_json(capsys.readouterr().out)
    assert data["lr"] is None and data["best"] is None and data["compute_fraction"] is None
    assert [trial["val_loss"] for trial in data["trials"]] == [None, None]
    assert all(trial["diverged"] for trial in data["trials"])


def test_report_json_gives_the_cost_figures(tmp_path: Path, capsys):
    falling(0.1, 0.1, 0.01).save(tmp_path / "chosen.csv")
    falling(0.01, 0.02, 0.01).save(tmp_path / "default.csv")
    out = tmp_path / "r.html"
    args = ["report", str(tmp_path / "chosen.csv"), "--baseline", str(tmp_path / "default.csv")]
    assert main([*args, "--price-per-gpu-hour", "3.6", "--out", str(out), "--json"]) == 0
    captured = capsys.readouterr()
    data = strict_json(captured.out)
    assert data["files"] == {"report": str(out)} and out.exists()
    assert data["runs"] == [str(tmp_path / "chosen.csv")] and data["baseline"] == str(tmp_path / "default.csv")
    cost = data["cost"]
    assert cost["chosen"]["steps"] < cost["baseline"]["steps"] and cost["search_steps"] == 0
    assert cost["steps_saved"] == cost["baseline_steps"] - cost["chosen_total_steps"] > 0
    assert cost["seconds_saved"] == pytest.approx(cost["steps_saved"] * 0.01)
    assert cost["money_saved"] == pytest.approx(cost["seconds_saved"] / 3600 * 3.6)
    assert cost["at_least"] is False and cost["chosen"]["time_source"].startswith("the run's recorded meta")
    assert f"wrote {out}" in captured.err


def test_report_json_without_a_baseline_has_no_cost(tmp_path: Path, capsys):
    falling(0.1, 0.1, 0.01).save(tmp_path / "chosen.csv")
    assert main(["report", str(tmp_path / "chosen.csv"), "--out", str(tmp_path / "r.html"), "--json"]) == 0
    data = strict_json(capsys.readouterr().out)
    assert data["cost"] is None and data["baseline"] is None and data["finder"] is None


def test_tasks_json_lists_names_default_lrs_and_steps(capsys):
    assert main(["tasks", "--json"]) == 0
    data = strict_json(capsys.readouterr().out)
    assert [task["name"] for task in data["tasks"]] == [task.name for task in list_tasks()]
    charlm = next(task for task in data["tasks"] if task["name"] == "charlm")
    assert charlm["default_lr"] == 0.001 and charlm["steps"] == 300 and charlm["optimizer"] == "AdamW"
    assert charlm["schedule"] == "warmup(30) >> cosine(peak=0.001, steps=270)"
    assert next(task for task in data["tasks"] if task["name"] == "digits-mlp")["schedule"] is None


def test_schedule_json_gives_its_key_values(tmp_path: Path, capsys):
    csv = tmp_path / "lr.csv"
    spec = "warmup(10) >> cosine(peak=1e-3, steps=90)"
    assert main(["schedule", spec, "--steps", "100", "--csv", str(csv), "--json"]) == 0
    captured = capsys.readouterr()
    data = strict_json(captured.out)
    assert data["spec"] == "warmup(10) >> cosine(peak=0.001, steps=90)" and data["steps"] == 100
    assert data["first"] == {"step": 0, "lr": 0.0} and data["peak"] == {"step": 10, "lr": 0.001}
    assert data["last"]["step"] == 99 and 0 < data["last"]["lr"] < 1e-5
    assert data["phases"] == [{"phase": 1, "step": 0, "lr": 0.0}, {"phase": 2, "step": 10, "lr": 0.001}]
    assert data["files"] == {"csv": str(csv), "plot": None}
    assert captured.err == f"wrote {csv}\n"


def test_diagnose_json_names_the_figure_it_wrote(tmp_path: Path, capsys):
    falling(0.1, 0.05, 0.01).save(tmp_path / "run.csv")
    plot = tmp_path / "d.png"
    assert main(["diagnose", str(tmp_path / "run.csv"), "--plot", str(plot), "--json"]) == 0
    data = strict_json(capsys.readouterr().out)
    assert data["files"] == {"plot": str(plot)} and plot.exists()


def test_bad_input_with_json_is_one_line_on_stderr_and_nothing_on_stdout(capsys):
    assert main(["find", "--task", "nope", "--json"]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith("lrkit: error: unknown task 'nope'")
    assert captured.err.count("\n") == 1


# --- the same option means the same everywhere -------------------------------------------------------


@pytest.mark.parametrize("name", ["find", "sweep", "demo"])
@pytest.mark.parametrize("seed", ["-1", str(2**32)])
def test_seed_takes_what_numpy_torch_and_optuna_take_in_every_command(name: str, seed: str, capsys):
    assert main([name, "--task", "nope", "--seed", seed]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lrkit: error: Invalid value for '--seed'") and "0<=x<=4294967295" in err


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["--min-lr", "0"], "--min-lr"),
        (["--max-lr", "-1"], "--max-lr"),
        (["--steps", "1"], "--steps"),
        (["--budget", "0"], "--budget"),
    ],
)
def test_find_checks_its_numbers_as_sweep_and_schedule_do(args: list[str], option: str, capsys):
    assert main(["find", "--task", "nope", *args]) == 2
    assert capsys.readouterr().err.startswith(f"lrkit: error: Invalid value for '{option}'")


def test_every_json_flag_reads_alike():
    context = click.Context(cli)
    helps = {}
    for name in COMMANDS:
        for param in cli.get_command(context, name).params:
            if "--json" in getattr(param, "opts", ()):
                helps[name] = param.help
    assert set(helps) == {"find", "sweep", "report", "tasks", "schedule", "diagnose"}
    assert all(text.endswith("on stdout; everything else goes to stderr.") for text in helps.values())


def test_every_option_says_what_it_does_and_its_default():
    context = click.Context(cli)
    for name in COMMANDS:
        command = cli.get_command(context, name)
        for param in command.params:
            if not isinstance(param, click.Option) or param.name == "help":
                continue
            assert param.help, f"lrkit {name} {param.opts[0]} has no help"
            default = param.get_default(click.Context(command), call=False)  # click's "unset" when none
            if isinstance(default, str | int | float) and not (param.is_flag and not param.secondary_opts):
                assert param.show_default, f"lrkit {name} {param.opts[0]} hides its default"


def test_log_column_options_say_they_are_found_by_name_by_default():
    context = click.Context(cli)
    for name in ("diagnose", "report"):
        columns = [p for p in cli.get_command(context, name).params if p.name.endswith("_column")]
        assert len(columns) == 5 - (name == "diagnose")
        assert all("(default: found by name)" in param.help for param in columns), name


def test_the_command_list_shows_whole_sentences(capsys):
    assert main(["--help"]) == 0
    assert "e.g." not in capsys.readouterr().out


# --- stdout vs stderr, piped -------------------------------------------------------------------------


def test_progress_bars_leave_nothing_in_captured_output(tmp_path: Path, capsys):
    assert main(["demo", "--task", "cancer-logreg", "--no-find", "--out", str(tmp_path / "d")]) == 0
    captured = capsys.readouterr()
    assert captured.out.startswith(" ") and captured.err == ""  # the table's centred title, then the table
    args = ["sweep", "--task", "cancer-logreg", "--trials", "1", "--pruner", "none", "--out", str(tmp_path / "s")]
    assert main(args) == 0
    assert capsys.readouterr().err == ""


def test_an_error_in_compiled_library_code_is_not_blamed_on_the_user():
    # a compiled extension (Cython) names its source relative to its package, not where it lies
    code = compile("raise ValueError('Seed must be between 0 and 2**32 - 1')", "numpy/random/_mt19937.pyx", "exec")
    with pytest.raises(ValueError) as raised:
        exec(code)
    error = raised.value.with_traceback(raised.value.__traceback__.tb_next)  # the extension's frame alone
    assert _user_code(error) is None
