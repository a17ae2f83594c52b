"""find_lr / find_task_lr: the range test on real models, and that it leaves everything as it found it."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, TensorDataset

import lrkit
from lrkit.torch.finder import FinderResult, find_lr, find_task_lr
from torch_state import clone, same
from two_ranks import run_two_ranks

torch.set_num_threads(1)  # tiny models: one thread is fastest and keeps runs comparable


def data(samples: int = 256, seed: int = 0) -> TensorDataset:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 10, generator=generator)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return TensorDataset(x, y)


def loader(samples: int = 256, seed: int = 0) -> DataLoader:
    return DataLoader(
        data(samples), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )


def net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3)
    )


def ce(model: nn.Module, batch) -> torch.Tensor:
    inputs, targets = batch
    return nn.functional.cross_entropy(model(inputs), targets)


def state(model, optimizer, scheduler=None) -> dict:
    return {
        "model": clone(model.state_dict()),
        "optimizer": clone(optimizer.state_dict()),
        "scheduler": None if scheduler is None else clone(scheduler.state_dict()),
        "training": [m.training for m in model.modules()],
        "grads": [clone(p.grad) for p in model.parameters()],
    }



def trained(seed: int = 0):
    """A model and Adam with some history, a scheduler attached, so there is state to lose."""
    model = net(seed)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.9)
    for batch in list(loader())[:2]:
        optimizer.zero_grad()
        ce(model, batch).backward()
        optimizer.step()
        scheduler.step()
    return model, optimizer, scheduler


def test_range_test_leaves_a_nested_sampler_shuffle_where_it_was():
    """A DataLoader over BatchSampler(RandomSampler(generator)) (batch_size=None) is rewound too."""
    dataset = loader().dataset
    generator = torch.Generator().manual_seed(3)
    batches = BatchSampler(RandomSampler(dataset, generator=generator), 32, drop_last=False)
    nested = DataLoader(dataset, sampler=batches, batch_size=None)
    state_before = generator.get_state()

    find_lr(net(), torch.optim.SGD(net().parameters(), lr=0.1), ce, nested, steps=12)

    assert torch.equal(generator.get_state(), state_before)


def test_range_test_suggests_and_restores_everything_bit_exactly():
    model, optimizer, scheduler = trained()
    train_loader = loader()
    before = state(model, optimizer, scheduler)
    order_before = [b[1].tolist() for b in train_loader]
    train_loader.generator.manual_seed(0)
    torch.manual_seed(5)
    random.seed(5)
    expected_random = (torch.rand(3), random.random(), np.random.rand())
    torch.manual_seed(5)
    random.seed(5)
    np.random.seed(None)
    np_state = np.random.get_state()

    result = find_lr(
        model, optimizer, ce, train_loader, min_lr=1e-5, max_lr=10, steps=40, scheduler=scheduler
    )

    assert isinstance(result, FinderResult) and result.lr is not None
    assert result.range[0] <= result.lr <= result.range[1]
    assert result.trace.meta["sweep"] == "exponential" and len(result.trace) == result.steps <= 40
    assert np.allclose(np.diff(np.log(result.trace.lr)), np.log(1e6) / 39)
    assert same(before, state(model, optimizer, scheduler))
    assert scheduler.get_last_lr() == [1e-3 * 0.9**2] == [g["lr"] for g in optimizer.param_groups]
    assert torch.equal(torch.rand(3), expected_random[0]) and random.random() == expected_random[1]
    np.random.set_state(np_state)
    assert [
        b[1].tolist() for b in train_loader
    ] == order_before  # the loader's shuffle was not advanced
    assert "FinderResult(lr=" in repr(result) and "max_stable_lr" in repr(result)


@pytest.mark.parametrize("error", [KeyboardInterrupt, RuntimeError])
def test_state_is_restored_when_the_test_is_interrupted(error):
    model, optimizer, scheduler = trained()
    before = state(model, optimizer, scheduler)
    calls = 0

    def interrupting(model, batch):
        nonlocal calls
        calls += 1
        if calls == 6:
            raise error("stop")
        return ce(model, batch)

    with pytest.raises(error):
        find_lr(model, optimizer, interrupting, loader(), steps=20, scheduler=scheduler)
    assert calls == 6
    assert same(before, state(model, optimizer, scheduler))


def test_same_seed_same_curve_and_other_seed_differs():
    runs = [find_lr(*trained()[:2], ce, loader(), steps=25, seed=seed) for seed in (1, 1, 2)]
    assert runs[0].trace == runs[1].trace and runs[0].lr == runs[1].lr
    assert not np.array_equal(runs[0].trace.loss, runs[2].trace.loss)  # dropout draws differ


def test_dict_batches_criterion_and_loss_inside_the_model():
    class Scorer(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.body = net()

        def forward(self, features, labels):
            return {"loss": nn.functional.cross_entropy(self.body(features), labels)}

    dicts = [{"features": x, "labels": y} for x, y in loader()]
    model = Scorer()
    inside = find_lr(model, torch.optim.SGD(model.parameters(), lr=0.1), None, dicts, steps=20)
    criterion = find_lr(
        model.body,
        torch.optim.SGD(model.parameters(), lr=0.1),
        nn.CrossEntropyLoss(),
        loader(),
        steps=20,
    )
    custom = find_lr(
        model.body,
        torch.optim.SGD(model.parameters(), lr=0.1),
        lambda m, b: nn.functional.cross_entropy(m(b["features"]), b["labels"]),
        dicts,
        steps=20,
    )
    assert inside.trace == custom.trace  # same batches, same loss, same seed
    assert len(criterion.trace) == 20 and np.isfinite(criterion.trace.loss).all()
    with pytest.raises(TypeError, match=r"criterion loss_fn .* needs \(inputs, targets\) batches"):
        find_lr(
            model.body,
            torch.optim.SGD(model.parameters(), lr=0.1),
            nn.CrossEntropyLoss(),
            dicts,
            steps=5,
        )


def test_gradient_accumulation_counts_optimizer_steps():
    model, optimizer, _ = trained()
    seen = []

    def counting(model, batch):
        seen.append(len(batch[0]))
        return ce(model, batch)

    result = find_lr(
        model,
        optimizer,
        counting,
        loader(),
        steps=12,
        accumulation_steps=3,
        stop_on_divergence=False,
    )
    assert len(result.trace) == 12 and len(seen) == 36
    assert result.trace.step.tolist() == list(range(12))


def test_bf16_autocast_on_cpu_and_fp16_refused_on_cpu():
    model, optimizer, _ = trained()
    dtypes = []

    def recording(model, batch):
        logits = model(batch[0])
        dtypes.append(logits.dtype)
        return nn.functional.cross_entropy(logits, batch[1])

    before = state(model, optimizer)
    result = find_lr(model, optimizer, recording, loader(), steps=15, precision="bf16")
    assert set(dtypes) == {torch.bfloat16} and np.isfinite(result.trace.loss).any()
    assert same(before, state(model, optimizer))
    with pytest.raises(ValueError, match="precision='fp16' needs a CUDA model"):
        find_lr(model, optimizer, ce, loader(), precision="fp16")


def test_param_groups_are_scaled_together_and_each_reported():
    model = net()
    optimizer = torch.optim.SGD(
        [
            {"params": model[0].parameters(), "lr": 0.01},
            {"params": model[4].parameters(), "lr": 0.1},
        ],
        lr=0.1,
    )
    seen = []

    def recording(m, batch):
        seen.append([group["lr"] for group in optimizer.param_groups])
        return ce(m, batch)

    result = find_lr(model, optimizer, recording, loader(), min_lr=1e-4, max_lr=10, steps=40)
    small, large = np.array(seen).T
    assert np.allclose(small / large, 0.1)
    assert np.array_equal(large, result.trace.lr)  # the sweep is the largest group's LR
    assert result.lr is not None and result.group_lrs == pytest.approx((result.lr / 10, result.lr))
    assert [g["lr"] for g in optimizer.param_groups] == [0.01, 0.1]
    assert "group_lrs=[" in repr(result)


def test_validation_mode_records_and_uses_the_validation_loss():
    model, optimizer, _ = trained()
    result = find_lr(
        model, optimizer, ce, loader(), val_loader=loader(64, seed=1), val_batches=1, steps=30
    )
    assert result.trace.val_loss is not None and np.isfinite(result.trace.val_loss).all()
    assert result.evidence["points"] <= len(result.trace)


def test_linear_sweep():
    model, optimizer, _ = trained()
    result = find_lr(
        model, optimizer, ce, loader(), min_lr=0.01, max_lr=1.0, steps=20, sweep="linear"
    )
    assert np.allclose(np.diff(result.trace.lr), 0.99 / 19)


def test_a_nan_loss_from_the_first_step_gives_no_suggestion_and_restores():
    model, optimizer, scheduler = trained()
    before = state(model, optimizer, scheduler)
    result = find_lr(
        model, optimizer, lambda m, b: ce(m, b) * math.nan, loader(), steps=10, scheduler=scheduler
    )
    assert result.lr is None and result.range is None and result.group_lrs is None
    assert "nan from the first step" in result.reason and "no usable curve" in repr(result)
    assert result.steps == 1 and "diverged" in result.stopped
    assert same(before, state(model, optimizer, scheduler))


def test_plot_marks_the_suggestion(tmp_path: Path):
    model, optimizer, _ = trained()
    result = find_lr(model, optimizer, ce, loader(), min_lr=1e-4, steps=30)
    figure = result.plot(path=tmp_path / "range.png")
    axes = figure.axes[0]
    assert axes.get_xscale() == "log" and (tmp_path / "range.png").stat().st_size > 1000
    assert any(f"{result.lr:.3g}" in text.get_text() for text in axes.get_legend().get_texts())


def test_find_task_lr_costs_at_most_a_tenth_of_a_run():
    result = lrkit.find_task_lr("cancer-logreg", seed=0)
    task = lrkit.get_task("cancer-logreg")
    assert result.steps <= task.steps // 10 and result.meta["task"] == "cancer-logreg"
    assert result.lr is not None and result.trace.meta["full_run_steps"] == task.steps
    assert find_task_lr("cancer-logreg", seed=0).trace == result.trace


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        (
            {"min_lr": 1.0, "max_lr": 0.1},
            ValueError,
            "min_lr must be < max_lr, got min_lr=1.0 >= max_lr=0.1",
        ),
        ({"min_lr": 0.0}, ValueError, "min_lr must be > 0, got 0.0"),
        ({"max_lr": -1.0}, ValueError, "max_lr must be > 0, got -1.0"),
        ({"steps": 0}, ValueError, "steps must be >= 2, got 0"),
        ({"steps": 2.5}, TypeError, "steps must be an integer, got 2.5"),
        ({"accumulation_steps": 0}, ValueError, "accumulation_steps must be >= 1, got 0"),
        ({"sweep": "log"}, ValueError, "sweep must be one of 'exponential', 'linear'; got 'log'"),
        ({"precision": "fp8"}, ValueError, "precision must be one of"),
    ],
)
def test_bad_options_are_named(options, error, message):
    model, optimizer, _ = trained()
    with pytest.raises(error, match=message):
        find_lr(model, optimizer, ce, loader(), **options)


def test_bad_objects_are_named_and_an_empty_loader_restores_state():
    model, optimizer, scheduler = trained()
    before = state(model, optimizer, scheduler)
    with pytest.raises(ValueError, match="train_loader is empty"):
        find_lr(model, optimizer, ce, [], scheduler=scheduler)
    assert same(before, state(model, optimizer, scheduler))
    with pytest.raises(TypeError, match="train_loader must be re-iterable .* got an iterator"):
        find_lr(model, optimizer, ce, iter(loader()))
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got str"):
        find_lr("model", optimizer, ce, loader())
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got NoneType"):
        find_lr(model, None, ce, loader())
    with pytest.raises(TypeError, match="loss_fn must be callable or None, got int"):
        find_lr(model, optimizer, 3, loader())


def _ddp_body(rank: int) -> dict:
    model = nn.parallel.DistributedDataParallel(net(0))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    rank_loader = loader(seed=rank)  # each rank sees its own data
    torch.manual_seed(0)  # the dropout draws the range test's first step will make
    with torch.no_grad():
        local_first = ce(model.module, next(iter(rank_loader))).item()
    rank_loader.generator.manual_seed(rank)  # rewind the shuffle for the range test
    before = state(model, optimizer)
    result = find_lr(model, optimizer, ce, rank_loader, min_lr=1e-4, max_lr=10, steps=12)
    figure = result.plot()
    return {
        "loss": result.trace.loss.tolist(),
        "lr": result.lr,
        "restored": same(before, state(model, optimizer)),
        "plotted": figure is not None,
        "local_first": local_first,
    }


@pytest.mark.timeout(300)
def test_ddp_with_gloo_two_processes_share_one_curve(tmp_path: Path):
    reports = run_two_ranks(_ddp_body, tmp_path)
    assert reports[0]["loss"] == reports[1]["loss"] and reports[0]["lr"] == reports[1]["lr"]
    assert reports[0]["restored"] and reports[1]["restored"]
    assert [r["plotted"] for r in reports] == [True, False]  # only rank 0 draws
    firsts = [report["local_first"] for report in reports]
    assert firsts[0] != firsts[1]  # so the shared first loss is the mean over ranks
    assert reports[0]["loss"][0] == pytest.approx(sum(firsts) / 2, rel=1e-5)


def test_snapshot_in_a_directory_restores_and_leaves_no_file(tmp_path: Path):
    model, optimizer, scheduler = trained()
    before = state(model, optimizer, scheduler)
    result = find_lr(model, optimizer, ce, loader(), steps=15, directory=tmp_path)
    assert len(result.trace) == 15 or "diverged" in result.stopped
    assert same(before, state(model, optimizer, scheduler)) and not any(tmp_path.iterdir())


def test_a_loss_that_is_not_one_number_and_a_non_bool_flag_are_named():
    model, optimizer, scheduler = trained()
    before = state(model, optimizer, scheduler)
    per_sample = lambda model, batch: nn.functional.cross_entropy(model(batch[0]), batch[1], reduction="none")  # noqa: E731
    with pytest.raises(ValueError, match=r"the loss must be a single-element tensor, got shape \(32,\); reduce it"):
        find_lr(model, optimizer, per_sample, loader(), scheduler=scheduler, steps=5)
    assert same(before, state(model, optimizer, scheduler))
    with pytest.raises(TypeError, match="stop_on_divergence must be True or False, got 'no'"):
        find_lr(model, optimizer, ce, loader(), stop_on_divergence="no")
