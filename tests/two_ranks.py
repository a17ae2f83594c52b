"""Run a test body on two gloo ranks (two spawned CPU processes), and read back what each reported.

``body(rank)`` is a module-level function (spawned processes import it by name) that runs inside
an initialised process group and returns a dict of tensors and plain values.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch


def run_two_ranks(body: Callable[[int], dict[str, Any]], folder: Path) -> list[dict[str, Any]]:
    """Each rank's report, rank 0 first."""
    # spawn, not fork: forking a parent whose other threads (JAX, OpenMP) hold locks can deadlock
    torch.multiprocessing.start_processes(_rank, args=(body, str(folder)), nprocs=2, start_method="spawn")
    return [torch.load(folder / f"rank{rank}.pt", weights_only=True) for rank in (0, 1)]


def _rank(rank: int, body: Callable[[int], dict[str, Any]], folder: str) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"file://{folder}/init",
        rank=rank,
        world_size=2,
        timeout=timedelta(seconds=120),  # a lost peer fails the test instead of hanging it
    )
    try:
        torch.save(body(rank), f"{folder}/rank{rank}.pt")
    finally:
        dist.destroy_process_group()
