"""Tasks on scikit-learn's bundled 8x8 digits: an MLP, a small CNN, and a fine-tuning task."""

from __future__ import annotations

import functools
import os
from pathlib import Path

import numpy as np
import torch
from sklearn.datasets import load_digits
from sklearn.model_selection import train_test_split
from torch import nn

from lrkit.files import atomic_write
from lrkit.tasks.loading import accuracy, cross_entropy, tensor_loaders
from lrkit.tasks.registry import Loaders, Task, callers_rng_kept, register

SPLIT_SEED = 0  # the train/validation split never changes; the run seed drives init and order


@functools.cache
def _digits() -> tuple[np.ndarray, np.ndarray]:
    data = load_digits()
    return (data.data / 16.0).astype(np.float32), data.target.astype(np.int64)


def _split(keep: np.ndarray | None = None, label_offset: int = 0):
    x, y = _digits()
    if keep is not None:
        x, y = x[keep], y[keep] - label_offset
    x_train, x_val, y_train, y_val = train_test_split(
        x, y, test_size=0.25, random_state=SPLIT_SEED, stratify=y
    )
    return (torch.from_numpy(x_train), torch.from_numpy(y_train)), (
        torch.from_numpy(x_val),
        torch.from_numpy(y_val),
    )


def _flat_loaders(seed: int) -> Loaders:
    train, val = _split()
    return tensor_loaders(train, val, batch_size=64, seed=seed)


def _image_loaders(seed: int) -> Loaders:
    (x_train, y_train), (x_val, y_val) = _split()
    images = (x_train.reshape(-1, 1, 8, 8), y_train), (x_val.reshape(-1, 1, 8, 8), y_val)
    return tensor_loaders(*images, batch_size=64, seed=seed)


def _mlp_body() -> nn.Sequential:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 128), nn.ReLU())


def _mlp(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(_mlp_body(), nn.Linear(128, 10))


def _cnn(seed: int) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(16, 32, 3, padding=1),
        nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Flatten(),
        nn.Linear(32 * 4 * 4, 64),
        nn.ReLU(),
        nn.Linear(64, 10),
    )


def _adam(params, lr: float) -> torch.optim.Optimizer:
    return torch.optim.Adam(params, lr=lr)


def _sgd_momentum(params, lr: float) -> torch.optim.Optimizer:
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


register(
    Task(
        name="digits-mlp",
        summary="scikit-learn digits (8x8, 10 classes), 2-layer MLP, Adam",
        optimizer_name="Adam",
        default_lr=1e-3,
        steps=600,
        make_model=_mlp,
        make_optimizer=_adam,
        make_loaders=_flat_loaders,
        loss_fn=cross_entropy,
        metric_name="accuracy",
        metric_fn=accuracy,
    )
)

register(
    Task(
        name="digits-cnn",
        summary="digits as 1x8x8 images, 2 conv layers + MLP head, SGD momentum 0.9",
        optimizer_name="SGD(momentum=0.9)",
        default_lr=1e-2,
        steps=600,
        make_model=_cnn,
        make_optimizer=_sgd_momentum,
        make_loaders=_image_loaders,
        loss_fn=cross_entropy,
        metric_name="accuracy",
        metric_fn=accuracy,
    )
)


# --- fine-tuning: a body pre-trained on digits 0-4, a new head for digits 5-9 ----------------

PRETRAIN_STEPS = 800


def cache_dir() -> Path:
    """Where lrkit keeps what it makes once (``$LRKIT_CACHE``, else ``~/.cache/lrkit``)."""
    return Path(os.environ.get("LRKIT_CACHE") or Path.home() / ".cache" / "lrkit")


def _pretrain_body() -> dict[str, torch.Tensor]:
    """Train the MLP body on digits 0-4 with a fixed seed; the same weights on every call."""
    from lrkit.tasks.training import torch_threads

    x, y = _digits()
    train, val = _split(keep=y < 5)
    # one intra-op thread, as lrkit.tasks.train pins: the sums, so the weights, depend on the count,
    # and the cached body must not depend on the thread setting of whoever made it first
    with callers_rng_kept(), torch_threads(1):
        torch.manual_seed(1234)
        body = _mlp_body()
        model = nn.Sequential(body, nn.Linear(128, 5))
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        loader, _ = tensor_loaders(train, val, batch_size=64, seed=1234)
        step = 0
        while step < PRETRAIN_STEPS:
            for batch in loader:
                optimizer.zero_grad()
                cross_entropy(model, batch).backward()
                optimizer.step()
                step += 1
                if step == PRETRAIN_STEPS:
                    break
    return {name: tensor.detach().clone() for name, tensor in body.state_dict().items()}


@functools.cache
def pretrained_body_state() -> dict[str, torch.Tensor]:
    """The pre-trained body weights, made by the code once and cached on disk (weights only)."""
    path = cache_dir() / f"finetune-digits-body-v2-{torch.__version__.split('+')[0]}.pt"
    if path.exists():
        try:
            return torch.load(path, weights_only=True)
        except Exception:  # noqa: BLE001 - a corrupt cache is rebuilt, never trusted
            pass
    state = _pretrain_body()
    atomic_write(path, lambda handle: torch.save(state, handle))
    return state


def _finetune_model(seed: int) -> nn.Module:
    pretrained = pretrained_body_state()  # first, since making it draws from torch's RNG
    torch.manual_seed(seed)
    body = _mlp_body()
    body.load_state_dict(pretrained)
    return nn.Sequential(body, nn.Linear(128, 5))


def _finetune_loaders(seed: int) -> Loaders:
    _, y = _digits()
    train, val = _split(keep=y >= 5, label_offset=5)
    return tensor_loaders(train, val, batch_size=32, seed=seed)


register(
    Task(
        name="finetune-digits",
        summary="MLP pre-trained on digits 0-4, new head fine-tuned on digits 5-9, Adam",
        optimizer_name="Adam",
        default_lr=1e-3,
        steps=300,
        make_model=_finetune_model,
        make_optimizer=_adam,
        make_loaders=_finetune_loaders,
        loss_fn=cross_entropy,
        metric_name="accuracy",
        metric_fn=accuracy,
    )
)
