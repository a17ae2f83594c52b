"""The range test on a LightningModule and on a Hugging Face Trainer: the core's result, the user's
objects left as they were, and clear errors for what cannot be swept."""

from __future__ import annotations

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
