"""Teacher-student regression: a random teacher MLP makes the targets, a wider student learns them."""

from __future__ import annotations

import functools

import torch
from torch import nn

from lrkit.tasks.loading import mse, tensor_loaders
from lrkit.tasks.registry import Loaders, Task, register

INPUTS, SAMPLES, NOISE = 16, 4096, 0.05


@functools.cache
def _teacher_data():
    generator = torch.Generator().manual_seed(2024)
    teacher = nn.Sequential(nn.Linear(INPUTS, 32), nn.Tanh(), nn.Linear(32, 1))
    with torch.no_grad():
        for parameter in teacher.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) / parameter.shape[-1] ** 0.5)
        x = torch.randn(SAMPLES, INPUTS, generator=generator)
        y = teacher(x)
        y = (y - y.mean()) / y.std() + NOISE * torch.randn(y.shape, generator=generator)
    split = SAMPLES * 3 // 4
    return (x[:split], y[:split]), (x[split:], y[split:])


def _loaders(seed: int) -> Loaders:
    train, val = _teacher_data()
    return tensor_loaders(train, val, batch_size=64, seed=seed)


def _student(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(INPUTS, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1))


register(
    Task(
        name="teacher-student",
        summary="synthetic regression from a random tanh teacher MLP, ReLU student MLP, Adam, MSE",
        optimizer_name="Adam",
        default_lr=1e-3,
        steps=600,
        make_model=_student,
        make_optimizer=lambda params, lr: torch.optim.Adam(params, lr=lr),
        make_loaders=_loaders,
        loss_fn=mse,
    )
)
