"""Checkpoints on disk: exact round trip, whole after SIGKILL mid-write, pickle payloads refused."""

from __future__ import annotations

import multiprocessing
import pathlib
import random
import signal
import time

import pytest
import torch
from torch import nn

from lrkit.torch.checkpoint import load_checkpoint, read_checkpoint, save_checkpoint


def make(seed: int = 0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=3, gamma=0.5)
    return model, optimizer, scheduler


def train(model, optimizer, scheduler, steps: int) -> None:
    for _ in range(steps):
        optimizer.zero_grad()
        model(torch.randn(16, 4)).pow(2).mean().backward()
        optimizer.step()
        scheduler.step()


def test_round_trip_restores_model_optimizer_and_scheduler_exactly(tmp_path):
    model, optimizer, scheduler = make()
    train(model, optimizer, scheduler, 5)
    path = save_checkpoint(tmp_path / "run.pt", model, optimizer, scheduler=scheduler, step=5, extra={"lr": 0.01})
    expected = {k: v.clone() for k, v in model.state_dict().items()}
    expected_lr = optimizer.param_groups[0]["lr"]

    other, other_optimizer, other_scheduler = make(seed=1)
    info = load_checkpoint(path, other, other_optimizer, scheduler=other_scheduler)
    assert info.step == 5 and info.extra == {"lr": 0.01}
    assert all(torch.equal(expected[k], v) for k, v in other.state_dict().items())
    assert other_optimizer.param_groups[0]["lr"] == expected_lr
    assert other_scheduler.state_dict() == scheduler.state_dict()
    # both continue identically
    torch.manual_seed(7)
    train(model, optimizer, scheduler, 3)
    torch.manual_seed(7)
    train(other, other_optimizer, other_scheduler, 3)
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), other.parameters(), strict=True))


def _write_forever(path: pathlib.Path, step: int, writing) -> None:
    """Child process: write checkpoints from ``step`` on; every weight of step s equals s."""
    torch.set_num_threads(1)
    model = nn.Linear(1000, 1000)
    writing.set()  # started up: from now on a kill lands in the writing loop
    while True:
        step += 1
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(step)
        save_checkpoint(path, model, step=step)


def test_sigkill_during_writes_leaves_the_previous_checkpoint_loadable(tmp_path):
    path = tmp_path / "live.pt"
    model = nn.Linear(1000, 1000)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
    save_checkpoint(path, model, step=0)
    # forkserver: writers fork from a clean single-threaded server that imported torch once,
    # never from this process, whose threads (JAX, OpenMP) may hold locks that fork() would copy
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["torch", "lrkit.torch.checkpoint"])
    rng = random.Random(0)
    last_step, kills = 0, 20
    for _ in range(kills):
        writing = context.Event()
        writer = context.Process(target=_write_forever, args=(path, last_step, writing), daemon=True)
        writer.start()
        assert writing.wait(timeout=120), "the writer process did not start"
        time.sleep(rng.uniform(0.01, 0.25))  # a start-up on a busy machine no longer eats this
        writer.kill()  # SIGKILL
        writer.join()
        assert writer.exitcode == -signal.SIGKILL
        info = load_checkpoint(path, model)
        assert info.step >= last_step
        assert all(torch.all(p == info.step) for p in model.parameters())
        last_step = info.step
    leftovers = list(tmp_path.glob(".live.pt.*.tmp"))
    assert leftovers, "no kill landed in the middle of a write; the test proved nothing"
    assert last_step > 0


class _Payload:
    """Pickles into a call that creates a marker file when unpickled."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def test_a_pickle_payload_is_refused_without_running(tmp_path):
    marker = tmp_path / "payload-ran"
    evil = tmp_path / "evil.pt"
    model, optimizer, _ = make()
    torch.save({"format": "lrkit-checkpoint", "version": 1, "step": 0, "extra": {},
                "model": model.state_dict(), "hook": _Payload(marker)}, evil)

    with pytest.raises(ValueError, match=r"evil\.pt: refused to load: .*pickle payload"):
        load_checkpoint(evil, model)
    assert not marker.exists()
    # the payload is real: an unrestricted load runs it
    torch.load(evil, weights_only=False)
    assert marker.exists()


def test_damaged_and_foreign_files_name_the_file(tmp_path):
    model, _, _ = make()
    good = save_checkpoint(tmp_path / "good.pt", model)
    damaged = tmp_path / "damaged.pt"
    damaged.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"damaged\.pt: not a readable checkpoint"):
        read_checkpoint(damaged)
    foreign = tmp_path / "foreign.pt"
    torch.save(model.state_dict(), foreign)
    with pytest.raises(ValueError, match=r"foreign\.pt: not an lrkit checkpoint"):
        read_checkpoint(foreign)
    with pytest.raises(ValueError, match=r"good\.pt: the checkpoint holds no optimizer state"):
        load_checkpoint(good, model, torch.optim.SGD(model.parameters(), lr=0.1))
    with pytest.raises(FileNotFoundError):
        read_checkpoint(tmp_path / "missing.pt")


def test_bad_arguments_are_refused(tmp_path):
    model, _, _ = make()
    with pytest.raises(TypeError, match="model must be a torch.nn.Module, got dict"):
        save_checkpoint(tmp_path / "x.pt", {})
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        save_checkpoint(tmp_path / "x.pt", model, step=-1)
    with pytest.raises(TypeError, match="extra must map strings to plain numbers"):
        save_checkpoint(tmp_path / "x.pt", model, extra={"f": [1, 2]})
