"""A user's own code end to end: defects found walking the README's journeys, kept fixed."""

from __future__ import annotations

import math
import sys
import textwrap
from dataclasses import dataclass

import pytest
import torch
from torch import nn

import lrkit
from lrkit.cli.app import main
from lrkit.suggest import suggest
from lrkit.torch.finder import find_lr

torch.set_num_threads(1)


@dataclass
class Output:
    """What a Hugging Face model returns: the loss (None without labels) beside the logits."""

    loss: torch.Tensor | None
    logits: torch.Tensor


class Classifier(nn.Module):
    """Computes its own loss from a dict batch, as Hugging Face models do."""

    def __init__(self, as_dict: bool = False) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 3))
        self.as_dict = as_dict

    def forward(self, features, labels=None):
        logits = self.body(features)
        loss = None if labels is None else nn.functional.cross_entropy(logits, labels)
        if self.as_dict:  # a ModelOutput is a dict that leaves out what is None
            return {"logits": logits} | ({} if loss is None else {"loss": loss})
        return Output(loss, logits)


def dict_batches(labels: bool = True) -> list[dict[str, torch.Tensor]]:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=generator)
    y = (x[:, :2].sum(1) > 0).long() + (x[:, 2] > 1).long()
    batches = [{"features": x[i : i + 32], "labels": y[i : i + 32]} for i in range(0, 256, 32)]
    return batches if labels else [{"features": batch["features"]} for batch in batches]


@pytest.mark.parametrize("as_dict", [False, True], ids=["object", "dict"])
def test_a_model_output_without_its_loss_says_so(as_dict):
    model = Classifier(as_dict)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    message = r"the model's output \((Output|dict)\) has no loss.*labels.*loss_fn"
    with pytest.raises(TypeError, match=message):
        find_lr(model, optimizer, None, dict_batches(labels=False), steps=10)


def test_a_saved_range_test_suggests_what_find_lr_suggested(tmp_path):
    model = Classifier()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    result = find_lr(model, optimizer, None, dict_batches(), steps=150)
    assert result.steps < 150 and result.lr is not None  # stopped early, at divergence
    result.trace.save(tmp_path / "range_test.csv")
    again = suggest(lrkit.Trace.load(tmp_path / "range_test.csv"))
    assert again.evidence["window"] == result.evidence["window"]  # smoothed over the planned sweep
    assert (again.lr, again.max_stable_lr) == (result.lr, result.max_stable_lr)


def test_a_folder_of_many_runs_says_how_many_it_left_unnamed(tmp_path):
    for name in "abcdef":
        (tmp_path / name).mkdir()
        (tmp_path / name / "metrics.csv").write_text("step,loss\n0,1\n")
    with pytest.raises(ValueError, match=r"holds several runs \(.*/a, .*/e and 1 more\)"):
        lrkit.read_log(tmp_path)


def test_find_entry_returning_three_things_says_how_many(tmp_path, capsys, monkeypatch):
    (tmp_path / "three.py").write_text(
        textwrap.dedent(
            """
            import torch
            def setup():
                model = torch.nn.Linear(2, 1)
                batches = [(torch.ones(1, 2), torch.ones(1, 1))]
                return model, torch.optim.SGD(model.parameters(), lr=0.1), batches
            """
        )
    )
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["find", "--entry", "three:setup", "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "got a tuple of 3 items" in err and len(err.strip().splitlines()) == 1
    sys.modules.pop("three", None)


def test_a_trial_interrupted_by_ctrl_c_is_run_again_with_its_lr_on_resume(tmp_path):
    pytest.importorskip("optuna")
    journal, calls = tmp_path / "sweep.journal", []

    def objective(lr, report):
        calls.append(lr)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return (math.log10(lr) + 2) ** 2

    options = {"min_lr": 1e-5, "max_lr": 1.0, "n_trials": 4, "pruner": None, "storage": journal}
    with pytest.raises(KeyboardInterrupt):
        lrkit.sweep(objective, **options)
    result = lrkit.sweep(objective, **options)
    interrupted = [row for row in result.trials if row.state == "failed"]
    assert [row.lr for row in interrupted] == [calls[1]]
    retried = [row for row in result.trials if row.retry_of == interrupted[0].number]
    assert [(row.lr, row.state) for row in retried] == [(calls[1], "complete")]
    assert len(result.finished) == 4 and calls[2] == calls[1]  # the retry runs first
