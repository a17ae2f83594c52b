"""Logs holding several runs one after another (``lrkit demo``'s ``loss_curves.csv``, W&B and MLflow
exports): ``read_log(path, run="COLUMN=VALUE")`` and ``--run`` read one of them."""

import json
import math
import re

import pytest

from lrkit import read_log
from lrkit.cli.app import main

ROLES = {"too high": 0.3, "chosen": 0.001, "found": 0.003}


def loss(role, step):
    return round(2.0 * math.exp(-step / (8 if role != "too high" else 40)) + 0.1 + 0.01 * (step % 3), 4)


def demo_csv(path):
    """The layout ``lrkit demo`` writes: role,lr,step,loss,val_loss, one run after another."""
    lines = ["role,lr,step,loss,val_loss"]
    for role, lr in ROLES.items():
        lines += [f"{role},{lr!r},{step},{loss(role, step)!r}," for step in range(20)]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_run_reads_only_that_runs_rows(tmp_path):
    trace = read_log(demo_csv(tmp_path / "loss_curves.csv"), run="role=chosen")
    assert trace.step.tolist() == list(range(20))
    assert trace.loss.tolist() == [loss("chosen", step) for step in range(20)]
    assert set(trace.lr.tolist()) == {0.001}


def test_a_value_with_a_space_and_spaces_around_it(tmp_path):
    trace = read_log(demo_csv(tmp_path / "loss_curves.csv"), run=" role = too high ")
    assert trace.loss.tolist() == [loss("too high", step) for step in range(20)]


def test_without_run_the_error_names_the_column_and_its_values(tmp_path):
    path = demo_csv(tmp_path / "loss_curves.csv")
    with pytest.raises(ValueError) as error:
        read_log(path)
    assert str(error.value) == (
        f"{path}: steps are not in order: step=0 in data row 21 follows 19; the file holds several runs one "
        "after another by its 'role' column ('too high', 'chosen', 'found'): pick one with "
        "run='role=chosen' (--run role=chosen)"
    )


def test_a_restart_without_such_a_column_keeps_the_plain_error(tmp_path):
    path = tmp_path / "log.csv"
    path.write_text("step,loss,note\n0,2.0,warm\n1,1.5,warm\n2,1.4,main\n0,1.3,main\n1,1.2,main\n")
    with pytest.raises(ValueError) as error:
        read_log(path)
    assert str(error.value) == f"{path}: steps are not in order: step=0 in data row 4 follows 2"


@pytest.mark.parametrize(
    ("run", "message"),
    [
        ("role", "run must be COLUMN=VALUE, e.g. 'role=chosen'; got 'role'"),
        ("=chosen", "run must be COLUMN=VALUE, e.g. 'role=chosen'; got '=chosen'"),
        ("role=", "run must be COLUMN=VALUE, e.g. 'role=chosen'; got 'role='"),
        ("role=best", "no row has role='best' (given for run); 'role' holds 'too high', 'chosen', 'found'"),
        ("name=chosen", "no column 'name' (given for run); columns: role, lr, step, loss, val_loss"),
    ],
)
def test_bad_run(tmp_path, run, message):
    with pytest.raises(ValueError, match=re.escape(message) + "$"):
        read_log(demo_csv(tmp_path / "loss_curves.csv"), run=run)


def test_a_numeric_run_column(tmp_path):
    path = tmp_path / "export.csv"
    rows = [f"{run_id},{step},{loss('chosen', step) * run_id!r}" for run_id in (1, 2, 3) for step in range(20)]
    path.write_text("run_id,_step,loss\n" + "\n".join(rows) + "\n")
    trace = read_log(path, run="run_id=2")
    assert trace.step.tolist() == list(range(20))
    assert trace.loss.tolist() == [loss("chosen", step) * 2 for step in range(20)]


def test_json_lines_with_a_run_column(tmp_path):
    path = tmp_path / "history.jsonl"
    path.write_text(
        "".join(json.dumps({"run": run, "step": step, "loss": 1.0 / (step + run)}) + "\n" for run in (1, 2) for step in range(10))
    )
    assert read_log(path, run="run=2.0").loss.tolist() == [1.0 / (step + 2) for step in range(10)]


def test_cli_diagnose_one_run(tmp_path, capsys):
    path = demo_csv(tmp_path / "loss_curves.csv")
    assert main(["diagnose", str(path), "--run", "role=chosen", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["file"] == str(path) and data["verdict"] in {"healthy", "too_low", "too_high", "plateau", "diverged"}


def test_cli_without_run_points_at_it(tmp_path, capsys):
    assert main(["diagnose", str(demo_csv(tmp_path / "loss_curves.csv"))]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.rstrip().endswith("(--run role=chosen)")


def test_cli_malformed_run_is_one_line(tmp_path, capsys):
    assert main(["diagnose", str(demo_csv(tmp_path / "loss_curves.csv")), "--run", "role"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lrkit: error: ") and "COLUMN=VALUE" in err


def test_cli_report_reads_one_run_of_each_file(tmp_path, capsys):
    path = demo_csv(tmp_path / "loss_curves.csv")
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--run", "role=chosen", "--out", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["runs"] == [str(path)] and out.exists()
