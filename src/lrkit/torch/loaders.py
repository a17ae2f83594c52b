"""Loaders read epoch after epoch, the way a fixed step budget consumes them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def cycle(loader: Iterable[Any], *, name: str = "train_loader") -> Iterator[Any]:
    """Batches epoch after epoch from fresh iterators of ``loader`` (never a caller's iterator)."""
    while True:
        empty = True
        for batch in loader:
            empty = False
            yield batch
        if empty:
            raise ValueError(f"{name} is empty; it must yield at least one batch")
