"""Logs as the tools people train with write them, read by ``read_log``: the right columns and
steps, and the time each step took, never a duration misread as a clock.

Each test writes a file in its tool's own layout (the real logger where lrkit's extras have it:
Lightning's CSVLogger, torch's SummaryWriter) and reads it as a user would.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from lrkit import read_log
from lrkit.cli.app import main
from lrkit.logs import DURATIONS


def falling(n: int, *, start: float = 2.5, end: float = 0.3, seed: int = 0) -> list[float]:
    """A training loss falling from ``start`` to ``end`` over ``n`` logged points, with a little noise."""
    noise = np.random.default_rng(seed).standard_normal(n)
    return [end + (start - end) * math.exp(-4 * i / n) + 0.01 * float(z) for i, z in enumerate(noise)]


def json_lines(path: Path, lines: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return path


# --- MMEngine (MMDetection, MMSegmentation, ...): <work_dir>/<timestamp>/vis_data/scalars.json ---


def mmengine_log(
    work_dir: Path, *, by_epoch: bool = True, validate: bool = True, times: list[float] | None = None
) -> Path:
    """Training lines every 50 iterations (``step`` counts iterations, ``iter`` the iteration within the
    epoch, ``time``/``data_time`` are seconds per iteration), and after each epoch a validation line
    with its metrics, logged at ``step`` = the epoch when training goes by epochs."""
    epochs, per_epoch = 6, 400
    loss = falling(epochs * per_epoch // 50, seed=1)
    times = times or [0.31 + 0.02 * math.sin(3 * i) for i in range(len(loss))]
    lines, row = [], 0
    for epoch in range(1, epochs + 1):
        for it in range(50, per_epoch + 1, 50):
            step = (epoch - 1) * per_epoch + it
            lr = 0.02 * min(1.0, step / 500)
            line = {
                "base_lr": lr, "lr": lr, "data_time": 0.012, "loss": loss[row], "loss_rpn_cls": 0.1 * loss[row],
                "loss_cls": 0.5 * loss[row], "acc": 88.5, "loss_bbox": 0.4 * loss[row], "time": times[row],
                "epoch": epoch, "iter": it, "memory": 3412, "step": step,
            }
            if not by_epoch:
                del line["epoch"]
            lines.append(line)
            row += 1
        lines += validate * [{
            "coco/bbox_mAP": 0.05 * epoch, "coco/bbox_mAP_50": 0.09 * epoch, "data_time": 0.0021, "time": 0.0412,
            "step": epoch if by_epoch else epoch * per_epoch,
        }]
    return json_lines(work_dir / "20240501_120000" / "vis_data" / "scalars.json", lines)


def test_mmengine_validation_lines_at_step_epoch_do_not_break_the_iteration_steps(tmp_path: Path) -> None:
    """Before: 'steps are not in order: step=1 in data row 9 follows 400' (the validation line)."""
    trace = read_log(mmengine_log(tmp_path / "work_dirs" / "faster-rcnn"))
    assert trace.step.tolist() == list(range(50, 2401, 50))  # the global iteration, not `iter` or `epoch`
    assert trace.meta["columns"] == {"step": "step", "loss": "loss", "lr": "lr", "time": "time"}
    assert trace.loss[0] == pytest.approx(falling(48, seed=1)[0])


def test_mmengine_time_is_seconds_per_iteration_not_a_clock(tmp_path: Path) -> None:
    """Before: the 'time' column 'goes back', so the run was untimed."""
    trace = read_log(mmengine_log(tmp_path, by_epoch=False))  # MMSegmentation: by iterations
    assert trace.meta["seconds_per_step"] == pytest.approx(np.mean([0.31 + 0.02 * math.sin(3 * i) for i in range(48)]))
    assert trace.meta["time_source"] == "the log's 'time' column of step durations"


def test_a_steadily_slowing_mmengine_time_is_never_read_as_a_clock(tmp_path: Path) -> None:
    """Before: durations that only rise read as a clock: 0.3 s an iteration came out as 0.00002 s a step."""
    times = [0.30 + 0.001 * row for row in range(48)]
    trace = read_log(mmengine_log(tmp_path, validate=False, times=times))  # no val_cfg: training lines only
    assert trace.meta["seconds_per_step"] == pytest.approx(np.mean(times))


def test_an_mmengine_work_dir_is_a_run_folder(tmp_path: Path, capsys) -> None:
    mmengine_log(tmp_path / "work_dirs" / "faster-rcnn")
    trace = read_log(tmp_path / "work_dirs" / "faster-rcnn")
    assert trace.meta["source"].endswith("20240501_120000/vis_data/scalars.json")
    assert main(["diagnose", str(tmp_path / "work_dirs" / "faster-rcnn")]) == 0
    assert "action:" in capsys.readouterr().out


def test_detectron2_metrics_json_total_loss_and_time_per_iteration(tmp_path: Path) -> None:
    """Before: 'no loss column' (Detectron2 calls it total_loss)."""
    lines = []
    for row, loss in enumerate(falling(40, seed=2)):
        lines.append({
            "data_time": 0.0031, "eta_seconds": 900.0 - row, "fast_rcnn/cls_accuracy": 0.9, "iteration": 20 * row + 19,
            "loss_box_reg": 0.3 * loss, "loss_cls": 0.5 * loss, "lr": 0.02, "rank_data_time": 0.0031,
            "time": 0.25 + 0.01 * (row % 3), "total_loss": loss,
        })
        if row % 10 == 9:
            lines.append({"bbox/AP": 3.0 * row, "bbox/AP50": 5.0 * row, "iteration": 20 * row + 19})
    trace = read_log(json_lines(tmp_path / "output" / "metrics.json", lines))
    assert trace.meta["columns"]["loss"] == "total_loss" and trace.step[-1] == 799
    assert trace.meta["seconds_per_step"] == pytest.approx(np.mean([0.25 + 0.01 * (row % 3) for row in range(40)]))


# --- per-epoch logs: fastai, Keras, timm count epochs as steps -----------------------------------


def test_fastai_csvlogger_history_counts_epochs_and_times_them(tmp_path: Path) -> None:
    """fastai writes each epoch's duration as MM:SS. Before: 'not a time', so the run was untimed."""
    loss = falling(12, seed=3)
    seconds = [3 + (epoch % 3 == 0) for epoch in range(12)]
    rows = "".join(
        f"{epoch},{loss[epoch]},{loss[epoch] + 0.05},{0.5 + 0.03 * epoch},00:{seconds[epoch]:02d}\n"
        for epoch in range(12)
    )
    path = tmp_path / "history.csv"
    path.write_text("epoch,train_loss,valid_loss,accuracy,time\n" + rows)
    trace = read_log(path)
    assert trace.step.tolist() == list(range(12))  # a step is an epoch, and so is the time per step
    assert trace.meta["columns"] == {"step": "epoch", "loss": "train_loss", "val_loss": "valid_loss", "time": "time"}
    assert trace.meta["seconds_per_step"] == pytest.approx(np.mean(seconds))
    path.write_text("epoch,train_loss,valid_loss,time\n" + "".join(
        f"{epoch},{loss[epoch]},{loss[epoch]},{'59:58' if epoch < 6 else '1:00:02'}\n" for epoch in range(12)
    ))
    assert read_log(path).meta["seconds_per_step"] == pytest.approx(3600.0)  # past an hour: H:MM:SS


def test_a_time_of_day_is_no_duration(tmp_path: Path) -> None:
    path = tmp_path / "log.csv"
    path.write_text("step,loss,time\n" + "".join(f"{i},{2 - i / 20},14:{i:02d}:00\n" for i in range(20)))
    trace = read_log(path)
    assert "seconds_per_step" not in trace.meta
    assert trace.meta["time_problem"] == "the log's 'time' column has a value that is not a time at step 0"


def test_keras_csvlogger_with_the_learning_rate_scheduler(tmp_path: Path) -> None:
    path = tmp_path / "training.log"  # Keras 3 writes epoch, then the logs' keys sorted
    loss = falling(15, seed=4)
    path.write_text("epoch,learning_rate,loss,val_loss\n" + "".join(
        f"{epoch},{0.01 * 0.95**epoch},{loss[epoch]},{loss[epoch] + 0.1}\n" for epoch in range(15)
    ))
    trace = read_log(path)
    assert trace.step.tolist() == list(range(15)) and trace.lr[-1] == pytest.approx(0.01 * 0.95**14)
    assert "seconds_per_step" not in trace.meta and "time_problem" not in trace.meta  # Keras logs no time


def test_timm_summary_csv(tmp_path: Path) -> None:
    path = tmp_path / "summary.csv"
    loss = falling(20, seed=5)
    path.write_text("epoch,train_loss,eval_loss,eval_top1,eval_top5,lr\n" + "".join(
        f"{e},{loss[e]},{0.9 * loss[e]},{50 + e},{80 + e / 2},{0.025 * (1 + math.cos(math.pi * e / 20))}\n"
        for e in range(20)
    ))
    trace = read_log(path)
    assert trace.meta["columns"] == {"step": "epoch", "loss": "train_loss", "lr": "lr", "val_loss": "eval_loss"}
    assert trace.step.tolist() == list(range(20)) and np.isfinite(trace.val_loss).all()


# --- Weights & Biases and MLflow exports ---------------------------------------------------------


def wandb_history(n: int = 60, every: int = 10) -> list[dict]:
    """``run.history()`` of a Hugging Face run: W&B's ``_step`` counts log calls, ``train/global_step``
    the training steps; an evaluation every 200 steps is its own row, with a table logged beside it."""
    rows, calls = [], 0
    for i, loss in enumerate(falling(n, seed=6)):
        step = (i + 1) * every
        runtime = 12.5 + 0.8 * step + 30 * ((step - 1) // 200)  # 0.8 s a step, 30 s an evaluation
        rows.append({"_step": calls, "_runtime": runtime, "_timestamp": 1.7145e9 + runtime, "train/loss": loss,
                     "train/learning_rate": 3e-4, "train/global_step": step, "train/epoch": step / 600})
        calls += 1
        if step % 200 == 0:
            rows.append({"_step": calls, "_runtime": runtime + 30, "_timestamp": 1.7145e9 + runtime + 30,
                         "train/global_step": step, "eval/loss": loss + 0.1,
                         "examples": f"{{'_type': 'table-file', 'path': 'media/table/examples_{calls}.table.json'}}"})
            calls += 1
    return rows


def test_wandb_jsonl_history_counts_training_steps_not_log_calls(tmp_path: Path) -> None:
    """Before: no step column found, so rows were steps: 60 steps, timed at 8 s a step, not 0.8."""
    trace = read_log(json_lines(tmp_path / "history.jsonl", [
        {key: value for key, value in row.items() if key != "examples"} for row in wandb_history()
    ]))
    assert trace.meta["columns"]["step"] == "train/global_step" and trace.step.tolist() == list(range(10, 601, 10))
    assert trace.meta["seconds_per_step"] == pytest.approx(0.8)
    assert np.flatnonzero(np.isfinite(trace.val_loss)).tolist() == [19, 39, 59]


def test_wandb_csv_export_with_an_index_and_a_media_column(tmp_path: Path) -> None:
    """``run.history().to_csv(...)``: pandas' unnamed index first; a table's reference as text.
    Before: "column 'examples' has text ...", though lrkit does not read it."""
    rows = wandb_history()
    names = ["_step", "_runtime", "_timestamp", "train/loss", "train/learning_rate", "train/global_step",
             "train/epoch", "eval/loss", "examples"]

    def cell(value):
        return "" if value is None else f'"{value}"' if isinstance(value, str) else repr(value)

    lines = [",".join(["", *names])]
    lines += [",".join([str(index), *(cell(row.get(name)) for name in names)]) for index, row in enumerate(rows)]
    path = tmp_path / "wandb_export.csv"
    path.write_text("\n".join(lines) + "\n")
    trace = read_log(path)
    assert trace.step.tolist() == list(range(10, 601, 10)) and trace.meta["seconds_per_step"] == pytest.approx(0.8)


def test_mlflow_metric_history_in_rows_is_named_as_such(tmp_path: Path) -> None:
    path = tmp_path / "metrics.csv"  # get_metric_history for each key, as a DataFrame: one metric a row
    path.write_text("key,value,timestamp,step\n" + "".join(
        f"{key},{value},{1714560000000 + 500 * i},{10 * i}\n"
        for key, values in (("loss", falling(20)), ("lr", [0.001] * 20)) for i, value in enumerate(values)
    ))
    with pytest.raises(ValueError, match="no loss column among key, value, timestamp, step; it holds one metric a row"):
        read_log(path)


def test_mlflow_metrics_as_columns(tmp_path: Path) -> None:
    path = tmp_path / "mlflow.csv"  # the same history pivoted: a column per key, timestamps in milliseconds
    loss = falling(30, seed=7)
    path.write_text("step,timestamp,loss,lr\n" + "".join(
        f"{10 * i},{1714560000000 + 5000 * i},{loss[i]},0.001\n" for i in range(30)
    ))
    trace = read_log(path)
    assert trace.meta["seconds_per_step"] == pytest.approx(0.5)
    assert trace.meta["time_source"] == "the log's 'timestamp' column (in milliseconds)"


# --- Lightning, Hugging Face, TensorBoard --------------------------------------------------------


def test_lightning_csvlogger_with_learning_rate_monitor_and_epoch_rows(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path), name="lightning_logs")
    loss, step = falling(240, seed=8), 0
    for epoch in range(6):
        for _ in range(40):
            if (step + 1) % 10 == 0:  # log_every_n_steps=10
                logger.log_metrics({"lr-AdamW": 1e-3 * 0.5**epoch}, step=step)
                logger.log_metrics({"train_loss_step": loss[step], "epoch": epoch}, step=step)
            step += 1
        logger.log_metrics({"val_loss": loss[step - 1] + 0.1, "val_acc": 0.7, "epoch": epoch}, step=step - 1)
        logger.log_metrics({"train_loss_epoch": float(np.mean(loss[step - 40:step])), "epoch": epoch}, step=step - 1)
    logger.save()
    trace = read_log(tmp_path / "lightning_logs")
    assert trace.meta["columns"] == {
        "step": "step", "loss": "train_loss_step", "lr": "lr-AdamW", "val_loss": "val_loss",
    }
    assert trace.step.tolist() == list(range(9, 240, 10)) and trace.lr[-1] == pytest.approx(1e-3 * 0.5**5)
    assert np.isfinite(trace.val_loss).sum() == 6


def hugging_face_history(steps: int = 600, every: int = 10) -> list[dict]:
    history = []
    for step, loss in zip(range(every, steps + 1, every), falling(steps // every, seed=9), strict=True):
        history.append({"epoch": 3 * step / steps, "grad_norm": 2.5, "learning_rate": 5e-5 * (1 - step / steps),
                        "loss": round(loss, 4), "step": step})
        if step % 200 == 0:
            history.append({"epoch": 3 * step / steps, "eval_loss": loss + 0.1, "eval_runtime": 3.21,
                            "eval_samples_per_second": 311.5, "eval_steps_per_second": 39.0, "step": step})
    return history


def test_a_hugging_face_output_folder_reads_the_final_state_with_its_runtime(tmp_path: Path) -> None:
    """``trainer.save_state()`` writes the output folder's own trainer_state.json when training ends:
    the whole history and ``train_runtime``. Before: the checkpoint's was read, and the run untimed."""
    history = hugging_face_history()
    state = {"best_metric": None, "epoch": 3.0, "eval_steps": 200, "global_step": 600, "logging_steps": 10,
             "max_steps": 600, "num_train_epochs": 3, "save_steps": 600, "train_batch_size": 8}
    (tmp_path / "checkpoint-600").mkdir()
    (tmp_path / "checkpoint-600" / "trainer_state.json").write_text(json.dumps({**state, "log_history": history}))
    final = {"epoch": 3.0, "step": 600, "total_flos": 1.2e15, "train_loss": 0.8, "train_runtime": 360.5,
             "train_samples_per_second": 133.1, "train_steps_per_second": 1.664}
    (tmp_path / "trainer_state.json").write_text(json.dumps({**state, "log_history": [*history, final]}, indent=2))
    trace = read_log(tmp_path)
    assert trace.meta["source"] == str(tmp_path / "trainer_state.json")
    assert trace.meta["seconds_per_step"] == pytest.approx(360.5 / 600)
    assert trace.meta["columns"]["grad_norm"] == "grad_norm" and np.isfinite(trace.val_loss).sum() == 3
    (tmp_path / "checkpoint-900").mkdir()  # training resumed further: the newest state wins
    resumed = [*history, *({"loss": 0.3, "step": step, "learning_rate": 1e-5} for step in range(610, 901, 10))]
    (tmp_path / "checkpoint-900" / "trainer_state.json").write_text(
        json.dumps({**state, "global_step": 900, "log_history": resumed})
    )
    assert read_log(tmp_path).step[-1] == 900


def test_tensorboard_summary_writer_with_slash_tags_and_lightning_lr_tag(tmp_path: Path) -> None:
    from torch.utils.tensorboard import SummaryWriter

    loss = falling(200, seed=10)
    with SummaryWriter(log_dir=str(tmp_path / "runs" / "exp1")) as writer:
        for step in range(200):
            writer.add_scalar("train/loss", loss[step], step, walltime=1.7e9 + 0.2 * step)
            writer.add_scalar("lr-SGD", 0.1 * 0.5 ** (step // 80), step, walltime=1.7e9 + 0.2 * step)
            if step % 20 == 19:
                writer.add_scalar("val/loss", loss[step] + 0.05, step, walltime=1.7e9 + 0.2 * step + 1)
    trace = read_log(tmp_path / "runs")
    assert trace.meta["columns"] == {"step": "step", "loss": "train/loss", "lr": "lr-SGD", "val_loss": "val/loss"}
    assert trace.meta["seconds_per_step"] == pytest.approx(0.2)


# --- printed logs, converted by hand -------------------------------------------------------------


def test_nanogpt_time_ms_is_each_iterations_duration(tmp_path: Path) -> None:
    """nanoGPT prints 'iter 10: loss 9.1234, time 112.35ms, mfu 12.30%'. The first iteration compiles
    and an evaluation every 250 iterations is timed into its iteration: pauses, left out as on a
    clock. Before: time_ms was not read, and the run untimed."""
    loss = falling(100, start=10.9, end=1.5, seed=11)
    rows = [
        f"{10 * i},{loss[i]:.4f},{6e-4 * min(1, (10 * i + 1) / 100):.6g},"
        f"{31000.0 if i == 0 else 1800.0 if i % 25 == 0 else 110.0 + (i % 5):.2f},{-100.0 if i == 0 else 12.3:.2f}"
        for i in range(100)
    ]
    path = tmp_path / "nanogpt.csv"
    path.write_text("iter,loss,lr,time_ms,mfu\n" + "\n".join(rows) + "\n")
    trace = read_log(path)
    assert trace.meta["columns"]["step"] == "iter" and trace.meta["columns"]["time"] == "time_ms"
    steady = [110.0 + (i % 5) for i in range(100) if i % 25]
    assert trace.meta["seconds_per_step"] == pytest.approx(np.mean(steady) / 1000)
    assert trace.meta["time_source"] == "the log's 'time_ms' column of step durations (in milliseconds)"


@pytest.mark.parametrize("name", DURATIONS)
def test_every_duration_name_is_each_steps_duration(tmp_path: Path, name: str) -> None:
    seconds = [0.2 + 0.05 * (i % 2) for i in range(40)]
    scale = 1000 if name.endswith("_ms") else 1
    path = tmp_path / "log.csv"
    rows = "".join(f"{5 * i},{2 - i / 40},{scale * s!r}\n" for i, s in enumerate(seconds))
    path.write_text(f"step,loss,{name}\n" + rows)
    assert read_log(path).meta["seconds_per_step"] == pytest.approx(0.225)


def test_a_time_column_that_goes_back_is_no_duration_without_a_sign_of_one(tmp_path: Path) -> None:
    """A `time` that goes back could be a clock restarted with a resumed run: averaging it would give
    minutes a step. Without a duration's name, format or MMEngine's `data_time` beside it, it is
    left out, with the reason."""
    path = tmp_path / "log.csv"
    clock = [float(i if i < 20 else i - 20) for i in range(40)]  # 1 s a step, restarted at step 20
    path.write_text("step,loss,time\n" + "".join(f"{i},{2 - i / 40},{t}\n" for i, t in enumerate(clock)))
    trace = read_log(path)
    assert "seconds_per_step" not in trace.meta
    assert trace.meta["time_problem"] == "the log's 'time' column goes back at step 20"


def test_words_in_a_column_lrkit_does_not_read_are_passed_over(tmp_path: Path, capsys) -> None:
    """Before: "column 'phase' has text 'warmup' at line 2; expected a number"."""
    loss = falling(50, seed=12)
    notes = {20: "resumed from ckpt", 30: '"lr bumped, see slack"'}
    path = tmp_path / "train_log.csv"
    path.write_text("step,phase,loss,lr,note\n" + "".join(
        f"{20 * i},{'warmup' if i < 5 else 'main'},{loss[i]:.4f},0.001,{notes.get(i, '')}\n" for i in range(50)
    ))
    trace = read_log(path)
    assert trace.step.tolist() == list(range(0, 1000, 20))
    assert trace.meta["columns"] == {"step": "step", "loss": "loss", "lr": "lr"}
    assert main(["diagnose", str(path)]) == 0
    capsys.readouterr()
    # a column that is read still needs numbers: named, or found by its name
    assert main(["diagnose", str(path), "--lr", "phase"]) == 2
    assert capsys.readouterr().err == (
        f"lrkit: error: {path}: column 'phase' has text 'warmup' at line 2; expected a number\n"
    )
    with pytest.raises(ValueError, match=r"column 'step' has text 'epoch 1' at line 2"):
        read_log(json_lines(tmp_path / "log.jsonl", [{"step": 0, "loss": 1.0}, {"step": "epoch 1", "loss": 0.9}]))
