"""Spec strings: the grammar, round trips, and bad input that names what is wrong."""

import math
import re

import numpy as np
import pytest
import torch

from lrkit import ScheduleLR, parse_schedule
from lrkit import schedules as S


def test_reads_the_documented_example():
    schedule = parse_schedule("warmup(500) >> cosine(peak=3e-4, steps=10000, end=0)")
    assert schedule == S.warmup(500) >> S.cosine(peak=3e-4, steps=10_000, end=0.0)
    assert schedule(500) == 3e-4
    assert schedule(10_500) == 0.0


def test_positional_arguments_nesting_lists_and_composites():
    schedule = S.parse("constant(1e-3, steps=10) >> clip(scale(multistep(0.1, [30, 60], 0.5), ratio=2), max_lr=0.15)")
    assert schedule(0) == 1e-3
    assert schedule(10) == 0.15 and schedule(40) == 0.1 and schedule(70) == 0.05
    assert S.parse("wsd(peak=1e-3, steps=100, warmup_steps=10, decay_steps=20, cooldown='cosine')") == S.wsd(
        1e-3, 100, 10, 20, cooldown="cosine"
    )


def test_whitespace_and_newlines_do_not_matter():
    text = """
        warmup(10)
        >> cosine(peak=1e-3,
                  steps=90)
    """
    assert S.parse(text) == S.parse("warmup(10)>>cosine(peak=1e-3,steps=90)")


def test_inverse_time_reads_and_prints_like_the_other_decays():
    schedule = S.parse("warmup(10) >> inverse_time(1e-3, 0.5, decay_steps=100, staircase=True)")
    assert schedule == S.warmup(10) >> S.InverseTime(peak=1e-3, decay_rate=0.5, decay_steps=100, staircase=True)
    assert repr(schedule) == "warmup(10) >> inverse_time(peak=0.001, decay_rate=0.5, decay_steps=100, staircase=True)"
    assert S.parse(repr(schedule)) == schedule
    assert repr(S.inverse_time(0.1, 2.0)) == "inverse_time(peak=0.1, decay_rate=2.0)"
    assert schedule(110) == pytest.approx(1e-3 / 1.5)


@pytest.mark.parametrize(
    ("text", "printed"),
    [
        ("overlay(warmup(5, start_ratio=1e-2)) >> cosine(1e-3, 100, end=1e-5)",
         "overlay(warmup(5, start_ratio=0.01)) >> cosine(peak=0.001, steps=100, end=1e-05)"),
        ("overlay(constant(1e-4, steps=10)) >> overlay(warmup(20)) >> linear(1e-3, 0, 50)",
         "overlay(constant(0.0001, steps=10)) >> overlay(warmup(20)) >> linear(start=0.001, end=0.0, steps=50)"),
        ("exponential(1e-3, 0.9, steps=100) >> constant(1e-5)",
         "exponential(peak=0.001, decay_ratio=0.9, steps=100) >> constant(1e-05)"),
        ("multistep(0.1, [10, 20], steps=30) >> inverse_sqrt(0.001, 100, steps=50) >> cyclic(1e-4, 1e-3, 5)",
         "multistep(peak=0.1, milestones=[10, 20], steps=30) >> inverse_sqrt(peak=0.001, timescale_steps=100, steps=50)"
         " >> cyclic(min_lr=0.0001, max_lr=0.001, up_steps=5)"),
        ("cosine(1e-3, 100, waves=1.5)", "cosine(peak=0.001, steps=100, waves=1.5)"),
        ("cosine(1e-3, 100, waves=0.5)", "cosine(peak=0.001, steps=100)"),
        ("warmup(5, shape='1-sqrt') >> constant(1e-3)", "warmup(5, shape='1-sqrt') >> constant(0.001)"),
    ],
)
def test_overlays_lengths_waves_and_the_1_sqrt_warmup_read_and_print(text, printed):
    schedule = S.parse(text)
    assert repr(schedule) == printed
    assert S.parse(printed) == schedule


def test_composite_specs_print_as_their_parts():
    assert repr(S.parse("step_decay(0.1, 30)")) == "exponential(peak=0.1, decay_ratio=0.1, decay_steps=30, staircase=True)"
    assert repr(S.parse("adam_warmup(0.999) >> constant(1e-3)")) == "warmup(2000) >> constant(0.001)"


def test_parse_is_not_eval():
    for text in ("__import__('os').system('true')", "cosine.__class__", "(lambda: 1)()", "[x for x in ()]"):
        with pytest.raises(ValueError, match="spec"):
            S.parse(text)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty string"),
        ("cosine(peak=1e-3, steps=100", "malformed"),
        ("cosnie(peak=1e-3, steps=100)", "unknown schedule 'cosnie'; known: adam_warmup"),
        ("cosine(peak=1e-3)", "missing 1 required positional argument: 'steps'"),
        ("cosine(peak=1e-3, steps=100, alpha=0.1)", "unexpected keyword argument 'alpha'; its arguments are peak, steps, end, exponent"),
        ("cosine(peak=1e-3, steps=100) + 1", re.escape("'cosine(peak=1e-3, steps=100) + 1' is not allowed")),
        ("warmup(5, shape=linear) >> constant(1.0)", "unknown value 'linear'; strings need quotes"),
        ("cosine(peak=1e-3, steps=100) >> 3", "'>>' joins schedules"),
        ("1e-3", "must describe a schedule"),
        ("cosine(**{'peak': 1})", "'\\*' and '\\*\\*' are not allowed"),
    ],
)
def test_malformed_specs_say_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message):
        S.parse(text)


def test_spec_must_be_a_string():
    with pytest.raises(TypeError, match=r"spec must be a Schedule or a spec string, got 3 \(int\)"):
        S.parse(3)


def test_the_adapters_name_their_schedule_argument():
    import torch

    from lrkit.integrations.optax import optax_schedule
    from lrkit.torch.scheduler import ScheduleLR

    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for build in (optax_schedule, lambda schedule: ScheduleLR(optimizer, schedule)):
        with pytest.raises(TypeError, match=r"^schedule must be .*Schedule or .*spec string, got .*int"):
            build(3)
        with pytest.raises(ValueError, match="^schedule must describe a schedule, got an empty string"):
            build(" ")


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: S.cosine(peak=1e-3, steps=0), ValueError, "cosine: steps must be >= 1, got 0"),
        (lambda: S.cosine(peak=1e-3, steps=-5), ValueError, "steps must be >= 1, got -5"),
        (lambda: S.cosine(peak=1e-3, steps=10.0), TypeError, "steps must be an integer, got 10.0"),
        (lambda: S.cosine(peak=math.nan, steps=10), ValueError, "peak must be a number, got NaN"),
        (lambda: S.cosine(peak=-1e-3, steps=10), ValueError, "peak must be > 0, got -0.001"),
        (lambda: S.cosine(peak=1e-3, steps=10, end=1e-2), ValueError, "end must be <= peak"),
        (lambda: S.linear(start=1.0, end=-1.0, steps=10), ValueError, "end must be >= 0, got -1.0"),
        (lambda: S.constant(math.inf), ValueError, "peak must be finite"),
        (lambda: S.exponential(1.0, decay_ratio=1.5), ValueError, r"decay_ratio must be in \(0, 1\], got 1.5"),
        (lambda: S.inverse_time(0.0, 0.5), ValueError, "inverse_time: peak must be > 0, got 0.0"),
        (lambda: S.inverse_time(1.0, -0.5), ValueError, "inverse_time: decay_rate must be >= 0, got -0.5"),
        (lambda: S.inverse_time(1.0, math.inf), ValueError, "inverse_time: decay_rate must be finite"),
        (lambda: S.inverse_time(1.0, 0.5, decay_steps=0), ValueError, "inverse_time: decay_steps must be >= 1, got 0"),
        (lambda: S.inverse_time(1.0, 0.5, staircase=1), TypeError, "inverse_time: staircase must be True or False, got 1"),
        (lambda: S.multistep(1.0, [30, 10]), ValueError, "milestones must be strictly increasing, got \\[30, 10\\]"),
        (lambda: S.cyclic(1e-3, 1e-2, 10, mode="sawtooth"), ValueError, "mode must be one of 'triangular'"),
        (lambda: S.cyclic(1e-3, 1e-2, 10, decay_ratio=0.9), ValueError, "decay_ratio only applies to mode='exp_range'"),
        (lambda: S.cyclic(1e-2, 1e-3, 10), ValueError, "min_lr must be <= max_lr"),
        (lambda: S.warmup(10, start_ratio=0.0, shape="exponential"), ValueError, r"start_ratio must be in \(0, 1\)"),
        (lambda: S.warmup(10, shape="quadratic"), ValueError, "shape must be one of 'linear', 'cosine', 'exponential'"),
        (lambda: S.warmup_cosine(1e-3, 100, warmup_steps=100), ValueError, "warmup_steps must be < steps, got warmup_steps=100 >= steps=100"),
        (lambda: S.wsd(1e-3, 100, warmup_steps=60, decay_steps=50), ValueError, "warmup_steps \\+ decay_steps must be <= steps"),
        (lambda: S.wsd(1e-3, 100, 10, 20, cooldown="step"), ValueError, "cooldown must be one of 'linear', 'cosine', '1-sqrt'"),
        (lambda: S.one_cycle(1e-3, 100, up_steps=60, three_phase=True), ValueError, "up_steps must leave room"),
        (lambda: S.adam_warmup(1.0), ValueError, r"beta2 must be in \(0, 1\)"),
        (lambda: S.clip(S.constant(1.0)), ValueError, "clip needs min_lr, max_lr or both"),
        (lambda: S.clip(S.constant(1.0), min_lr=2.0, max_lr=1.0), ValueError, "min_lr must be < max_lr"),
        (lambda: S.scale(0.5, ratio=2.0), TypeError, "schedule must be a schedule, got 0.5"),
        (lambda: S.noise(S.constant(1.0), ratio=1.0), ValueError, r"ratio must be in \[0, 1\)"),
        (lambda: S.exponential(1.0, 0.5) >> S.constant(1.0), ValueError, "has no length, so nothing can follow it"),
        (lambda: S.exponential(1.0, 0.5, steps=0), ValueError, "exponential: steps must be >= 1, got 0"),
        (lambda: S.cyclic(0.1, 1.0, 5, steps=2.5), TypeError, "cyclic: steps must be an integer, got 2.5"),
        (lambda: S.multistep(1.0, [5], steps=-1), ValueError, "multistep: steps must be >= 1, got -1"),
        (lambda: S.cosine(1.0, 10, waves=0), ValueError, "cosine: waves must be > 0, got 0"),
        (lambda: S.cosine(1.0, 10, waves="1"), TypeError, "cosine: waves must be a number, got '1'"),
        (lambda: S.cosine(1.0, 10, waves=math.inf), ValueError, "cosine: waves must be finite"),
        (lambda: S.overlay(0.5), TypeError, "overlay: schedule must be a schedule, got 0.5"),
        (lambda: S.overlay(S.inverse_sqrt(1.0, 10)), ValueError,
         r"overlay: schedule must have a length to lie over the next phase, got inverse_sqrt\(peak=1.0, "
         r"timescale_steps=10\); give it one with steps=N \(inverse_sqrt\(\.\.\., steps=N\)\)"),
        (lambda: S.overlay(S.warmup(10)) >> S.cosine(1.0, 10), ValueError,
         r"phase cosine\(peak=1.0, steps=10\) lasts 10 steps, all under the overlay before it \(10 steps\)"),
        (lambda: S.Plateau(patience=-1), ValueError, "patience must be >= 0, got -1"),
        (lambda: S.Plateau(mode="lowest"), ValueError, "mode must be one of 'min', 'max'"),
    ],
)
def test_bad_arguments_raise_naming_the_argument(build, error, message):
    with pytest.raises(error, match=message):
        build()


@pytest.mark.parametrize(
    ("build", "error", "message"),
    [
        (lambda: S.wsd(1e-3, 100, warmup_steps=50, decay_steps=80), ValueError,
         r"^wsd: warmup_steps \+ decay_steps must be <= steps=100, got 50 \+ 80$"),
        (lambda: S.wsd(-1e-3, 100, 10, 20), ValueError, r"^wsd: peak must be > 0, got -0.001$"),
        (lambda: S.wsd(1e-3, 100, 10, 20, cooldown="step"), ValueError, r"^wsd: cooldown must be one of"),
        (lambda: S.wsd(1e-3, 100.0, 10, 20), TypeError, r"^wsd: steps must be an integer, got 100.0"),
        (lambda: S.warmup_cosine(1e-3, 100, warmup_steps=100), ValueError,
         r"^warmup_cosine: warmup_steps must be < steps, got warmup_steps=100 >= steps=100$"),
        (lambda: S.warmup_cosine(0.0, 100, warmup_steps=10), ValueError, r"^warmup_cosine: peak must be > 0, got 0.0$"),
        (lambda: S.warmup_cosine(1e-3, 100, 10, end=1e-2), ValueError, r"^warmup_cosine: cosine: end must be <= peak"),
        (lambda: S.warmup_cosine(1e-3, 100, 10, start_ratio=1.5), ValueError,
         r"^warmup_cosine: warmup: start_ratio must be in \[0, 1\), got 1.5$"),
        (lambda: S.one_cycle(1e-3, 100, up_steps=60, three_phase=True), ValueError,
         r"^one_cycle: up_steps must leave room to come down: got up_steps=60 for steps=100$"),
        (lambda: S.one_cycle(1e-3, 2), ValueError, r"^one_cycle: steps must be >= 3, got 2$"),
        (lambda: S.one_cycle(1e-3, 100, three_phase=1), TypeError, r"^one_cycle: three_phase must be True or False, got 1$"),
        (lambda: S.adam_warmup(1.0), ValueError, r"^adam_warmup: beta2 must be in \(0, 1\), got 1.0$"),
        (lambda: S.adam_warmup(0.999, start_ratio=-0.5), ValueError,
         r"^adam_warmup: warmup: start_ratio must be in \[0, 1\), got -0.5$"),
        (lambda: S.step_decay(1e-3, 0), ValueError, r"^step_decay: exponential: decay_steps must be >= 1, got 0$"),
        (lambda: S.parse("wsd(1e-3, 100, warmup_steps=90, decay_steps=20)"), ValueError,
         r"^wsd: warmup_steps \+ decay_steps must be <= steps=100, got 90 \+ 20$"),
    ],
)
def test_recipe_errors_name_the_recipe(build, error, message):
    with pytest.raises(error, match=message):
        build()


def test_a_wrong_recipe_signature_in_a_spec_still_lists_its_arguments():
    with pytest.raises(ValueError, match=r"wsd\(\.\.\.\) got an unexpected keyword argument 'foo'; its arguments are peak, steps, warmup_steps"):
        S.parse("wsd(1e-3, 100, 10, 20, foo=1)")


def test_bad_steps_are_refused():
    schedule = S.cosine(peak=1.0, steps=10)
    with pytest.raises(ValueError, match="step must be >= 0, got -1"):
        schedule(-1)
    with pytest.raises(ValueError, match="steps must be >= 0, got -3"):
        schedule(np.array([0, -3]))
    with pytest.raises(TypeError, match="steps must be an array of integers, got dtype float64"):
        schedule(np.array([0.5]))
    with pytest.raises(TypeError, match="step must be an int"):
        schedule("3")


def test_a_warmup_needs_a_phase_after_it():
    with pytest.raises(ValueError, match="rises to the phase after it"):
        S.warmup(10)(3)
    with pytest.raises(ValueError, match="rises to the phase after it"):
        (S.constant(1.0, steps=5) >> S.warmup(10))(3)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("warmup(10)", "warmup(10) rises to the phase after it, but nothing follows it; write it in front"),
        ("cosine(1e-3, 100) >> warmup(10)", "but nothing follows it in cosine(peak=0.001, steps=100) >> warmup(10)"),
        ("scale(warmup(10), 0.5)", "warmup(10) rises to the phase after it, but nothing follows it;"),
        ("clip(constant(1e-3, steps=5) >> warmup(5), max_lr=1)", "nothing follows it in constant(0.001, steps=5) >> warmup(5)"),
        ("overlay(warmup(10))", "overlay(warmup(10)) lies over the phase after it, but nothing follows it; write it"),
        ("cosine(1e-3, 100) >> overlay(constant(1e-3, steps=5))", "lies over the phase after it, but nothing follows it in"),
        ("scale(overlay(warmup(10)), 2) >> constant(1e-3)", "overlay(warmup(10)) lies over the phase after it, but nothing"),
        ("overlay(constant(1e-3, steps=5) >> warmup(5)) >> constant(1e-3)",
         "warmup(5) rises to the phase after it, but nothing follows it in constant(0.001, steps=5) >> warmup(5)"),
    ],
)
def test_a_warmup_with_nothing_to_rise_to_is_refused_when_parsed(spec, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        S.parse(spec)



def test_schedule_objects_and_the_torch_adapter_are_checked_the_same_way():
    optimizer = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
    for schedule in (S.Warmup(10), S.Constant(1e-3, steps=5) >> S.Warmup(3)):
        with pytest.raises(ValueError, match="rises to the phase after it, but nothing follows it"):
            S.parse(schedule)
        with pytest.raises(ValueError, match="rises to the phase after it, but nothing follows it"):
            ScheduleLR(optimizer, schedule)


def test_a_warmup_followed_by_a_phase_anywhere_is_complete():
    for spec in ("warmup(10) >> cosine(1e-3, 100)", "scale(warmup(10) >> constant(1e-3), 0.5)",
                 "constant(1e-3, steps=5) >> warmup(10) >> linear(1e-3, 0, 50)"):
        schedule = S.parse(spec)
        assert np.all(np.isfinite(schedule(np.arange(200))))
