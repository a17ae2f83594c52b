"""lrkit's schedules against the references people use: PyTorch's schedulers, transformers' get_scheduler,
optax's schedules and Keras' schedules, over many random configurations, equal within 1e-6 relative
(Keras computes in float32: within float32's precision); and timm's CosineLRScheduler, which is not
a test dependency, against a table of its values.

Values below 1e-12 of the peak are compared absolutely (at 1e-12 of the peak): there, references that
update the rate recursively (PyTorch's ``*LR.step``) are left with rounding noise around zero.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch.optim import lr_scheduler
from transformers import get_scheduler

from lrkit import schedules as S

os.environ["KERAS_BACKEND"] = "torch"  # before keras is imported (the test process has no TensorFlow)
import keras  # noqa: E402

RTOL = 1e-6
peaks = st.floats(1e-5, 1.0)
gammas = st.floats(0.5, 0.999)


def assert_matches(ours: np.ndarray, reference: np.ndarray, peak: float) -> None:
    np.testing.assert_allclose(ours, reference, rtol=RTOL, atol=1e-12 * peak)


def torch_lrs(make_scheduler, steps: int, lr: float = 1.0) -> np.ndarray:
    """The LR a PyTorch scheduler sets for steps 0..steps-1 (step 0 = right after construction)."""
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=lr, momentum=0.9)
    scheduler = make_scheduler(optimizer)
    lrs = [optimizer.param_groups[0]["lr"]]
    for _ in range(steps - 1):
        optimizer.step()
        scheduler.step()
        lrs.append(optimizer.param_groups[0]["lr"])
    return np.array(lrs)


# ---- PyTorch ----------------------------------------------------------------------------------


@settings(max_examples=20)
@given(peaks, st.integers(1, 50), gammas)
def test_step_lr(peak, step_size, gamma):
    reference = torch_lrs(lambda o: lr_scheduler.StepLR(o, step_size, gamma), 300, peak)
    assert_matches(S.step_decay(peak, step_size, gamma)(np.arange(300)), reference, peak)


@settings(max_examples=20)
@given(peaks, st.lists(st.integers(1, 299), min_size=1, max_size=5, unique=True), gammas)
def test_multistep_lr(peak, milestones, gamma):
    milestones = sorted(milestones)
    reference = torch_lrs(lambda o: lr_scheduler.MultiStepLR(o, milestones, gamma), 300, peak)
    assert_matches(S.multistep(peak, milestones, gamma)(np.arange(300)), reference, peak)


@settings(max_examples=20)
@given(peaks, gammas)
def test_exponential_lr(peak, gamma):
    reference = torch_lrs(lambda o: lr_scheduler.ExponentialLR(o, gamma), 300, peak)
    assert_matches(S.exponential(peak, gamma)(np.arange(300)), reference, peak)


@settings(max_examples=20)
@given(peaks, st.integers(1, 300), st.floats(0.0, 1.0))
def test_cosine_annealing_lr(peak, steps, end_fraction):
    # PyTorch's CosineAnnealingLR keeps following the cosine back up after T_max; lrkit's cosine
    # holds ``end`` there (a decay), so they are compared over the decay, steps 0..T_max.
    end = end_fraction * peak
    reference = torch_lrs(lambda o: lr_scheduler.CosineAnnealingLR(o, steps, eta_min=end), steps + 1, peak)
    assert_matches(S.cosine(peak, steps, end=end)(np.arange(steps + 1)), reference, peak)


@settings(max_examples=20)
@given(peaks, st.integers(1, 60), st.integers(1, 3), st.floats(0.0, 1.0))
def test_cosine_annealing_warm_restarts(peak, cycle_steps, length_ratio, end_fraction):
    end = end_fraction * peak

    def make(optimizer):
        return lr_scheduler.CosineAnnealingWarmRestarts(optimizer, cycle_steps, T_mult=length_ratio, eta_min=end)

    reference = torch_lrs(make, 400, peak)
    ours = S.cosine_restarts(peak, cycle_steps, length_ratio=length_ratio, end=end)
    assert_matches(ours(np.arange(400)), reference, peak)


@settings(max_examples=30)
@given(
    st.floats(1e-5, 1e-2),
    st.floats(1.0, 100.0),
    st.integers(1, 60),
    st.none() | st.integers(1, 60),
    st.sampled_from(["triangular", "triangular2", "exp_range"]),
    st.floats(0.99, 1.0),
)
def test_cyclic_lr(min_lr, span, up_steps, down_steps, mode, gamma):
    max_lr = min_lr * span
    gamma = gamma if mode == "exp_range" else 1.0

    def make(optimizer):
        return lr_scheduler.CyclicLR(
            optimizer, min_lr, max_lr, step_size_up=up_steps, step_size_down=down_steps,
            mode=mode, gamma=gamma, cycle_momentum=False,
        )

    reference = torch_lrs(make, 400)
    ours = S.cyclic(min_lr, max_lr, up_steps, down_steps=down_steps, mode=mode, decay_ratio=gamma)
    assert_matches(ours(np.arange(400)), reference, max_lr)


@settings(max_examples=30)
@given(
    peaks,
    st.integers(10, 400),
    st.floats(0.05, 0.45),
    st.floats(2.0, 100.0),
    st.floats(1.0, 1e4),
    st.sampled_from(["cos", "linear"]),
    st.booleans(),
)
def test_one_cycle_lr(peak, steps, up_fraction, div_factor, final_div_factor, anneal, three_phase):
    # PyTorch puts the peak at step pct_start*total_steps - 1 (a fractional step unless that product is
    # whole); lrkit counts whole steps, so pct_start is chosen to make it whole: up_steps = pct*T - 1.
    up_steps = max(1, round(up_fraction * steps) - 1)
    pct_start = (up_steps + 1) / steps

    def make(optimizer):
        return lr_scheduler.OneCycleLR(
            optimizer, peak, total_steps=steps, pct_start=pct_start, anneal_strategy=anneal,
            div_factor=div_factor, final_div_factor=final_div_factor, three_phase=three_phase,
            cycle_momentum=False,
        )

    if steps - 1 - up_steps * (2 if three_phase else 1) < 1:
        return
    reference = torch_lrs(make, steps)
    ours = S.one_cycle(
        peak, steps, up_steps=up_steps, start_ratio=1 / div_factor,
        end_ratio=1 / (div_factor * final_div_factor), anneal="cosine" if anneal == "cos" else "linear",
        three_phase=three_phase,
    )
    assert_matches(ours(np.arange(steps)), reference, peak)


@settings(max_examples=20)
@given(peaks, st.integers(1, 300), st.floats(0.5, 3.0))
def test_polynomial_lr(peak, steps, power):
    reference = torch_lrs(lambda o: lr_scheduler.PolynomialLR(o, steps, power), steps + 50, peak)
    assert_matches(S.polynomial(peak, steps, power=power)(np.arange(steps + 50)), reference, peak)


@settings(max_examples=20)
@given(peaks, st.floats(0.01, 1.0), st.floats(0.01, 1.0), st.integers(1, 300))
def test_linear_lr(peak, start_factor, end_factor, steps):
    def make(optimizer):
        return lr_scheduler.LinearLR(optimizer, start_factor, end_factor, total_iters=steps)

    reference = torch_lrs(make, steps + 50, peak)
    ours = S.linear(start=peak * start_factor, end=peak * end_factor, steps=steps)
    assert_matches(ours(np.arange(steps + 50)), reference, peak)


# ---- transformers -----------------------------------------------------------------------------

warmups = st.integers(1, 100)


def hf_lrs(name: str, peak: float, warmup: int, total: int | None, steps: int, **kwargs) -> np.ndarray:
    return torch_lrs(
        lambda o: get_scheduler(
            name, o, num_warmup_steps=warmup, num_training_steps=total, scheduler_specific_kwargs=kwargs or None
        ),
        steps,
        peak,
    )


@settings(max_examples=15)
@given(peaks, warmups, st.integers(1, 400))
def test_hf_linear(peak, warmup, decay):
    reference = hf_lrs("linear", peak, warmup, warmup + decay, warmup + decay + 20)
    ours = S.warmup(warmup) >> S.linear(start=peak, end=0.0, steps=decay)
    assert_matches(ours(np.arange(warmup + decay + 20)), reference, peak)


@settings(max_examples=15)
@given(peaks, warmups, st.integers(1, 400))
def test_hf_cosine(peak, warmup, decay):
    reference = hf_lrs("cosine", peak, warmup, warmup + decay, warmup + decay)
    ours = S.warmup_cosine(peak, warmup + decay, warmup_steps=warmup)
    assert_matches(ours(np.arange(warmup + decay)), reference, peak)


@settings(max_examples=15)
@given(peaks, warmups, st.integers(1, 60), st.integers(1, 5))
def test_hf_cosine_with_restarts(peak, warmup, cycle_steps, cycles):
    # transformers splits the steps after warmup into num_cycles equal cycles; lrkit counts cycles
    # in whole steps, so the total is chosen to divide evenly.
    total = warmup + cycle_steps * cycles
    reference = hf_lrs("cosine_with_restarts", peak, warmup, total, total + 20, num_cycles=cycles)
    ours = S.warmup(warmup) >> S.cosine_restarts(peak, cycle_steps, cycles=cycles)
    assert_matches(ours(np.arange(total + 20)), reference, peak)


@settings(max_examples=15)
@given(peaks, warmups, st.integers(1, 300), st.floats(0.0, 0.9), st.floats(0.5, 3.0))
def test_hf_polynomial(peak, warmup, decay, end_fraction, power):
    end = end_fraction * peak
    reference = hf_lrs("polynomial", peak, warmup, warmup + decay, warmup + decay + 20, lr_end=end, power=power)
    ours = S.warmup(warmup) >> S.polynomial(peak, decay, end=end, power=power)
    assert_matches(ours(np.arange(warmup + decay + 20)), reference, peak)


@settings(max_examples=15)
@given(peaks, warmups)
def test_hf_constant_with_warmup(peak, warmup):
    reference = hf_lrs("constant_with_warmup", peak, warmup, None, warmup + 50)
    assert_matches((S.warmup(warmup) >> S.constant(peak))(np.arange(warmup + 50)), reference, peak)


@settings(max_examples=15)
@given(peaks, warmups, st.integers(1, 1000))
def test_hf_inverse_sqrt(peak, warmup, timescale):
    reference = hf_lrs("inverse_sqrt", peak, warmup, None, warmup + 300, timescale=timescale)
    ours = S.warmup(warmup) >> S.inverse_sqrt(peak, timescale)
    assert_matches(ours(np.arange(warmup + 300)), reference, peak)


@settings(max_examples=20)
@given(
    peaks, warmups, st.integers(0, 100), st.integers(1, 200),
    st.sampled_from(["linear", "cosine", "1-sqrt"]), st.floats(0.0, 0.5),
)
def test_hf_warmup_stable_decay(peak, warmup, stable, decay, cooldown, min_lr_ratio):
    total = warmup + stable + decay
    reference = hf_lrs(
        "warmup_stable_decay", peak, warmup, total, total + 20,
        num_decay_steps=decay, decay_type=cooldown, min_lr_ratio=min_lr_ratio,
    )
    # transformers' warmup starts from min_lr_ratio of the peak: lrkit's start_ratio
    ours = S.wsd(
        peak, total, warmup_steps=warmup, decay_steps=decay, cooldown=cooldown,
        end=min_lr_ratio * peak, start_ratio=min_lr_ratio,
    )
    assert_matches(ours(np.arange(total + 20)), reference, peak)


@settings(max_examples=15)
@given(peaks, warmups, st.integers(1, 400), st.floats(0.05, 3.0))
def test_hf_cosine_num_cycles(peak, warmup, decay, num_cycles):
    # num_cycles is the number of cosine waves after the warmup (0.5: the one decay); lrkit's waves
    reference = hf_lrs("cosine", peak, warmup, warmup + decay, warmup + decay + 1, num_cycles=num_cycles)
    ours = S.warmup(warmup) >> S.cosine(peak, decay, waves=num_cycles)
    np.testing.assert_allclose(ours(np.arange(warmup + decay + 1)), reference, rtol=1e-12, atol=1e-12 * peak)


@settings(max_examples=20)
@given(
    peaks, warmups, st.integers(0, 100), st.integers(1, 200),
    st.sampled_from(["linear", "cosine", "1-sqrt"]), st.floats(0.0, 0.5), st.floats(0.05, 2.0),
)
def test_hf_warmup_stable_decay_warmup_types_and_cosine_cycles(peak, warmup, stable, decay, shape, min_lr_ratio, cycles):
    total = warmup + stable + decay
    reference = hf_lrs(
        "warmup_stable_decay", peak, warmup, total, total, num_decay_steps=decay, warmup_type=shape,
        decay_type="cosine", min_lr_ratio=min_lr_ratio, num_cycles=cycles,
    )
    ramp = S.warmup(warmup, start_ratio=min_lr_ratio, shape=shape)
    cooldown = S.cosine(peak, decay, end=min_lr_ratio * peak, waves=cycles)
    ours = ramp >> S.constant(peak, steps=stable) >> cooldown if stable else ramp >> cooldown
    np.testing.assert_allclose(ours(np.arange(total)), reference, rtol=1e-12, atol=1e-12 * peak)


# ---- timm -------------------------------------------------------------------------------------

# timm is not a test dependency, so these are the rates timm 1.0.31's CosineLRScheduler set, computed
# once with it installed: an SGD optimizer at lr=1e-3, t_in_epochs=False, the LR read after
# ``step_update(t)`` for each t. warmup_prefix=False (timm's default) lays the warmup over the first
# steps of the cosine, which still ends at t_initial: lrkit's overlay.
TIMM_STEPS = (0, 1, 4, 5, 6, 10, 19, 20, 24, 25, 30)
TIMM_RESTART_STEPS = (0, 1, 2, 3, 4, 9, 10, 11, 29, 30, 31, 40)
TIMM_COSINE = {
    "t_initial=20, lr_min=1e-5, warmup_t=5, warmup_lr_init=1e-5": (
        "overlay(warmup(5, start_ratio=0.01)) >> cosine(peak=0.001, steps=20, end=1e-05)",
        TIMM_STEPS,
        [1e-05, 0.000208, 0.000802, 0.000855017856687341, 0.0007959536998847742, 0.000505,
         1.609427140540686e-05, 1e-05, 1e-05, 1e-05, 1e-05],
    ),
    "t_initial=20, lr_min=1e-5, warmup_t=5, warmup_lr_init=0": (
        "overlay(warmup(5)) >> cosine(peak=0.001, steps=20, end=1e-05)",
        TIMM_STEPS,
        [0.0, 0.0002, 0.0008, 0.000855017856687341, 0.0007959536998847742, 0.000505,
         1.609427140540686e-05, 1e-05, 1e-05, 1e-05, 1e-05],
    ),
    "t_initial=20, lr_min=1e-5, warmup_t=5, warmup_lr_init=1e-5, warmup_prefix=True": (
        "warmup(5, start_ratio=0.01) >> cosine(peak=0.001, steps=20, end=1e-05)",
        TIMM_STEPS,
        [1e-05, 0.000208, 0.000802, 0.001, 0.0009939057285945933, 0.000855017856687341,
         0.00021404630011522585, 0.000154982143312659, 1.609427140540686e-05, 1e-05, 1e-05],
    ),
    "t_initial=20, lr_min=1e-5 (no warmup)": (
        "cosine(peak=0.001, steps=20, end=1e-05)",
        TIMM_STEPS,
        [0.001, 0.0009939057285945933, 0.000905463412215599, 0.000855017856687341, 0.0007959536998847742,
         0.000505, 1.609427140540686e-05, 1e-05, 1e-05, 1e-05, 1e-05],
    ),
    "t_initial=10, cycle_mul=2, cycle_decay=0.5, cycle_limit=2, warmup_t=3, warmup_lr_init=1e-4": (
        "overlay(warmup(3, start_ratio=0.1)) >> "
        "cosine_restarts(peak=0.001, cycle_steps=10, length_ratio=2, peak_ratio=0.5, cycles=2, end=1e-05)",
        TIMM_RESTART_STEPS,
        [0.0001, 0.00039999999999999996, 0.0007, 0.0007959536998847742, 0.000657963412215599,
         3.4227024433899005e-05, 0.0005, 0.0004969836434458088, 1.3016356554191275e-05, 1e-05, 1e-05, 1e-05],
    ),
    "the same with warmup_prefix=True": (
        "warmup(3, start_ratio=0.1) >> "
        "cosine_restarts(peak=0.001, cycle_steps=10, length_ratio=2, peak_ratio=0.5, cycles=2, end=1e-05)",
        TIMM_RESTART_STEPS,
        [0.0001, 0.00039999999999999996, 0.0007, 0.001, 0.0009757729755661011, 0.0003520365877844011,
         0.00021404630011522585, 0.00010453658778440107, 5.67908363781379e-05, 3.6703401573849895e-05,
         2.1991153507687383e-05, 1e-05],
    ),
}


@pytest.mark.parametrize("config", TIMM_COSINE)
def test_timm_cosine_lr_scheduler(config):
    spec, steps, reference = TIMM_COSINE[config]
    schedule = S.parse(spec)
    assert repr(schedule) == spec
    np.testing.assert_allclose(schedule(np.array(steps)), reference, rtol=1e-12, atol=1e-15)


def test_timm_cosine_ends_at_t_initial_with_an_overlaid_warmup_and_later_with_a_prefix():
    overlaid, prefixed = (S.parse(TIMM_COSINE[config][0]) for config in list(TIMM_COSINE)[:3:2])
    assert overlaid.length == 20 and prefixed.length == 25


# ---- optax ------------------------------------------------------------------------------------


OPTAX_EXAMPLES = 8  # each optax schedule is compiled (~0.3 s): fewer, still random, configurations


def optax_values(schedule, steps: int, *, jit: bool = True) -> np.ndarray:
    """optax's values in float64. Compiled is much faster, but XLA divides by multiplying with the
    reciprocal, so ``count / T`` can land a hair off: optax's staircase then floors 49 * (1/49) to 0
    (an off-by-one) and its polynomial takes a power of -1e-16 (NaN). Those two run eagerly, step by step.
    lrkit's own formulas correct for this (see the optax integration tests under jit)."""
    with jax.enable_x64(True):
        if not jit:  # one step at a time: an eager op on a whole array may also use the reciprocal
            return np.array([float(schedule(jnp.int64(step))) for step in range(steps)])
        return np.array(jax.jit(schedule)(jnp.arange(steps, dtype=jnp.int64)), dtype=np.float64)


@settings(max_examples=OPTAX_EXAMPLES)
@given(peaks, st.integers(1, 300), st.floats(0.0, 1.0), st.floats(0.5, 3.0))
def test_optax_cosine_decay(peak, steps, alpha, exponent):
    reference = optax_values(optax.cosine_decay_schedule(peak, steps, alpha=alpha, exponent=exponent), steps + 20)
    ours = S.cosine(peak, steps, end=alpha * peak, exponent=exponent)
    assert_matches(ours(np.arange(steps + 20)), reference, peak)


@settings(max_examples=OPTAX_EXAMPLES)
@given(peaks, st.floats(0.0, 0.9), warmups, st.integers(1, 300), st.floats(0.0, 0.9))
def test_optax_warmup_cosine_decay(peak, start_ratio, warmup, decay, end_fraction):
    end = end_fraction * peak
    reference = optax_values(
        optax.warmup_cosine_decay_schedule(start_ratio * peak, peak, warmup, warmup + decay, end), warmup + decay + 20
    )
    ours = S.warmup_cosine(peak, warmup + decay, warmup_steps=warmup, end=end, start_ratio=start_ratio)
    assert_matches(ours(np.arange(warmup + decay + 20)), reference, peak)


@settings(max_examples=OPTAX_EXAMPLES)
@given(peaks, st.integers(1, 50), gammas, st.booleans())
def test_optax_exponential_decay(peak, transition_steps, rate, staircase):
    schedule = optax.exponential_decay(peak, transition_steps, rate, staircase=staircase)
    reference = optax_values(schedule, 300, jit=False)
    ours = S.exponential(peak, rate, decay_steps=transition_steps, staircase=staircase)
    assert_matches(ours(np.arange(300)), reference, peak)


@settings(max_examples=OPTAX_EXAMPLES)
@given(peaks, st.floats(0.0, 1.0), st.integers(1, 300))
def test_optax_linear(start, end, steps):
    reference = optax_values(optax.linear_schedule(start, end, steps), steps + 20)
    assert_matches(S.linear(start=start, end=end, steps=steps)(np.arange(steps + 20)), reference, max(start, end))


@settings(max_examples=OPTAX_EXAMPLES)
@given(peaks, st.floats(0.0, 0.9), st.floats(1.0, 3.0), st.integers(1, 300))
def test_optax_polynomial(peak, end_fraction, power, steps):
    # powers >= 1 only: optax's ``1 - t/T`` leaves ~1e-16 instead of 0 at the end, which a power < 1
    # inflates (0.5 turns it into 1e-8); lrkit's powers < 1 are checked against PyTorch and transformers.
    end = end_fraction * peak
    reference = optax_values(optax.polynomial_schedule(peak, end, power, steps), steps + 20, jit=False)
    assert_matches(S.polynomial(peak, steps, end=end, power=power)(np.arange(steps + 20)), reference, peak)


@settings(max_examples=OPTAX_EXAMPLES)
@given(peaks, st.lists(st.integers(1, 299), min_size=1, max_size=5, unique=True), gammas)
def test_optax_piecewise_constant(peak, milestones, gamma):
    milestones = sorted(milestones)
    reference = optax_values(optax.piecewise_constant_schedule(peak, dict.fromkeys(milestones, gamma)), 300)
    assert_matches(S.multistep(peak, milestones, gamma)(np.arange(300)), reference, peak)


# ---- Keras ------------------------------------------------------------------------------------

FLOAT32 = 2e-6  # Keras' schedules compute in float32


@settings(max_examples=20)
@given(peaks, st.floats(0.0, 10.0), st.integers(1, 50), st.booleans())
def test_keras_inverse_time_decay(peak, decay_rate, decay_steps, staircase):
    reference = keras.optimizers.schedules.InverseTimeDecay(peak, decay_steps, decay_rate, staircase=staircase)
    values = keras.ops.convert_to_numpy(reference(np.arange(300))).astype(np.float64)
    ours = S.inverse_time(peak, decay_rate, decay_steps=decay_steps, staircase=staircase)
    np.testing.assert_allclose(ours(np.arange(300)), values, rtol=FLOAT32)


# ---- reduce on plateau ------------------------------------------------------------------------


def test_torch_reduce_on_plateau_equals_plateau_times_a_constant():
    metrics = [1.0, 0.9, 0.9, 0.95, 0.91, 0.92, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6, 0.49, 0.7, 0.7, 0.7, 0.7]
    param = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([param], lr=0.1)
    reference = lr_scheduler.ReduceLROnPlateau(optimizer, factor=0.5, patience=2, cooldown=1, threshold=0.01)
    plateau = S.Plateau(decay_ratio=0.5, patience=2, cooldown=1, threshold=0.01)
    for metric in metrics:
        reference.step(metric)
        assert 0.1 * plateau.report(metric) == optimizer.param_groups[0]["lr"]
    assert plateau.ratio < 0.5
