"""Properties every lrkit schedule keeps, over random configurations of every kind."""

import dataclasses
import pickle

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from lrkit import schedules as S
from schedule_strategies import (
    cosine,
    cosine_restarts,
    cyclic,
    elementary,
    exponential,
    inverse_sqrt,
    inverse_time,
    lengthened,
    multistep,
    one_minus_sqrt,
    overlaid,
    polynomial,
    schedules,
    sequences,
    warmup,
    waves,
)

STEPS = np.arange(3000)


@given(schedules)
def test_values_are_finite_and_non_negative(schedule):
    values = schedule(STEPS)
    assert values.shape == STEPS.shape
    assert np.all(np.isfinite(values))
    assert np.all(values >= 0)


@given(schedules)
def test_spec_round_trips_to_an_equal_schedule(schedule):
    spec = repr(schedule)
    parsed = S.parse(spec)
    assert parsed == schedule
    assert repr(parsed) == spec
    assert np.array_equal(parsed(STEPS[:500]), schedule(STEPS[:500]))


@given(schedules)
def test_pickles_to_an_equal_schedule(schedule):
    assert pickle.loads(pickle.dumps(schedule)) == schedule


@given(schedules, st.integers(0, 2999))
def test_int_step_matches_array_evaluation(schedule, step):
    value = schedule(step)
    assert isinstance(value, float)
    assert value == schedule(STEPS)[step]


@given(warmup(), st.one_of(cosine(), polynomial(), exponential(), inverse_sqrt(), inverse_time()))
def test_warmups_rise_to_the_next_phase(ramp, after):
    values = (ramp >> after)(np.arange(ramp.steps + 1))
    assert np.all(np.diff(values) >= -1e-12 * values.max())
    assert values[0] == pytest.approx(ramp.start_ratio * after(0), rel=1e-9)
    assert values[-1] == after(0)


@given(st.one_of(cosine(), polynomial(), one_minus_sqrt(), exponential(), multistep(), inverse_sqrt(), inverse_time()))
def test_decays_never_rise(schedule):
    values = schedule(STEPS)
    assert np.all(np.diff(values) <= 1e-12 * values[0])
    assert values[0] == pytest.approx(schedule.peak)


@given(inverse_time())
def test_inverse_time_stays_positive_and_is_peak_over_one_plus_decay_rate_after_a_period(schedule):
    values = schedule(STEPS)
    assert np.all(values > 0)
    assert values[schedule.decay_steps] == pytest.approx(schedule.peak / (1 + schedule.decay_rate))
    if schedule.staircase:  # flat within each period, a step down at its end
        period = values[: schedule.decay_steps]
        assert np.all(period == schedule.peak)


def test_inverse_time_values():
    schedule = S.inverse_time(peak=1.0, decay_rate=0.5, decay_steps=10)
    assert np.allclose(schedule(np.array([0, 5, 10, 20, 30])), [1.0, 0.8, 1 / 1.5, 0.5, 0.4])
    stairs = S.inverse_time(peak=1.0, decay_rate=0.5, decay_steps=10, staircase=True)
    assert np.allclose(stairs(np.array([0, 9, 10, 19, 20])), [1.0, 1.0, 1 / 1.5, 1 / 1.5, 0.5])


@given(st.one_of(cosine(), polynomial(), one_minus_sqrt()))
def test_decays_reach_end_and_stay(schedule):
    values = schedule(np.arange(schedule.steps, schedule.steps + 50))
    assert np.allclose(values, schedule.end, rtol=1e-12, atol=1e-15)


@given(cyclic().filter(lambda s: s.mode == "triangular"), st.integers(0, 1000), st.integers(1, 5))
def test_triangular_is_periodic(schedule, step, cycles):
    assert schedule(step + cycles * schedule.period) == pytest.approx(schedule(step), rel=1e-9)


@given(cyclic())
def test_cyclic_stays_between_bounds_and_touches_both(schedule):
    values = schedule(np.arange(schedule.period + 1))
    assert values.min() >= schedule.min_lr * (1 - 1e-12)
    assert values.max() <= schedule.max_lr * (1 + 1e-12)
    assert values[0] == pytest.approx(schedule.min_lr)
    decay = schedule.decay_ratio**schedule.up_steps  # 1 except for exp_range
    top = schedule.min_lr + (schedule.max_lr - schedule.min_lr) * decay
    assert values[schedule.up_steps] == pytest.approx(top)


@given(st.builds(S.cosine_restarts, peak=st.floats(1e-6, 10.0), cycle_steps=st.integers(1, 100)))
def test_restarts_without_decay_are_periodic(schedule):
    first = schedule(np.arange(schedule.cycle_steps))
    later = schedule(np.arange(3 * schedule.cycle_steps, 4 * schedule.cycle_steps))
    assert np.allclose(first, later, rtol=1e-9)


@given(cosine_restarts())
def test_restarts_begin_each_cycle_at_its_peak(schedule):
    start, length = 0, schedule.cycle_steps
    for n in range(3 if schedule.cycles is None else schedule.cycles):
        expected = max(schedule.peak * schedule.peak_ratio**n, schedule.end)
        assert schedule(start) == pytest.approx(expected, rel=1e-9)
        start, length = start + length, length * schedule.length_ratio
    if schedule.cycles is not None:
        assert schedule(start) == schedule.end == schedule(start + 1000)


@given(sequences())
def test_sequence_phases_restart_at_their_own_step_zero(schedule):
    starts = S.phase_starts(schedule)
    for phase, start in zip(schedule.phases, starts, strict=True):
        if isinstance(phase, S.Warmup):
            continue
        local = np.arange(0, phase.length or 40)
        assert np.array_equal(schedule(start + local), phase(local))


@given(overlaid())
def test_after_an_overlay_the_next_phase_keeps_the_clock_that_started_with_the_overlay(schedule):
    front, after = schedule.phases[0].schedule, schedule.phases[1:]
    rest = S.Sequence(after) if len(after) > 1 else after[0]
    covered = np.arange(front.length)
    if isinstance(front, S.Warmup):  # it rises to the next phase's own step 0, as without the overlay
        assert np.allclose(schedule(covered), (front >> rest)(covered), rtol=1e-12, atol=0)
    else:
        assert np.array_equal(schedule(covered), front(covered))
    later = np.arange(front.length, front.length + 500)
    assert np.array_equal(schedule(later), rest(later))
    assert schedule.length == rest.length  # it ends where it would alone
    assert S.phase_starts(schedule)[:2] == (0, front.length) and schedule.origins[:2] == (0, 0)


def test_timm_warmup_without_prefix_is_the_cosine_with_its_first_steps_replaced():
    schedule = S.overlay(S.warmup(5, start_ratio=0.1)) >> S.cosine(1.0, 20, end=0.01)
    cosine = S.cosine(1.0, 20, end=0.01)
    assert np.allclose(schedule(np.arange(5)), [0.1, 0.28, 0.46, 0.64, 0.82], rtol=1e-12)
    assert np.array_equal(schedule(np.arange(5, 40)), cosine(np.arange(5, 40)))
    prefixed = S.warmup(5, start_ratio=0.1) >> cosine
    assert prefixed.length == 25 and schedule.length == 20


def test_consecutive_overlays_share_one_clock():
    schedule = S.overlay(S.warmup(4)) >> S.overlay(S.constant(0.5, steps=10)) >> S.linear(1.0, 0.0, 20)
    assert schedule.starts == (0, 4, 10) and schedule.origins == (0, 0, 0) and schedule.length == 20
    values = schedule(np.arange(25))
    assert np.allclose(values[:4], 0.5 * np.arange(4) / 4)  # rising to the constant's level
    assert np.all(values[4:10] == 0.5)
    assert np.allclose(values[10:21], 1.0 - np.arange(10, 21) / 20) and values[24] == 0.0


@given(lengthened())
def test_a_length_keeps_an_open_ended_kind_and_holds_its_value_at_the_end(schedule):
    open_ended = dataclasses.replace(schedule, steps=None)
    before = np.arange(schedule.steps + 1)
    assert np.array_equal(schedule(before), open_ended(before))
    assert np.all(schedule(np.arange(schedule.steps, schedule.steps + 50)) == open_ended(schedule.steps))
    assert schedule.length == schedule.steps and open_ended.length is None


@given(lengthened(), st.floats(1e-6, 10.0))
def test_an_open_ended_kind_with_a_length_can_be_followed(schedule, level):
    sequence = schedule >> S.constant(level)
    assert np.array_equal(sequence(np.arange(schedule.steps)), schedule(np.arange(schedule.steps)))
    assert sequence(schedule.steps) == level


@given(cosine(waves))
def test_a_cosine_of_any_number_of_waves_starts_at_its_peak_and_stays_between_end_and_peak(schedule):
    values = schedule(np.arange(schedule.steps + 50))
    assert values[0] == pytest.approx(schedule.peak, rel=1e-12)
    assert np.all(values >= schedule.end * (1 - 1e-12)) and np.all(values <= schedule.peak * (1 + 1e-12))
    assert np.all(values[schedule.steps :] == values[schedule.steps])
    half = dataclasses.replace(schedule, waves=0.5)
    assert half == S.cosine(schedule.peak, schedule.steps, end=schedule.end, exponent=schedule.exponent)


def test_a_cosine_of_one_wave_comes_back_up_to_its_peak():
    values = S.cosine(1.0, 8, waves=1.0)(np.arange(10))
    assert np.allclose(values, [1, 0.5 + 0.5**1.5, 0.5, 0.5 - 0.5**1.5, 0, 0.5 - 0.5**1.5, 0.5, 0.5 + 0.5**1.5, 1, 1])
    assert np.allclose(S.cosine(1.0, 8, waves=2.0)(np.array([2, 4, 6])), [0.0, 1.0, 0.0], atol=1e-15)


@given(st.one_of(cosine(), polynomial(), one_minus_sqrt()), st.integers(1, 100))
def test_decay_then_constant_at_its_end_meets_without_a_jump(decay, steps):
    schedule = decay >> S.constant(decay.end)
    values = schedule(np.arange(decay.steps + steps))
    assert values[decay.steps] == decay.end
    assert values[decay.steps - 1] >= values[decay.steps]


@given(elementary, st.integers(0, 2**31 - 1))
def test_noise_is_seeded_bounded_and_centred(schedule, seed):
    noisy = S.noise(schedule, ratio=0.2, seed=seed)
    clean = schedule(STEPS)
    normal = clean > 1e-300  # subnormal values lose the precision to show the factor
    factor = noisy(STEPS)[normal] / clean[normal]
    assert np.all((factor >= 0.8 - 1e-12) & (factor <= 1.2 + 1e-12))
    assert np.array_equal(noisy(STEPS), S.noise(schedule, ratio=0.2, seed=seed)(STEPS))
    if factor.size > 1000:
        assert abs(factor.mean() - 1.0) < 0.02
        assert factor.std() > 0.05


def test_noise_seeds_differ():
    base = S.constant(1.0)
    assert not np.array_equal(S.noise(base, 0.1, seed=0)(STEPS), S.noise(base, 0.1, seed=1)(STEPS))


@given(elementary, st.floats(0.1, 10.0))
def test_scale_multiplies(schedule, ratio):
    assert np.allclose(S.scale(schedule, ratio)(STEPS), schedule(STEPS) * ratio, rtol=1e-12)


@given(elementary, st.floats(1e-7, 1e-3), st.floats(1e-2, 5.0))
def test_clip_holds_within_bounds(schedule, low, high):
    values = S.clip(schedule, min_lr=low, max_lr=high)(STEPS)
    assert values.min() >= low and values.max() <= high
    inside = (schedule(STEPS) >= low) & (schedule(STEPS) <= high)
    assert np.array_equal(values[inside], schedule(STEPS)[inside])


def test_exponential_warmup_is_geometric():
    schedule = S.warmup(4, start_ratio=1 / 16, shape="exponential") >> S.constant(1.0)
    assert np.allclose(schedule(np.arange(5)), [1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0])


def test_one_minus_sqrt_warmup_mirrors_the_one_minus_sqrt_cooldown():
    schedule = S.warmup(4, start_ratio=0.2, shape="1-sqrt") >> S.constant(1.0)
    rise = 1 - np.sqrt(1 - np.arange(5) / 4)
    assert np.allclose(schedule(np.arange(5)), 0.2 + 0.8 * rise, rtol=1e-15)
    cooldown = S.one_minus_sqrt(1.0, 4)(np.arange(5))
    assert np.allclose(rise, cooldown[::-1])  # the cooldown backwards in time


def test_adam_untuned_warmup_length_is_two_over_one_minus_beta2():
    assert S.adam_warmup(0.999).steps == 2000
    assert S.adam_warmup(0.98).steps == 100


def test_wsd_holds_the_peak_then_cools_down():
    schedule = S.wsd(1.0, 100, warmup_steps=10, decay_steps=20, cooldown="1-sqrt")
    values = schedule(np.arange(101))
    assert np.all(values[10:81] == 1.0)
    assert values[80 + 5] == pytest.approx(1 - np.sqrt(5 / 20))
    assert values[100] == 0.0


def test_one_cycle_three_phase_comes_back_to_the_start_before_the_end():
    schedule = S.one_cycle(1.0, 100, up_steps=20, three_phase=True)
    assert schedule(0) == pytest.approx(0.04)
    assert schedule(20) == 1.0
    assert schedule(40) == pytest.approx(0.04)
    assert schedule(99) == pytest.approx(4e-6)


def test_composites_are_the_combination_of_simpler_kinds():
    schedule = S.warmup_cosine(3e-4, 10_000, warmup_steps=500)
    assert schedule == S.warmup(500) >> S.cosine(peak=3e-4, steps=9500)
    assert repr(schedule) == "warmup(500) >> cosine(peak=0.0003, steps=9500)"
