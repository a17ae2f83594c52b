"""Snapshot.take / restore: bit-exact, in place, on every exit path, in memory or in a directory."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch import nn

from lrkit.torch.snapshot import Snapshot
from torch_state import clone, same


def setup(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 3))
    optimizer = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "lr": 1e-3},
            {"params": [*model[1].parameters(), *model[3].parameters()], "lr": 3e-3},
        ],
        weight_decay=0.01,
    )
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.5)
    scaler = torch.amp.GradScaler("cpu")
    return model, optimizer, scheduler, scaler


def train(model, optimizer, scheduler, scaler, steps: int, lr: float | None = None) -> None:
    for _ in range(steps):
        if lr is not None:
            for group in optimizer.param_groups:
                group["lr"] = lr
        x, y = torch.randn(16, 6), torch.randint(0, 3, (16,))
        optimizer.zero_grad()
        loss = nn.functional.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        random.random()
        np.random.rand()


def everything(model, optimizer, scheduler, scaler):
    return {
        "model": clone(model.state_dict()),
        "grads": [clone(p.grad) for p in model.parameters()],
        "optimizer": clone(optimizer.state_dict()),
        "scheduler": clone(scheduler.state_dict()),
        "scaler": scaler.state_dict(),
        "training": [m.training for m in model.modules()],
    }


def next_randoms():
    return torch.rand(4), random.random(), np.random.rand(3)


def test_restore_is_bit_exact_and_in_place():
    model, optimizer, scheduler, scaler = setup()
    train(model, optimizer, scheduler, scaler, steps=3)
    before = everything(model, optimizer, scheduler, scaler)
    params = list(model.parameters())
    adam_state = {p: dict(optimizer.state[p]) for p in params}
    groups = list(optimizer.param_groups)
    snapshot = Snapshot.take(model, optimizer, scheduler=scheduler, scaler=scaler)
    expected_randoms = next_randoms()

    train(model, optimizer, scheduler, scaler, steps=4, lr=5.0)
    model.eval()
    assert not same(before["model"], everything(model, optimizer, scheduler, scaler)["model"])

    snapshot.restore()
    assert same(before, everything(model, optimizer, scheduler, scaler))
    # the user's references still point at live objects
    assert all(a is b for a, b in zip(params, model.parameters(), strict=True))
    assert all(a is b for a, b in zip(groups, optimizer.param_groups, strict=True))
    for p in params:
        for key, tensor in adam_state[p].items():
            assert optimizer.state[p][key] is tensor
    randoms = next_randoms()
    assert torch.equal(randoms[0], expected_randoms[0])
    assert randoms[1] == expected_randoms[1]
    assert np.array_equal(randoms[2], expected_randoms[2])


def test_restore_can_repeat_and_training_continues_identically():
    model, optimizer, scheduler, scaler = setup()
    train(model, optimizer, scheduler, scaler, steps=2)
    snapshot = Snapshot.take(model, optimizer, scheduler=scheduler, scaler=scaler)
    train(model, optimizer, scheduler, scaler, steps=3)
    first = everything(model, optimizer, scheduler, scaler)
    for _ in range(2):
        snapshot.restore()
        train(model, optimizer, scheduler, scaler, steps=3)
        assert same(first, everything(model, optimizer, scheduler, scaler))


def test_fresh_optimizer_state_and_missing_grads_come_back_empty():
    model, optimizer, _, _ = setup()
    assert not optimizer.state and all(p.grad is None for p in model.parameters())
    with Snapshot.take(model, optimizer):
        nn.functional.mse_loss(model(torch.randn(4, 6)), torch.zeros(4, 3)).backward()
        optimizer.step()
        optimizer.add_param_group({"params": [nn.Parameter(torch.ones(2))], "lr": 1.0})
    assert not optimizer.state
    assert len(optimizer.param_groups) == 2
    assert all(p.grad is None for p in model.parameters())


def test_context_manager_restores_on_exception_and_keyboard_interrupt():
    model, optimizer, scheduler, scaler = setup()
    train(model, optimizer, scheduler, scaler, steps=2)
    before = everything(model, optimizer, scheduler, scaler)
    for error in (RuntimeError("boom"), KeyboardInterrupt()):
        with (
            pytest.raises(type(error)),
            Snapshot.take(model, optimizer, scheduler=scheduler, scaler=scaler),
        ):
            train(model, optimizer, scheduler, scaler, steps=2, lr=1.0)
            raise error
        assert same(before, everything(model, optimizer, scheduler, scaler))


def test_directory_snapshot_is_a_weights_only_file_and_discard_removes_it(tmp_path):
    model, optimizer, scheduler, scaler = setup()
    train(model, optimizer, scheduler, scaler, steps=2)
    before = everything(model, optimizer, scheduler, scaler)
    snapshot = Snapshot.take(model, optimizer, scheduler=scheduler, directory=tmp_path)
    assert snapshot.path is not None and snapshot.path.parent == tmp_path
    saved = torch.load(snapshot.path, weights_only=True)
    assert sum(t.numel() * t.element_size() for t in saved) == snapshot.nbytes
    assert [p.name for p in tmp_path.iterdir()] == [snapshot.path.name]  # no temp file left

    train(model, optimizer, scheduler, scaler, steps=2, lr=1.0)
    snapshot.restore()
    after = everything(model, optimizer, scheduler, scaler)
    assert same(
        {k: v for k, v in before.items() if k != "scaler"},
        {k: v for k, v in after.items() if k != "scaler"},
    )
    snapshot.discard()
    assert not any(tmp_path.iterdir())
    with pytest.raises(RuntimeError, match="discarded"):
        snapshot.restore()


def test_replaced_parameters_and_buffers_are_put_back():
    model, optimizer, _, _ = setup()
    weight, running_mean = model[0].weight, model[1].running_mean
    expected = weight.detach().clone()
    with Snapshot.take(model, optimizer):
        model[0].weight = nn.Parameter(torch.zeros(8, 6))
        model[1].running_mean = torch.ones(8)
        weight.data = torch.zeros(2, 2)  # even a shape change of the original is undone
    assert model[0].weight is weight and torch.equal(weight, expected)
    assert model[1].running_mean is running_mean and torch.equal(running_mean, torch.zeros(8))


def test_tied_weights_are_stored_once_and_stay_tied():
    embed = nn.Embedding(10, 4)
    head = nn.Linear(4, 10, bias=False)
    head.weight = embed.weight
    model = nn.ModuleList([embed, head])
    snapshot = Snapshot.take(model, rng=False)
    assert snapshot.nbytes == 10 * 4 * 4
    original = embed.weight.detach().clone()
    with torch.no_grad():
        embed.weight.add_(1.0)
    snapshot.restore()
    assert head.weight is embed.weight and torch.equal(embed.weight, original)


def test_rng_can_be_left_alone():
    model, *_ = setup()
    snapshot = Snapshot.take(model, rng=False)
    torch.rand(3)
    expected = torch.rand(3)
    torch.manual_seed(123)
    torch.rand(3)
    snapshot.restore()
    assert not torch.equal(torch.rand(3), expected)  # the generator moved on; not rewound
    assert "RNG" not in repr(snapshot)


def test_repr_says_what_is_held():
    model, optimizer, scheduler, scaler = setup()
    text = repr(Snapshot.take(model, optimizer, scheduler=scheduler, scaler=scaler))
    assert (
        "AdamW state" in text and "StepLR" in text and "GradScaler" in text and "CPU memory" in text
    )


@pytest.mark.parametrize(
    ("arguments", "options", "message"),
    [
        (("not a model",), {}, "model must be a torch.nn.Module, got str"),
        (
            (nn.Linear(2, 2), "sgd"),
            {},
            "optimizer must be a torch.optim.Optimizer or None, got str",
        ),
        ((nn.Linear(2, 2),), {"scheduler": 3}, "scheduler must have state_dict"),
        ((nn.Linear(2, 2),), {"rng": "yes"}, "rng must be True or False, got 'yes'"),
        ((nn.Linear(2, 2),), {"directory": 5}, "directory must be a path or None, got int"),
    ],
)
def test_bad_arguments_are_named(arguments, options, message):
    with pytest.raises(TypeError, match=message):
        Snapshot.take(*arguments, **options)


def test_snapshot_is_made_by_take_only():
    with pytest.raises(TypeError, match="Snapshot.take"):
        Snapshot()
