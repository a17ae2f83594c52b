"""The guard's memory goes into a checkpoint and comes back: a resumed run judges as the
uninterrupted one would (plain loop), and a Lightning fit resumed from ``ckpt_path`` keeps it."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrkit import Guard, load_checkpoint, save_checkpoint
from lrkit.integrations.lightning import GuardCallback
from lrkit.tasks.training import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def built():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=200)
    return model, optimizer, scheduler


def batches(n: int = 140):
    generator = torch.Generator().manual_seed(1)
    return [torch.randn(32, 4, generator=generator) for _ in range(n)]


def train(guard, model, optimizer, data, start: int) -> None:
    for step, x in enumerate(data, start=start):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
        if step in (60, 61, 62, 110, 111, 112):
            loss = loss * 1e4  # two spikes: one before the checkpoint, one after
        loss.backward()
        guard.step(loss)
        if step % 20 == 19:
            guard.should_stop(1.0 / (1 + step) if step < 70 else 1.0)


def test_a_run_resumed_from_a_checkpoint_goes_on_as_the_uninterrupted_one(tmp_path):
    data = batches()
    model, optimizer, scheduler = built()
    uninterrupted = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=3)
    train(uninterrupted, model, optimizer, data, 0)

    model, optimizer, scheduler = built()
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=3)
    train(guard, model, optimizer, data[:80], 0)
    save_checkpoint(tmp_path / "run.pt", model, optimizer, scheduler=scheduler, guard=guard, step=80)
    model, optimizer, scheduler = built()
    resumed = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=3)
    # the guard's state is plain numbers, read back with weights_only=True, and loaded last
    assert load_checkpoint(tmp_path / "run.pt", model, optimizer, scheduler=scheduler, guard=resumed).step == 80
    assert resumed.lr_scale == pytest.approx(0.3) and resumed.rollbacks == 1 and resumed.steps == 80
    train(resumed, model, optimizer, data[80:], 80)

    assert resumed.rollbacks == uninterrupted.rollbacks == 2
    assert resumed.lr_scale == uninterrupted.lr_scale and resumed.steps == uninterrupted.steps
    assert resumed.best_val_loss == uninterrupted.best_val_loss
    assert [e.step for e in resumed.trace.events] == [e.step for e in uninterrupted.trace.events if e.step >= 80]
    assert resumed.trace.loss.tolist() == uninterrupted.trace.loss[80:].tolist()


def test_early_stopping_after_a_resume_keeps_the_patience_and_says_the_best_weights_are_gone():
    model, optimizer, _ = built()
    guard = Guard(model, optimizer, patience=2)
    guard.should_stop(0.5)
    guard.should_stop(0.6)  # one validation without progress
    resumed = Guard(model, optimizer, patience=2)
    resumed.load_state_dict(guard.state_dict())
    before = [p.detach().clone() for p in model.parameters()]
    assert resumed.should_stop(0.7) is True  # the second without progress: patience carried over
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    (event,) = resumed.trace.events
    assert event.kind == "early_stop" and "came before the resume and were not kept" in event.detail
    with pytest.raises(RuntimeError, match=r"best weights \(val_loss 0.5\) came before load_state_dict"):
        resumed.restore_best()


def test_a_state_that_is_not_the_guards_is_refused_by_name():
    model, optimizer, _ = built()
    guard = Guard(model, optimizer)
    with pytest.raises(TypeError, match="state must be a dict from Guard.state_dict"):
        guard.load_state_dict([1, 2])
    with pytest.raises(ValueError, match="it lacks accepted, applied"):
        guard.load_state_dict({"steps": 3})
    assert guard.steps == 0  # nothing was taken from a refused state


class Spiking(pl.LightningModule):
    def __init__(self, spike_at: int | None = None) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1))
        self.spike_at = spike_at

    def training_step(self, batch, batch_idx):
        (x,) = batch
        loss = nn.functional.mse_loss(self.net(x), x.sum(dim=1, keepdim=True))
        if self.spike_at is not None and self.spike_at <= self.global_step < self.spike_at + 3:
            loss = loss * 1e4
        return loss

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=1e-2)
        return [optimizer], [torch.optim.lr_scheduler.StepLR(optimizer, step_size=1000)]


def test_a_lightning_fit_resumed_from_ckpt_path_keeps_the_guards_memory(tmp_path):
    loader = DataLoader(TensorDataset(torch.randn(2048, 4, generator=torch.Generator().manual_seed(0))), batch_size=32)
    settings = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                    enable_checkpointing=False)
    first = GuardCallback(snapshot_every=10, skip_batches=2)
    trainer = pl.Trainer(max_steps=40, callbacks=[first], **settings)
    trainer.fit(Spiking(spike_at=25), loader)
    assert first.guard.rollbacks == 1 and first.guard.lr_scale == pytest.approx(0.3)
    trainer.save_checkpoint(tmp_path / "run.ckpt")

    second = GuardCallback(snapshot_every=10, skip_batches=2)
    pl.Trainer(max_steps=50, callbacks=[second], **settings).fit(Spiking(), loader, ckpt_path=tmp_path / "run.ckpt")
    assert second.guard.rollbacks == 1 and second.guard.lr_scale == pytest.approx(0.3)
    assert second.guard.steps == first.guard.steps + 10
    assert math.isclose(second.guard.optimizer.param_groups[0]["lr"], 1e-2 * 0.3)


def test_a_hugging_face_run_resumed_from_a_checkpoint_keeps_the_guards_memory(tmp_path, caplog):
    from transformers import Trainer

    from lrkit.integrations.hf import GuardCallback as HFGuard
    from test_trainers_acceptance import Tokens, arguments, llama

    args = arguments(tmp_path, per_device_train_batch_size=2, save_strategy="steps", save_steps=20, max_steps=40)
    first = HFGuard(snapshot_every=5, skip_batches=2)
    Trainer(model=llama(blow_up=range(25, 31)), args=args, train_dataset=Tokens(128), callbacks=[first]).train()
    assert first.guard.rollbacks == 1 and (tmp_path / "checkpoint-40" / "lrkit_guard.json").is_file()

    args = arguments(tmp_path, per_device_train_batch_size=2, save_strategy="no", max_steps=50)
    second = HFGuard(snapshot_every=5, skip_batches=2)
    trainer = Trainer(model=llama(), args=args, train_dataset=Tokens(128), callbacks=[second])
    trainer.train(resume_from_checkpoint=str(tmp_path / "checkpoint-40"))
    assert second.guard.rollbacks == 1 and second.guard.lr_scale == first.guard.lr_scale == pytest.approx(0.3)
    assert second.guard.steps == 50

    (tmp_path / "checkpoint-20" / "lrkit_guard.json").unlink()  # a checkpoint saved without the callback
    third = HFGuard()
    with caplog.at_level("WARNING", logger="lrkit.guard"):
        Trainer(model=llama(), args=args, train_dataset=Tokens(128), callbacks=[third]).train(
            resume_from_checkpoint=str(tmp_path / "checkpoint-20")
        )
    assert third.guard.lr_scale == 1 and "resumed without the guard's state" in caplog.text
