"""Hypothesis strategies that draw random lrkit schedules of every kind (shared by the schedule tests)."""

import dataclasses

from hypothesis import strategies as st

from lrkit import schedules as S

lrs = st.floats(1e-6, 10.0)
ratios = st.floats(0.01, 0.99)
durations = st.integers(1, 400)
half_wave = st.just(0.5)  # a cosine decay
waves = half_wave | st.floats(0.1, 4.0)


@st.composite
def peak_end(draw):
    peak = draw(lrs)
    return peak, draw(st.floats(0.0, 1.0)) * peak


@st.composite
def cosine(draw, waves=half_wave):
    """A cosine decay; given a strategy for ``waves``, a cosine of that many waves."""
    peak, end = draw(peak_end())
    exponent = draw(st.floats(0.5, 3.0))
    return S.cosine(peak=peak, steps=draw(durations), end=end, exponent=exponent, waves=draw(waves))


@st.composite
def polynomial(draw):
    peak, end = draw(peak_end())
    return S.polynomial(peak=peak, steps=draw(durations), end=end, power=draw(st.floats(0.5, 3.0)))


@st.composite
def one_minus_sqrt(draw):
    peak, end = draw(peak_end())
    return S.one_minus_sqrt(peak=peak, steps=draw(durations), end=end)


@st.composite
def linear(draw):
    return S.linear(start=draw(lrs), end=draw(lrs), steps=draw(durations))


@st.composite
def constant(draw):
    return S.constant(draw(lrs), steps=draw(st.none() | durations))


@st.composite
def exponential(draw):
    return S.exponential(
        peak=draw(lrs), decay_ratio=draw(ratios), decay_steps=draw(durations), staircase=draw(st.booleans())
    )


@st.composite
def multistep(draw):
    milestones = sorted(draw(st.sets(st.integers(1, 500), min_size=1, max_size=5)))
    return S.multistep(peak=draw(lrs), milestones=milestones, decay_ratio=draw(ratios))


@st.composite
def cosine_restarts(draw):
    peak, end = draw(peak_end())
    return S.cosine_restarts(
        peak=peak,
        cycle_steps=draw(st.integers(1, 100)),
        length_ratio=draw(st.integers(1, 3)),
        peak_ratio=draw(st.floats(0.1, 1.0)),
        cycles=draw(st.none() | st.integers(1, 4)),
        end=end,
    )


@st.composite
def inverse_sqrt(draw):
    return S.inverse_sqrt(peak=draw(lrs), timescale_steps=draw(durations))


@st.composite
def inverse_time(draw):
    return S.inverse_time(
        peak=draw(lrs), decay_rate=draw(st.floats(0.0, 10.0)), decay_steps=draw(durations), staircase=draw(st.booleans())
    )


@st.composite
def cyclic(draw):
    mode = draw(st.sampled_from(["triangular", "triangular2", "exp_range"]))
    min_lr = draw(lrs)
    return S.cyclic(
        min_lr=min_lr,
        max_lr=min_lr * draw(st.floats(1.0, 100.0)),
        up_steps=draw(st.integers(1, 100)),
        down_steps=draw(st.none() | st.integers(1, 100)),
        mode=mode,
        decay_ratio=draw(st.floats(0.9, 1.0)) if mode == "exp_range" else 1.0,
    )


@st.composite
def lengthened(draw):
    """An open-ended kind given a length with ``steps``, so that a phase can follow it."""
    open_ended = draw(st.one_of(exponential(), multistep(), inverse_sqrt(), inverse_time(), cyclic()))
    return dataclasses.replace(open_ended, steps=draw(durations))


elementary = st.one_of(
    cosine(waves), polynomial(), one_minus_sqrt(), linear(), constant(), exponential(), multistep(),
    cosine_restarts(), inverse_sqrt(), inverse_time(), cyclic(),
)


@st.composite
def warmup(draw):
    shape = draw(st.sampled_from(["linear", "cosine", "exponential", "1-sqrt"]))
    low = 0.001 if shape == "exponential" else 0.0
    return S.warmup(draw(durations), start_ratio=draw(st.floats(low, 0.9)), shape=shape)


@st.composite
def wrapped(draw, inner):
    schedule = draw(inner)
    kind = draw(st.sampled_from(["scale", "clip", "noise", "none"]))
    if kind == "scale":
        return S.scale(schedule, ratio=draw(st.floats(0.1, 10.0)))
    if kind == "clip":
        return S.clip(schedule, min_lr=draw(st.floats(0.0, 1e-6)), max_lr=draw(st.floats(1e-3, 20.0)))
    if kind == "noise":
        return S.noise(schedule, ratio=draw(st.floats(0.0, 0.5)), seed=draw(st.integers(0, 2**31 - 1)))
    return schedule


@st.composite
def sequences(draw):
    """Phases with lengths, an optional warmup in front, and any schedule last."""
    finite = st.one_of(
        cosine(waves), polynomial(), one_minus_sqrt(), linear(), constant().filter(lambda s: s.steps), lengthened()
    )
    phases = draw(st.lists(wrapped(finite), min_size=1, max_size=3))
    if draw(st.booleans()):
        phases.insert(0, draw(warmup()))
    phases.append(draw(wrapped(elementary)))
    schedule = phases[0]
    for phase in phases[1:]:
        schedule = schedule >> phase
    return schedule


@st.composite
def overlaid(draw):
    """``overlay(front) >> after``: a warmup or a short phase over the first steps of a longer one,
    which may have more phases after it."""
    after = draw(sequences() | elementary)
    covered = after.phases[0] if isinstance(after, S.Sequence) else after  # it must outlast the overlay
    if covered.length is not None and covered.length < 2:
        covered = S.constant(draw(lrs), steps=2)
        after = covered >> after
    steps = draw(st.integers(1, 400 if covered.length is None else covered.length - 1))
    front = draw(st.sampled_from(["warmup", "constant", "linear"]))
    if front == "warmup":
        ramp = draw(warmup())
        front = S.warmup(steps, start_ratio=ramp.start_ratio, shape=ramp.shape)
    elif front == "constant":
        front = S.constant(draw(lrs), steps=steps)
    else:
        front = S.linear(start=draw(lrs), end=draw(lrs), steps=steps)
    return S.overlay(front) >> after


@st.composite
def composites(draw):
    steps = draw(st.integers(20, 2000))
    peak = draw(lrs)
    which = draw(st.sampled_from(["warmup_cosine", "wsd", "one_cycle", "step_decay", "adam"]))
    if which == "warmup_cosine":
        return S.warmup_cosine(peak, steps, warmup_steps=draw(st.integers(1, steps - 1)))
    if which == "wsd":
        warm = draw(st.integers(0, steps // 3))
        return S.wsd(
            peak, steps, warmup_steps=warm, decay_steps=draw(st.integers(1, steps - warm)),
            cooldown=draw(st.sampled_from(["linear", "cosine", "1-sqrt"])),
        )
    if which == "one_cycle":
        three = draw(st.booleans())
        return S.one_cycle(
            peak, steps, up_steps=draw(st.integers(1, steps // 3 - 1)), three_phase=three,
            anneal=draw(st.sampled_from(["cosine", "linear"])),
        )
    if which == "step_decay":
        return S.step_decay(peak, draw(durations), draw(ratios))
    return S.adam_warmup(draw(st.floats(0.9, 0.9999))) >> draw(elementary)


schedules = st.one_of(elementary, wrapped(elementary), sequences(), overlaid(), composites())
