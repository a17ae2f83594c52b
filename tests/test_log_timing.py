"""A log's own clock times its steps: time columns, TensorBoard wall times and Hugging Face's
train_runtime give ``meta["seconds_per_step"]``, so ``lrkit report --price-per-gpu-hour`` prices
users' own logs."""

from __future__ import annotations

import html
import json
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from lrkit import read_log
from lrkit.cli.app import main
from lrkit.clocks import PAUSE_RATIO
from lrkit.cost import compare_cost
from lrkit.logs import CANDIDATES, DURATIONS
from lrkit.report import render_report

STEPS = list(range(40))
LOSS = [float(2.0 * np.exp(-step / 15)) for step in STEPS]


def timed_csv(path: Path, clock, *, name: str = "wall_time", steps=STEPS, loss=None) -> Path:
    """A CSV log: step, loss and a ``name`` column holding ``clock`` (one cell per row, as written)."""
    loss = LOSS if loss is None else loss
    rows = "".join(f"{step},{value!r},{cell}\n" for step, value, cell in zip(steps, loss, clock, strict=True))
    path.write_text(f"step,loss,{name}\n{rows}")
    return path


def untimed(trace):
    """The trace without what its clock added, to compare with the same log read without one."""
    drop = ("seconds_per_step", "time_source", "time_problem", "source")
    return trace.replace(meta={key: value for key, value in trace.meta.items() if key not in drop})


# --- time columns ------------------------------------------------------------------------------


CLOCKS = [name for name in CANDIDATES["time"] if name not in DURATIONS]  # durations: test_logs_frameworks.py


@pytest.mark.parametrize("name", [*CLOCKS, "Wall Time", "WALLTIME", "Elapsed-Time", "relative.time"])
def test_every_time_column_name_is_found(tmp_path: Path, name: str) -> None:
    trace = read_log(timed_csv(tmp_path / "log.csv", [f"{30 + 0.25 * step!r}" for step in STEPS], name=name))
    assert trace.meta["seconds_per_step"] == pytest.approx(0.25)
    assert trace.meta["time_source"] == f"the log's {name!r} column"
    assert trace.meta["columns"]["time"] == name
    assert trace.loss.tolist() == LOSS  # the clock is no Trace column


def test_json_lines_as_weights_and_biases_exports_them(tmp_path: Path) -> None:
    # _runtime: seconds since the start (tried first); _timestamp: since the epoch
    lines = [
        {"_step": int(step), "loss": LOSS[step], "_runtime": 12.0 + 0.1 * step, "_timestamp": 1.7e9 + 0.1 * step}
        for step in STEPS
    ]
    path = tmp_path / "wandb.jsonl"
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    trace = read_log(path)
    assert trace.meta["seconds_per_step"] == pytest.approx(0.1)
    assert trace.meta["columns"]["time"] == "_runtime"


def test_iso_8601_times_with_and_without_a_zone(tmp_path: Path) -> None:
    start = datetime(2024, 3, 31, 23, 59, 50, tzinfo=timezone.utc)
    times = [start + timedelta(seconds=1.5 * step) for step in STEPS]
    for cells in (
        [moment.isoformat() for moment in times],  # 2024-03-31T23:59:50+00:00
        [moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ") for moment in times],
        [moment.astimezone(timezone(timedelta(hours=-5))).isoformat() for moment in times],
        [moment.strftime("%Y-%m-%d %H:%M:%S.%f") for moment in times],  # no zone: read as UTC
    ):
        trace = read_log(timed_csv(tmp_path / "log.csv", cells, name="timestamp"))
        assert trace.meta["seconds_per_step"] == pytest.approx(1.5), cells[0]


def test_a_json_list_of_records_with_epoch_seconds(tmp_path: Path) -> None:
    records = [{"iteration": int(step) * 5, "loss": LOSS[step], "time": 1.7e9 + 2.0 * step} for step in STEPS]
    path = tmp_path / "log.json"
    path.write_text(json.dumps(records))
    assert read_log(path).meta["seconds_per_step"] == pytest.approx(0.4)  # 2 s a row, 5 steps a row


def test_unix_time_in_milliseconds_is_read_as_milliseconds(tmp_path: Path) -> None:
    """1.7e12 as seconds would be the year 55,000: a clock past 1e11 is milliseconds (Date.now())."""
    cells = [f"{1_700_000_000_000 + 250 * step}" for step in STEPS]
    trace = read_log(timed_csv(tmp_path / "log.csv", cells, name="timestamp"))
    assert trace.meta["seconds_per_step"] == pytest.approx(0.25)
    assert trace.meta["time_source"] == "the log's 'timestamp' column (in milliseconds)"
    seconds = [f"{1_700_000_000 + 0.25 * step!r}" for step in STEPS]  # the same clock in seconds
    assert read_log(timed_csv(tmp_path / "s.csv", seconds, name="timestamp")).meta["seconds_per_step"] == pytest.approx(0.25)


def test_the_time_column_named_by_the_caller(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    rows = "".join(f"{step},{LOSS[step]!r},{0.3 * step!r},{9.0 * step!r}\n" for step in STEPS)
    path.write_text("step,loss,clock_s,time\n" + rows)
    assert read_log(path).meta["seconds_per_step"] == pytest.approx(9.0)  # found by name
    named = read_log(path, time="Clock_S")  # up to case, as the other columns
    assert named.meta["seconds_per_step"] == pytest.approx(0.3)
    assert named.meta["columns"]["time"] == "clock_s"
    with pytest.raises(ValueError, match=r"no column 'seconds' \(given for time\); columns: step, loss, clock_s, time"):
        read_log(path, time="seconds")


def test_a_log_written_every_n_steps_is_timed_per_step_and_merged_rows_share_a_time(tmp_path: Path) -> None:
    # Lightning's way: a validation row at the same step, written after the evaluation
    rows = []
    for step in range(0, 400, 10):
        rows.append(f"{step},{2.0 / (step + 1)!r},,{100 + 0.05 * step!r}")
        if step % 100 == 90:
            rows.append(f"{step},,{2.0 / (step + 1)!r},{100 + 0.05 * step + 0.1!r}")
    path = tmp_path / "metrics.csv"
    path.write_text("step,train_loss,val_loss,time\n" + "\n".join(rows) + "\n")
    trace = read_log(path)
    assert len(trace) == 40 and np.isfinite(trace.val_loss).sum() == 4
    assert trace.meta["seconds_per_step"] == pytest.approx(0.05, rel=0.01)  # the short evaluations counted


# --- the rule: the span less the pauses ----------------------------------------------------------


def test_a_pause_in_the_middle_does_not_swamp_the_rate(tmp_path: Path) -> None:
    # 0.5 s a step, and an hour's pause (a resumed run) after step 20: the plain span would say 92.8 s
    clock = [1000.0 + 0.5 * step + (3600.0 if step > 20 else 0.0) for step in STEPS]
    trace = read_log(timed_csv(tmp_path / "log.csv", [repr(value) for value in clock]))
    assert (clock[-1] - clock[0]) / 39 > 90
    assert trace.meta["seconds_per_step"] == pytest.approx(0.5)


def test_steady_overheads_are_counted_as_lrkit_timing_counts_them(tmp_path: Path) -> None:
    # 0.5 s a step and a 0.5 s evaluation every 10th step: a median of the intervals would say 0.5
    gaps = [1.0 if step % 10 == 0 else 0.5 for step in STEPS[1:]]
    clock = np.concatenate([[0.0], np.cumsum(gaps)])
    assert max(gaps) < PAUSE_RATIO * 0.5  # no pause: a cost the run paid at every evaluation
    trace = read_log(timed_csv(tmp_path / "log.csv", [repr(float(value)) for value in clock]))
    assert trace.meta["seconds_per_step"] == pytest.approx((39 * 0.5 + 3 * 0.5) / 39)  # not the median's 0.5


def test_a_clock_coarser_than_the_steps_keeps_the_whole_span(tmp_path: Path) -> None:
    # whole seconds at 4 steps a second: most intervals show 0 s, so the median cannot tell a pause
    trace = read_log(timed_csv(tmp_path / "log.csv", [str(int(step // 4)) for step in STEPS], name="elapsed"))
    assert trace.meta["seconds_per_step"] == pytest.approx(9 / 39)


# --- a clock that cannot be used is left out, the log read as before -----------------------------

BAD_CLOCKS = {
    "goes_back": ([f"{10.0 + step - (5 if step >= 30 else 0)}" for step in STEPS], "goes back at step 30"),
    "text": ([*(f"{step}" for step in STEPS[:-1]), "soon"], "has a value that is not a time at step 39"),
    "nan": ([*(f"{step}" for step in STEPS[:9]), "nan", *(f"{step}" for step in STEPS[10:])], "has a value that is not a time at step 9"),
    "one_row": (["12.5", *([""] * 39)], "has fewer than 2 steps timed"),
    "standing_still": (["7"] * 40, "shows no time passing"),
}


@pytest.mark.parametrize("case", sorted(BAD_CLOCKS))
def test_a_bad_time_column_is_left_out_and_the_log_read_as_before(tmp_path: Path, case: str) -> None:
    cells, problem = BAD_CLOCKS[case]
    trace = read_log(timed_csv(tmp_path / "log.csv", cells, name="time"))
    assert "seconds_per_step" not in trace.meta and "time_source" not in trace.meta
    assert trace.meta["time_problem"] == f"the log's 'time' column {problem}"
    assert "time" not in trace.meta["columns"]
    plain = tmp_path / "plain.csv"
    plain.write_text("step,loss\n" + "".join(f"{step},{value!r}\n" for step, value in zip(STEPS, LOSS, strict=True)))
    assert untimed(trace) == untimed(read_log(plain))


def test_an_lrkit_traces_recorded_time_comes_first(tmp_path: Path) -> None:
    for header in ({"seconds_per_step": 0.012}, {"seconds": 4.0}):
        path = tmp_path / "log.csv"
        rows = "".join(f"{step},{LOSS[step]!r},{5.0 * step!r}\n" for step in STEPS)
        path.write_text(f"# {json.dumps({'meta': header})}\nstep,loss,time\n{rows}")
        trace = read_log(path)
        assert {key: trace.meta.get(key) for key in ("seconds_per_step", "seconds")} == {
            "seconds_per_step": None, "seconds": None, **header,
        }
        assert "time_source" not in trace.meta and "time" not in trace.meta["columns"]


# --- TensorBoard and Hugging Face ----------------------------------------------------------------


def test_tensorboard_times_by_the_loss_tags_wall_time(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path / "run")) as writer:
        for step in range(0, 300, 5):
            pause = 600.0 if step >= 150 else 0.0  # a checkpoint written halfway
            writer.add_scalar("train/loss", 2.0 / (step + 1), step, walltime=1.7e9 + 0.2 * step + pause)
            writer.add_scalar("train/lr", 0.1, step, walltime=1.7e9 + 3.0 * step)  # another clock, not read
    trace = read_log(tmp_path / "run")
    assert trace.meta["seconds_per_step"] == pytest.approx(0.2)
    assert trace.meta["time_source"] == "the TensorBoard wall time of 'train/loss'"


def trainer_state(path: Path, final: dict) -> Path:
    history = [{"epoch": step / 60, "learning_rate": 5e-5, "loss": 3.0 / (step + 1), "step": step}
               for step in range(5, 61, 5)]
    path.write_text(json.dumps({"global_step": 60, "log_history": [*history, final]}))
    return path


def test_hugging_face_trainer_state_times_by_train_runtime(tmp_path: Path) -> None:
    final = {"epoch": 1.0, "step": 60, "train_loss": 0.5, "train_runtime": 45.0, "train_steps_per_second": 1.33}
    trace = read_log(trainer_state(tmp_path / "trainer_state.json", final))
    assert trace.meta["seconds_per_step"] == pytest.approx(0.75)
    assert trace.meta["time_source"] == "trainer_state.json's train_runtime over its global_step"
    assert trace.step.tolist() == list(range(5, 61, 5))  # the final entry adds no row


def test_a_checkpoints_trainer_state_has_no_runtime_and_a_bad_one_is_left_out(tmp_path: Path) -> None:
    checkpoint = read_log(trainer_state(tmp_path / "trainer_state.json", {"epoch": 1.0, "step": 60, "train_loss": 0.5}))
    assert not {"seconds_per_step", "time_source", "time_problem"} & set(checkpoint.meta)
    broken = read_log(trainer_state(tmp_path / "trainer_state.json", {"step": 60, "train_runtime": -3.0}))
    assert "seconds_per_step" not in broken.meta
    assert broken.meta["time_problem"].endswith("are not a positive time and step count")
    assert untimed(broken) == untimed(checkpoint)


# --- what it costs, from the logs' own times -----------------------------------------------------


def falling_log(path: Path, tau: float, seconds_per_step: float, *, name: str = "wall_time") -> Path:
    """200 steps of a loss falling to 0.05, timed at ``seconds_per_step`` with a 5-minute pause."""
    steps = list(range(200))
    loss = [float(np.exp(-step / tau) + 0.05) for step in steps]
    clock = [repr(1.7e9 + seconds_per_step * step + (300.0 if step >= 100 else 0.0)) for step in steps]
    return timed_csv(path, clock, name=name, steps=steps, loss=loss)


def test_cli_report_prices_the_logs_by_their_own_times(tmp_path: Path, capsys) -> None:
    chosen, baseline = falling_log(tmp_path / "a.csv", 20, 0.5), falling_log(tmp_path / "b.csv", 60, 0.6)
    out = tmp_path / "report.html"
    code = main(["report", str(chosen), "--baseline", str(baseline), "--price-per-gpu-hour", "2", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 0 and printed.err == ""
    cost = compare_cost(read_log(chosen), read_log(baseline), price_per_gpu_hour=2)
    # the target is b's final smoothed loss, which b reaches at its last step; a gets there in under 80
    assert cost.baseline.steps == 200 and 60 < cost.chosen.steps < 80
    seconds = 200 * 0.6 - cost.chosen.steps * 0.5
    assert cost.seconds_saved == pytest.approx(seconds) and cost.money_saved == pytest.approx(seconds / 3600 * 2)
    wrote, sentence, note = printed.out.splitlines()
    assert sentence == (
        f"{chosen} reaches loss {cost.target_loss:.3g} in {cost.chosen.steps} steps against 200 for {baseline}: "
        f"{200 - cost.chosen.steps} steps saved, {seconds:.3g} s saved, {seconds / 3600 * 2:.4g} saved at 2 per GPU-hour"
    )
    assert note == (
        f"Measured 500 ms per step for {chosen} and 600 ms per step for {baseline}. "
        "Time from the log's 'wall_time' column for both runs."
    )
    page = html.unescape(out.read_text())
    assert f"<th>money saved</th><td>{seconds / 3600 * 2:.4g} at 2 per GPU-hour</td>" in page
    assert "Time from the log's 'wall_time' column for both runs." in page


def test_cli_report_time_option_names_the_column(tmp_path: Path, capsys) -> None:
    chosen = falling_log(tmp_path / "a.csv", 20, 0.5, name="secs")
    baseline = falling_log(tmp_path / "b.csv", 60, 0.5, name="secs")
    args = ["report", str(chosen), "--baseline", str(baseline), "--price-per-gpu-hour", "2", "--out", str(tmp_path / "r.html")]
    assert main(args) == 0
    assert "no money saved shown" in capsys.readouterr().err  # 'secs' is no time name lrkit knows
    assert main([*args, "--time", "secs"]) == 0
    printed = capsys.readouterr()
    assert printed.err == "" and "Time from the log's 'secs' column for both runs." in printed.out


def test_cli_report_says_why_a_logs_clock_was_left_out(tmp_path: Path, capsys) -> None:
    chosen = timed_csv(tmp_path / "a.csv", [*(f"{step}" for step in STEPS[:-1]), "later"], name="time")
    baseline = falling_log(tmp_path / "b.csv", 60, 0.6)
    out = tmp_path / "r.html"
    assert main(["report", str(chosen), "--baseline", str(baseline), "--price-per-gpu-hour", "2", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert err.startswith(f"lrkit: note: no money saved shown: {chosen} recorded no time (")
    assert err.endswith(f"; {chosen}: the log's 'time' column has a value that is not a time at step 39\n")
    page = html.unescape(out.read_text())
    assert "a: the log's 'time' column has a value that is not a time at step 39" in page


def test_the_page_names_each_runs_time_source(tmp_path: Path) -> None:
    chosen = read_log(falling_log(tmp_path / "a.csv", 20, 0.5))
    page = html.unescape(render_report(runs={"a": chosen}, baseline=read_log(trainer_state(
        tmp_path / "trainer_state.json", {"step": 60, "train_runtime": 36.0},
    ))))
    assert (
        "Measured 500 ms per step for a and 600 ms per step for baseline. Time from the log's 'wall_time' column "
        "for a and trainer_state.json's train_runtime over its global_step for baseline."
    ) in page
