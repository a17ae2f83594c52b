"""What docs/migrating.md claims, checked against the installed references: the lrkit spec for every
transformers scheduler name and for the PyTorch, optax and Keras schedules the page maps that
tests/test_schedules_reference.py does not already pin, and the exact size of every difference the
page admits.

Equal means within 1e-12 relative (values under 1e-12 of the peak are compared absolutely, at that
level). optax runs with ``jax_enable_x64``; Keras computes in float32, so its schedules agree to
float32 precision.
"""

import math
import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from torch.optim import lr_scheduler
from transformers import SchedulerType, get_scheduler

from lrkit import Plateau, ScheduleLR
from lrkit import schedules as S

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported (the test process has no TensorFlow)
import keras  # noqa: E402

PEAK = 1e-3
FLOAT32 = 2e-6


def assert_same(ours: np.ndarray, reference: np.ndarray, peak: float = PEAK, rtol: float = 1e-12) -> None:
    np.testing.assert_allclose(ours, reference, rtol=rtol, atol=rtol * peak)


def torch_lrs(make_scheduler, steps: int, *, lr: float = PEAK, metrics=None) -> np.ndarray:
    """The LR a PyTorch scheduler sets for steps 0..steps-1 (step 0 is right after construction);
    with ``metrics``, ``step(metric)`` is called with each one, as for ReduceLROnPlateau."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = make_scheduler(optimizer)
    lrs = [optimizer.param_groups[0]["lr"]]
    for step in range(steps - 1):
        optimizer.step()
        scheduler.step() if metrics is None else scheduler.step(metrics[step])
        lrs.append(optimizer.param_groups[0]["lr"])
    return np.array(lrs)


def hf_lrs(name: str, warmup: int | None, total: int | None, steps: int, **kwargs) -> np.ndarray:
    def make(optimizer):
        return get_scheduler(name, optimizer, warmup, total, scheduler_specific_kwargs=kwargs or None)

    return torch_lrs(make, steps)


def lrkit_plateau_lrs(schedule: S.Schedule, plateau: Plateau, metrics, *, lr: float = PEAK) -> np.ndarray:
    """ScheduleLR with a plateau controller, one report per step, as ``torch_lrs`` does with ``metrics``."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    scheduler = ScheduleLR(optimizer, schedule, plateau=plateau)
    lrs = [optimizer.param_groups[0]["lr"]]
    for metric in metrics:
        optimizer.step()
        scheduler.step()
        scheduler.report(metric)
        lrs.append(optimizer.param_groups[0]["lr"])
    return np.array(lrs)


# ---- transformers: every get_scheduler name -----------------------------------------------------

# name -> where its lrkit equivalent is pinned (or why there is none)
HF_NAMES = {
    "linear": "test_schedules_reference.py::test_hf_linear",
    "cosine": "test_schedules_reference.py::test_hf_cosine, test_hf_cosine_num_cycles; the tail: here",
    "cosine_with_restarts": "test_schedules_reference.py::test_hf_cosine_with_restarts; uneven cycles: here",
    "polynomial": "test_schedules_reference.py::test_hf_polynomial; the default lr_end: here",
    "constant": "here",
    "constant_with_warmup": "test_schedules_reference.py::test_hf_constant_with_warmup",
    "inverse_sqrt": "test_schedules_reference.py::test_hf_inverse_sqrt",
    "reduce_lr_on_plateau": "here",
    "cosine_with_min_lr": "here, num_cycles too",
    "cosine_warmup_with_min_lr": "here",
    "warmup_stable_decay": (
        "test_schedules_reference.py::test_hf_warmup_stable_decay, "
        "test_hf_warmup_stable_decay_warmup_types_and_cosine_cycles; defaults, cosine warmup: here"
    ),
    "greedy": "none: GreedyLR raises the rate when the metric improves, which no lrkit piece does",
}


def test_every_transformers_scheduler_name_is_accounted_for():
    assert {name.value for name in SchedulerType} == set(HF_NAMES)


def test_hf_constant():
    assert_same(S.constant(PEAK)(np.arange(50)), hf_lrs("constant", None, None, 50))


@pytest.mark.parametrize("end", [{"min_lr": 1e-5}, {"min_lr_rate": 0.1}])
@pytest.mark.parametrize("warmup", [1, 10])
def test_hf_cosine_with_min_lr(warmup, end):
    min_lr = end.get("min_lr", PEAK * end.get("min_lr_rate", 0))
    ours = S.warmup(warmup) >> S.cosine(PEAK, 100 - warmup, end=min_lr)
    assert_same(ours(np.arange(100)), hf_lrs("cosine_with_min_lr", warmup, 100, 100, **end))


@pytest.mark.parametrize("num_cycles", [0.25, 1.0, 1.5])
def test_hf_cosine_with_min_lr_num_cycles(num_cycles):
    # num_cycles counts cosine waves (0.5: the one decay): lrkit's waves
    ours = S.warmup(10) >> S.cosine(PEAK, 90, end=1e-5, waves=num_cycles)
    reference = hf_lrs("cosine_with_min_lr", 10, 100, 101, min_lr=1e-5, num_cycles=num_cycles)
    assert_same(ours(np.arange(101)), reference)


@pytest.mark.parametrize("warmup_lr_rate", [None, 0.2])
@pytest.mark.parametrize("warmup", [2, 10])
def test_hf_cosine_warmup_with_min_lr(warmup, warmup_lr_rate):
    # its warmup starts at 1/warmup of the peak (or warmup_lr_rate) and reaches the peak one step
    # early, at warmup - 1, where its cosine starts
    start_ratio = 1 / warmup if warmup_lr_rate is None else warmup_lr_rate
    ours = S.warmup(warmup - 1, start_ratio=start_ratio) >> S.cosine(PEAK, 100 - warmup, end=1e-5)
    reference = hf_lrs(
        "cosine_warmup_with_min_lr", warmup, 100, 100, min_lr=1e-5, warmup_lr_rate=warmup_lr_rate
    )
    assert_same(ours(np.arange(100)), reference)


def test_hf_cosine_warmup_with_min_lr_one_warmup_step_is_the_cosine_alone():
    reference = hf_lrs("cosine_warmup_with_min_lr", 1, 100, 100, min_lr=1e-5)
    assert_same(S.cosine(PEAK, 99, end=1e-5)(np.arange(100)), reference)


def test_hf_cosine_warmup_with_min_lr_without_warmup_starts_one_step_into_its_cosine():
    # the difference the page states: with no warmup its step t is the cosine's step t + 1, so it
    # never takes the peak; an lrkit phase always starts at its own step 0
    reference = hf_lrs("cosine_warmup_with_min_lr", 0, 100, 100, min_lr=1e-5)
    assert_same(S.cosine(PEAK, 100, end=1e-5)(np.arange(1, 101)), reference)
    assert reference[0] < PEAK


@pytest.mark.parametrize(
    ("name", "kwargs", "end"), [("cosine", {}, 0.0), ("cosine_with_min_lr", {"min_lr": 1e-5}, 1e-5)]
)
def test_hf_cosine_rises_again_after_the_training_steps(name, kwargs, end):
    # the difference the page states: past num_training_steps transformers' cosine climbs back up,
    # mirroring its decay; lrkit's cosine holds its end
    reference = hf_lrs(name, 10, 100, 151, **kwargs)
    ours = S.warmup(10) >> S.cosine(PEAK, 90, end=end)
    assert_same(ours(np.arange(101)), reference[:101])
    assert_same(S.cosine(PEAK, 90, end=end)(90 - np.arange(51)), reference[100:])
    assert ours(150) == end


def test_hf_cosine_with_restarts_uneven_cycles_restart_at_fractional_steps():
    # the difference the page states: 3 cycles over 100 steps last 33.3 steps each in transformers,
    # so its restarts fall at steps 34 and 67; lrkit's cycles are whole steps (33: restarts at 33, 66)
    reference = hf_lrs("cosine_with_restarts", 0, 100, 100, num_cycles=3)
    ours = S.cosine_restarts(PEAK, 33, cycles=3)(np.arange(100))
    assert list(np.flatnonzero(np.diff(reference) > 0) + 1) == [34, 67]
    assert list(np.flatnonzero(np.diff(ours) > 0) + 1) == [33, 66]


def test_hf_polynomial_defaults_end_at_1e_7():
    ours = S.warmup(10) >> S.polynomial(PEAK, 90, end=1e-7)
    assert_same(ours(np.arange(120)), hf_lrs("polynomial", 10, 100, 120))


def test_hf_warmup_stable_decay_decays_along_a_cosine_by_default():
    ours = S.wsd(PEAK, 100, warmup_steps=10, decay_steps=20, cooldown="cosine")
    assert_same(ours(np.arange(120)), hf_lrs("warmup_stable_decay", 10, 100, 120, num_decay_steps=20))


def test_hf_warmup_stable_decay_with_a_cosine_warmup():
    warmup = S.warmup(10, start_ratio=0.1, shape="cosine")
    ours = warmup >> S.constant(PEAK, steps=70) >> S.cosine(PEAK, 20, end=1e-4)
    reference = hf_lrs(
        "warmup_stable_decay", 10, 100, 120, num_decay_steps=20, warmup_type="cosine", min_lr_ratio=0.1
    )
    assert_same(ours(np.arange(120)), reference)


METRICS = [1.0, 0.9, 0.9, 0.9, 0.95, 0.91, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.49] + [0.7] * 12


def test_hf_reduce_lr_on_plateau():
    options = {"factor": 0.5, "patience": 2, "cooldown": 1, "threshold": 0.01, "min_lr": 1e-4}
    reference = torch_lrs(
        lambda o: get_scheduler("reduce_lr_on_plateau", o, scheduler_specific_kwargs=options),
        len(METRICS) + 1,
        metrics=METRICS,
    )
    plateau = Plateau(decay_ratio=0.5, patience=2, cooldown=1, threshold=0.01, min_ratio=0.1)
    assert_same(lrkit_plateau_lrs(S.constant(PEAK), plateau, METRICS), reference)
    assert reference.min() == 1e-4


def test_reduce_on_plateau_skips_cuts_under_its_eps_and_lrkit_does_not():
    # the difference the page states: PyTorch leaves a rate alone when a cut would change it by no
    # more than eps=1e-8; lrkit's plateau cuts at any level
    metrics = [1.0] * 6
    def make(optimizer):
        return lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=0)

    reference = torch_lrs(make, 7, lr=1e-7, metrics=metrics)
    ours = lrkit_plateau_lrs(S.constant(1e-7), Plateau(decay_ratio=0.5, patience=0), metrics, lr=1e-7)
    assert_same(reference, 1e-7 * np.array([1, 1, 0.5, 0.25, 0.125, 0.125, 0.125]), 1e-7)
    assert_same(ours, 1e-7 * 0.5 ** np.array([0, 0, 1, 2, 3, 4, 5]), 1e-7)


# ---- PyTorch: the built-in schedulers test_schedules_reference.py does not pin ------------------


def test_constant_lr():
    reference = torch_lrs(lambda o: lr_scheduler.ConstantLR(o, factor=0.25, total_iters=7), 30)
    assert_same((S.constant(PEAK * 0.25, steps=7) >> S.constant(PEAK))(np.arange(30)), reference)


def test_multiplicative_lr_with_a_constant_factor():
    reference = torch_lrs(lambda o: lr_scheduler.MultiplicativeLR(o, lambda epoch: 0.97), 100)
    assert_same(S.exponential(PEAK, 0.97)(np.arange(100)), reference)


def test_sequential_lr_of_a_linear_warmup_and_a_cosine():
    def make(optimizer):
        warmup = lr_scheduler.LinearLR(optimizer, start_factor=0.1, total_iters=10)
        decay = lr_scheduler.CosineAnnealingLR(optimizer, T_max=90, eta_min=1e-5)
        return lr_scheduler.SequentialLR(optimizer, [warmup, decay], milestones=[10])

    ours = S.warmup(10, start_ratio=0.1) >> S.cosine(PEAK, 90, end=1e-5)
    assert_same(ours(np.arange(100)), torch_lrs(make, 100))


def test_sequential_lr_of_a_constant_and_an_exponential():
    def make(optimizer):
        low = lr_scheduler.ConstantLR(optimizer, factor=0.1, total_iters=5)
        decay = lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
        return lr_scheduler.SequentialLR(optimizer, [low, decay], milestones=[5])

    ours = S.constant(PEAK * 0.1, steps=5) >> S.exponential(PEAK, 0.9)
    assert_same(ours(np.arange(40)), torch_lrs(make, 40))


def test_sequential_lr_starting_with_an_exponential():
    # an open-ended kind given a length with steps= can be followed, as SequentialLR's first scheduler
    def make(optimizer):
        decay = lr_scheduler.ExponentialLR(optimizer, gamma=0.9)
        cosine = lr_scheduler.CosineAnnealingLR(optimizer, T_max=50, eta_min=1e-5)
        return lr_scheduler.SequentialLR(optimizer, [decay, cosine], milestones=[20])

    ours = S.exponential(PEAK, 0.9, steps=20) >> S.cosine(PEAK, 50, end=1e-5)
    assert_same(ours(np.arange(70)), torch_lrs(make, 70))


def test_a_phase_without_a_length_says_how_to_give_it_one():
    with pytest.raises(ValueError, match=r"has no length, so nothing can follow it; give it one with steps=N"):
        S.exponential(PEAK, 0.9) >> S.constant(1e-5)


# ---- optax ---------------------------------------------------------------------------------------


def optax_values(schedule, steps: int) -> np.ndarray:
    with jax.enable_x64(True):
        return np.array([float(schedule(jnp.int64(step))) for step in range(steps)])


OPTAX_PAIRS = {
    "join_schedules": (
        lambda: optax.join_schedules(
            [optax.linear_schedule(0.0, PEAK, 100), optax.cosine_decay_schedule(PEAK, 150)], [100]
        ),
        S.linear(start=0.0, end=PEAK, steps=100) >> S.cosine(PEAK, 150),
    ),
    "warmup_constant_schedule": (
        lambda: optax.warmup_constant_schedule(1e-5, PEAK, 50),
        S.warmup(50, start_ratio=0.01) >> S.constant(PEAK),
    ),
    "warmup_exponential_decay_schedule": (
        lambda: optax.warmup_exponential_decay_schedule(1e-5, PEAK, 50, 10, 0.9, staircase=True),
        S.warmup(50, start_ratio=0.01) >> S.exponential(PEAK, 0.9, decay_steps=10, staircase=True),
    ),
    "exponential_decay end_value": (
        lambda: optax.exponential_decay(PEAK, 10, 0.9, end_value=1e-4),
        S.clip(S.exponential(PEAK, 0.9, decay_steps=10), min_lr=1e-4),
    ),
    "join_schedules after an exponential_decay": (
        lambda: optax.join_schedules(
            [optax.exponential_decay(PEAK, 1, 0.9), optax.constant_schedule(1e-5)], [30]
        ),
        S.exponential(PEAK, 0.9, steps=30) >> S.constant(1e-5),
    ),
    "exponential_decay transition_begin": (
        lambda: optax.exponential_decay(PEAK, 10, 0.9, transition_begin=40),
        S.constant(PEAK, steps=40) >> S.exponential(PEAK, 0.9, decay_steps=10),
    ),
    "piecewise_constant_schedule": (
        lambda: optax.piecewise_constant_schedule(PEAK, {100: 0.5, 200: 0.1}),
        S.constant(PEAK, steps=100) >> S.constant(PEAK * 0.5, steps=100) >> S.constant(PEAK * 0.05),
    ),
    "cosine_onecycle_schedule": (
        lambda: optax.cosine_onecycle_schedule(200, PEAK),  # pct_start=0.3: the peak at step 60
        S.one_cycle(PEAK, 201, up_steps=60),
    ),
    "sgdr_schedule": (
        lambda: optax.sgdr_schedule(
            [
                {"init_value": 0.0, "peak_value": PEAK, "warmup_steps": 10, "decay_steps": 100},
                {"init_value": 0.0, "peak_value": PEAK / 2, "warmup_steps": 10, "decay_steps": 100},
            ]
        ),
        S.warmup_cosine(PEAK, 100, warmup_steps=10) >> S.warmup_cosine(PEAK / 2, 100, warmup_steps=10),
    ),
}


@pytest.mark.parametrize("name", OPTAX_PAIRS)
def test_optax(name):
    make_reference, ours = OPTAX_PAIRS[name]
    assert_same(ours(np.arange(300)), optax_values(make_reference(), 300))


# ---- Keras ---------------------------------------------------------------------------------------

schedules = keras.optimizers.schedules


def keras_values(schedule, steps: int) -> np.ndarray:
    values = keras.ops.stack([schedule(step) for step in range(steps)])  # one by one: some branch on the step
    return keras.ops.convert_to_numpy(values).astype(np.float64)


KERAS_PAIRS = {
    "CosineDecay": (
        lambda: schedules.CosineDecay(PEAK, 200, alpha=0.1),
        S.cosine(PEAK, 200, end=PEAK * 0.1),
    ),
    "CosineDecay warmup_target": (
        lambda: schedules.CosineDecay(1e-5, 200, alpha=0.1, warmup_target=PEAK, warmup_steps=50),
        S.warmup(50, start_ratio=0.01) >> S.cosine(PEAK, 200, end=PEAK * 0.1),
    ),
    "ExponentialDecay": (
        lambda: schedules.ExponentialDecay(PEAK, 10, 0.9, staircase=True),
        S.exponential(PEAK, 0.9, decay_steps=10, staircase=True),
    ),
    "PiecewiseConstantDecay": (  # a value holds up to and including its boundary
        lambda: schedules.PiecewiseConstantDecay([100, 200], [PEAK, 5e-4, 1e-4]),
        S.constant(PEAK, steps=101) >> S.constant(5e-4, steps=100) >> S.constant(1e-4),
    ),
    "PolynomialDecay": (  # end_learning_rate defaults to 1e-4
        lambda: schedules.PolynomialDecay(PEAK, 200, power=2.0),
        S.polynomial(PEAK, 200, end=1e-4, power=2.0),
    ),
    "CosineDecayRestarts m_mul": (
        lambda: schedules.CosineDecayRestarts(PEAK, 20, t_mul=2.0, m_mul=0.5),
        S.cosine_restarts(PEAK, 20, length_ratio=2, peak_ratio=0.5),
    ),
    "CosineDecayRestarts alpha": (
        lambda: schedules.CosineDecayRestarts(PEAK, 20, t_mul=2.0, alpha=0.1),
        S.cosine_restarts(PEAK, 20, length_ratio=2, end=PEAK * 0.1),
    ),
}


@pytest.mark.parametrize("name", KERAS_PAIRS)
def test_keras(name):
    make_reference, ours = KERAS_PAIRS[name]
    assert_same(ours(np.arange(300)), keras_values(make_reference(), 300), rtol=FLOAT32)


def test_keras_cosine_decay_restarts_with_alpha_and_m_mul_keeps_alpha_out_of_the_cut():
    # the difference the page states: Keras' cycle n peaks at alpha + (1 - alpha) * m_mul**n of the
    # initial rate (the floor is not scaled down), lrkit's at peak_ratio**n
    reference = keras_values(schedules.CosineDecayRestarts(PEAK, 20, t_mul=2.0, m_mul=0.5, alpha=0.1), 141)
    ours = S.cosine_restarts(PEAK, 20, length_ratio=2, peak_ratio=0.5, end=PEAK * 0.1)
    starts = [0, 20, 60, 140]
    assert_same(reference[starts], PEAK * (0.1 + 0.9 * 0.5 ** np.arange(4)), rtol=FLOAT32)
    assert_same(ours(np.array(starts)), PEAK * 0.5 ** np.arange(4))
    assert math.isclose(reference[20], 5.5e-4, rel_tol=FLOAT32)
