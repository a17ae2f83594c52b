"""The Lightning GuardCallback under a ddp_spawn strategy: a spike in one rank's batches rolls back
every rank together, and the replicas stay equal."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lrkit.integrations.lightning import GuardCallback


class _Spiking(pl.LightningModule):
    """A classifier whose rank-1 loss is 1e4x too large for three steps."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        loss = nn.functional.cross_entropy(self.net(x), y)
        if self.global_rank == 1 and 30 <= self.global_step < 33:
            loss = loss * 1e4
        return loss

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


class _RankReport(pl.Callback):
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def on_train_end(self, trainer, module):
        guard = next(c for c in trainer.callbacks if isinstance(c, GuardCallback)).guard
        report = {
            "params": [p.detach().clone() for p in module.parameters()],
            "events": [(event.step, event.kind) for event in guard.trace.events],
            "judged": guard.trace.loss.tolist(),
        }
        torch.save(report, self.folder / f"lightning{trainer.global_rank}.pt")


@pytest.mark.timeout(180)
def test_the_lightning_callback_under_ddp_rolls_back_every_rank_together(tmp_path: Path):
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(1024, 10, generator=generator)
    y = (x[:, :3].sum(1) > 0).long() + (x[:, 3] > 1).long()
    loader = DataLoader(TensorDataset(x, y), batch_size=16, shuffle=True, generator=generator)
    sharing = torch.multiprocessing.get_sharing_strategy()
    torch.multiprocessing.set_sharing_strategy("file_system")  # some sandboxes refuse shared-memory files
    try:
        pl.Trainer(
            max_steps=50, accelerator="cpu", devices=2, strategy="ddp_spawn", logger=False,
            enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
            callbacks=[GuardCallback(snapshot_every=10, skip_batches=3), _RankReport(tmp_path)],
        ).fit(_Spiking(), loader)
    finally:
        torch.multiprocessing.set_sharing_strategy(sharing)
    first, second = (torch.load(tmp_path / f"lightning{rank}.pt", weights_only=True) for rank in (0, 1))
    assert [kind for _, kind in first["events"]] == ["rollback"]
    assert first["events"] == second["events"] and first["judged"] == second["judged"]
    assert all(torch.equal(a, b) for a, b in zip(first["params"], second["params"], strict=True))
