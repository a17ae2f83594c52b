"""What a choice costs, round two: a team lead's own logs (CSV with a clock, a validation loss, a
range test logged every few steps, hours-long runs) checked number by number and read as a manager
would read them."""

from __future__ import annotations

import base64
import html
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest

from lrkit.cli.app import main
from lrkit.cost import compare_cost
from lrkit.logs import read_log
from lrkit.plots.cost import plot_cost
from lrkit.report import render_report
from lrkit.trace import Trace


def curve(tau: float, steps: int = 600, every: int = 1, **meta: object) -> Trace:
    """A noiseless loss falling as exp(-t / tau) to 0.05, logged every ``every`` steps."""
    t = np.arange(0, steps, every)
    return Trace(step=t, lr=np.full(len(t), 0.1), loss=np.exp(-t / tau) + 0.05, meta=meta)


def clock_log(path: Path, tau: float, steps: int = 600, every: int = 1, seconds_per_step: float = 0.2) -> Path:
    lines = ["step,loss,wall_time"]
    lines += [f"{s},{math.exp(-s / tau) + 0.05!r},{1000 + seconds_per_step * s!r}" for s in range(0, steps, every)]
    path.write_text("\n".join(lines) + "\n")
    return path


def cost_section(page: str) -> str:
    text = re.search(r"<section id='cost'>.*?</section>", page, re.S).group(0)
    return html.unescape(text)


def test_a_range_test_logged_every_5_steps_is_charged_the_steps_it_trained(tmp_path: Path, capsys) -> None:
    steps = np.arange(0, 200, 5)  # another tool's range test, one row every 5 steps: steps 0..195
    lr = 1e-5 * 10 ** (steps / 40)
    (tmp_path / "finder.csv").write_text(
        "step,lr,loss\n" + "".join(f"{s},{float(r)!r},{1 / (1 + 100 * float(r))!r}\n" for s, r in zip(steps, lr, strict=True))
    )
    chosen, default = clock_log(tmp_path / "tuned.csv", 20, 400), clock_log(tmp_path / "default.csv", 60)
    code = main([
        "report", str(chosen), "--finder", str(tmp_path / "finder.csv"), "--baseline", str(default),
        "--out", str(tmp_path / "r.html"), "--json",
    ])
    cost = json.loads(capsys.readouterr().out)["cost"]
    assert code == 0 and cost["search_steps"] == 196  # not 40, its rows
    assert cost["chosen_total_steps"] == cost["chosen"]["steps"] + 196
    page = (tmp_path / "r.html").read_text()
    assert "<th>steps spent</th><td>196</td>" in page
    assert "<th>steps spent choosing (range test)</th><td>196</td>" in page


def test_a_race_on_the_validation_loss_says_so_in_the_line_the_page_and_the_chart(tmp_path: Path, capsys) -> None:
    for name, tau in (("tuned", 20), ("default", 60)):
        lines = ["step,train_loss,val_loss"]
        for s in range(600):
            lines.append(f"{s},{math.exp(-s / tau) + 0.05},")
            if s % 100 == 99:
                lines.append(f"{s},,{math.exp(-s / tau) + 0.1}")
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    out = tmp_path / "r.html"
    args = [str(tmp_path / "tuned.csv"), "--baseline", str(tmp_path / "default.csv"), "--loss", "val_loss"]
    assert main(["report", *args, "--out", str(out)]) == 0
    line = capsys.readouterr().out.splitlines()[1]
    assert line.startswith(f"{tmp_path / 'tuned.csv'} reaches loss 0.101 (the 'val_loss' column) in 200 steps against 500")
    section = cost_section(out.read_text())
    assert "<th>loss judged on</th><td>the 'val_loss' column</td>" in section
    chosen, default = (read_log(tmp_path / f"{name}.csv", loss="val_loss") for name in ("tuned", "default"))
    figure = plot_cost(chosen, default, compare_cost(chosen, default))
    assert figure.axes[0].get_ylabel() == "val_loss (moving mean bold)"  # not "training loss"
    svg = [base64.b64decode(m).decode() for m in re.findall(r'base64,([A-Za-z0-9+/=]+)', section)]
    assert any("val_loss (moving mean bold)" in image for image in svg)


def test_a_choice_that_never_gets_there_while_the_default_does_is_not_called_break_even() -> None:
    stuck = Trace(step=np.arange(500), lr=np.full(500, 1.0), loss=0.5 * np.exp(-np.arange(500) / 100) + 0.5,
                  meta={"label": "stuck"})
    default = curve(60, label="default")
    page = render_report(runs=[stuck], baseline=default, target_loss=0.2)
    cost = compare_cost(stuck, default, target_loss=0.2)
    assert cost.chosen.steps is None and cost.baseline.steps == 120 and cost.steps_saved is None
    expected = "stuck never reached loss 0.2: it saves nothing (default got there in 120 steps; " \
               "stuck did not in 500 steps: at least 380 steps more)"
    assert expected in html.unescape(page)
    assert "<th>steps to target, stuck</th><td>never (in 500 steps)</td>" in page
    neither = render_report(runs=[stuck], baseline=default, target_loss=0.01)
    assert "(neither did default, in 600 steps; stuck did not in 500 steps)" in html.unescape(neither)


def test_the_page_and_json_say_whether_the_target_was_given_or_chosen(tmp_path: Path, capsys) -> None:
    chosen, default = curve(20, label="tuned"), curve(60, label="default")
    chosen_by_lrkit = cost_section(render_report(runs=[chosen], baseline=default))
    basis = "<th>target set how</th><td>chosen by lrkit: the higher of the two runs' final levels</td>"
    assert basis in chosen_by_lrkit
    given = cost_section(render_report(runs=[chosen], baseline=default, target_loss=0.2))
    assert "<th>target set how</th><td>given</td>" in given
    tuned, base = clock_log(tmp_path / "tuned.csv", 20), clock_log(tmp_path / "default.csv", 60)
    for extra, given in (([], False), (["--target-loss", "0.1"], True)):
        assert main(["report", str(tuned), "--baseline", str(base), "--out", str(tmp_path / "r.html"), "--json", *extra]) == 0
        assert json.loads(capsys.readouterr().out)["cost"]["target_given"] is given


def test_hours_of_training_read_in_hours_and_gpu_hours_say_one_gpu(tmp_path: Path) -> None:
    chosen = curve(1500, 20000, 100, label="tuned", seconds_per_step=1.8)
    default = curve(4000, 20000, 100, label="default", seconds_per_step=1.8)
    section = cost_section(render_report(runs=[chosen], baseline=default, price_per_gpu_hour=2.5))
    cost = compare_cost(chosen, default, price_per_gpu_hour=2.5)
    assert (cost.chosen.steps, cost.baseline.steps) == (7501, 19801)
    assert cost.seconds_saved == pytest.approx(12300 * 1.8) and cost.money_saved == pytest.approx(15.375)
    assert "<th>steps to target, tuned</th><td>7501 (3.75 h)</td>" in section  # not "1.35e+04 s"
    assert "<th>time saved</th><td>6.15 h (6.15 GPU-hours, counting one GPU per run)</td>" in section


def test_two_clocks_that_agree_but_for_rounding_are_one_step_time(tmp_path: Path, capsys) -> None:
    tuned, default = clock_log(tmp_path / "tuned.csv", 20, 400), clock_log(tmp_path / "default.csv", 60)
    rates = [read_log(path).meta["seconds_per_step"] for path in (tuned, default)]
    assert rates[0] == pytest.approx(rates[1])
    assert main(["report", str(tuned), "--baseline", str(default), "--out", str(tmp_path / "r.html")]) == 0
    note = capsys.readouterr().out.splitlines()[-1]
    assert note == "Time at 200 ms per step for both runs, as measured. Time from the log's 'wall_time' column for both runs."


def test_a_sparse_noisy_log_sets_the_target_from_its_last_rows_not_its_luckiest() -> None:
    # logged every 50 steps with noise: the last row alone sat below both runs' floor, so the
    # target was one both runs touched only at their last rows, and a 3x faster run "saved 0 steps"
    def run(tau: float, seed: int) -> Trace:
        rng, steps = np.random.default_rng(seed), np.arange(0, 600, 50)
        loss = np.exp(-steps / tau) + 0.05 + 0.01 * rng.standard_normal(len(steps))
        return Trace(step=steps, lr=np.full(len(steps), 0.1), loss=loss)

    cost = compare_cost(run(20, 5), run(60, 105))
    assert cost.target_loss > 0.045  # not below the floor both runs hover around (0.05)
    assert cost.steps_saved >= 100
