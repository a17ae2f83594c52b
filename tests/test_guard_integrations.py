"""The guard as a Lightning callback and as a Hugging Face Trainer callback, on tiny real runs (CPU)."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from transformers import Trainer, TrainingArguments

from lrkit.integrations.hf import GuardCallback as HFGuard
from lrkit.integrations.lightning import GuardCallback as LightningGuard
from lrkit.tasks.training import torch_threads


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def regression(n: int = 256, seed: int = 0, poison: tuple[int, ...] = ()):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 4, generator=generator)
    y = x.sum(dim=1, keepdim=True)
    for index in poison:
        x[index] = math.nan
    return x, y


class Regressor(pl.LightningModule):
    """A tiny Lightning module; ``blow_up`` multiplies the loss of the batches it names."""

    def __init__(self, lr: float = 1e-2, blow_up: range = range(0)):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        self.lr, self.blow_up, self.batches = lr, blow_up, 0

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        if self.batches in self.blow_up:
            loss = loss * 1e4
        self.batches += 1
        return loss

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self):
        optimizer = torch.optim.Adam(self.parameters(), lr=self.lr)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + 0.01 * step))
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def fit(module, callback, *, x, y, epochs=1, val=None):
    trainer = pl.Trainer(
        max_epochs=epochs,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[callback],
    )
    train = DataLoader(TensorDataset(x, y), batch_size=8)
    trainer.fit(module, train, val)
    return trainer


def test_lightning_skips_a_nan_batch_without_moving_the_schedule():
    x, y = regression(poison=(8 * 20,))  # the 21st batch carries a NaN
    module, callback = Regressor(), LightningGuard()
    trainer = fit(module, callback, x=x, y=y)
    guard = callback.guard
    assert guard.skipped == 1 and guard.rollbacks == 0
    assert [e.kind for e in guard.trace.events] == ["skip"] and guard.trace.events[0].step == 20
    assert all(torch.isfinite(p).all() for p in module.parameters())
    scheduler = trainer.lr_scheduler_configs[0].scheduler
    assert scheduler.last_epoch == 32 - 1  # 32 batches, one refused: the schedule moved 31 times
    assert len(guard.trace) == 32


def test_lightning_rolls_back_a_spike_and_cuts_the_lr():
    x, y = regression(n=8 * 80)
    module = Regressor(blow_up=range(60, 63))
    callback = LightningGuard(snapshot_every=20, skip_batches=2, lr_factor=0.5)
    fit(module, callback, x=x, y=y)
    guard = callback.guard
    assert guard.rollbacks == 1 and guard.lr_scale == 0.5
    (event,) = guard.trace.events
    assert event.kind == "rollback" and "rolled back to step 60" in event.detail
    assert all(torch.isfinite(p).all() for p in module.parameters())


def test_lightning_watch_cuts_a_rate_too_high_and_leaves_a_good_one():
    x, y = regression(n=8 * 80)
    cuts = {}
    for lr in (1e-2, 0.3):
        module, callback = Regressor(lr=lr), LightningGuard(watch_every=40)
        trainer = fit(module, callback, x=x, y=y, epochs=3)
        guard = callback.guard
        cuts[lr] = [event for event in guard.trace.events if event.kind == "lr_cut"]
        assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == [pytest.approx(lr * guard.lr_scale)]
    assert cuts[1e-2] == [] and len(cuts[0.3]) >= 1
    assert all("too_high" in event.detail or "diverged" in event.detail for event in cuts[0.3])


def test_lightning_early_stopping_stops_the_trainer():
    x, y = regression(n=64)
    val = DataLoader(TensorDataset(*regression(n=32, seed=1)), batch_size=32)
    module, callback = Regressor(lr=1e-12), LightningGuard(patience=2)
    trainer = fit(module, callback, x=x, y=y, epochs=20, val=val)
    assert trainer.current_epoch < 5  # the loss cannot improve at a 1e-12 LR
    assert callback.guard.trace.events[-1].kind == "early_stop"


class Pairs(Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.x)

    def __getitem__(self, index):
        return {"x": self.x[index], "labels": self.y[index]}


class HFRegressor(nn.Module):
    """A plain module that answers like a transformers model: a dict with the loss."""

    def __init__(self, blow_up: range = range(0)):
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
        self.blow_up, self.calls = blow_up, 0

    def forward(self, x, labels=None):
        out = self.net(x)
        loss = nn.functional.mse_loss(out, labels)
        if self.training:
            if self.calls in self.blow_up:
                loss = loss * 1e4
            self.calls += 1
        return {"loss": loss, "logits": out}


def hf_train(model, callback, x, y, tmp_path, lr=1e-2, **extra):
    args = TrainingArguments(
        output_dir=str(tmp_path),
        per_device_train_batch_size=8,
        num_train_epochs=1,
        learning_rate=lr,
        lr_scheduler_type="linear",
        report_to="none",
        save_strategy="no",
        logging_strategy="no",
        use_cpu=True,
        dataloader_num_workers=0,
        seed=0,
        data_seed=0,
        **extra,
    )
    evaluation = Pairs(*regression(32, seed=1)) if "eval_strategy" in extra else None
    trainer = Trainer(
        model=model, args=args, train_dataset=Pairs(x, y), eval_dataset=evaluation, callbacks=[callback]
    )
    trainer.train()
    return trainer


def test_hf_skips_a_nan_batch_without_moving_the_schedule(tmp_path):
    x, y = regression()
    x[5] = math.nan  # somewhere in one shuffled batch
    model, callback = HFRegressor(), HFGuard()
    trainer = hf_train(model, callback, x, y, tmp_path)
    guard = callback.guard
    assert guard.skipped == 1 and guard.rollbacks == 0
    assert [e.kind for e in guard.trace.events] == ["skip"]
    assert all(torch.isfinite(p).all() for p in model.parameters())
    scheduler = getattr(trainer.lr_scheduler, "scheduler", trainer.lr_scheduler)
    assert scheduler.last_epoch == 32 - 1  # 32 batches, one refused


def test_hf_rolls_back_a_spike(tmp_path):
    x, y = regression(n=8 * 80)
    model, callback = HFRegressor(blow_up=range(60, 63)), HFGuard(snapshot_every=20, skip_batches=2)
    hf_train(model, callback, x, y, tmp_path)
    guard = callback.guard
    assert guard.rollbacks == 1 and guard.lr_scale == pytest.approx(0.3)
    assert "rolled back to step 60" in guard.trace.events[0].detail


def test_hf_early_stopping(tmp_path):
    x, y = regression(n=8 * 40)
    model, callback = HFRegressor(), HFGuard(patience=2)
    trainer = hf_train(model, callback, x, y, tmp_path, eval_strategy="steps", eval_steps=5, lr=1e-12)
    assert trainer.state.global_step < 40
    assert callback.guard.trace.events[-1].kind == "early_stop"


def test_bad_monitor_is_refused():
    with pytest.raises(TypeError, match="monitor must be a metric name"):
        LightningGuard(monitor=3)
    with pytest.raises(TypeError, match="monitor must be a metric name"):
        HFGuard(monitor=None)


@pytest.mark.parametrize("callback", [LightningGuard, HFGuard], ids=["lightning", "hf"])
def test_callback_options_are_checked_when_the_callback_is_made(callback):
    # not when fit starts, after the model and data are set up
    with pytest.raises(TypeError, match=r"unknown Guard option\(s\) patiance; the options are rule, snapshot_every"):
        callback(patiance=3)
    with pytest.raises(TypeError, match=r"unknown Guard option\(s\) scheduler"):  # the framework's own
        callback(scheduler=None)
    with pytest.raises(ValueError, match=r"lr_factor must be in \(0, 1\), got -1"):
        callback(lr_factor=-1)
    assert callback(patience=3, watch_every=20).options == {"patience": 3, "watch_every": 20}
