"""lrkit.Guard in a plain PyTorch loop: skips, rollbacks, stops, early stopping, healthy runs."""

from __future__ import annotations

import logging
import math
import warnings

import numpy as np
import pytest
import torch
from torch import nn

import lrkit
from lrkit import Guard
from lrkit.spikes import SpikeRule
from lrkit.tasks import evaluate, get_task
from lrkit.tasks.training import torch_threads
from lrkit.torch.guard import GuardStop
from lrkit.torch.loaders import cycle
from lrkit.torch.scheduler import ScheduleLR
from lrkit.trace import TraceBuilder


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny models run fastest (and most predictably on a busy machine) on one thread."""
    with torch_threads(1):
        yield


def setup(seed: int = 0, lr: float = 1e-2):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 1))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + 0.01 * step))
    generator = torch.Generator().manual_seed(seed + 100)
    data = []
    for _ in range(200):
        x = torch.randn(32, 4, generator=generator)
        data.append((x, x.sum(dim=1, keepdim=True)))
    return model, optimizer, scheduler, data


def run(guard, model, optimizer, data, *, blow_up=lambda step, loss: loss):
    """The loop a user writes: zero_grad, loss, backward, guard.step."""
    applied = []
    for step, (x, y) in enumerate(data):
        optimizer.zero_grad()
        loss = blow_up(step, nn.functional.mse_loss(model(x), y))
        loss.backward()
        applied.append(guard.step(loss))
    return applied


def state_of(model, optimizer, scheduler):
    clone = lambda value: value.clone() if isinstance(value, torch.Tensor) else value  # noqa: E731
    return (
        [p.detach().clone() for p in model.parameters()],
        {k: {n: clone(v) for n, v in s.items()} for k, s in optimizer.state_dict()["state"].items()},
        [g["lr"] for g in optimizer.param_groups],
        scheduler.state_dict(),
    )


def assert_same(a, b):
    params_a, opt_a, lrs_a, sched_a = a
    params_b, opt_b, lrs_b, sched_b = b
    assert all(torch.equal(x, y) for x, y in zip(params_a, params_b, strict=True))
    assert opt_a.keys() == opt_b.keys()
    for key in opt_a:
        assert all(torch.equal(torch.as_tensor(opt_a[key][n]), torch.as_tensor(opt_b[key][n])) for n in opt_a[key])
    assert lrs_a == lrs_b and sched_a == sched_b


@pytest.mark.parametrize("where", ["loss", "gradient", "nan gradient"])
def test_a_nonfinite_step_changes_nothing(where):
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler)
    run(guard, model, optimizer, data[:30])
    before = state_of(model, optimizer, scheduler)
    x, y = data[30]
    optimizer.zero_grad()
    loss = nn.functional.mse_loss(model(x), y)
    if where == "loss":
        loss = loss * math.nan
    loss.backward()
    if where != "loss":  # the loss is finite, one gradient is not
        model[0].weight.grad[0, 0] = math.inf if where == "gradient" else math.nan
    assert guard.step(loss) is False
    assert_same(before, state_of(model, optimizer, scheduler))
    assert guard.skipped == 1 and guard.rollbacks == 0
    (event,) = guard.trace.events
    assert event.kind == "skip" and event.step == 30
    # training goes on normally afterwards
    assert all(run(guard, model, optimizer, data[31:60]))


@pytest.mark.parametrize("zero_grad_last", [False, True])
def test_a_rewind_replays_the_uninterrupted_run_exactly(zero_grad_last):
    # with zero_grad after guard.step, the snapshot (taken inside guard.step) holds that step's
    # gradients, which a rewind must not hand to the first replayed backward
    def loop(guard, model, optimizer, batches):
        for x, y in batches:
            if not zero_grad_last:
                optimizer.zero_grad()
            loss = nn.functional.mse_loss(model(x), y)
            loss.backward()
            assert guard.step(loss)
            if zero_grad_last:
                optimizer.zero_grad()

    model, optimizer, scheduler, data = setup()
    torch.manual_seed(1)  # dropout draws from the global RNG
    loop(Guard(model, optimizer, scheduler=scheduler, snapshot_every=10), model, optimizer, data[:60])
    uninterrupted = state_of(model, optimizer, scheduler)

    model, optimizer, scheduler, data = setup()
    torch.manual_seed(1)
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=10)
    loop(guard, model, optimizer, data[:47])
    expected = guard.last_good_step
    start = guard.rewind()
    assert start == expected == 40  # snapshots are taken every 10 applied steps
    loop(guard, model, optimizer, data[start:60])
    assert_same(uninterrupted, state_of(model, optimizer, scheduler))


def test_a_spike_rolls_back_cuts_the_lr_and_skips_batches(caplog):
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=5, lr_factor=0.5)
    run(guard, model, optimizer, data[:60])
    good = guard.last_good_step
    at_snapshot = [p.detach().clone() for p in model.parameters()]
    lr_before = optimizer.param_groups[0]["lr"]
    assert good == 60
    with caplog.at_level(logging.WARNING, logger="lrkit.guard"):
        applied = run(guard, model, optimizer, data[60:70], blow_up=lambda step, loss: loss * 1e4 if step < 3 else loss)
    assert guard.rollbacks == 1
    # three steps in a row far above the median: the first two were applied, the third confirmed it
    assert applied[:3] == [True, True, False]
    assert applied[3:8] == [False] * 5 and all(applied[8:])  # the skip window
    assert guard.lr_scale == 0.5
    assert optimizer.param_groups[0]["lr"] == pytest.approx(lr_before * 0.5 * (1 + 0.6) / (1 + 0.62))
    kinds = [event.kind for event in guard.trace.events]
    assert kinds == ["rollback"]
    assert "rolled back to step 60, LR cut to 0.5x" in guard.trace.events[0].detail
    assert "rollback" in caplog.text

    # just after the rollback the weights were those of the snapshot
    model2, optimizer2, scheduler2, _ = setup()
    guard2 = Guard(model2, optimizer2, scheduler=scheduler2, snapshot_every=20)
    run(guard2, model2, optimizer2, data[:60])
    assert all(torch.equal(a, b) for a, b in zip(at_snapshot, model2.parameters(), strict=True))


def test_rollbacks_without_progress_stop_with_a_clear_error():
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=0, max_rollbacks=2)
    run(guard, model, optimizer, data[:40])
    at_snapshot = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(GuardStop, match=r"after 2 rollbacks to the snapshot of step 40 without progress") as info:
        run(guard, model, optimizer, data[40:], blow_up=lambda step, loss: loss * 1e4)
    assert "Try starting at least" in str(info.value)
    assert guard.rollbacks == 2
    assert [e.kind for e in guard.trace.events] == ["rollback", "rollback", "stop"]
    assert all(torch.equal(a, b) for a, b in zip(at_snapshot, model.parameters(), strict=True))
    assert "with the LR already cut to 0.09x its start" in str(info.value)
    # the model and its LRs are back at the snapshot, and lr_scale says so
    assert guard.lr_scale == 1.0 and scheduler.base_lrs == [pytest.approx(1e-2)]


def test_a_stop_before_any_cut_advises_the_guards_own_factor():
    """With max_rollbacks=0 the first spike stops the run with the LR uncut: the advice is the cut
    the guard would have made (1/lr_factor), not "1x lower"."""
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=0, max_rollbacks=0)
    run(guard, model, optimizer, data[:40])
    with pytest.raises(GuardStop, match=r"after 0 rollbacks to the snapshot of step 40 without progress\. ") as info:
        run(guard, model, optimizer, data[40:], blow_up=lambda step, loss: loss * 1e4)
    assert "Try starting at least 3.33x lower" in str(info.value)
    assert "already cut" not in str(info.value)


def test_a_run_of_nonfinite_losses_counts_as_a_spike():
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler, nonfinite_patience=3, skip_batches=0)
    run(guard, model, optimizer, data[:30], blow_up=lambda step, loss: loss * math.nan if step >= 25 else loss)
    assert guard.skipped == 5 and guard.rollbacks == 1
    assert [e.kind for e in guard.trace.events] == ["skip", "skip", "skip", "rollback", "skip", "skip"]


def test_early_stopping_restores_the_best_weights():
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler, patience=2)
    best = None
    for index, val_loss in enumerate([1.0, 0.5, 0.6, 0.7]):
        run(guard, model, optimizer, data[index * 10 : index * 10 + 10])
        if val_loss == 0.5:
            best = [p.detach().clone() for p in model.parameters()]
        stop = guard.should_stop(val_loss)
        assert stop == (index == 3)
    assert all(torch.equal(a, b) for a, b in zip(best, model.parameters(), strict=True))
    assert guard.best_val_loss == 0.5
    assert guard.trace.events[-1].kind == "early_stop"
    assert guard.trace.val_loss[9] == 1.0 and guard.trace.val_loss[39] == 0.7


@pytest.mark.parametrize(("name", "seed"), [("cancer-logreg", 0), ("cancer-logreg", 1), ("teacher-student", 2)])
def test_a_run_at_a_good_lr_triggers_nothing_and_matches_the_bare_loop(name, seed):
    task = get_task(name)
    steps = min(task.steps, 400)
    finals = []
    for guarded in (False, True):
        model = task.model(seed)
        optimizer = task.optimizer(model.parameters(), task.default_lr)
        train_loader, val_loader = task.loaders(seed)
        guard = Guard(model, optimizer) if guarded else None
        for _, batch in zip(range(steps), cycle(train_loader), strict=False):
            optimizer.zero_grad()
            loss = task.loss_fn(model, batch)
            loss.backward()
            if guard is None:
                optimizer.step()
            else:
                assert guard.step(loss)
        finals.append(evaluate(task, model, val_loader)[0])
    assert guard.trace.events == () and guard.rollbacks == guard.skipped == 0
    assert len(guard.trace) == steps
    assert finals[0] == finals[1]


def feed(guard, losses):
    """Drive the guard as a framework callback does: judge each loss, then report it applied."""
    for loss in losses:
        if guard.judge(float(loss)):
            guard.applied()


def test_the_watch_cuts_the_lr_of_a_run_that_stalls_and_creeps_back_up():
    model, optimizer, scheduler, _ = setup()
    guard = Guard(model, optimizer, scheduler=scheduler, watch_every=40)
    rng = torch.Generator().manual_seed(0)
    noise = 0.02 * torch.randn(120, generator=rng)
    # falls over the first 30 steps, then creeps back up: no spike, but a rate too high to settle
    losses = [2.0 - 1.5 * min(t, 30) / 30 + 0.6 * max(t - 30, 0) / 90 + float(e) for t, e in enumerate(noise)]
    feed(guard, losses)
    cuts = [event for event in guard.trace.events if event.kind == "lr_cut"]
    assert len(cuts) == 1 and "too_high" in cuts[0].detail
    curve = guard.trace.select(slice(0, 120))  # what the watch read at its cut (step 119)
    assert guard.lr_scale == pytest.approx(lrkit.diagnose(curve).lr_factor) and guard.rollbacks == 0
    assert guard.lr_scale < 1
    # the group's LR and the base LR the scheduler computes from are both cut (feed() never steps
    # the scheduler, so the group's LR is the starting 1e-2 times the cut)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * guard.lr_scale)
    assert scheduler.base_lrs == [pytest.approx(1e-2 * guard.lr_scale)]


SCHEDULERS = {
    "ScheduleLR": lambda optimizer: ScheduleLR(optimizer, "warmup(20) >> cosine(1e-2, 480)"),
    "LambdaLR": lambda optimizer: torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 1 / (1 + 0.01 * step)),
    "StepLR": lambda optimizer: torch.optim.lr_scheduler.StepLR(optimizer, step_size=30, gamma=0.5),
    "CosineAnnealingLR": lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=100, eta_min=1e-3),
    "CosineAnnealingWarmRestarts": lambda optimizer: torch.optim.lr_scheduler.CosineAnnealingWarmRestarts(
        optimizer, T_0=40, eta_min=1e-3
    ),
    "OneCycleLR": lambda optimizer: torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=1e-2, total_steps=500),
    "CyclicLR": lambda optimizer: torch.optim.lr_scheduler.CyclicLR(
        optimizer, base_lr=1e-3, max_lr=1e-2, step_size_up=25, cycle_momentum=False
    ),
    "SequentialLR": lambda optimizer: torch.optim.lr_scheduler.SequentialLR(
        optimizer,
        [torch.optim.lr_scheduler.LinearLR(optimizer, 0.1, 1.0, total_iters=20),
         torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=480)],
        milestones=[20],
    ),
}


@pytest.mark.parametrize("kind", list(SCHEDULERS))
def test_a_cut_lr_keeps_the_schedules_shape_at_the_lower_level(kind):
    def made():
        model, optimizer, _, data = setup()
        return model, optimizer, SCHEDULERS[kind](optimizer), data

    model, optimizer, scheduler, data = made()
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=5, lr_factor=0.5)
    run(guard, model, optimizer, data[:130], blow_up=lambda step, loss: loss * 1e4 if 60 <= step < 63 else loss)
    assert guard.rollbacks == 1 and guard.lr_scale == 0.5
    # the same schedule, never cut, stepped as often: the guarded LRs are half of its LRs
    _, reference_optimizer, reference, _ = made()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # stepped without optimizer steps on purpose
        for _ in range(scheduler.last_epoch):
            reference.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx(
        [0.5 * group["lr"] for group in reference_optimizer.param_groups], rel=1e-9
    )
    run(guard, model, optimizer, data[130:160])  # and it stays so as the schedule moves on
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(30):
            reference.step()
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx(
        [0.5 * group["lr"] for group in reference_optimizer.param_groups], rel=1e-9
    )


def test_the_watch_leaves_a_healthy_curve_alone():
    model, optimizer, scheduler, _ = setup()
    guard = Guard(model, optimizer, scheduler=scheduler, watch_every=40)
    rng = torch.Generator().manual_seed(1)
    losses = [0.3 + 1.7 * math.exp(-t / 25) + 0.02 * float(torch.randn(1, generator=rng)) for t in range(200)]
    feed(guard, losses)
    assert guard.trace.events == () and guard.lr_scale == 1.0


def test_the_watch_never_cuts_below_its_floor(monkeypatch):
    import lrkit.torch.guard as guard_module

    read = []
    real = guard_module.diagnose
    monkeypatch.setattr(guard_module, "diagnose", lambda trace: read.append(len(trace)) or real(trace))
    model, optimizer, _, _ = setup()
    guard = Guard(model, optimizer, watch_every=10, min_lr_scale=0.05)
    rng = torch.Generator().manual_seed(2)
    # a curve that keeps rising whatever the LR: it reads "diverged" window after window
    losses = [1.0 + 0.01 * t + 0.05 * float(torch.randn(1, generator=rng)) for t in range(400)]
    feed(guard, losses)
    cuts = [event for event in guard.trace.events if event.kind == "lr_cut"]
    assert len(cuts) >= 2 and "its floor, min_lr_scale" in cuts[-1].detail
    assert guard.lr_scale == pytest.approx(0.05)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * 0.05)
    watched = len(read)
    feed(guard, losses[:100])  # at the floor the watch stops reading
    assert len(read) == watched and guard.lr_scale == pytest.approx(0.05)
    with pytest.raises(ValueError, match="min_lr_scale"):
        Guard(model, optimizer, min_lr_scale=0)


def test_a_window_of_the_builder_is_that_slice_of_the_whole_trace():
    builder = TraceBuilder()
    for step in range(50):
        builder.add(step, 0.1, float(step), grad_norm=1.0)
        if step % 10 == 3:
            builder.event(step, "skip", "x")
    assert builder.build(slice(20, 40)) == builder.build().select(slice(20, 40))
    assert [event.step for event in builder.build(slice(20, 40)).events] == [23, 33]


def test_snapshots_on_disk_keep_one_file_at_a_time(tmp_path):
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=10, directory=tmp_path)
    run(guard, model, optimizer, data[:55])
    assert len(list(tmp_path.glob("*.pt"))) == 1
    assert guard.rewind() == 50


def test_closing_the_guard_deletes_its_snapshot_files(tmp_path):
    model, optimizer, scheduler, data = setup()
    with Guard(model, optimizer, scheduler=scheduler, snapshot_every=10, directory=tmp_path, patience=2) as guard:
        run(guard, model, optimizer, data[:25])
        guard.should_stop(1.0)  # the best weights: a second file
        assert len(list(tmp_path.glob("*.pt"))) == 2
    assert list(tmp_path.iterdir()) == []


def test_bad_arguments_name_what_is_allowed():
    model, optimizer, _, _ = setup()
    with pytest.raises(ValueError, match=r"lr_factor must be in \(0, 1\), got 1.5"):
        Guard(model, optimizer, lr_factor=1.5)
    with pytest.raises(ValueError, match="snapshot_every must be >= 1, got 0"):
        Guard(model, optimizer, snapshot_every=0)
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer, got str"):
        Guard(model, "adam")
    with pytest.raises(TypeError, match="rule must be a lrkit.spikes.SpikeRule or None, got dict"):
        Guard(model, optimizer, rule={"window": 5})
    with pytest.raises(RuntimeError, match="no validation loss was recorded yet"):
        Guard(model, optimizer).restore_best()
    with pytest.raises(ValueError, match="watch_every must be >= 10, got 3"):
        Guard(model, optimizer, watch_every=3)
    with pytest.raises(TypeError, match="trace must be a lrkit.trace.TraceBuilder or None, got list"):
        Guard(model, optimizer, trace=[])
    with pytest.raises(ValueError, match="directory must be a folder .*, got the file"):
        Guard(model, optimizer, directory=__file__)
    Guard(model, optimizer, rule=SpikeRule(window=10, warmup_steps=5))


def test_a_scheduler_of_another_optimizer_is_refused():
    model, first, _, _ = setup()
    scheduler = lrkit.ScheduleLR(first, lrkit.parse_schedule("constant(0.01)"))
    replaced = torch.optim.AdamW(model.parameters(), lr=0.01)  # e.g. rebuilt from param groups
    with pytest.raises(ValueError, match=r"scheduler \(ScheduleLR\) is attached to another optimizer"):
        Guard(model, replaced, scheduler=scheduler)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(first)
    with pytest.raises(ValueError, match="attached to another optimizer"):
        Guard(model, replaced, scheduler=plateau)
    Guard(model, first, scheduler=scheduler)


NOT_A_LOSS = [
    ("loss", TypeError, r"got 'loss' \(str\)$"),
    (None, TypeError, r"got None \(NoneType\)$"),
    (True, TypeError, r"got True \(bool\)$"),
    ([0.5], TypeError, r"got \[0.5\] \(list\)$"),
    (torch.ones(3, requires_grad=True), ValueError, r"got a tensor of shape \(3,\)$"),
    (torch.ones(2, 2), ValueError, r"got a tensor of shape \(2, 2\)$"),
    (torch.tensor(True), TypeError, r"got a tensor of dtype torch.bool$"),
]


@pytest.mark.parametrize(("loss", "error", "message"), NOT_A_LOSS)
def test_a_loss_that_is_not_a_number_is_refused_naming_loss_and_changes_nothing(loss, error, message):
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler)
    run(guard, model, optimizer, data[:3])
    before = state_of(model, optimizer, scheduler)
    for call in (guard.step, guard.judge):
        with pytest.raises(error, match="^loss must be a number or a one-element tensor, " + message):
            call(loss)
    assert_same(before, state_of(model, optimizer, scheduler))
    assert guard.steps == 3 and len(guard.trace) == 3


@pytest.mark.parametrize(("val_loss", "error", "message"), NOT_A_LOSS)
def test_a_val_loss_that_is_not_a_number_is_refused_naming_val_loss(val_loss, error, message):
    model, optimizer, _, _ = setup()
    guard = Guard(model, optimizer, patience=1)
    with pytest.raises(error, match="^val_loss must be a number or a one-element tensor, " + message):
        guard.should_stop(val_loss)
    assert guard.best_val_loss == math.inf


def test_numbers_and_one_element_tensors_are_losses():
    model, optimizer, scheduler, data = setup()
    guard = Guard(model, optimizer, scheduler=scheduler)
    x, y = data[0]
    losses = [
        1.5,
        2,
        np.float32(1.25),
        torch.tensor(0.75),
        torch.tensor([0.5]),
        nn.functional.mse_loss(model(x), y),  # 0-d, requires grad
    ]
    for loss in losses:
        assert guard.judge(loss)
    assert guard.trace.loss[:5].tolist() == [1.5, 2.0, 1.25, 0.75, 0.5]
    assert not guard.judge(math.nan)  # a NaN loss is a loss: skipped, not refused
    assert not guard.should_stop(torch.tensor([0.4])) and guard.best_val_loss == pytest.approx(0.4)


def test_a_refused_loss_leaves_the_grad_scaler_ready_for_the_next_step():
    model, optimizer, scheduler, data = setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    guard = Guard(model, optimizer, scheduler=scheduler, scaler=scaler)
    x, y = data[0]
    loss = nn.functional.mse_loss(model(x), y)
    scaler.scale(loss).backward()
    with pytest.raises(TypeError, match="loss must be a number"):
        guard.step("loss")
    assert guard.step(loss)  # unscaling twice in one step would raise here


def test_with_a_grad_scaler_an_overflow_is_skipped_and_the_scale_lowered():
    model, optimizer, scheduler, data = setup()
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0)
    guard = Guard(model, optimizer, scheduler=scheduler, scaler=scaler, nonfinite_patience=1)
    for index, (x, y) in enumerate(data[:40]):
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        scaler.scale(loss).backward()
        if index == 30:
            before = state_of(model, optimizer, scheduler)
            model[0].weight.grad[0, 0] = math.inf
        applied = guard.step(loss)
        if index == 30:
            assert not applied
            assert_same(before, state_of(model, optimizer, scheduler))
            assert scaler.get_scale() == 512.0
    # an overflow is the scaler's business: skipped and counted, never escalated to a rollback
    assert guard.skipped == 1 and guard.rollbacks == 0


def test_checking_options_leaves_the_callers_rng_alone():
    """A Lightning or Hugging Face guard callback checks its options when made; that must not draw
    from the global RNG, or making the callback would change the model initialised after it."""
    torch.manual_seed(0)
    Guard.check_options({"lr_factor": 0.5, "snapshot_every": 10})
    after = torch.rand(3)
    torch.manual_seed(0)
    assert torch.equal(after, torch.rand(3))


def test_after_a_cut_the_scheduler_reports_the_rate_in_use():
    # get_last_lr() is what loggers (the Hugging Face Trainer, Lightning's LearningRateMonitor) show
    model, optimizer, _, data = setup()
    scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=200)
    guard = Guard(model, optimizer, scheduler=scheduler, snapshot_every=20, skip_batches=2)
    run(guard, model, optimizer, data[:60])
    run(guard, model, optimizer, data[60:64], blow_up=lambda step, loss: loss * 1e4 if step < 3 else loss)
    assert guard.rollbacks == 1
    assert scheduler.get_last_lr() == [group["lr"] for group in optimizer.param_groups]
