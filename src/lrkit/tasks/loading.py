"""In-memory data for the built-in tasks: seeded loaders over tensors, and the shared losses."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    RandomSampler,
    SequentialSampler,
    TensorDataset,
)

from lrkit.tasks.registry import Batch, Loaders


def tensor_loaders(
    train: tuple[torch.Tensor, ...],
    val: tuple[torch.Tensor, ...],
    *,
    batch_size: int,
    seed: int,
    val_batch_size: int = 1024,
) -> Loaders:
    """A shuffled train loader (order fixed by ``seed``) and a sequential validation loader.

    Batches are sliced from whole tensors at once (no per-sample collation), so small tasks spend
    their time training rather than loading.
    """
    train_set, val_set = TensorDataset(*train), TensorDataset(*val)
    generator = torch.Generator().manual_seed(seed)
    shuffled = BatchSampler(RandomSampler(train_set, generator=generator), batch_size, drop_last=True)
    in_order = BatchSampler(SequentialSampler(val_set), val_batch_size, drop_last=False)
    return (
        DataLoader(train_set, sampler=shuffled, batch_size=None),
        DataLoader(val_set, sampler=in_order, batch_size=None),
    )


def cross_entropy(model: nn.Module, batch: Batch) -> torch.Tensor:
    inputs, targets = batch
    logits = model(inputs)
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1))


def mse(model: nn.Module, batch: Batch) -> torch.Tensor:
    inputs, targets = batch
    return F.mse_loss(model(inputs), targets)


def accuracy(model: nn.Module, batch: Batch) -> tuple[float, int]:
    """Correct predictions and count in one batch."""
    inputs, targets = batch
    predicted = model(inputs).argmax(dim=-1)
    return float((predicted == targets).sum()), targets.numel()
