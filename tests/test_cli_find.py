"""``lrkit find``: a range test from the command line, on a built-in task or the user's own setup."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest

from lrkit.cli.app import main
from lrkit.trace import Trace

ENTRY = """
import torch
from torch import nn

def make():
    torch.manual_seed(0)
    x = torch.randn(128, 4)
    y = (x.sum(1, keepdim=True) > 0).float()
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 1))
    batches = [(x[i : i + 16], y[i : i + 16]) for i in range(0, 128, 16)]
    return model, torch.optim.SGD(model.parameters(), lr=0.1), nn.BCEWithLogitsLoss(), batches

def broken():
    return "not a setup"

def buggy():
    model, optimizer, _, batches = make()
    def loss(model, batch):
        return model(batch[0]).mean() + "oops"  # the user's own bug
    return model, optimizer, loss, batches
"""


def test_find_on_a_task_writes_the_plot_and_the_curve(tmp_path: Path, capsys):
    assert main(["find", "--task", "cancer-logreg", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "suggested lr" in out and "of one full run (400 steps)" in out
    trace = Trace.load(tmp_path / "range_test.csv")
    assert len(trace) == 40 and trace.meta["task"] == "cancer-logreg"
    assert (tmp_path / "range_test.png").stat().st_size > 1000


def test_find_with_a_user_entry_in_the_current_folder(tmp_path: Path, capsys, monkeypatch):
    (tmp_path / "my_setup.py").write_text(textwrap.dedent(ENTRY))
    monkeypatch.chdir(tmp_path)  # importable from where the command runs, as with python -m
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(
        [
            "find",
            "--entry",
            "my_setup:make",
            "--steps",
            "30",
            "--min-lr",
            "1e-4",
            "--out",
            str(tmp_path / "o"),
        ]
    )
    assert code == 0, capsys.readouterr().err
    assert len(Trace.load(tmp_path / "o" / "range_test.csv")) <= 30
    sys.modules.pop("my_setup", None)


FRAMEWORK_ENTRY = """
import lightning.pytorch as pl
import torch
from torch import nn
from transformers import Trainer, TrainingArguments

def data():
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    return x, (x.sum(1) > 0).long()

class Module(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))

    def training_step(self, batch, batch_idx):
        return nn.functional.cross_entropy(self.net(batch[0]), batch[1])

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-3)

def lightning_pair():
    return Module(), torch.utils.data.DataLoader(torch.utils.data.TensorDataset(*data()), batch_size=16)

class Records(torch.utils.data.Dataset):
    def __init__(self):
        self.x, self.y = data()
    def __len__(self):
        return len(self.y)
    def __getitem__(self, i):
        return {"x": self.x[i], "labels": self.y[i]}

class Model(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 2))
    def forward(self, x, labels):
        return {"loss": nn.functional.cross_entropy(self.net(x), labels)}

def trainer(folder="hf-out"):
    args = TrainingArguments(folder, per_device_train_batch_size=16, report_to=[], use_cpu=True)
    return Trainer(model=Model(), args=args, train_dataset=Records())
"""


@pytest.mark.parametrize(("function", "optimizer"), [("lightning_pair", "Adam"), ("trainer", "AdamW")])
def test_find_with_an_entry_that_returns_a_framework_object(
    function, optimizer, tmp_path: Path, capsys, monkeypatch
):
    (tmp_path / "framework_setup.py").write_text(textwrap.dedent(FRAMEWORK_ENTRY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    code = main(["find", "--entry", f"framework_setup:{function}", "--steps", "20", "--out", str(tmp_path / "o")])
    assert code == 0, capsys.readouterr().err
    trace = Trace.load(tmp_path / "o" / "range_test.csv")
    assert 10 <= len(trace) <= 20 and trace.meta["optimizer"] == optimizer
    sys.modules.pop("framework_setup", None)


def test_an_error_in_the_users_code_keeps_its_traceback_and_exits_1(tmp_path: Path, capsys, monkeypatch):
    (tmp_path / "my_setup.py").write_text(textwrap.dedent(ENTRY))
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["find", "--entry", "my_setup:buggy", "--steps", "5", "--out", str(tmp_path / "o")]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and 'return model(batch[0]).mean() + "oops"' in err
    last = err.strip().splitlines()[-1]
    line = textwrap.dedent(ENTRY).splitlines().index('        return model(batch[0]).mean() + "oops"  # the user\'s own bug') + 1
    assert last.startswith("lrkit: error: raised in your code (") and f"my_setup.py, line {line})" in last
    assert last.endswith("TypeError")
    sys.modules.pop("my_setup", None)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["find"], "give exactly one of --task NAME or --entry module:function"),
        (["find", "--task", "nope"], "unknown task 'nope'"),
        (
            ["find", "--task", "cancer-logreg", "--min-lr", "1", "--max-lr", "0.1"],
            "--min-lr must be < --max-lr, got --min-lr=1.0 >= --max-lr=0.1",
        ),
        (["find", "--task", "cancer-logreg", "--budget", "0"], "Invalid value for '--budget': 0.0 is not in the range 0<x<=1"),
        (["find", "--entry", "nocolon"], "--entry must look like module:function, got 'nocolon'"),
        (["find", "--entry", "no_such_module_xyz:make"], "cannot import 'no_such_module_xyz'"),
        (["find", "--entry", "my_setup:missing"], "my_setup has no function 'missing'"),
        (
            ["find", "--entry", "my_setup:broken"],
            "must return (model, optimizer, loss_fn, train_loader), a transformers Trainer, or a LightningModule",
        ),
    ],
)
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path: Path, capsys, monkeypatch):
    (tmp_path / "my_setup.py").write_text(textwrap.dedent(ENTRY))
    monkeypatch.syspath_prepend(str(tmp_path))
    assert main([*args, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("lrkit: error:") and message in err
    assert not (tmp_path / "o").exists()  # a failed command leaves no empty --out folder
    sys.modules.pop("my_setup", None)


def test_unwritable_out_fails_before_training(tmp_path: Path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    assert main(["find", "--task", "cancer-logreg", "--out", str(blocker / "sub")]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"lrkit: error: --out {str(blocker / 'sub')!r} cannot be written: {str(blocker)!r}: Not a directory\n"
    assert "suggested lr" not in captured.out
