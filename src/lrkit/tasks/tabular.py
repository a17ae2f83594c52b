"""A convex task on scikit-learn's bundled breast-cancer data: logistic regression, plain SGD."""

from __future__ import annotations

import functools

import numpy as np
import torch
from sklearn.datasets import load_breast_cancer
from sklearn.model_selection import train_test_split
from torch import nn

from lrkit.tasks.loading import accuracy, cross_entropy, tensor_loaders
from lrkit.tasks.registry import Loaders, Task, register


@functools.cache
def _standardized_split():
    data = load_breast_cancer()
    x_train, x_val, y_train, y_val = train_test_split(
        data.data, data.target, test_size=0.25, random_state=0, stratify=data.target
    )
    mean, std = x_train.mean(axis=0), x_train.std(axis=0)

    def tensors(x: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(((x - mean) / std).astype(np.float32)), torch.from_numpy(y.astype(np.int64))

    return tensors(x_train, y_train), tensors(x_val, y_val)


def _loaders(seed: int) -> Loaders:
    train, val = _standardized_split()
    return tensor_loaders(train, val, batch_size=32, seed=seed)


def _logreg(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Linear(30, 2)


register(
    Task(
        name="cancer-logreg",
        summary="scikit-learn breast cancer (30 features), logistic regression, plain SGD",
        optimizer_name="SGD",
        default_lr=1e-2,
        steps=400,
        make_model=_logreg,
        make_optimizer=lambda params, lr: torch.optim.SGD(params, lr=lr),
        make_loaders=_loaders,
        loss_fn=cross_entropy,
        metric_name="accuracy",
        metric_fn=accuracy,
    )
)
