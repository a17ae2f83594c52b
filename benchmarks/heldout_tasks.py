"""Training tasks held out from rule design: the finder's suggestion rule was frozen before any of
these was trained, so their regret is an out-of-sample test of it.

They differ from the built-in tasks on purpose: other data (wine, diabetes, two moons), other
optimizers (plain SGD, RMSprop, SGD with Nesterov momentum and weight decay), a regression loss,
batch norm and a cosine decay. Importing this module registers them (names start ``heldout-``);
lrkit itself never lists them.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
from sklearn.datasets import (
    load_breast_cancer,
    load_diabetes,
    load_iris,
    load_wine,
    make_circles,
    make_moons,
)
from sklearn.model_selection import train_test_split
from torch import nn

from lrkit.schedules import Exponential, Linear, MultiStep, cosine, warmup_cosine, wsd
from lrkit.tasks import list_tasks
from lrkit.tasks.loading import accuracy, cross_entropy, mse, tensor_loaders
from lrkit.tasks.registry import Loaders, Task, register

NAMES = ("heldout-wine-sgd", "heldout-diabetes-adam", "heldout-moons-rmsprop", "heldout-digits-bn-nesterov")
# a second set, trained only after a rule change was proposed from the first one, to test it
SECOND = ("heldout2-iris-adagrad", "heldout2-circles-adamw", "heldout2-cancer-mlp-adamax", "heldout2-digits-linear-sgdm")
# a third set, every task under a decaying schedule, trained only after the diagnosis's decay
# rule (too_low judged against the LR spent) was written and frozen, to test it
THIRD = (
    "heldout3-wine-sgdm-multistep",
    "heldout3-moons-adam-warmup-cosine",
    "heldout3-cancer-rmsprop-linear",
    "heldout3-digits-adamw-wsd",
    "heldout3-diabetes-sgdm-exponential",
)


def _standardize(x: np.ndarray, y: np.ndarray, *, classify: bool):
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=0, stratify=y if classify else None
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)
    std = np.where(std > 0, std, 1.0)  # constant features (blank digit pixels) stay 0
    if not classify:  # a standardized target keeps the MSE near 1 at the start
        y_mean, y_std = y_train.mean(), y_train.std()
        y_train, y_val = (y_train - y_mean) / y_std, (y_val - y_mean) / y_std

    def tensors(features: np.ndarray, targets: np.ndarray):
        inputs = torch.from_numpy(((features - mean) / std).astype(np.float32))
        if classify:
            return inputs, torch.from_numpy(targets.astype(np.int64))
        return inputs, torch.from_numpy(targets.astype(np.float32)).reshape(-1, 1)

    return tensors(x_train, y_train), tensors(x_val, y_val)


@functools.cache
def _data(name: str):
    if name == "wine":
        data = load_wine()
        return _standardize(data.data, data.target, classify=True)
    if name == "diabetes":
        data = load_diabetes()
        return _standardize(data.data, data.target, classify=False)
    if name == "moons":
        x, y = make_moons(n_samples=1200, noise=0.25, random_state=0)
        return _standardize(x, y, classify=True)
    if name == "iris":
        data = load_iris()
        return _standardize(data.data, data.target, classify=True)
    if name == "moons-wide":
        x, y = make_moons(n_samples=1500, noise=0.3, random_state=3)
        return _standardize(x, y, classify=True)
    if name == "circles":
        x, y = make_circles(n_samples=1200, noise=0.1, factor=0.5, random_state=0)
        return _standardize(x, y, classify=True)
    if name == "cancer":
        data = load_breast_cancer()
        return _standardize(data.data, data.target, classify=True)
    from sklearn.datasets import load_digits

    data = load_digits()
    return _standardize(data.data, data.target, classify=True)


def _loaders(name: str, batch_size: int):
    def make(seed: int) -> Loaders:
        train, val = _data(name)
        return tensor_loaders(train, val, batch_size=batch_size, seed=seed)

    return make


def _mlp(*sizes: int, activation=nn.ReLU, batch_norm: bool = False, dropout: float = 0.0):
    def make(seed: int) -> nn.Module:
        torch.manual_seed(seed)
        layers: list[nn.Module] = []
        for width_in, width_out in zip(sizes[:-2], sizes[1:-1], strict=True):
            layers.append(nn.Linear(width_in, width_out))
            if batch_norm:
                layers.append(nn.BatchNorm1d(width_out))
            layers.append(activation())
            if dropout:
                layers.append(nn.Dropout(dropout))
        layers.append(nn.Linear(sizes[-2], sizes[-1]))
        return nn.Sequential(*layers)

    return make


def register_heldout() -> None:
    """Register the held-out tasks of every set once (a no-op when they already are)."""
    if any(task.name in NAMES for task in list_tasks()):
        return
    register(Task(
        name="heldout3-wine-sgdm-multistep",
        summary="wine, tanh MLP 32, SGD momentum 0.9, LR x0.1 at 50% and 75% of the run",
        optimizer_name="SGD", default_lr=1e-2, steps=300, make_model=_mlp(13, 32, 3, activation=nn.Tanh),
        make_optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
        make_loaders=_loaders("wine", 16), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
        make_schedule=lambda peak, steps: MultiStep(peak, (steps // 2, 3 * steps // 4)),
    ))
    register(Task(
        name="heldout3-moons-adam-warmup-cosine",
        summary="two moons (noise 0.3), MLP 64-64, Adam, 10% warmup then cosine",
        optimizer_name="Adam", default_lr=1e-3, steps=400, make_model=_mlp(2, 64, 64, 2),
        make_optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr),
        make_loaders=_loaders("moons-wide", 32), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
        make_schedule=lambda peak, steps: warmup_cosine(peak, steps, steps // 10),
    ))
    register(Task(
        name="heldout3-cancer-rmsprop-linear",
        summary="breast cancer, MLP 64, RMSprop, linear decay to 0",
        optimizer_name="RMSprop", default_lr=1e-3, steps=300, make_model=_mlp(30, 64, 2),
        make_optimizer=lambda params, lr: torch.optim.RMSprop(params, lr=lr),
        make_loaders=_loaders("cancer", 16), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
        make_schedule=lambda peak, steps: Linear(start=peak, end=0.0, steps=steps),
    ))
    register(Task(
        name="heldout3-digits-adamw-wsd",
        summary="digits, MLP 96 with dropout 0.2, AdamW, warmup-stable-decay (last 20% linear)",
        optimizer_name="AdamW", default_lr=1e-3, steps=400, make_model=_mlp(64, 96, 10, dropout=0.2),
        make_optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.01),
        make_loaders=_loaders("digits", 32), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
        make_schedule=lambda peak, steps: wsd(peak, steps, steps // 20, steps // 5),
    ))
    register(Task(
        name="heldout3-diabetes-sgdm-exponential",
        summary="diabetes regression, MLP 32, SGD momentum 0.9, MSE, LR decays to 1% exponentially",
        optimizer_name="SGD", default_lr=1e-2, steps=300, make_model=_mlp(10, 32, 1),
        make_optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
        make_loaders=_loaders("diabetes", 32), loss_fn=mse,
        make_schedule=lambda peak, steps: Exponential(peak=peak, decay_ratio=0.01, decay_steps=steps),
    ))
    register(Task(
        name="heldout2-iris-adagrad", summary="iris (4 features, 3 classes), MLP 16, Adagrad",
        optimizer_name="Adagrad", default_lr=1e-2, steps=300, make_model=_mlp(4, 16, 3),
        make_optimizer=lambda params, lr: torch.optim.Adagrad(params, lr=lr),
        make_loaders=_loaders("iris", 16), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
    ))
    register(Task(
        name="heldout2-circles-adamw", summary="two circles, GELU MLP 32-32, AdamW (weight decay 0.05)",
        optimizer_name="AdamW", default_lr=1e-3, steps=400, make_model=_mlp(2, 32, 32, 2, activation=nn.GELU),
        make_optimizer=lambda params, lr: torch.optim.AdamW(params, lr=lr, weight_decay=0.05),
        make_loaders=_loaders("circles", 32), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
    ))
    register(Task(
        name="heldout2-cancer-mlp-adamax", summary="breast cancer (30 features), MLP 32, Adamax",
        optimizer_name="Adamax", default_lr=2e-3, steps=300, make_model=_mlp(30, 32, 2),
        make_optimizer=lambda params, lr: torch.optim.Adamax(params, lr=lr),
        make_loaders=_loaders("cancer", 32), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
    ))
    register(Task(
        name="heldout2-digits-linear-sgdm", summary="digits, linear softmax, SGD momentum 0.9",
        optimizer_name="SGD", default_lr=1e-2, steps=400, make_model=_mlp(64, 10),
        make_optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr, momentum=0.9),
        make_loaders=_loaders("digits", 32), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
    ))
    register(Task(
        name="heldout-wine-sgd", summary="wine (13 features, 3 classes), MLP 32, plain SGD",
        optimizer_name="SGD", default_lr=1e-2, steps=300, make_model=_mlp(13, 32, 3),
        make_optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr),
        make_loaders=_loaders("wine", 16), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
    ))
    register(Task(
        name="heldout-diabetes-adam", summary="diabetes regression (10 features), MLP 64-64, Adam, MSE",
        optimizer_name="Adam", default_lr=1e-3, steps=400, make_model=_mlp(10, 64, 64, 1),
        make_optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr),
        make_loaders=_loaders("diabetes", 32), loss_fn=mse,
    ))
    register(Task(
        name="heldout-moons-rmsprop", summary="two moons (noise 0.25), tanh MLP 64-64, RMSprop",
        optimizer_name="RMSprop", default_lr=1e-3, steps=400, make_model=_mlp(2, 64, 64, 2, activation=nn.Tanh),
        make_optimizer=lambda params, lr: torch.optim.RMSprop(params, lr=lr),
        make_loaders=_loaders("moons", 32), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
    ))
    register(Task(
        name="heldout-digits-bn-nesterov",
        summary="digits, MLP 128-64 with batch norm, SGD Nesterov 0.9 + weight decay, cosine decay",
        optimizer_name="SGD", default_lr=1e-2, steps=400, make_model=_mlp(64, 128, 64, 10, batch_norm=True),
        make_optimizer=lambda params, lr: torch.optim.SGD(
            params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4
        ),
        make_loaders=_loaders("digits", 32), loss_fn=cross_entropy,
        metric_name="accuracy", metric_fn=accuracy,
        make_schedule=lambda peak, steps: cosine(peak, steps),
    ))
