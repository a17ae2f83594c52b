"""ScheduleLR: lrkit schedules driving a real PyTorch optimizer, checkpoints and plateau cuts."""

import io
import warnings

import numpy as np
import pytest
import torch
from hypothesis import given, settings

from lrkit import ScheduleLR
from lrkit import schedules as S
from schedule_strategies import schedules


def make_optimizer(lrs=(0.1, 0.01, 0.003)):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
    groups = [
        {"params": [model[0].weight], "lr": lrs[0]},
        {"params": [model[0].bias], "lr": lrs[1]},
        {"params": list(model[2].parameters()), "lr": lrs[2]},
    ]
    return model, torch.optim.AdamW(groups, lr=lrs[0])


def train_steps(model, optimizer, scheduler, steps, seed=0):
    """A few real updates; returns the LRs of every group at every step."""
    generator = torch.Generator().manual_seed(seed)
    seen = []
    for _ in range(steps):
        x = torch.randn(16, 4, generator=generator)
        loss = model(x).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_each_group_keeps_its_ratio_to_the_largest():
    schedule = S.warmup_cosine(1e-3, 200, warmup_steps=20)
    model, optimizer = make_optimizer()
    scheduler = ScheduleLR(optimizer, schedule)
    seen = np.array(train_steps(model, optimizer, scheduler, 200))
    assert np.array_equal(seen[:, 0], schedule(np.arange(200)))
    assert np.allclose(seen[:, 1], 0.1 * seen[:, 0], rtol=1e-12)
    assert np.allclose(seen[:, 2], 0.03 * seen[:, 0], rtol=1e-12)
    assert scheduler.get_last_lr() == [group["lr"] for group in optimizer.param_groups]


def test_inverse_time_drives_every_group():
    schedule = S.inverse_time(1e-2, 0.5, decay_steps=20, staircase=True)
    model, optimizer = make_optimizer()
    scheduler = ScheduleLR(optimizer, "inverse_time(peak=0.01, decay_rate=0.5, decay_steps=20, staircase=True)")
    seen = np.array(train_steps(model, optimizer, scheduler, 60))
    assert np.array_equal(seen[:, 0], schedule(np.arange(60)))
    assert seen[19, 0] == 1e-2 and seen[20, 0] == pytest.approx(1e-2 / 1.5) and seen[40, 0] == pytest.approx(5e-3)
    assert np.allclose(seen[:, 2], 0.03 * seen[:, 0], rtol=1e-12)


def test_scale_lowers_every_group_at_once_and_survives_a_resume():
    schedule = S.warmup_cosine(1e-3, 100, warmup_steps=10)
    model, optimizer = make_optimizer()
    scheduler = ScheduleLR(optimizer, schedule)
    train_steps(model, optimizer, scheduler, 30)
    scheduler.scale(0.25)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.25 * schedule(30), rel=1e-12)
    seen = np.array(train_steps(model, optimizer, scheduler, 20))
    assert np.allclose(seen[:, 0], 0.25 * schedule(np.arange(30, 50)), rtol=1e-12)
    assert np.allclose(seen[:, 2], 0.03 * seen[:, 0], rtol=1e-12)  # the groups keep their ratios
    _, other_optimizer = make_optimizer()
    resumed = ScheduleLR(other_optimizer, schedule)
    resumed.load_state_dict(scheduler.state_dict())
    assert resumed.get_lr() == pytest.approx(scheduler.get_lr(), rel=1e-12)
    for bad in (0, -1.0, float("nan"), "0.5", True):
        with pytest.raises(ValueError, match="factor must be a finite number > 0, got"):
            scheduler.scale(bad)


def test_constructor_only_sets_the_step_zero_lr():
    model, optimizer = make_optimizer()
    before = [dict(group) for group in optimizer.param_groups]
    state_before = io.BytesIO()
    torch.save(optimizer.state_dict()["state"], state_before)
    ScheduleLR(optimizer, S.cosine(peak=0.5, steps=10))
    for old, new in zip(before, optimizer.param_groups, strict=True):
        assert set(old) == set(new)
        assert {k: v for k, v in old.items() if k != "lr"} == {k: v for k, v in new.items() if k != "lr"}
    assert [group["lr"] for group in optimizer.param_groups] == pytest.approx([0.5, 0.05, 0.015], rel=1e-15)
    assert optimizer.state_dict()["state"] == {}


def test_is_a_pytorch_lr_scheduler_and_accepts_a_spec_string():
    _, optimizer = make_optimizer()
    scheduler = ScheduleLR(optimizer, "warmup(10) >> constant(0.2)")
    assert isinstance(scheduler, torch.optim.lr_scheduler.LRScheduler)
    assert scheduler.schedule == S.warmup(10) >> S.constant(0.2)


def test_warns_when_stepped_before_the_optimizer():
    _, optimizer = make_optimizer()
    scheduler = ScheduleLR(optimizer, S.constant(0.1))
    with pytest.warns(UserWarning, match=r"before `optimizer.step\(\)`"):
        scheduler.step()


def test_no_warning_in_the_right_order():
    model, optimizer = make_optimizer()
    scheduler = ScheduleLR(optimizer, S.constant(0.1))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        train_steps(model, optimizer, scheduler, 3)


@settings(max_examples=5)
@given(schedules)
def test_resume_after_torch_save_and_weights_only_load_is_bit_identical(schedule):
    model, optimizer = make_optimizer()
    scheduler = ScheduleLR(optimizer, schedule)
    straight = train_steps(model, optimizer, scheduler, 300, seed=1)

    model, optimizer = make_optimizer()
    scheduler = ScheduleLR(optimizer, schedule)
    first = train_steps(model, optimizer, scheduler, 273, seed=1)  # past one block of 256
    buffer = io.BytesIO()
    state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict()}
    torch.save(state, buffer)
    buffer.seek(0)
    checkpoint = torch.load(buffer, weights_only=True)

    model, optimizer = make_optimizer()
    resumed = ScheduleLR(optimizer, S.constant(1.0))  # the checkpoint brings the schedule
    model.load_state_dict(checkpoint["model"])
    optimizer.load_state_dict(checkpoint["optimizer"])  # after the scheduler, as with PyTorch's own
    resumed.load_state_dict(checkpoint["scheduler"])
    rest = train_from(model, optimizer, resumed, 273, 300, seed=1)
    assert resumed.schedule == schedule
    assert first + rest == straight


def train_from(model, optimizer, scheduler, start, stop, seed):
    """Continue ``train_steps`` at step ``start``: the same batches as an uninterrupted run."""
    generator = torch.Generator().manual_seed(seed)
    for _ in range(start):
        torch.randn(16, 4, generator=generator)
    seen = []
    for _ in range(start, stop):
        loss = model(torch.randn(16, 4, generator=generator)).pow(2).mean()
        optimizer.zero_grad()
        loss.backward()
        seen.append([group["lr"] for group in optimizer.param_groups])
        optimizer.step()
        scheduler.step()
    return seen


def test_warmup_then_plateau_cuts_compose():
    model, optimizer = make_optimizer()
    plateau = S.Plateau(decay_ratio=0.5, patience=1)
    scheduler = ScheduleLR(optimizer, S.warmup(10) >> S.constant(0.1), plateau=plateau)
    seen = train_steps(model, optimizer, scheduler, 10)
    assert [lrs[0] for lrs in seen] == pytest.approx([0.01 * i for i in range(10)])
    assert optimizer.param_groups[0]["lr"] == 0.1
    for metric in (1.0, 1.0, 1.0):  # no improvement after the first: cut on the third report
        scheduler.report(metric)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)
    assert optimizer.param_groups[1]["lr"] == pytest.approx(0.005)
    train_steps(model, optimizer, scheduler, 5)
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.05)

    buffer = io.BytesIO()
    torch.save(scheduler.state_dict(), buffer)
    buffer.seek(0)
    _, fresh_optimizer = make_optimizer()
    fresh = ScheduleLR(fresh_optimizer, S.constant(1.0))
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    assert fresh.plateau == plateau
    assert fresh.get_lr() == scheduler.get_lr()


def test_report_without_a_plateau_is_refused():
    _, optimizer = make_optimizer()
    with pytest.raises(ValueError, match="plateau"):
        ScheduleLR(optimizer, S.constant(0.1)).report(1.0)


def test_bad_arguments_name_what_is_wrong():
    _, optimizer = make_optimizer()
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        ScheduleLR("sgd", S.constant(0.1))
    with pytest.raises(TypeError, match="schedule must be an lrkit Schedule or spec string, got function"):
        ScheduleLR(optimizer, lambda step: 0.1)
    with pytest.raises(TypeError, match="plateau must be an lrkit Plateau"):
        ScheduleLR(optimizer, S.constant(0.1), plateau=0.5)
    with pytest.raises(ValueError, match="unknown schedule 'cosnie'"):
        ScheduleLR(optimizer, "cosnie(1.0, 10)")
    _, zero = make_optimizer((0.0, 0.0, 0.0))
    with pytest.raises(ValueError, match="lr > 0"):
        ScheduleLR(zero, S.constant(0.1))
    scheduler = ScheduleLR(optimizer, S.constant(0.1))
    with pytest.raises(ValueError, match="2 param group ratios but the optimizer has 3"):
        scheduler.load_state_dict(scheduler.state_dict() | {"ratios": [1.0, 0.5]})


def test_charlm_task_uses_the_warmup_cosine_composite():
    from lrkit.tasks import get_task

    schedule = get_task("charlm").schedule(1e-3, 300)
    assert schedule == S.warmup_cosine(1e-3, 300, warmup_steps=30)
    assert isinstance(schedule(0), float)
