"""Loaders read epoch after epoch, the way a fixed step budget consumes them."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any


def cycle(loader: Iterable[Any], *, name: str = "train_loader") -> Iterator[Any]:
    """Batches epoch after epoch from fresh iterators of ``loader`` (never a caller's iterator)."""
    seen = 0
    while True:
        empty = True
        for batch in loader:
            empty = False
            seen += 1
            yield batch
        if empty and seen:  # a one-shot iterable: it hands out the same exhausted iterator again
            raise ValueError(
                f"{name} yielded {seen} batches, then none when iterated again: it can be read only "
                "once (an iterator or generator inside it?); give one that restarts on each "
                "iteration (a DataLoader over a Dataset, a list of batches), or fewer steps"
            )
        if empty:
            raise ValueError(f"{name} is empty; it must yield at least one batch")
