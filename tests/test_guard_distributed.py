"""The guard under torch.distributed: every rank judges the same numbers and takes the same steps.

Two processes with the gloo backend on CPU train one DistributedDataParallel model, each on its
own data; a spike in one rank's loss alone must roll back both ranks, or the replicas split. The
spawned processes import this module: it stays light (no Lightning; that test has its own module).
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from lrkit import Guard
from two_ranks import run_two_ranks


class _Kept(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def _body(rank: int) -> dict:
    kept = _Kept()
    logging.getLogger("lrkit.guard").addHandler(kept)
    torch.manual_seed(0)
    model = nn.parallel.DistributedDataParallel(nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1)))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + 0.01 * step))
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=5)
    generator = torch.Generator().manual_seed(100 + rank)  # each rank sees its own data
    losses = []
    for step in range(50):
        x = torch.randn(32, 4, generator=generator)
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), x.sum(dim=1, keepdim=True))
        if rank == 1 and 30 <= step < 33:
            loss = loss * 1e4  # a spike in this rank's batches only
        loss.backward()
        losses.append(loss.item())
        guard.step(loss)
    stops = [guard.should_stop(value) for value in ([1.0, 0.9, 0.95, 0.96] if rank == 0 else [1.0, 1.1, 0.8, 0.85])]
    return {
        "params": [p.detach().clone() for p in model.parameters()],
        "judged": guard.trace.loss.tolist(),
        "local": losses,
        "events": [(event.step, event.kind) for event in guard.trace.events],
        "rollbacks": guard.rollbacks,
        "lr": optimizer.param_groups[0]["lr"],
        "stops": stops,
        "best_val_loss": guard.best_val_loss,
        "logged": len(kept.messages),
    }


@pytest.mark.timeout(300)
def test_a_spike_on_one_rank_rolls_back_every_rank_and_the_replicas_stay_equal(tmp_path: Path):
    first, second = run_two_ranks(_body, tmp_path)
    assert first["rollbacks"] == second["rollbacks"] == 1
    assert first["events"] == second["events"] and first["events"][0][1] == "rollback"
    assert all(torch.equal(a, b) for a, b in zip(first["params"], second["params"], strict=True))
    assert first["lr"] == second["lr"]
    # both judged the mean of the ranks' losses
    assert first["judged"] == second["judged"]
    mean = [(a + b) / 2 for a, b in zip(first["local"], second["local"], strict=True)]
    assert all(math.isclose(a, b, rel_tol=1e-6) for a, b in zip(first["judged"], mean, strict=True))
    # validation losses are averaged too: one early-stopping decision and one best
    assert first["stops"] == second["stops"] == [False, False, False, False]
    assert first["best_val_loss"] == second["best_val_loss"] == pytest.approx(0.875)
    assert first["logged"] >= 1 and second["logged"] == 0  # rank 0 tells, once
