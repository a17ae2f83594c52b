"""Today's features as a demanding user meets them: overlays, sweep budgets and names, and the
clocks of users' own logs. Each test pins something that once went wrong."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from lrkit import read_log
from lrkit import schedules as S
from lrkit.cli.app import main
from lrkit.trace import Trace

TESTS = Path(__file__).parent


# --- schedules -----------------------------------------------------------------------------------


def test_an_overlay_of_an_overlay_is_that_overlay():
    once = S.overlay(S.warmup(10)) >> S.cosine(1.0, 100)
    twice = S.parse("overlay(overlay(warmup(10))) >> cosine(1.0, 100)")
    assert twice == once and repr(twice) == repr(once)
    assert np.array_equal(twice(np.arange(120)), once(np.arange(120)))
    assert S.overlay(S.overlay(S.constant(0.5, steps=4))) == S.overlay(S.constant(0.5, steps=4))


# --- sweeps --------------------------------------------------------------------------------------


def test_a_module_run_with_python_m_names_its_study_as_entry_does(tmp_path):
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(
        "from lrkit.sweeps.search import default_study\n\n"
        "def objective(lr, report):\n"
        "    return lr\n\n"
        "print(default_study(objective))\n"
    )

    def study_of(*command: str) -> str:
        done = subprocess.run(
            [sys.executable, *command], cwd=tmp_path, capture_output=True, text=True, timeout=300, check=True
        )
        return done.stdout.strip()

    assert study_of("-m", "pkg.train") == "pkg.train:objective"  # lrkit sweep --entry pkg.train:objective
    assert study_of(str(package / "train.py")) == "train:objective"  # a script: by its file


def test_ctrl_c_stops_a_two_worker_sweep_with_one_line(tmp_path):
    log = tmp_path / "trials.log"  # napping appends "pid start end" for each trial it ran
    environment = os.environ | {"PYTHONPATH": str(TESTS), "LRKIT_TEST_LOG": str(log)}
    sweep = [
        "sweep", "--entry", "sweep_objectives:napping", "--min-lr", "1e-5", "--max-lr", "1", "--pruner", "none",
        "--trials", "500", "--workers", "2", "--timeout", "10m", "--out", str(tmp_path / "out"),
    ]
    # Ctrl-C's handler set explicitly: a process started with SIGINT ignored would never get one
    script = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from lrkit.cli.app import main; sys.exit(main(sys.argv[1:]))"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", script, *sweep], cwd=tmp_path, env=environment, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
    )
    try:
        while len({line.split()[0] for line in log.read_text().splitlines()} if log.exists() else ()) < 2:
            assert process.poll() is None, process.communicate()
            time.sleep(0.1)  # until both workers are running trials
        os.killpg(process.pid, signal.SIGINT)  # as Ctrl-C does: to every process of the group
        _, err = process.communicate(timeout=300)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    assert process.returncode == 130
    assert err.strip() == (  # one line, no traceback from the helper worker
        "lrkit: interrupted; run the same command again to resume the sweep "
        "(the interrupted trial runs again, with its LR)"
    )


# --- the clocks of users' own logs ---------------------------------------------------------------


@pytest.mark.parametrize(("unit", "per_second"), [("microseconds", 10**6), ("nanoseconds", 10**9)])
def test_unix_time_in_microseconds_and_nanoseconds_is_read_in_its_unit(tmp_path, unit, per_second):
    path = tmp_path / "log.csv"  # time.time_ns() // 1000 and time.time_ns(), every 0.25 s
    rows = "".join(
        f"{step},{1 / (step + 1)!r},{1_700_000_000 * per_second + step * per_second // 4}\n" for step in range(40)
    )
    path.write_text("step,loss,timestamp\n" + rows)
    trace = read_log(path)
    assert trace.meta["seconds_per_step"] == pytest.approx(0.25, rel=1e-6)
    assert trace.meta["time_source"] == f"the log's 'timestamp' column (in {unit})"


def test_report_time_option_names_the_logs_clock_beside_lrkits_range_test(tmp_path, capsys):
    lr = np.geomspace(1e-5, 1.0, 120)
    finder = Trace(step=np.arange(120), lr=lr, loss=2.0 - np.linspace(0, 1, 120) + 50 * np.maximum(lr - 0.1, 0),
                   meta={"kind": "range_test"}).save(tmp_path / "range_test.csv")  # as lrkit find writes it
    logs = []
    for name, tau in (("mine.csv", 20), ("default.csv", 60)):
        rows = "".join(f"{step},{math.exp(-step / tau) + 0.05!r},{0.25 * step!r}\n" for step in range(200))
        (tmp_path / name).write_text("step,loss,clock\n" + rows)  # 'clock': no time name lrkit knows
        logs.append(str(tmp_path / name))
    args = ["report", str(finder), logs[0], "--baseline", logs[1], "--time", "clock", "--price-per-gpu-hour", "2"]
    assert main([*args, "--out", str(tmp_path / "report.html")]) == 0
    printed = capsys.readouterr()
    assert printed.err == "" and "Time from the log's 'clock' column for both runs." in printed.out
    assert "seconds_per_step" not in read_log(finder, time="clock").meta  # an lrkit trace keeps its own time
