"""Acceptance round: the Lightning and Hugging Face callbacks in realistic Trainer setups (CPU, tiny
models built from configs or plain modules, synthetic data). Each test pins a defect found there."""

from __future__ import annotations

import math

import lightning.pytorch as pl
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins import MixedPrecision
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    LlamaConfig,
    LlamaForCausalLM,
    Trainer,
    TrainerCallback,
    TrainingArguments,
)

import test_guard_integrations as guarded
from lrkit import GuardStop
from lrkit.integrations.hf import GuardCallback as HFGuard
from lrkit.integrations.hf import find_lr as find_trainer_lr
from lrkit.integrations.lightning import GuardCallback as LightningGuard
from lrkit.integrations.lightning import find_lr as find_module_lr
from lrkit.tasks.training import torch_threads
from test_guard_integrations import regression


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


# --- Lightning -------------------------------------------------------------------------------


class Regressor(guarded.Regressor):
    """``blow_up`` multiplies the loss of the batches it names; ``skip`` returns None for them."""

    def __init__(self, lr: float = 1e-2, blow_up: range = range(0), skip: range = range(0)):
        super().__init__(lr)
        self.blow_up, self.skip, self.losses = blow_up, skip, []

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.mse_loss(self.net(x), y)
        index, self.batches = self.batches, self.batches + 1
        if index in self.blow_up:
            loss = loss * 1e4
        self.losses.append(float(loss.detach()))
        return None if index in self.skip else loss


def trainer(*callbacks, **settings) -> pl.Trainer:
    settings.setdefault("max_epochs", 1)
    settings.setdefault("enable_checkpointing", False)
    return pl.Trainer(
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=list(callbacks),
        **settings,
    )


def batches(n: int = 256, seed: int = 0) -> DataLoader:
    return DataLoader(TensorDataset(*regression(n, seed)), batch_size=8)


def test_lightning_guard_judges_the_batch_loss_under_gradient_accumulation():
    # Lightning hands on_before_backward the loss divided by accumulate_grad_batches
    module, callback = Regressor(), LightningGuard()
    trainer(callback, accumulate_grad_batches=4).fit(module, batches())
    trace = callback.guard.trace
    assert len(trace) == 8
    expected = [sum(module.losses[i : i + 4]) / 4 for i in range(0, 32, 4)]
    assert list(trace.loss) == pytest.approx(expected, rel=1e-5)


def test_lightning_training_step_returning_none_is_not_a_nonfinite_step():
    # Lightning's documented way to skip a batch: no backward, nothing for the guard to judge
    module, callback = Regressor(skip=range(5, 11)), LightningGuard()
    trainer(callback).fit(module, batches())
    guard = callback.guard
    assert guard.skipped == 0 and guard.rollbacks == 0 and guard.lr_scale == 1.0
    assert len(guard.trace.events) == 0 and len(guard.trace) == 32 - 6


def test_lightning_resumed_fit_rolls_back_to_the_restored_optimizer_and_schedule(tmp_path):
    checkpoint = ModelCheckpoint(dirpath=tmp_path, save_last=True)
    trainer(LightningGuard(), checkpoint, enable_checkpointing=True, default_root_dir=tmp_path).fit(
        Regressor(), batches(8 * 40)
    )
    module = Regressor(blow_up=range(5, 8))  # a spike right after the resume, before any new snapshot
    callback = LightningGuard(skip_batches=2, lr_factor=0.5)
    resumed = trainer(callback, max_epochs=2)
    resumed.fit(module, batches(8 * 40), ckpt_path=tmp_path / "last.ckpt")
    guard = callback.guard
    assert guard.rollbacks == 1
    scheduler, optimizer = resumed.lr_scheduler_configs[0].scheduler, resumed.optimizers[0]
    # back to the resumed state (step 40 of the schedule, Adam's moments), not a fresh optimizer
    # 40 steps restored, then of 40 batches: 8 undone (7 applied, the 8th refused) and 2 skipped
    assert scheduler.last_epoch == 40 + 40 - 8 - 2
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.5 * 1e-2 / (1 + 0.01 * scheduler.last_epoch))
    assert int(optimizer.state[optimizer.param_groups[0]["params"][0]]["step"]) == 40 + 40 - 8 - 2


def test_lightning_16_mixed_loss_is_unscaled_and_an_overflow_is_not_a_spike():
    # "16-mixed" scales the loss before on_before_backward; overflows lower the scale, step by step
    scaler = torch.amp.GradScaler("cpu", init_scale=2.0**40)
    module, callback = Regressor(), LightningGuard()
    trainer(callback, plugins=[MixedPrecision("16-mixed", "cpu", scaler=scaler)]).fit(module, batches())
    guard = callback.guard
    assert guard.rollbacks == 0 and guard.skipped >= 5  # five overflows in a row: still no rollback
    assert {event.kind for event in guard.trace.events} == {"skip"}
    assert list(guard.trace.loss) == pytest.approx(module.losses, rel=1e-3)


def test_lightning_validate_after_fit_feeds_no_early_stopping():
    val = DataLoader(TensorDataset(*regression(32, seed=1)), batch_size=32)
    module, callback = Regressor(), LightningGuard(patience=1)
    fit = trainer(callback)
    fit.fit(module, batches(), val)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.add_(0.5)  # other weights: validate() must measure these, not put back the best
    changed = [p.detach().clone() for p in module.parameters()]
    fit.validate(module, val, verbose=False)
    fit.validate(module, val, verbose=False)
    assert all(torch.equal(a, b) for a, b in zip(changed, module.parameters(), strict=True))
    assert len(callback.guard.trace.events) == 0


def test_lightning_find_lr_names_an_unknown_option():
    with pytest.raises(TypeError, match=r"unknown find_lr option\(s\) stepz; the options are min_lr"):
        find_module_lr(Regressor(), batches(), stepz=10)


# --- Hugging Face ----------------------------------------------------------------------------


class Tokens(Dataset):
    """Random token sequences; ``classes`` gives one label per sequence instead of the tokens."""

    def __init__(self, n: int = 64, seed: int = 0, classes: bool = False):
        generator = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 64, (n, 16), generator=generator)
        self.classes = torch.randint(0, 2, (n,), generator=generator) if classes else None

    def __len__(self):
        return len(self.ids)

    def __getitem__(self, index):
        labels = self.ids[index] if self.classes is None else self.classes[index]
        return {"input_ids": self.ids[index], "labels": labels}


class Llama(LlamaForCausalLM):
    """A tiny random Llama; the loss of the training forward calls in ``blow_up`` is multiplied."""

    blow_up: range = range(0)
    calls = 0

    def forward(self, *args, **kwargs):
        output = super().forward(*args, **kwargs)
        if self.training:
            if self.calls in self.blow_up:
                output.loss = output.loss * 1e4
            self.calls += 1
        return output


def llama(blow_up: range = range(0)) -> Llama:
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=32,
    )
    model = Llama(config)
    model.blow_up = blow_up
    return model


def arguments(tmp_path, **extra) -> TrainingArguments:
    settings = {
        "output_dir": str(tmp_path),
        "per_device_train_batch_size": 8,
        "num_train_epochs": 1,
        "learning_rate": 1e-3,
        "report_to": "none",
        "save_strategy": "no",
        "logging_strategy": "no",
        "use_cpu": True,
        "dataloader_num_workers": 0,
        "seed": 0,
        "data_seed": 0,
        "remove_unused_columns": False,  # Llama.forward(*args, **kwargs) names no columns
        "label_names": ["labels"],
        "disable_tqdm": True,
        **extra,
    }
    return TrainingArguments(**settings)


def test_hf_guard_judges_the_step_loss_of_a_model_normalized_by_num_items(tmp_path):
    # a causal LM gets num_items_in_batch: each micro-batch's outputs.loss is its share of the step's
    callback = HFGuard()
    args = arguments(tmp_path, per_device_train_batch_size=2, gradient_accumulation_steps=4, logging_strategy="steps", logging_steps=1)
    trainer = Trainer(model=llama(), args=args, train_dataset=Tokens(), callbacks=[callback])
    trainer.train()
    logged = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(logged) == 8
    assert list(callback.guard.trace.loss) == pytest.approx(logged, rel=1e-4)


def test_hf_label_smoothing_is_refused_by_name(tmp_path):
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=4,
        max_position_embeddings=32,
    )
    model = BertForSequenceClassification(config)
    args = arguments(tmp_path, label_smoothing_factor=0.1, remove_unused_columns=True)
    trainer = Trainer(model=model, args=args, train_dataset=Tokens(classes=True), callbacks=[HFGuard()])
    with pytest.raises(ValueError, match=r"label_smoothing_factor=0.1 the Trainer takes the labels"):
        trainer.train()
    assert all(torch.isfinite(p).all() for p in model.parameters())


class Rates(TrainerCallback):
    def __init__(self):
        self.used = {}

    def on_optimizer_step(self, args, state, control, optimizer=None, **kwargs):
        self.used[state.global_step + 1] = optimizer.param_groups[0]["lr"]


def test_hf_logged_learning_rate_after_a_rollback_is_the_cut_rate(tmp_path):
    callback, rates = HFGuard(snapshot_every=5, skip_batches=2, lr_factor=0.5), Rates()
    args = arguments(
        tmp_path,
        per_device_train_batch_size=2,
        lr_scheduler_type="cosine",
        warmup_steps=2,
        logging_strategy="steps",
        logging_steps=1,
    )
    trainer = Trainer(model=llama(blow_up=range(40, 46)), args=args, train_dataset=Tokens(128), callbacks=[callback, rates])
    trainer.train()
    assert callback.guard.rollbacks == 1
    logged = {entry["step"]: entry["learning_rate"] for entry in trainer.state.log_history if "learning_rate" in entry}
    assert len(logged) == 64
    assert logged == pytest.approx(rates.used, rel=1e-9)  # every step logs the rate it trained at


def test_hf_guard_stop_leaves_no_hook_on_the_model(tmp_path):
    model, callback = llama(blow_up=range(25, 200)), HFGuard(max_rollbacks=0)
    args = arguments(tmp_path, per_device_train_batch_size=2)
    with pytest.raises(GuardStop):
        Trainer(model=model, args=args, train_dataset=Tokens(128), callbacks=[callback]).train()
    assert len(model._forward_hooks) == 0


def test_hf_evaluate_after_train_feeds_no_early_stopping(tmp_path):
    model, callback = llama(), HFGuard(patience=1)
    args = arguments(tmp_path, eval_strategy="epoch")
    trainer = Trainer(
        model=model, args=args, train_dataset=Tokens(), eval_dataset=Tokens(16, seed=3), callbacks=[callback]
    )
    trainer.train()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.mul_(1.01)
    changed = [p.detach().clone() for p in model.parameters()]
    trainer.evaluate()
    trainer.evaluate()
    assert all(torch.equal(a, b) for a, b in zip(changed, model.parameters(), strict=True))
    assert len(callback.guard.trace.events) == 0


def test_hf_find_lr_names_an_unknown_option(tmp_path):
    trainer = Trainer(model=llama(), args=arguments(tmp_path), train_dataset=Tokens())
    with pytest.raises(TypeError, match=r"unknown find_lr option\(s\) stepz; the options are min_lr"):
        find_trainer_lr(trainer, stepz=10)
    assert math.isfinite(trainer.args.learning_rate)
