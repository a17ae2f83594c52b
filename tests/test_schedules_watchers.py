"""lrkit's own schedules against its watchers: a bump the schedule asked for is no spike."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

import lrkit
from lrkit import schedules as S
from lrkit.spikes import SpikeRule, find_spikes
from lrkit.tasks import get_task
from lrkit.tasks.training import torch_threads
from lrkit.torch.loaders import cycle
from lrkit.torch.scheduler import ScheduleLR


def warm_restart(bump: float, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A run whose cosine cycle of 300 steps takes the loss from 2.3 to ~0.01, then a warm restart
    to the peak LR after which the loss climbs ``bump`` above its floor for 40 steps and settles."""
    rng = np.random.default_rng(seed)
    lrs = np.asarray(S.cosine_restarts(peak=1e-3, cycle_steps=300, cycles=2)(np.arange(400)))
    losses = 0.01 + 2.3 * np.exp(-np.arange(400) / 30.0) + 0.002 * rng.standard_normal(400)
    losses[320:360] += bump
    return losses, lrs


def test_a_bump_after_a_warm_restart_is_no_spike_when_the_lrs_are_known():
    losses, lrs = warm_restart(0.3)  # 13% of the 2.3 fallen, right after the LR jumped back up
    assert find_spikes(losses)[:1] == [322]  # without the LRs it looks like any spike
    assert find_spikes(losses, lrs=lrs) == []


def test_a_blow_up_after_a_warm_restart_is_still_a_spike():
    losses, lrs = warm_restart(1.5)  # undoes most of the progress: the restarted LR is too high
    assert find_spikes(losses, lrs=lrs)[:1] == [322]


def test_at_an_lr_that_never_rose_the_rule_is_unchanged():
    losses, _ = warm_restart(0.3)
    assert find_spikes(losses, lrs=np.full(400, 1e-3)) == find_spikes(losses)


def test_the_guard_lets_a_warm_restart_at_the_best_lr_through():
    """digits-mlp at its grid-best LR under SGDR (600-step cycles): Adam's loss climbs from ~0.008
    to ~0.3 some 50 steps after the restart and settles again; the guard used to roll back there
    three times and stop a run that ends better than at a constant LR."""
    task = get_task("digits-mlp")
    with torch_threads(1), torch.random.fork_rng():
        model = task.model(0)
        optimizer = task.optimizer(model.parameters(), 0.005623)
        schedule = S.cosine_restarts(peak=0.005623, cycle_steps=600, cycles=4)
        guard = lrkit.Guard(model, optimizer, scheduler=ScheduleLR(optimizer, schedule))
        train, _ = task.loaders(0)
        for _, batch in zip(range(720), cycle(train), strict=False):
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss_fn(model, batch)
            loss.backward()
            guard.step(loss)
    assert guard.trace.events == ()
    assert guard.rollbacks == 0


def test_the_guards_state_keeps_the_rules_memory_of_the_best_and_reads_older_states():
    model = torch.nn.Linear(2, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    guard = lrkit.Guard(model, optimizer)
    for loss in np.linspace(2.0, 1.0, 30):
        guard.judge(float(loss))
    state = json.loads(json.dumps(guard.state_dict()))  # as the Hugging Face callback keeps it
    assert state["start"] == 2.0 and state["best_lr"] == 0.1 and state["best"] < 2.0
    older = {key: value for key, value in state.items() if key not in ("start", "best", "best_lr")}
    fresh = lrkit.Guard(model, optimizer)
    fresh.load_state_dict(older)
    assert math.isnan(fresh.state_dict()["best_lr"])
    fresh.load_state_dict(state)
    assert fresh.state_dict() == guard.state_dict()


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda: SpikeRule(lr_rise=1.0), ValueError, "lr_rise must be in (1, inf), got 1.0"),
        (lambda: SpikeRule(raised_share=-0.1), ValueError, "raised_share must be >= 0"),
        (
            lambda: find_spikes([1.0, 2.0], lrs=[0.1]),
            ValueError,
            "lrs must hold one LR per loss, got 1 LRs for 2",
        ),
        (lambda: find_spikes([1.0], lrs=[math.nan]), ValueError, "lrs[0]"),
        (lambda: find_spikes([1.0], lrs=["0.1"]), TypeError, "lrs[0]"),
    ],
)
def test_bad_lrs_and_rule_options_name_what_is_allowed(call, error, message):
    with pytest.raises(error) as caught:
        call()
    assert message in str(caught.value)
