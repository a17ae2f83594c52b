"""Mixed precision and gradient accumulation, as a user trains: the range test and the guard with
bf16 autocast, bf16 and fp16 weights, a CPU GradScaler, schedulers and awkward loaders."""

from __future__ import annotations

import copy
import random

import numpy as np
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, IterableDataset, TensorDataset

from lrkit import Guard, GuardStop, find_lr
from torch_state import clone, same

torch.set_num_threads(1)  # tiny models: one thread is fastest and keeps runs comparable


def loader(samples: int = 256, seed: int = 0) -> DataLoader:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, 10, generator=generator)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return DataLoader(
        TensorDataset(x, y), batch_size=32, shuffle=True, generator=torch.Generator().manual_seed(seed)
    )


def classifier(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(10, 32), nn.BatchNorm1d(32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))


def ce(model: nn.Module, batch) -> torch.Tensor:
    inputs, targets = batch
    inputs = inputs.to(next(model.parameters()).dtype)  # a model held in bf16 takes bf16 inputs
    return nn.functional.cross_entropy(model(inputs), targets)


def regression(seed: int = 0):
    """A deterministic model (no dropout, no batch norm), SGD (whose steps show any stray scale) and batches."""
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 1))
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(seed + 1)
    batches = []
    for _ in range(80):
        x = torch.randn(32, 4, generator=generator)
        batches.append((x, x.sum(1, keepdim=True)))
    return model, optimizer, batches


def mse(model: nn.Module, batch) -> torch.Tensor:
    x, y = batch
    return nn.functional.mse_loss(model(x), y)


def everything(model, optimizer, scheduler=None, scaler=None) -> dict:
    return {
        "model": clone(model.state_dict()),
        "grads": [clone(p.grad) for p in model.parameters()],
        "training": [m.training for m in model.modules()],
        "optimizer": clone(optimizer.state_dict()),
        "scheduler": None if scheduler is None else clone(scheduler.state_dict()),
        "scaler": None if scaler is None else scaler.state_dict(),
        "rng": (torch.get_rng_state(), random.getstate(), np.random.get_state()[1].tolist()),
    }


def assert_steps_like_fp32(model, optimizer, scaler, batch) -> None:
    """The next ``scaler.step`` moves the weights as a plain float32 step would: nothing stale is left."""
    plain, plain_optimizer = copy.deepcopy(model), copy.deepcopy(optimizer)
    plain_optimizer.param_groups[0]["params"] = list(plain.parameters())
    plain_optimizer.zero_grad()
    mse(plain, batch).backward()
    plain_optimizer.step()
    optimizer.zero_grad()
    scaler.scale(mse(model, batch)).backward()
    scaler.step(optimizer)
    scaler.update()
    for ours, theirs in zip(model.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(ours, theirs)


@pytest.mark.parametrize("interrupt", [None, KeyboardInterrupt])
@pytest.mark.parametrize("weights", ["fp32 under bf16 autocast", "bf16"])
def test_the_range_test_puts_back_a_mixed_precision_setup_bit_for_bit(weights, interrupt):
    """Two groups with their own LR and weight decay, OneCycleLR and a CPU GradScaler mid-run."""
    model = classifier() if weights.startswith("fp32") else classifier().to(torch.bfloat16)
    optimizer = torch.optim.AdamW(
        [
            {"params": model[0].parameters(), "lr": 1e-3, "weight_decay": 0.1},
            {"params": [*model[1].parameters(), *model[4].parameters()], "lr": 1e-2, "weight_decay": 0.0},
        ]
    )
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=[1e-3, 1e-2], total_steps=100)
    scaler = torch.amp.GradScaler("cpu", init_scale=256.0, growth_interval=2)
    for batch in list(loader())[:3]:
        optimizer.zero_grad()
        scaler.scale(ce(model, batch)).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
    before = everything(model, optimizer, scheduler, scaler)
    calls = 0

    def loss_fn(model, batch):
        nonlocal calls
        calls += 1
        if calls == 12 and interrupt is not None:
            raise interrupt
        return ce(model, batch)

    precision = "bf16" if weights.startswith("fp32") else "fp32"
    options = {"scheduler": scheduler, "scaler": scaler, "precision": precision, "steps": 20}
    if interrupt is None:
        result = find_lr(model, optimizer, loss_fn, loader(), **options)
        assert np.isfinite(result.trace.loss).all() and len(result.trace.loss) > 12
    else:
        with pytest.raises(interrupt):
            find_lr(model, optimizer, loss_fn, loader(), **options)
    assert same(before, everything(model, optimizer, scheduler, scaler))


def test_an_interrupt_inside_the_scalers_step_leaves_the_scaler_ready_for_the_next_step():
    """Ctrl-C while the optimizer steps, after the scaler unscaled the gradients: the next
    ``scaler.step`` must unscale again, not apply gradients still multiplied by the scale."""
    model, optimizer, batches = regression()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    calls = 0

    def ctrl_c(optimizer, args, kwargs):
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt

    hook = optimizer.register_step_pre_hook(ctrl_c)
    before = everything(model, optimizer, scaler=scaler)
    with pytest.raises(KeyboardInterrupt):
        find_lr(model, optimizer, mse, batches, scaler=scaler, steps=20)
    hook.remove()
    assert same(before, everything(model, optimizer, scaler=scaler))
    assert_steps_like_fp32(model, optimizer, scaler, batches[0])


def test_after_a_guard_stop_the_grad_scaler_is_the_snapshots_and_ready():
    """The user catches GuardStop, lowers the LR and goes on with the same scaler."""
    model, optimizer, batches = regression()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    guard = Guard(model, optimizer, scaler=scaler, max_rollbacks=0)
    with pytest.raises(GuardStop):
        for step, batch in enumerate(batches):
            optimizer.zero_grad()
            loss = mse(model, batch) * (1000.0 if step >= 30 else 1.0)
            scaler.scale(loss).backward()
            guard.step(loss)
    assert scaler.state_dict()["_growth_tracker"] == 0  # the snapshot's, taken when the guard was made
    optimizer.param_groups[0]["lr"] *= 0.1
    assert_steps_like_fp32(model, optimizer, scaler, batches[-1])


def test_steps_the_guard_refuses_leave_the_grad_scalers_count_alone():
    """A rollback puts the scaler back at the snapshot; the batches skipped after it are not
    counted as good steps (the scale grows after ``growth_interval`` good steps)."""
    model, optimizer, batches = regression()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=1000)
    guard = Guard(model, optimizer, scaler=scaler, snapshot_every=10, skip_batches=3)
    counts = []
    for step, batch in enumerate(batches[:50]):
        optimizer.zero_grad()
        loss = mse(model, batch) * (1000.0 if 40 <= step < 43 else 1.0)
        scaler.scale(loss).backward()
        guard.step(loss)
        counts.append(scaler.state_dict()["_growth_tracker"])
    assert guard.rollbacks == 1 and guard.last_good_step == 40  # steps 0..39 applied, then a spike
    assert counts[39:47] == [40, 41, 42, 40, 40, 40, 40, 41]  # rolled back at 42, skipped 43-45
    assert scaler.get_scale() == 1024.0


def test_float16_weights_with_a_gradient_norm_past_65504_are_not_skipped():
    """Every gradient is finite; only their norm, taken in float16, would overflow."""
    model = nn.Linear(256, 256).half()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-6)
    guard = Guard(model, optimizer)
    loss = model(torch.full((64, 256), 10.0, dtype=torch.float16)).float().sum()
    loss.backward()  # each weight's gradient is 640: the norm is 640 * 256
    assert guard.grad_norm() == pytest.approx(640.0 * 256, rel=1e-3)
    weight = model.weight.detach().clone()
    assert guard.step(loss) and guard.skipped == 0
    assert not torch.equal(model.weight, weight)


class OneShot(IterableDataset):
    """A stream over a generator: it can be read once, and no check can tell beforehand."""

    def __init__(self, batches: list) -> None:
        self.batches = (batch for batch in batches)

    def __iter__(self):
        return self.batches


def test_an_iterator_is_refused_unread_and_a_one_shot_loader_is_named_when_it_runs_dry():
    model = classifier()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    batches = list(loader())
    generator = (batch for batch in batches)
    with pytest.raises(TypeError, match=r"re-iterable .* got an iterator \(generator\)"):
        find_lr(model, optimizer, ce, generator)
    assert len(list(generator)) == len(batches)  # not a batch was read
    before = everything(model, optimizer)
    with pytest.raises(ValueError, match="train_loader yielded 8 batches, then none when iterated again"):
        find_lr(model, optimizer, ce, DataLoader(OneShot(batches), batch_size=None), steps=20)
    assert same(before, everything(model, optimizer))


def test_a_tensor_lr_is_swept_and_put_back_in_the_same_tensor():
    """A fused or capturable optimizer's LR tensor may be held elsewhere (a captured CUDA graph)."""
    model = classifier()
    lr = torch.tensor(1e-3)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, fused=True)
    seen = []

    def recording(model, batch):
        seen.append(float(lr))
        return ce(model, batch)

    find_lr(model, optimizer, recording, loader(), min_lr=1e-5, max_lr=1.0, steps=10)
    assert optimizer.param_groups[0]["lr"] is lr and float(lr) == pytest.approx(1e-3)
    assert seen[0] == pytest.approx(1e-5) and seen[-1] > 1e-2  # the sweep ran in that tensor
