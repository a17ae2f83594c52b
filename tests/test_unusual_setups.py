"""find_lr and Guard on setups off the beaten path: closure optimizers, persistent loader workers,
clipping under a GradScaler, ReduceLROnPlateau, sparse gradients, tensor LRs, torch.no_grad()."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

import lrkit
from lrkit.torch.finder import find_lr
from test_finder import ce, loader, net, state
from torch_state import same

torch.set_num_threads(1)


def test_a_closure_optimizer_is_refused_by_name_and_nothing_changes():
    model = net()
    optimizer = torch.optim.LBFGS(model.parameters(), lr=1)
    before = state(model, optimizer)
    with pytest.raises(
        TypeError, match=r"optimizer must step without a closure, got LBFGS.*SGD, Adam"
    ):
        find_lr(model, optimizer, ce, loader(), steps=10)
    with pytest.raises(TypeError, match=r"optimizer must step without a closure, got LBFGS"):
        lrkit.Guard(model, optimizer)
    assert same(before, state(model, optimizer))


class Augmented(Dataset):
    """Each item draws from the worker's torch RNG (an augmentation) and carries its index."""

    def __len__(self) -> int:
        return 64

    def __getitem__(self, index: int):
        x = torch.cat([torch.rand(9), torch.tensor([float(index)])])
        return x, torch.tensor(index % 3)


def persistent() -> DataLoader:
    return DataLoader(
        Augmented(),
        batch_size=16,
        shuffle=True,
        num_workers=2,
        persistent_workers=True,
        generator=torch.Generator().manual_seed(1),
    )


def test_persistent_workers_are_left_as_they_were():
    """The next epochs read the order and augmentations they would have without the test, and an
    epoch of yours under way is not reset by it."""
    expected = [[batch[0].tolist() for batch in reference] for reference in [persistent()] * 2]
    train_loader = persistent()
    find_lr(
        net(),
        torch.optim.SGD(net().parameters(), lr=0.1),
        ce,
        train_loader,
        steps=6,
        val_loader=train_loader,
        val_batches=1,
    )
    assert [[batch[0].tolist() for batch in train_loader] for _ in range(2)] == expected

    train_loader = persistent()
    under_way, reference = iter(train_loader), iter(persistent())
    for _ in range(2):
        next(reference), next(under_way)
    find_lr(net(), torch.optim.SGD(net().parameters(), lr=0.1), ce, train_loader, steps=6)
    assert [b[0].tolist() for b in under_way] == [b[0].tolist() for b in reference]


def amp_step(model, optimizer, scaler, batch, clip: float):
    optimizer.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ce(model, batch)
    scaler.scale(loss).backward()
    scaler.unscale_(optimizer)  # to clip the true gradients, as the PyTorch AMP recipe does
    nn.utils.clip_grad_norm_(model.parameters(), clip)
    return loss


def test_the_guard_accepts_gradients_you_unscaled_to_clip():
    batches = list(loader())[:4]
    models = [net(), net()]
    optimizers = [torch.optim.SGD(m.parameters(), lr=0.1) for m in models]
    scalers = [torch.amp.GradScaler("cpu", init_scale=2.0**10) for _ in models]
    guard = lrkit.Guard(models[0], optimizers[0], scaler=scalers[0])
    for step, batch in enumerate(batches):
        torch.manual_seed(step)  # the same dropout masks in both runs
        assert guard.step(amp_step(models[0], optimizers[0], scalers[0], batch, clip=0.5))
        torch.manual_seed(step)
        amp_step(models[1], optimizers[1], scalers[1], batch, clip=0.5)
        scalers[1].step(optimizers[1])
        scalers[1].update()
    assert same(models[0].state_dict(), models[1].state_dict())
    assert scalers[0].get_scale() == scalers[1].get_scale()


def test_reduce_lr_on_plateau_is_left_to_you_to_step():
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, patience=0)
    guard = lrkit.Guard(model, optimizer, scheduler=plateau)
    for batch in list(loader())[:3]:
        optimizer.zero_grad()
        loss = ce(model, batch)
        loss.backward()
        assert guard.step(loss)
    plateau.step(1.0)
    plateau.step(1.0)  # no better: cut
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.01)


def test_the_guard_measures_sparse_gradients():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Embedding(50, 8, sparse=True), nn.Flatten(), nn.Linear(32, 3))
    optimizer = torch.optim.SparseAdam(list(model[0].parameters()), lr=1e-2)
    guard = lrkit.Guard(model, optimizer)
    tokens, targets = torch.randint(0, 50, (16, 4)), torch.randint(0, 3, (16,))
    loss = ce(model, (tokens, targets))
    loss.backward()
    dense = model[0].weight.grad.to_dense().norm().item()
    assert guard.grad_norm() == pytest.approx(dense, rel=1e-6)
    assert guard.step(loss)
    optimizer.zero_grad()
    loss = ce(model, (tokens, targets))
    loss.backward()
    model[0].weight.grad.mul_(float("nan"))
    weights = model[0].weight.detach().clone()
    assert not guard.step(loss) and guard.skipped == 1
    assert torch.equal(weights, model[0].weight)


def test_a_framework_scheduler_step_on_a_tensor_lr_is_undone():
    """The callbacks undo a refused step's scheduler step; a tensor LR is changed in place by it."""
    model = net()
    optimizer = torch.optim.Adam(model.parameters(), lr=torch.tensor(0.01), fused=True)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=0.5)
    lr = optimizer.param_groups[0]["lr"]
    guard = lrkit.Guard(model, optimizer, scheduler=scheduler)
    guard.hold_schedule()
    optimizer.step()
    scheduler.step()
    guard.release_schedule()
    assert optimizer.param_groups[0]["lr"] is lr and lr.item() == pytest.approx(0.01)
    assert scheduler.last_epoch == 0


def test_the_range_test_trains_when_called_under_no_grad():
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = state(model, optimizer)
    with torch.no_grad():
        result = find_lr(model, optimizer, ce, loader(), steps=12)
        assert not torch.is_grad_enabled()
    assert result.steps == 12 and same(before, state(model, optimizer))


@pytest.mark.parametrize(
    "returned", [lambda loss: loss.item(), lambda loss: (loss, {"accuracy": 0.5})]
)
def test_a_loss_fn_returning_a_float_or_a_tuple_is_told_what_to_return(returned):
    model = net()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    before = state(model, optimizer)
    with pytest.raises(TypeError, match=r"got (float|tuple) from loss_fn; return the loss tensor"):
        find_lr(model, optimizer, lambda m, batch: returned(ce(m, batch)), loader(), steps=10)
    assert same(before, state(model, optimizer))


def test_a_learnable_weight_of_the_loss_outside_the_model_comes_back_too():
    # the optimizer also steps a parameter no module of the model holds (a loss's learnable
    # temperature, multi-task weights): the range test and a guard rollback must restore it
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3))
    temperature = nn.Parameter(torch.tensor(1.0))
    optimizer = torch.optim.Adam([*model.parameters(), temperature], lr=1e-3)
    batches = [(torch.randn(16, 4), torch.randint(0, 3, (16,))) for _ in range(8)]

    def loss_fn(model, batch):
        x, y = batch
        return nn.functional.cross_entropy(model(x) / temperature, y)

    lrkit.find_lr(model, optimizer, loss_fn, batches, steps=20)
    assert temperature.item() == 1.0 and temperature not in optimizer.state

    guard = lrkit.Guard(model, optimizer, snapshot_every=1000)
    for batch in batches:
        optimizer.zero_grad()
        loss = loss_fn(model, batch)
        loss.backward()
        guard.step(loss)
    assert temperature.item() != 1.0
    guard.rewind()
    assert temperature.item() == 1.0


def test_a_fully_frozen_model_is_refused_before_any_step():
    model = nn.Linear(4, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    model.requires_grad_(False)
    batches = [(torch.randn(8, 4), torch.randint(0, 2, (8,)))]
    with pytest.raises(ValueError, match="optimizer has no parameter that requires grad"):
        find_lr(model, optimizer, nn.CrossEntropyLoss(), batches, steps=5)
