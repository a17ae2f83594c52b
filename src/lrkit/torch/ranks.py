"""torch.distributed, as the range test and the guard need it: every rank must see the same numbers
so that every rank takes the same decisions (a rollback on one rank alone would split the replicas)."""

from __future__ import annotations

import torch


def distributed() -> bool:
    """Whether a torch.distributed process group is running."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def rank() -> int:
    """This process's rank (0 outside torch.distributed)."""
    return torch.distributed.get_rank() if distributed() else 0


def all_ranks_mean(*values: float, device: torch.device | None = None) -> list[float]:
    """Each value averaged over every rank, in one collective call (the values as given outside
    torch.distributed). NCCL reduces on ``device``, or on the current CUDA device."""
    if not distributed():
        return list(values)
    if torch.distributed.get_backend() != "nccl":
        device = torch.device("cpu")
    elif device is None or device.type != "cuda":
        device = torch.device("cuda", torch.cuda.current_device())
    tensor = torch.tensor(values, dtype=torch.float64, device=device)
    torch.distributed.all_reduce(tensor)
    return (tensor / torch.distributed.get_world_size()).tolist()
