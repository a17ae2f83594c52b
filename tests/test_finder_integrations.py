"""The range test on a LightningModule (before fit, or as a callback when fit starts) and on a
Hugging Face Trainer: the core's result, the user's objects left as they were, and clear errors for
what cannot be swept."""

from __future__ import annotations

import json
import logging
import warnings

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, TensorDataset
from transformers import Trainer, TrainingArguments

from lrkit.integrations import hf as lrkit_hf
from lrkit.integrations import lightning as lrkit_lightning
from lrkit.tasks.training import torch_threads
from lrkit.torch.finder import find_lr
from torch_state import clone, same


@pytest.fixture(autouse=True)
def one_thread():
    with torch_threads(1):
        yield


def classification(n: int = 512, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 10, generator=generator)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    return x, y


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))


def loader() -> DataLoader:
    return DataLoader(TensorDataset(*classification()), batch_size=32, shuffle=True,
                      generator=torch.Generator().manual_seed(0))


class Classifier(pl.LightningModule):
    def __init__(self, lr: float = 1e-3, optimizers: int = 1, returns: str = "tensor"):
        super().__init__()
        self.save_hyperparameters()
        self.net = mlp()
        self.seen: list[int] = []

    def training_step(self, batch, batch_idx):
        self.seen.append(batch_idx)
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        self.log("train_loss", loss)  # a no-op outside a Trainer, and no warning from the range test
        return {"tensor": loss, "dict": {"loss": loss}, "none": None}[self.hparams.returns]

    def configure_optimizers(self):
        made = [torch.optim.Adam(self.parameters(), lr=self.hparams.lr) for _ in range(self.hparams.optimizers)]
        scheduler = torch.optim.lr_scheduler.StepLR(made[0], step_size=5)
        return made[0] if len(made) == 1 else (made, [scheduler])


def test_lightning_module_gets_the_core_result_and_is_left_as_it_was():
    module = Classifier()
    before = clone(module.state_dict())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = lrkit_lightning.find_lr(module, loader(), steps=60, attribute="lr")
    model = mlp()
    plain = find_lr(model, torch.optim.Adam(model.parameters(), lr=1e-3), _ce, loader(), steps=60)
    assert result.lr is not None
    assert result.trace.loss.tolist() == plain.trace.loss.tolist()  # the same curve as the core's
    assert result.lr == plain.lr
    assert module.hparams.lr == result.lr  # attribute= writes it where Lightning's Tuner would
    assert same(before, module.state_dict())
    assert module.seen[:3] == [0, 1, 2]  # training_step gets a running batch index


def test_lightning_dict_outputs_and_the_module_own_loader():
    class WithLoader(Classifier):
        def train_dataloader(self):
            return loader()

    result = lrkit_lightning.find_lr(WithLoader(returns="dict"), steps=40)
    assert len(result.trace) > 10 and result.meta["optimizer"] == "Adam"


def test_lightning_datamodule_is_set_up_for_fit():
    class Data(pl.LightningDataModule):
        stages: list[str] = []

        def prepare_data(self):
            self.stages.append("prepare")

        def setup(self, stage):
            self.stages.append(stage)

        def train_dataloader(self):
            return loader()

    data = Data()
    lrkit_lightning.find_lr(Classifier(), datamodule=data, steps=20)
    assert data.stages == ["prepare", "fit"]


@pytest.mark.parametrize(
    ("module", "kwargs", "message"),
    [
        (Classifier(optimizers=2), {"train_dataloaders": loader()}, "returned 2 optimizers"),
        (Classifier(returns="none"), {"train_dataloaders": loader()}, "training_step returned None"),
        (Classifier(), {}, "no training batches"),
        (Classifier(), {"train_dataloaders": loader(), "attribute": "learning_rate"}, "attribute='learning_rate'"),
        (Classifier(), {"train_dataloaders": loader(), "datamodule": pl.LightningDataModule()}, "not both"),
    ],
)
def test_lightning_what_cannot_be_swept_is_named(module, kwargs, message):
    before = clone(module.state_dict())
    with pytest.raises(ValueError, match=message):
        lrkit_lightning.find_lr(module, steps=20, **kwargs)
    assert same(before, module.state_dict())


def test_lightning_manual_optimization_and_wrong_types_are_refused():
    module = Classifier()
    module.automatic_optimization = False
    with pytest.raises(ValueError, match="manual optimization"):
        lrkit_lightning.find_lr(module, loader())
    with pytest.raises(TypeError, match="LightningModule"):
        lrkit_lightning.find_lr(mlp(), loader())


def fit(module, *callbacks, loader=None, datamodule=None, max_steps=2, **settings) -> pl.Trainer:
    trainer = pl.Trainer(
        max_steps=max_steps, accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, callbacks=list(callbacks), **settings,
    )
    trainer.fit(module, train_dataloaders=loader, datamodule=datamodule)
    return trainer


class FirstStep(pl.Callback):
    """What fit's first optimizer step starts from (weights, batch, RNG) and what it does (the rates
    of the optimizer, the change of the weights); ``lrs`` holds every step's rates."""

    def __init__(self):
        self.lrs = []

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == 0:
            self.weights, self.batch, self.rng = clone(module.state_dict()), clone(batch), torch.get_rng_state()

    def on_before_optimizer_step(self, trainer, module, optimizer):
        self.lrs.append([group["lr"] for group in optimizer.param_groups])

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        if trainer.global_step == 1:
            self.update = {name: after - self.weights[name] for name, after in module.state_dict().items()}


def largest_change(update) -> float:
    return max(change.abs().max().item() for change in update.values())


def test_lightning_callback_trains_at_the_suggestion_from_where_fit_would_start(caplog):
    module, first = Classifier(), FirstStep()
    finder = lrkit_lightning.FinderCallback(steps=60)
    with caplog.at_level(logging.INFO, logger="lrkit.finder"):
        fit(module, finder, first, loader=loader())
    plain = FirstStep()
    fit(Classifier(), plain, loader=loader())

    result = finder.result
    alone = lrkit_lightning.find_lr(Classifier(), loader(), steps=60)
    assert result.lr is not None and result.trace.loss.tolist() == alone.trace.loss.tolist()
    assert module.hparams.lr == result.lr  # "lr" found in the hparams, as Lightning's callback finds it
    assert first.lrs[0] == [pytest.approx(result.lr)] and plain.lrs[0] == [1e-3]
    # Adam's first step moves each weight by the LR (less where its gradient is near 0): the
    # optimizer trains at the suggestion
    assert largest_change(first.update) == pytest.approx(result.lr, rel=1e-3)
    assert largest_change(plain.update) == pytest.approx(1e-3, rel=1e-3)
    # and fit starts from the weights, batch and RNG state it would have had without the callback
    assert same(first.weights, plain.weights) and same(first.batch, plain.batch)
    assert torch.equal(first.rng, plain.rng)
    assert [record.getMessage() for record in caplog.records if record.name == "lrkit.finder"] == [
        f"range test: {result!r}; lr and the optimizer set to it"
    ]


class TwoGroups(pl.LightningModule):
    """A head at a tenth of the body's rate; with ``warmup``, a scheduler that starts from 0."""

    def __init__(self, warmup: bool = True):
        super().__init__()
        self.net, self.learning_rate, self.warmup = mlp(), 1e-3, warmup

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        body, head = self.net[0].parameters(), self.net[2].parameters()
        rate = self.learning_rate if self.warmup else 0.05  # without warmup, the attribute is not read
        optimizer = torch.optim.Adam([{"params": body}, {"params": head, "lr": rate / 10}], lr=rate)
        if not self.warmup:
            return optimizer
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: step / 4)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    def train_dataloader(self):
        return loader()


def test_lightning_callback_rebuilds_the_schedule_and_keeps_the_ratio_of_the_groups():
    module, steps = TwoGroups(), FirstStep()
    finder = lrkit_lightning.FinderCallback(steps=60)
    trainer = fit(module, finder, steps, max_steps=3)
    lr = finder.result.lr
    assert module.learning_rate == lr  # found when there is no "lr"
    assert finder.result.group_lrs == (lr, pytest.approx(lr / 10))  # swept at the configured ratio
    assert trainer.lr_scheduler_configs[0].scheduler.base_lrs == [lr, pytest.approx(lr / 10)]
    assert steps.lrs == [[0, 0], [lr / 4, pytest.approx(lr / 40)], [lr / 2, pytest.approx(lr / 20)]]


def test_lightning_callback_sets_the_groups_when_configure_optimizers_ignores_the_attribute():
    module, steps = TwoGroups(warmup=False), FirstStep()
    finder = lrkit_lightning.FinderCallback(steps=60)
    fit(module, finder, steps)
    lr = finder.result.lr
    assert module.learning_rate == lr and lr != pytest.approx(0.05)
    assert steps.lrs[0] == [lr, pytest.approx(lr / 10)]


def test_lightning_callback_runs_on_the_datamodule_with_the_trainer_settings():
    class Data(pl.LightningDataModule):
        def __init__(self):
            super().__init__()
            self.calls = []

        def prepare_data(self):
            self.calls.append("prepare")

        def setup(self, stage):
            self.calls.append(stage)

        def train_dataloader(self):
            self.calls.append("loader")
            return loader()

    data, finder = Data(), lrkit_lightning.FinderCallback(steps=30, stop_on_divergence=False)
    fit(Classifier(), finder, datamodule=data, precision="bf16-mixed", accumulate_grad_batches=2)
    alone = lrkit_lightning.find_lr(
        Classifier(), loader(), steps=30, stop_on_divergence=False, precision="bf16", accumulation_steps=2
    )
    assert finder.result.trace.loss.tolist() == alone.trace.loss.tolist()
    assert data.calls == ["prepare", "fit", "loader", "loader"]  # fit's own set-up, not a second one


class Plain(pl.LightningModule):
    def __init__(self):
        super().__init__()
        self.net = mlp()

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.1)


def manual() -> Classifier:
    module = Classifier()
    module.automatic_optimization = False
    return module


@pytest.mark.parametrize(
    ("module", "attribute", "error", "message"),
    [
        (Plain(), None, ValueError, "Plain has neither 'lr' nor 'learning_rate'"),
        (Classifier(), "rate", ValueError, "attribute='rate' is neither"),
        (manual(), None, ValueError, "manual optimization"),
        # several optimizers need manual optimization: Lightning refuses them before on_fit_start
        (Classifier(optimizers=2), None, RuntimeError, "multiple optimizers is only supported with manual"),
    ],
)
def test_lightning_callback_refuses_at_fit_start_before_any_step(module, attribute, error, message):
    before = clone(module.state_dict())
    finder = lrkit_lightning.FinderCallback(attribute=attribute, steps=20)
    with pytest.raises(error, match=message):
        fit(module, finder, loader=loader())
    assert finder.result is None and same(before, module.state_dict())


@pytest.mark.parametrize(
    ("options", "error", "message"),
    [
        ({"stepz": 10}, TypeError, r"unknown find_lr option\(s\) stepz; the options are min_lr, max_lr, steps"),
        ({"scaler": None}, TypeError, r"unknown find_lr option\(s\) scaler"),
        ({"steps": 1}, ValueError, "steps"),
        ({"min_lr": 1.0, "max_lr": 0.1}, ValueError, "min_lr"),
        ({"precision": "fp8"}, ValueError, "precision"),
        ({"val_loader": iter([])}, TypeError, "val_loader must be re-iterable"),
        ({"attribute": 3}, TypeError, "attribute must be a name"),
    ],
)
def test_lightning_callback_options_are_checked_when_it_is_made(options, error, message):
    with pytest.raises(error, match=message):
        lrkit_lightning.FinderCallback(**options)


def test_lightning_callback_accepts_what_only_the_run_can_check():
    finder = lrkit_lightning.FinderCallback(attribute="lr", precision="fp16", steps=50)  # fp16: CUDA at fit
    assert finder.options == {"precision": "fp16", "steps": 50} and finder.result is None


def test_lightning_callback_without_a_suggestion_leaves_the_rate(caplog):
    module, steps = Classifier(), FirstStep()
    finder = lrkit_lightning.FinderCallback(min_lr=1e-9, max_lr=1e-8, steps=20)
    with caplog.at_level(logging.INFO, logger="lrkit.finder"):
        fit(module, finder, steps, loader=loader())
    assert finder.result is not None and finder.result.lr is None
    assert module.hparams.lr == 1e-3 and steps.lrs[0] == [1e-3]
    assert "no suggestion" in caplog.text and finder.result.reason in caplog.text


@pytest.mark.filterwarnings("ignore:You're resuming from a checkpoint that ended before the epoch ended")
def test_lightning_callback_skips_a_fast_dev_run_and_a_resumed_fit(tmp_path, caplog):
    module = Classifier()
    trainer = fit(module, loader=loader())
    trainer.save_checkpoint(tmp_path / "run.ckpt")
    fast, resumed = lrkit_lightning.FinderCallback(steps=20), lrkit_lightning.FinderCallback(steps=20)
    with caplog.at_level(logging.WARNING, logger="lrkit.finder"):
        fit(Classifier(), fast, loader=loader(), fast_dev_run=True)
        pl.Trainer(
            max_steps=4, accelerator="cpu", logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, callbacks=[resumed],
        ).fit(module, loader(), ckpt_path=tmp_path / "run.ckpt")
    assert fast.result is None and resumed.result is None and module.hparams.lr == 1e-3
    assert "skipped: fast_dev_run" in caplog.text and "skipped: fit resumes from" in caplog.text


class RankReport(pl.Callback):
    """Writes what each rank's FinderCallback did to ``rank<N>.json`` in ``folder``."""

    def __init__(self, folder):
        self.folder = folder

    def on_before_optimizer_step(self, trainer, module, optimizer):
        finder = next(c for c in trainer.callbacks if isinstance(c, lrkit_lightning.FinderCallback))
        if trainer.global_step == 0:
            report = {
                "lr": finder.result.lr, "attribute": module.hparams.lr, "optimizer": optimizer.param_groups[0]["lr"],
                "loss": finder.result.trace.loss.tolist(),
            }
            (self.folder / f"rank{trainer.global_rank}.json").write_text(json.dumps(report))


@pytest.mark.timeout(120)
def test_lightning_callback_under_ddp_gives_every_rank_the_same_suggestion(tmp_path):
    sharing = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")  # some sandboxes refuse shared-memory files
    try:
        module = Classifier()
        fit(module, lrkit_lightning.FinderCallback(steps=40), RankReport(tmp_path), loader=loader(),
            devices=2, strategy="ddp_spawn")
    finally:
        torch.multiprocessing.set_sharing_strategy(sharing)
    ranks = [json.loads((tmp_path / f"rank{rank}.json").read_text()) for rank in (0, 1)]
    alone = lrkit_lightning.find_lr(Classifier(), loader(), steps=40)
    assert ranks[0] == ranks[1]  # the loss averaged over the ranks: one curve, one suggestion
    assert ranks[0]["lr"] == ranks[0]["attribute"] == ranks[0]["optimizer"] == pytest.approx(alone.lr)
    assert ranks[0]["loss"] == pytest.approx(alone.trace.loss.tolist(), rel=1e-5)
    assert module.hparams.lr == 1e-3  # ddp_spawn brings back the weights only


class Records(Dataset):
    """Dict records, the way Hugging Face datasets hand them to the Trainer."""

    def __init__(self):
        self.x, self.y = classification()

    def __len__(self):
        return len(self.y)

    def __getitem__(self, index):
        return {"features": self.x[index], "labels": self.y[index]}


class HFClassifier(nn.Module):
    """Takes keyword inputs and returns a dict with the loss, as transformers models do."""

    def __init__(self):
        super().__init__()
        self.net = mlp()

    def forward(self, features, labels=None):
        logits = self.net(features)
        return {"loss": nn.functional.cross_entropy(logits, labels), "logits": logits}


def hf_trainer(tmp_path, trainer_class=Trainer, **args) -> Trainer:
    arguments = TrainingArguments(
        str(tmp_path), per_device_train_batch_size=32, report_to=[], use_cpu=True, learning_rate=1e-3,
        max_steps=30, seed=0, **args,
    )
    return trainer_class(model=HFClassifier(), args=arguments, train_dataset=Records())


def test_hf_trainer_finds_and_leaves_no_optimizer_behind(tmp_path):
    trainer = hf_trainer(tmp_path)
    before = clone(trainer.model.state_dict())
    result = lrkit_hf.find_lr(trainer, steps=60)
    assert result.lr is not None and 1e-4 < result.lr < 1.0
    assert result.meta["optimizer"] == "AdamW"  # the Trainer's own choice, from its arguments
    assert trainer.optimizer is None  # so args.learning_rate set now is the one train() uses
    assert same(before, trainer.model.state_dict())
    trainer.args.learning_rate = result.lr
    trainer.train()
    assert trainer.optimizer.param_groups[0]["initial_lr"] == pytest.approx(result.lr)


def test_hf_trainer_custom_loss_accumulation_and_given_optimizer(tmp_path):
    calls = []

    class Custom(Trainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            calls.append(len(inputs["labels"]))
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    trainer = hf_trainer(tmp_path, Custom, gradient_accumulation_steps=2)
    mine = torch.optim.SGD(trainer.model.parameters(), lr=0.1, momentum=0.9)
    trainer.optimizer = mine
    result = lrkit_hf.find_lr(trainer, steps=12, stop_on_divergence=False)
    assert len(result.trace) == 12 and len(calls) == 24  # two micro-batches per optimizer step
    assert trainer.optimizer is mine and result.meta["optimizer"] == "SGD"
    assert mine.param_groups[0]["lr"] == 0.1 and not mine.state  # its state and LR are as given


def test_hf_wrong_type_is_named():
    with pytest.raises(TypeError, match="transformers.Trainer"):
        lrkit_hf.find_lr(mlp())


def _ce(model, batch):
    x, y = batch
    return nn.functional.cross_entropy(model(x), y)
