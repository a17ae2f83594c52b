"""Log readers: CSV, JSON lines, Hugging Face log history, TensorBoard and Lightning files into Traces."""

import json
import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit import read_log
from lrkit.cli.app import main
from lrkit.trace import Trace, TraceBuilder


def write(path, text):
    path.write_text(text)
    return path


# --- CSV -----------------------------------------------------------------------------------------


def test_csv_with_the_usual_names(tmp_path):
    path = write(
        tmp_path / "log.csv", "step,lr,loss,val_loss\n0,0.1,2.0,\n10,0.1,1.5,1.6\n20,0.05,1.2,\n"
    )
    trace = read_log(path)
    assert trace.step.tolist() == [0, 10, 20]
    assert trace.loss.tolist() == [2.0, 1.5, 1.2]
    assert trace.lr.tolist() == [0.1, 0.1, 0.05]
    assert np.isnan(trace.val_loss[0]) and trace.val_loss[1] == 1.6
    assert trace.meta["columns"] == {
        "step": "step",
        "loss": "loss",
        "lr": "lr",
        "val_loss": "val_loss",
    }
    assert trace.meta["format"] == "csv" and trace.meta["source"] == str(path)


def test_csv_with_other_common_names_tabs_and_no_lr(tmp_path):
    path = write(tmp_path / "log.tsv", "Iteration\tTrain Loss\tEval-Loss\n1\t3.0\t\n2\t2.5\t2.7\n")
    trace = read_log(path)
    assert trace.step.tolist() == [1, 2] and trace.loss.tolist() == [3.0, 2.5]
    assert trace.val_loss.tolist()[1] == 2.7
    assert np.isnan(trace.lr).all()


def test_fractional_epochs_count_their_distinct_values_in_order(tmp_path):
    # the only x-axis some logs have: epoch 0.25, 0.5, ...; rows sharing an epoch merge
    path = write(tmp_path / "e.csv", "epoch,loss,val_loss\n0.25,2.0,\n0.5,1.5,\n0.5,,1.6\n0.75,1.2,\n1.0,1.0,1.1\n")
    trace = read_log(path)
    assert trace.step.tolist() == [0, 1, 2, 3] and trace.loss.tolist() == [2.0, 1.5, 1.2, 1.0]
    assert trace.val_loss[1] == 1.6 and trace.meta["columns"]["step"] == "epoch"
    with pytest.raises(ValueError, match=r"steps are not in order: epoch=0.25 in data row 3 follows 0.5"):
        read_log(write(tmp_path / "back.csv", "epoch,loss\n0.25,2\n0.5,1.5\n0.25,1.2\n"))
    with pytest.raises(ValueError, match="step column 'step' has 0.5 in data row 2; expected whole numbers"):
        read_log(write(tmp_path / "s.csv", "step,loss\n0,2\n0.5,1.5\n"))


def test_a_named_column_matches_up_to_case_as_guessed_ones_do(tmp_path):
    path = write(tmp_path / "c.csv", "Iteration,Train Loss,objective\n1,3.0,9\n2,2.5,8\n")
    trace = read_log(path, step="ITERATION", loss="train_loss")
    assert trace.step.tolist() == [1, 2] and trace.loss.tolist() == [3.0, 2.5]
    assert trace.meta["columns"]["step"] == "Iteration" and trace.meta["columns"]["loss"] == "Train Loss"
    with pytest.raises(ValueError, match="no column 'iters' \\(given for step\\)"):
        read_log(path, step="iters")


def test_keras_style_epochs_are_the_steps(tmp_path):
    path = write(
        tmp_path / "training.log",
        "epoch,learning_rate,loss,val_loss\n0,0.001,0.9,0.95\n1,0.001,0.7,0.8\n",
    )
    trace = read_log(path)
    assert trace.step.tolist() == [0, 1] and trace.meta["columns"]["step"] == "epoch"
    assert trace.val_loss.tolist() == [0.95, 0.8]


def test_without_a_step_column_rows_are_numbered(tmp_path):
    trace = read_log(write(tmp_path / "l.csv", "loss\n3\n2\n1\n"))
    assert trace.step.tolist() == [0, 1, 2]


def test_columns_named_by_the_caller(tmp_path):
    path = write(tmp_path / "l.csv", "it,objective,loss,rate\n0,5.0,9.0,0.1\n1,4.0,9.0,0.1\n")
    trace = read_log(path, step="it", loss="objective", lr="rate")
    assert trace.loss.tolist() == [5.0, 4.0] and trace.lr.tolist() == [0.1, 0.1]


def test_a_named_column_that_is_missing_lists_the_columns(tmp_path):
    path = write(tmp_path / "l.csv", "step,loss\n0,1\n")
    with pytest.raises(
        ValueError, match=r"l\.csv: no column 'objective' \(given for loss\); columns: step, loss"
    ):
        read_log(path, loss="objective")


def test_nan_and_inf_are_values_and_empty_cells_are_missing(tmp_path):
    path = write(tmp_path / "l.csv", "step,loss,lr\n0,2.0,0.1\n1,nan,\n2,inf,0.2\n")
    trace = read_log(path)
    assert np.isnan(trace.loss[1]) and math.isinf(trace.loss[2])
    assert trace.lr.tolist() == [0.1, 0.1, 0.2]  # a missing LR carries over


# --- the learning rate: >= 0 and finite, NaN or missing where the log does not know it -----------


@given(
    lrs=st.lists(st.one_of(st.floats(0, 10), st.just("nan"), st.just("")), min_size=1, max_size=30),
    bad=st.sampled_from([-0.001, -5.0, -math.inf, math.inf]),
    data=st.data(),
    kind=st.sampled_from(["csv", "jsonl"]),
)
def test_a_negative_or_infinite_lr_names_the_file_column_row_and_step(tmp_path_factory, lrs, bad, data, kind):
    row = data.draw(st.integers(0, len(lrs) - 1))
    lrs = [*lrs[:row], bad, *lrs[row + 1 :]]
    path = tmp_path_factory.mktemp("lr") / f"log.{kind}"
    if kind == "csv":
        path.write_text("step,loss,learning_rate\n" + "".join(f"{10 * i},1.0,{lr}\n" for i, lr in enumerate(lrs)))
    else:
        cells = [{} if lr == "" else {"learning_rate": float(lr)} for lr in lrs]
        path.write_text("".join(json.dumps({"step": 10 * i, "loss": 1.0, **cell}) + "\n" for i, cell in enumerate(cells)))
    message = (
        f"{path}: column 'learning_rate' has the learning rate {bad!r} in data row {row + 1} "
        f"(step {10 * row}); a learning rate must be >= 0 and finite"
    )
    with pytest.raises(ValueError) as error:
        read_log(path)
    assert str(error.value) == message


def test_a_negative_lr_in_trainer_state_names_the_step(tmp_path):
    history = [{"learning_rate": 5e-5, "loss": 2.5, "step": 10}, {"learning_rate": -1e-5, "loss": 2.0, "step": 20}]
    path = write(tmp_path / "trainer_state.json", json.dumps({"log_history": history}))
    with pytest.raises(ValueError, match=r"trainer_state\.json: column 'learning_rate' has the learning rate -1e-05 in data row 2 \(step 20\)"):
        read_log(path)


def test_a_negative_lr_in_tensorboard_events_names_the_step(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path / "run")) as writer:
        for step in range(5):
            writer.add_scalar("loss", 1.0, step)
            writer.add_scalar("lr", -0.1 if step == 3 else 0.1, step)
    with pytest.raises(ValueError, match=r"column 'lr' has the learning rate -0\.1\d* in data row 4 \(step 3\)"):
        read_log(tmp_path / "run")


def test_an_lr_of_zero_is_a_learning_rate(tmp_path):
    trace = read_log(write(tmp_path / "l.csv", "step,loss,lr\n0,2.0,0\n1,1.5,0.05\n2,1.0,0.1\n"))
    assert trace.lr.tolist() == [0.0, 0.05, 0.1]


def falling_log(lr_cell):
    """A log whose loss falls steadily over 60 steps, with ``lr_cell`` as every row's LR (None: no
    LR column)."""
    loss = 2.0 * np.exp(-3 * np.arange(60) / 60) + 0.01 * np.random.default_rng(0).standard_normal(60)
    if lr_cell is None:
        return "step,loss\n" + "".join(f"{i},{float(value)!r}\n" for i, value in enumerate(loss))
    return "step,loss,lr\n" + "".join(f"{i},{float(value)!r},{lr_cell}\n" for i, value in enumerate(loss))


@pytest.mark.parametrize("cell", ["nan", "", "NaN"])
def test_an_lr_column_without_values_reads_and_diagnoses_like_no_lr_column(tmp_path, capsys, cell):
    without = write(tmp_path / "without.csv", falling_log(None))
    unknown = write(tmp_path / "unknown.csv", falling_log(cell))
    trace = read_log(unknown)
    assert np.isnan(trace.lr).all()
    assert trace.replace(meta={}) == read_log(without).replace(meta={})
    outputs = []
    for path in (without, unknown):
        assert main(["diagnose", str(path), "--json"]) == 0
        outputs.append({key: value for key, value in json.loads(capsys.readouterr().out).items() if key != "file"})
    assert outputs[0] == outputs[1]
    assert outputs[1]["evidence"]["lr_peak"] is None and "to ~" not in outputs[1]["action"]


def test_report_refuses_a_negative_lr_on_one_line(tmp_path, capsys):
    path = write(tmp_path / "neg.csv", falling_log("-0.001"))
    out = tmp_path / "report.html"
    assert main(["report", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"lrkit: error: {path}: column 'lr' has the learning rate -0.001 in data row 1 (step 0); a learning rate must be >= 0 and finite\n"
    assert not out.exists()


def test_an_lrkit_trace_file_keeps_its_meta_and_events(tmp_path):
    builder = TraceBuilder(task="x", seed=3)
    for step in range(5):
        builder.add(step, 0.1, 1.0 / (step + 1))
    builder.event(2, "rollback", "spike")
    original = builder.build()
    for name in ("t.csv", "t.jsonl"):
        trace = read_log(original.save(tmp_path / name))
        assert trace.loss.tolist() == original.loss.tolist()
        assert trace.events == original.events and trace.meta["task"] == "x"


@given(
    losses=st.lists(st.floats(-1e6, 1e6, allow_nan=False), min_size=1, max_size=40),
    names=st.sampled_from(
        [
            ("step", "loss", "lr"),
            ("global_step", "train_loss", "learning_rate"),
            ("iter", "train/loss", "lr-Adam"),
        ]
    ),
    gaps=st.integers(1, 100),
)
def test_csv_round_trip_keeps_every_value(tmp_path_factory, losses, names, gaps):
    path = tmp_path_factory.mktemp("rt") / "log.csv"
    rows = [f"{i * gaps},{loss!r},{0.5 / (i + 1)!r}" for i, loss in enumerate(losses)]
    path.write_text(",".join(names) + "\n" + "\n".join(rows) + "\n")
    trace = read_log(path)
    assert trace.loss.tolist() == losses
    assert trace.step.tolist() == [i * gaps for i in range(len(losses))]
    assert trace.lr.tolist() == [0.5 / (i + 1) for i in range(len(losses))]


@given(
    losses=st.lists(st.floats(0.01, 10), min_size=1, max_size=30),
    val_every=st.integers(1, 5),
    order=st.permutations(["loss", "lr", "val_loss"]),
)
def test_sparse_rows_read_like_the_dense_table(tmp_path_factory, losses, val_every, order):
    folder = tmp_path_factory.mktemp("sparse")
    dense, sparse = ["step,loss,lr,val_loss"], ["step,loss,lr,val_loss"]
    for step, loss in enumerate(losses):
        values = {
            "loss": repr(loss),
            "lr": repr(0.1 / (step + 1)),
            "val_loss": repr(loss / 2) if step % val_every == 0 else "",
        }
        dense.append(f"{step},{values['loss']},{values['lr']},{values['val_loss']}")
        for name in order:  # one metric per row, in any order, as loggers write them
            if values[name]:
                cells = [
                    values[name] if column == name else "" for column in ("loss", "lr", "val_loss")
                ]
                sparse.append(f"{step}," + ",".join(cells))
    (folder / "dense.csv").write_text("\n".join(dense) + "\n")
    (folder / "sparse.csv").write_text("\n".join(sparse) + "\n")
    a, b = read_log(folder / "dense.csv"), read_log(folder / "sparse.csv")
    assert a.replace(meta={}) == b.replace(meta={})


# --- JSON ----------------------------------------------------------------------------------------


def test_json_lines(tmp_path):
    lines = [
        {"step": 0, "loss": 2.0, "lr": 0.01},
        {"step": 1, "loss": 1.0, "lr": 0.01, "eval_loss": 1.1},
    ]
    trace = read_log(write(tmp_path / "m.jsonl", "\n".join(json.dumps(line) for line in lines)))
    assert trace.loss.tolist() == [2.0, 1.0] and trace.val_loss[1] == 1.1


def test_hugging_face_trainer_state_log_history(tmp_path):
    history = [
        {"epoch": 0.1, "grad_norm": 3.0, "learning_rate": 5e-5, "loss": 2.5, "step": 10},
        {"epoch": 0.2, "grad_norm": 2.0, "learning_rate": 4e-5, "loss": 2.0, "step": 20},
        {"epoch": 0.2, "eval_loss": 2.1, "eval_runtime": 1.0, "step": 20},
        {"epoch": 0.3, "grad_norm": 1.5, "learning_rate": 3e-5, "loss": 1.8, "step": 30},
    ]
    path = write(
        tmp_path / "trainer_state.json", json.dumps({"global_step": 30, "log_history": history})
    )
    trace = read_log(path)
    assert trace.step.tolist() == [10, 20, 30]
    assert trace.lr.tolist() == [5e-5, 4e-5, 3e-5] and trace.grad_norm.tolist() == [3.0, 2.0, 1.5]
    assert np.isnan(trace.val_loss[0]) and trace.val_loss[1] == 2.1


def test_a_hugging_face_output_folder_reads_its_latest_checkpoint(tmp_path):
    for step in (500, 1000, 1500):  # checkpoint-1500 sorts before checkpoint-500 as text
        history = [{"step": s, "loss": 3.0 / s, "learning_rate": 1e-4} for s in range(10, step + 1, 10)]
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step, "log_history": history}))
    trace = read_log(tmp_path)
    assert trace.step[-1] == 1500 and len(trace) == 150
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no metrics.csv, scalars.json, TensorBoard event file or trainer_state.json"):
        read_log(tmp_path / "empty")


def test_a_line_that_is_not_json_is_named(tmp_path):
    path = write(tmp_path / "m.jsonl", '{"loss": 1}\n{"loss": 2\n')
    with pytest.raises(ValueError, match=r"m\.jsonl: line 2 is not JSON"):
        read_log(path)


# --- files written by the real tools -------------------------------------------------------------


def test_tensorboard_events_written_by_torch(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(log_dir=str(tmp_path / "run")) as writer:
        for step in range(20):
            writer.add_scalar("train/loss", 2.0 / (step + 1), step)
            writer.add_scalar("train/lr", 0.1, step)
            if step % 5 == 4:
                writer.add_scalar("val/loss", 1.0 / (step + 1), step)
    trace = read_log(tmp_path / "run")
    assert trace.meta["format"] == "tensorboard"
    assert trace.step.tolist() == list(range(20))
    assert np.allclose(trace.loss, [2.0 / (s + 1) for s in range(20)])
    assert np.allclose(trace.lr, 0.1)
    assert np.flatnonzero(np.isfinite(trace.val_loss)).tolist() == [4, 9, 14, 19]
    event_file = next((tmp_path / "run").glob("*tfevents*"))
    assert read_log(event_file) == trace.replace(meta={**trace.meta, "source": str(event_file)})


def test_lightning_csv_logger_file_with_sparse_rows(tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path), name="run")
    for step in range(12):
        logger.log_metrics({"lr-SGD": 0.05}, step=step)
        logger.log_metrics({"train_loss": 1.0 / (step + 1), "epoch": step // 4}, step=step)
        if step % 4 == 3:
            logger.log_metrics({"val_loss": 0.5 / (step + 1), "epoch": step // 4}, step=step)
    logger.save()
    metrics = tmp_path / "run" / "version_0" / "metrics.csv"
    assert metrics.exists()
    trace = read_log(tmp_path / "run")
    assert trace.step.tolist() == list(range(12))
    assert np.allclose(trace.loss, [1.0 / (s + 1) for s in range(12)])
    assert np.allclose(trace.lr, 0.05)
    assert np.flatnonzero(np.isfinite(trace.val_loss)).tolist() == [3, 7, 11]
    assert trace.meta["columns"]["lr"] == "lr-SGD"


def test_a_folder_with_several_runs_asks_for_one(tmp_path):
    for name in ("a", "b"):
        write((tmp_path / name).mkdir() or tmp_path / name / "metrics.csv", "step,loss\n0,1\n")
    with pytest.raises(ValueError, match="holds several runs"):
        read_log(tmp_path)


# --- malformed logs: one line naming the file and the problem, exit 2 ----------------------------

MALFORMED = {
    "empty": ("", "the file is empty"),
    "header_only": ("step,loss\n", "has a header (step, loss) but no data rows"),
    "no_loss": ("step,accuracy\n0,0.5\n1,0.6\n", "no loss column among step, accuracy"),
    "text": ("step,loss\n0,1.0\n1,oops\n", "column 'loss' has text 'oops' at line 3"),
    "unsorted": (
        "step,loss\n0,1.0\n10,0.9\n5,0.8\n",
        "steps are not in order: step=5 in data row 3 follows 10",
    ),
    "loss_all_empty": ("step,loss,val_loss\n0,,1\n1,,2\n", "the loss column 'loss' has no values"),
    "too_few": ("step,loss\n0,1.0\n1,0.9\n", "too few points: the trace has 2"),
    "negative_lr": (
        "step,loss,lr\n" + "".join(f"{i},{2 - i / 10},-0.001\n" for i in range(10)),
        "column 'lr' has the learning rate -0.001 in data row 1 (step 0)",
    ),
    "one_negative_lr": (
        "step,loss,lr\n" + "".join(f"{i},{2 - i / 10},{-5 if i == 6 else 0.001}\n" for i in range(10)),
        "column 'lr' has the learning rate -5.0 in data row 7 (step 6)",
    ),
    "infinite_lr": ("step,loss,lr\n0,1.0,0.1\n1,0.9,inf\n", "the learning rate inf in data row 2 (step 1)"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_logs_fail_on_one_line_naming_the_file(tmp_path, capsys, case):
    text, problem = MALFORMED[case]
    path = write(tmp_path / f"{case}.csv", text)
    assert main(["diagnose", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith(f"lrkit: error: {path}") and problem in err


def test_an_unknown_format_is_refused(tmp_path):
    with pytest.raises(
        ValueError, match="format must be one of 'csv', 'jsonl', 'json', 'tensorboard'; got 'xml'"
    ):
        read_log(write(tmp_path / "l.csv", "loss\n1\n"), format="xml")


def test_a_binary_file_that_is_not_tensorboard_is_refused(tmp_path):
    path = tmp_path / "noise.bin"
    path.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match=r"noise\.bin"):
        read_log(path)


def test_cli_reads_a_real_log_and_names_columns(tmp_path, capsys):
    rng = np.random.default_rng(0)
    loss = 2.0 * np.exp(-0.3 * np.arange(60) / 60) + 0.01 * rng.standard_normal(60)
    rows = "\n".join(f"{i},{float(value)!r},0.001" for i, value in enumerate(loss))
    path = write(tmp_path / "log.csv", "it,objective,rate\n" + rows + "\n")
    assert (
        main(
            ["diagnose", str(path), "--step", "it", "--loss", "objective", "--lr", "rate", "--json"]
        )
        == 0
    )
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "too_low" and data["action"] == "raise the LR about 10x, to ~0.01"


def test_trace_from_read_log_is_a_trace(tmp_path):
    assert isinstance(read_log(write(tmp_path / "l.csv", "loss\n1\n")), Trace)
