"""lrkit.diagnosis: verdicts on synthetic families of curves, invariances, evidence, plot and CLI."""

import json
import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lrkit
from lrkit.cli.app import main
from lrkit.diagnosis import MIN_POINTS, VERDICTS, Diagnosis, diagnose
from lrkit.trace import Trace

# --- synthetic families: loss as a function of the run fraction t in [0, 1] -------------------


def make(
    loss_at,
    *,
    n=400,
    noise=0.0,
    seed=0,
    lr=1e-3,
    schedule="constant",
    floor=0.0,
    scale=1.0,
    val=False,
):
    """A Trace of ``scale * (floor + loss_at(spent) + noise)`` over ``n`` steps, where ``spent`` is
    the share of the run's LR spent so far (the run fraction t at a constant LR): training moves
    the weights by the LR it spends, so under a decaying schedule the loss follows ``spent``."""
    rng = np.random.default_rng(seed)
    t = np.linspace(0, 1, n)
    if schedule == "cosine":
        lrs = lr * np.where(
            t < 0.05, (t + 1 / n) / 0.05, 0.5 * (1 + np.cos(np.pi * (t - 0.05) / 0.95))
        )
    else:
        lrs = np.full(n, lr)
    spent = t if schedule == "constant" else np.concatenate([[0.0], np.cumsum(lrs)[:-1]]) / np.sum(lrs[:-1])
    loss = scale * (floor + loss_at(spent) + noise * rng.standard_normal(n))
    val_loss = None
    if val:
        val_loss = np.full(n, np.nan)
        val_loss[:: n // 10] = loss[:: n // 10]
    return Trace(step=np.arange(n) * 10, lr=lrs, loss=loss, val_loss=val_loss)


def decay(k, amount=2.0):
    return lambda t: amount * np.exp(-k * t)


def power_law(a, b):
    return lambda t: 3.0 * (1 + b * t) ** -a


def late_rise(rise):
    return lambda t: np.where(
        t < 0.4, 2.0 * np.exp(-12 * t), 2.0 * np.exp(-4.8) + rise * 2.0 * (t - 0.4) / 0.6
    )


def with_spikes(base, steps, height, lasting=True):
    """Spikes at the given run fractions; a lasting one decays over the next steps (the weights
    were damaged), a passing one is a single bad batch."""

    def loss_at(t):
        values = base(t).copy()
        for where in steps:
            at = int(where * (len(t) - 1))
            values[at] += height
            if lasting:
                values[at + 1 : at + 3] += [0.6 * height, 0.3 * height]
        return values

    return loss_at


def zigzag(amount):
    return lambda t: decay(8)(t) + amount * np.where(np.arange(len(t)) % 2 == 0, 1.0, -1.0)


def explode(t):
    return np.where(t < 0.2, 2.0 - 5 * t, 1.0 + 20.0 * (t - 0.2) ** 2 * 10)


def stall(t):
    return 2.0 - 0.1 * (1 - np.exp(-30 * t))


FAMILIES = {
    "healthy": [
        make(decay(6), noise=0.02),
        make(decay(10), noise=0.05, seed=1, floor=0.3),
        make(power_law(0.5, 200), noise=0.01, floor=0.1),
        make(decay(8), noise=0.03, schedule="cosine", floor=0.5),
        make(decay(7), noise=0.02, floor=-5.0),  # a loss that is negative throughout
        make(decay(9), noise=0.02, val=True, floor=0.2),
    ],
    "too_low": [
        make(decay(0.5), noise=0.01, floor=0.5),
        make(decay(1.2), noise=0.02, floor=0.2),
        make(lambda t: 2.0 - 0.8 * t, noise=0.02),  # linear: nowhere near converged
        make(power_law(0.5, 2), noise=0.01),
        make(decay(1.0), noise=0.01, floor=-3.0),
        # levels off by the end, but took a third of the run to make half of its progress
        make(lambda t: 2.0 - 1.5 * (1 - np.exp(-((t / 0.4) ** 2))), noise=0.01),
    ],
    "too_high": [
        make(decay(4), n=3000, noise=1.6, floor=4.0),  # noise swamps progress
        make(late_rise(0.5), noise=0.01, floor=0.2),
        make(with_spikes(decay(8), [0.3, 0.5, 0.7, 0.9], 1.5), noise=0.02, floor=0.2),
        make(zigzag(0.3), floor=0.5),
    ],
    "diverged": [
        make(lambda t: np.where(t < 0.5, decay(5)(t), np.nan), noise=0.01, floor=0.2),
        make(lambda t: np.where(t < 0.7, decay(5)(t), np.inf), floor=0.2),
        make(explode, noise=0.05, floor=0.5),
    ],
    "plateau": [
        make(lambda t: 0 * t, noise=0.1, floor=2.0),  # nothing moves: not noise around progress
        make(stall, noise=0.005),
        make(stall, noise=0.01, floor=3.0, scale=10),
    ],
}


@pytest.mark.parametrize(
    ("verdict", "index"),
    [(verdict, i) for verdict, traces in FAMILIES.items() for i in range(len(traces))],
)
def test_verdict_on_each_synthetic_family(verdict, index):
    result = diagnose(FAMILIES[verdict][index])
    assert result.verdict == verdict, str(result)
    assert 0.5 <= result.confidence <= 1.0
    assert result.reasons


# --- invariances ---------------------------------------------------------------------------------

cases = st.sampled_from(
    [(verdict, trace) for verdict, traces in FAMILIES.items() for trace in traces]
)


@given(case=cases, scale=st.floats(1e-4, 1e4))
def test_multiplying_the_loss_by_a_constant_keeps_the_verdict(case, scale):
    verdict, trace = case
    result = diagnose(trace.replace(loss=trace.loss * scale))
    assert result.verdict == verdict


# spikes and a zig-zag live in single points, which thinning the log can drop
smooth_cases = st.sampled_from(
    [
        (verdict, trace)
        for verdict, traces in FAMILIES.items()
        for trace in traces
        if trace not in FAMILIES["too_high"][2:]
    ]
)


@given(case=smooth_cases, every=st.integers(1, 4), offset=st.integers(0, 3))
def test_logging_fewer_steps_keeps_the_verdict(case, every, offset):
    verdict, trace = case
    assert diagnose(trace.select(slice(offset % every, None, every))).verdict == verdict


@given(
    k=st.floats(7, 15),  # with a cosine schedule the trend is judged at 60% of the run: e^-4 left
    noise=st.floats(0, 0.04),
    floor=st.floats(-10, 10),
    n=st.integers(40, 3000),
    seed=st.integers(0, 2**16),
    schedule=st.sampled_from(["constant", "cosine"]),
)
def test_fast_decays_are_healthy_at_any_offset_length_and_noise(k, noise, floor, n, seed, schedule):
    result = diagnose(make(decay(k), n=n, noise=noise, floor=floor, seed=seed, schedule=schedule))
    assert result.verdict == "healthy", str(result)


@given(
    k=st.floats(0.05, 1.2),
    noise=st.floats(0, 0.01),
    floor=st.floats(-10, 10),
    n=st.integers(40, 3000),
    seed=st.integers(0, 2**16),
)
def test_slow_decays_are_too_low_at_any_offset_length(k, noise, floor, n, seed):
    result = diagnose(make(decay(k), n=n, noise=noise, floor=floor, seed=seed))
    assert result.verdict == "too_low", str(result)


@settings(max_examples=25)
@given(
    k=st.floats(3, 8),
    noise_ratio=st.floats(1.1, 1.5),
    n=st.integers(4000, 6000),
    seed=st.integers(0, 2**16),
)
def test_noise_that_swamps_visible_progress_is_too_high(k, noise_ratio, n, seed):
    result = diagnose(make(decay(k), n=n, noise=2.0 * noise_ratio, floor=20.0, seed=seed))
    assert result.verdict == "too_high", str(result)


@given(at=st.floats(0.05, 0.95), n=st.integers(MIN_POINTS, 500))
def test_a_loss_that_ends_non_finite_is_diverged_with_full_confidence(at, n):
    trace = make(decay(6), n=n, floor=0.2)
    loss = trace.loss.copy()
    loss[int(at * (n - 1)) :] = np.nan
    result = diagnose(trace.replace(loss=loss))
    assert (result.verdict, result.confidence) == ("diverged", 1.0)
    assert result.evidence.first_nonfinite_step == trace.step[int(at * (n - 1))]
    assert result.evidence.ended_nonfinite


@given(
    at=st.floats(0.05, 0.9),
    count=st.integers(1, 5),
    value=st.sampled_from([math.nan, math.inf, -math.inf]),
    k=st.floats(3, 20),
    noise=st.floats(0, 0.3),
    n=st.integers(200, 800),
    seed=st.integers(0, 2**16),
)
def test_non_finite_losses_the_run_went_on_from_are_left_out(at, count, value, k, noise, n, seed):
    trace = make(decay(k), n=n, noise=noise, floor=0.5, seed=seed)
    first = int(at * n)
    loss = trace.loss.copy()
    loss[first : first + count] = value  # skipped overflows, say; training went on
    result = diagnose(trace.replace(loss=loss))
    kept = np.isfinite(loss)
    assert result.verdict == diagnose(trace.select(kept)).verdict != "diverged"
    e = result.evidence
    assert (e.nonfinite_count, e.first_nonfinite_step, e.ended_nonfinite) == (count, trace.step[first], False)
    assert result.reasons[-1] == (
        f"{count} non-finite loss(es) left out, the first at step {trace.step[first]}: the run went on past them"
    )


# --- the healthy curve is never called diverged ------------------------------------------------


@given(
    k=st.floats(3, 20),
    noise=st.floats(0, 0.3),
    floor=st.floats(0.01, 5),
    seed=st.integers(0, 2**16),
    n=st.integers(MIN_POINTS, 1500),
)
def test_a_falling_finite_curve_is_never_called_diverged(k, noise, floor, seed, n):
    assert diagnose(make(decay(k), n=n, noise=noise, floor=floor, seed=seed)).verdict != "diverged"


# --- evidence and actions ------------------------------------------------------------------------


def test_evidence_locates_spikes_and_the_best_point():
    trace = FAMILIES["too_high"][2]
    evidence = diagnose(trace).evidence
    assert evidence.spike_count == 4
    assert list(evidence.spike_steps) == [
        int(trace.step[int(w * (len(trace) - 1))]) for w in (0.3, 0.5, 0.7, 0.9)
    ]


@pytest.mark.parametrize("where", [0.25, 0.35, 0.6, 0.85])
def test_a_lasting_spike_counts_wherever_its_highest_point_falls(where):
    def rising_spike(t):  # three steps up, highest last, then straight back down
        values = decay(8)(t).copy()
        at = int(where * (len(t) - 1))
        values[at : at + 3] += [0.8, 0.9, 1.0]
        return values

    result = diagnose(make(rising_spike, n=1000, noise=0.02, floor=0.2))
    assert result.evidence.spike_count == 1, str(result)


def test_single_bad_batches_are_not_spikes():
    trace = make(
        with_spikes(decay(8), [0.3, 0.5, 0.7, 0.9], 1.5, lasting=False), noise=0.02, floor=0.2
    )
    result = diagnose(trace)
    assert result.evidence.spike_count == 0
    assert result.verdict == "healthy", str(result)


def test_late_rise_points_at_where_the_loss_was_best():
    result = diagnose(FAMILIES["too_high"][1])
    assert result.evidence.late_rise >= 0.25
    assert 0.3 * 4000 <= result.evidence.best_step <= 0.45 * 4000
    assert "add a decay" in result.action


def test_action_names_the_factor_and_the_new_rate():
    assert "lower the LR about 10x, to ~0.0001" in diagnose(FAMILIES["diverged"][0]).action
    assert "raise the LR" in diagnose(FAMILIES["too_low"][0]).action
    assert "to ~0.003" in diagnose(FAMILIES["too_low"][1]).action
    assert diagnose(FAMILIES["healthy"][0]).action.startswith("keep the LR")


def test_action_without_an_lr_column_gives_the_factor_only():
    trace = FAMILIES["too_low"][0]
    action = diagnose(trace.replace(lr=np.full(len(trace), np.nan))).action
    assert "raise the LR about" in action and "to ~" not in action


def test_a_long_warmup_does_not_count_as_slow_progress():
    t = np.linspace(0, 1, 500)
    lr = 1e-3 * np.minimum(1.0, (t + 1e-3) / 0.3)  # linear warmup over 30% of the run
    lr_time = np.cumsum(lr) / lr.sum()  # the loss falls with the LR spent so far
    trace = Trace(step=np.arange(500), lr=lr, loss=0.2 + 2.0 * np.exp(-6 * lr_time))
    result = diagnose(trace)
    assert result.verdict == "healthy", str(result)
    assert result.evidence.warmup and result.evidence.half_time < 0.2


def test_an_early_blow_up_asks_for_warmup():
    trace = make(
        lambda t: np.where((t > 0.02) & (t < 0.06), 6.0, decay(8)(t)), noise=0.01, floor=0.3
    )
    result = diagnose(trace)
    assert result.verdict == "too_high"
    assert "add warmup" in result.action


def test_to_dict_is_json_with_the_promised_keys():
    result = diagnose(FAMILIES["diverged"][0])
    data = json.loads(json.dumps(result.to_dict()))
    assert {"verdict", "confidence", "evidence", "action"} <= set(data)
    assert data["verdict"] in VERDICTS
    assert data["evidence"]["first_nonfinite_step"] == 2000
    assert data["evidence"]["end"] is None or math.isfinite(data["evidence"]["end"])


def test_diagnosis_is_a_frozen_value_with_a_readable_repr():
    result = diagnose(FAMILIES["healthy"][0])
    assert isinstance(result, Diagnosis) and lrkit.diagnose is diagnose
    with pytest.raises(AttributeError):
        result.verdict = "too_low"  # type: ignore[misc]
    assert repr(result).startswith("Diagnosis(verdict='healthy'")
    assert str(result).startswith("healthy (confidence")


def test_plot_marks_the_spikes(tmp_path):
    from lrkit.plots import save_figure

    figure = diagnose(FAMILIES["too_high"][2]).plot()
    labels = [text.get_text() for text in figure.axes[0].get_legend().get_texts()]
    assert "4 spikes" in labels and any(label.startswith("best") for label in labels)
    assert save_figure(figure, tmp_path / "d.png").stat().st_size > 1000


# --- bad input -------------------------------------------------------------------------------------


def test_too_few_points_is_refused_with_the_count():
    with pytest.raises(
        ValueError, match=r"too few points: the trace has 5, diagnose needs at least 8"
    ):
        diagnose(make(decay(5), n=5))


def test_steps_that_do_not_increase_are_refused():
    trace = make(decay(5), n=20)
    with pytest.raises(ValueError, match="trace steps must increase; step 30 follows 40"):
        diagnose(trace.replace(step=[*range(0, 40, 10), 40, 30, *range(60, 200, 10)]))


def test_a_non_trace_is_refused():
    with pytest.raises(TypeError, match="trace must be a Trace, got list"):
        diagnose([1.0, 2.0])  # type: ignore[arg-type]


def test_a_negative_lr_is_refused_before_diagnose_sees_it():
    trace = FAMILIES["healthy"][0]
    with pytest.raises(ValueError, match=r"lr must be >= 0 and finite \(NaN where unknown\), got -0.001 at index 0"):
        diagnose(Trace(trace.step, np.full(len(trace), -1e-3), trace.loss))


def test_an_lr_that_is_zero_or_unknown_throughout_gets_a_verdict_without_a_rate():
    trace = FAMILIES["too_low"][0]
    for lr in (0.0, np.nan):
        result = diagnose(trace.replace(lr=np.full(len(trace), lr)))
        assert result.verdict == "too_low" and "to ~" not in result.action


@given(
    lr=st.lists(st.one_of(st.floats(0, 1), st.just(0.0), st.just(math.nan)), min_size=MIN_POINTS, max_size=80),
    seed=st.integers(0, 2**16),
)
def test_any_lr_a_trace_accepts_gets_a_verdict(lr, seed):
    n = len(lr)
    loss = 2.0 * np.exp(-3 * np.linspace(0, 1, n)) + 0.05 * np.random.default_rng(seed).standard_normal(n)
    assert diagnose(Trace(np.arange(n), lr, loss)).verdict in VERDICTS


# --- the command line ------------------------------------------------------------------------------


def test_cli_prints_json_with_the_verdict(tmp_path, capsys):
    path = FAMILIES["too_low"][0].save(tmp_path / "run.csv")
    assert main(["diagnose", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["verdict"] == "too_low" and data["file"] == str(path)
    assert data["evidence"]["trend"] > 0.25


def test_cli_writes_the_plot_and_prints_the_action(tmp_path, capsys):
    path = FAMILIES["too_high"][2].save(tmp_path / "run.jsonl")
    assert main(["diagnose", str(path), "--plot", str(tmp_path / "out.png")]) == 0
    out = capsys.readouterr().out
    assert out.startswith("too_high") and "action: lower the LR" in out
    assert (tmp_path / "out.png").stat().st_size > 1000


@pytest.mark.parametrize(("name", "magic"), [("out.pdf", b"%PDF-"), ("out.svg", b"<?xml"), ("out.png", b"\x89PNG")])
def test_cli_writes_the_plot_in_the_format_its_extension_names(tmp_path, capsys, name, magic):
    path = FAMILIES["too_high"][2].save(tmp_path / "run.jsonl")
    assert main(["diagnose", str(path), "--plot", str(tmp_path / name)]) == 0
    assert (tmp_path / name).read_bytes().startswith(magic)


def test_cli_plot_with_an_unknown_extension_is_one_line_naming_plot_and_exit_2(tmp_path, capsys):
    path = FAMILIES["too_high"][2].save(tmp_path / "run.jsonl")
    plot = tmp_path / "out.docx"
    assert main(["diagnose", str(path), "--plot", str(plot)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert captured.err.startswith(f"lrkit: error: --plot {str(plot)!r}: the extension must name an image format (")
    assert ".pdf" in captured.err and ".svg" in captured.err and "got '.docx'" in captured.err
    assert not plot.exists()


def test_cli_too_few_points_is_one_line_naming_the_file_and_exit_2(tmp_path, capsys):
    path = tmp_path / "short.csv"
    path.write_text("step,loss\n0,2.0\n1,1.5\n2,1.2\n")
    assert main(["diagnose", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and str(path) in err and "too few points" in err


# --- heavy-tailed batches, fast first falls, rebounds and the validation loss ---------------------


def heavy_tailed(trace, every=17, height=8.0, seed=0):
    """A hard batch every ``every`` steps: a lone outlier up to ``height`` x the progress, the way
    a dataset with a few badly fit examples looks at a good LR."""
    rng = np.random.default_rng(seed)
    loss = trace.loss.copy()
    progress = loss[0] - loss.min()
    for at in range(every // 2, len(loss) - 1, every):
        loss[at] += height * progress * rng.uniform(0.5, 1.0)
    return trace.replace(loss=loss)


def with_val(trace, val_at, every=40):
    """Validation points every ``every`` steps from ``val_at(t)`` (no batch noise)."""
    n = len(trace)
    t = np.linspace(0, 1, n)
    val = np.full(n, np.nan)
    val[every::every] = val_at(t)[every::every]
    return trace.replace(val_loss=val)


@pytest.mark.parametrize("seed", range(3))
def test_heavy_tailed_batch_losses_at_a_good_lr_are_healthy(seed):
    trace = heavy_tailed(make(decay(40), noise=0.01, floor=0.1, seed=seed), seed=seed)
    result = diagnose(trace)
    assert result.verdict == "healthy", str(result)
    assert result.evidence.spike_count == 0


def test_a_fast_first_fall_counts_from_the_first_loss():
    trace = make(decay(60), noise=0.01, floor=0.1)  # most of the fall within the first steps
    evidence = diagnose(trace).evidence
    assert evidence.start == pytest.approx(trace.loss[0])
    assert evidence.progress > 1.8


def test_a_fall_made_within_the_first_steps_is_not_said_to_take_0_percent():
    result = diagnose(make(lambda t: 2.0 * np.exp(-t / 0.001), noise=0.01, floor=0.1))
    assert result.evidence.half_time < 0.005
    assert "half of it within the first 1% of the run" in " ".join(result.reasons), str(result)


def test_a_loss_that_climbs_back_mid_run_is_too_high():
    def bump(t):
        return decay(12)(t) + 1.0 * np.exp(-(((t - 0.45) / 0.06) ** 2))  # half the progress back

    result = diagnose(make(bump, noise=0.02, floor=0.3))
    assert result.verdict == "too_high", str(result)
    assert result.evidence.rebound >= 0.25
    assert 0.4 * 4000 <= result.evidence.rebound_step <= 0.5 * 4000


def test_noise_early_in_a_run_is_not_a_rebound():
    rng = np.random.default_rng(0)
    trace = make(decay(8), noise=0.01, floor=0.3)
    loss = trace.loss.copy()
    loss[:40] += 0.3 * rng.standard_normal(40)  # the first batches are noisier than the rest
    result = diagnose(trace.replace(loss=loss))
    assert result.evidence.rebound < 0.1
    assert result.verdict == "healthy", str(result)


def test_a_steady_fall_is_too_low_however_noisy_its_batches():
    # progress is small next to the batch noise, but the fall is real and far from done
    result = diagnose(make(lambda t: -0.3 * t, n=600, noise=0.05, floor=2.0, seed=1))
    assert result.verdict == "too_low", str(result)


@pytest.mark.parametrize("seed", range(3))
def test_a_validation_loss_still_falling_means_too_low(seed):
    # the training curve looks levelled off under heavy-tailed batches; the validation loss is not
    train = heavy_tailed(make(power_law(0.6, 40), noise=0.01, seed=seed), seed=seed)
    result = diagnose(with_val(train, lambda t: 0.5 + 1.5 * (1 + 4 * t) ** -1.0))
    assert result.verdict == "too_low", str(result)
    assert result.evidence.val_trend >= 0.072 and result.evidence.val_trend_z >= 2


def test_a_levelled_validation_loss_keeps_a_healthy_verdict():
    train = make(decay(9), noise=0.02, floor=0.2)
    result = diagnose(with_val(train, lambda t: 0.3 + 2.0 * np.exp(-9 * t)))
    assert result.verdict == "healthy", str(result)
    assert abs(result.evidence.val_trend) < 0.072


@given(scale=st.floats(1e-3, 1e3), shift=st.floats(-100, 100), every=st.integers(1, 3))
def test_validation_rules_are_invariant_to_scale_shift_and_log_density(scale, shift, every):
    train = heavy_tailed(make(power_law(0.6, 40), noise=0.01), every=17)
    trace = with_val(train, lambda t: 0.5 + 1.5 * (1 + 4 * t) ** -1.0, every=42)
    moved = trace.replace(loss=trace.loss * scale + shift, val_loss=trace.val_loss * scale + shift)
    assert diagnose(moved.select(slice(0, None, every))).verdict == "too_low"


def test_a_validation_loss_that_turns_up_while_training_falls_is_called_overfitting():
    trace = make(decay(12), noise=0.01, floor=0.1)
    # validation falls with training, then climbs back half its progress: memorising, not the LR
    overfit = with_val(trace, lambda t: 0.4 + 1.0 * np.exp(-12 * t) + 0.5 * np.clip(t - 0.4, 0, None) / 0.6)
    result = diagnose(overfit)
    assert "overfitting, not the LR" in result.action, result.action
    assert result.verdict == diagnose(trace).verdict  # the verdict is about the LR alone
    steady = with_val(trace, lambda t: 0.4 + 1.0 * np.exp(-12 * t))
    assert "overfitting" not in diagnose(steady).action


@pytest.mark.parametrize(
    ("family", "direction"),
    [("diverged", "lower"), ("too_high", "lower"), ("too_low", "raise"), ("healthy", "keep")],
)
def test_the_lr_factor_is_the_number_the_action_gives(family, direction):
    results = [diagnose(trace) for trace in FAMILIES[family]]
    assert any(result.verdict == family for result in results)
    for result in results:
        if result.verdict != family:
            continue
        if direction == "keep":
            assert result.lr_factor == 1.0 and result.action.startswith("keep the LR")
        else:
            times = 1 / result.lr_factor if direction == "lower" else result.lr_factor
            assert times in (3.0, 10.0) or times == pytest.approx(3.0)
            assert f"{direction} the LR about {times:.0f}x" in result.action
        assert result.to_dict()["lr_factor"] == result.lr_factor


# --- a decaying LR: held back by a small LR, or held up by a large LR's noise ------------------


def noise_floor(k, share, n=400, noise=0.01, seed=0):
    """A loss that falls with the LR spent onto a floor that the LR's noise holds up in proportion
    to the current LR (``share`` of the start at full LR), under a warmup + cosine schedule."""
    base = make(decay(k), n=n, noise=noise, seed=seed, schedule="cosine", floor=0.3)
    return base.replace(loss=base.loss + share * base.lr / np.max(base.lr))


@given(
    k=st.floats(0.3, 2.0),
    noise=st.floats(0, 0.01),
    floor=st.floats(-10, 10),
    n=st.integers(100, 3000),
    seed=st.integers(0, 2**16),
)
def test_under_a_decay_a_loss_that_follows_the_lr_spent_is_too_low(k, noise, floor, n, seed):
    result = diagnose(make(decay(k), n=n, noise=noise, floor=floor, seed=seed, schedule="cosine"))
    assert result.verdict == "too_low", str(result)
    # a nearly straight fall has a decay gain of about 1, so noise alone may tip it past 1
    assert result.evidence.decay_gain < 1.2


@given(
    k=st.floats(5, 10),
    share=st.floats(0.2, 0.5),
    n=st.integers(200, 3000),
    seed=st.integers(0, 2**16),
)
def test_a_loss_the_lr_noise_holds_up_falls_with_the_decay_and_is_healthy(k, share, n, seed):
    result = diagnose(noise_floor(k, share, n=n, seed=seed))
    assert result.verdict == "healthy", str(result)
    assert result.evidence.decay_gain > 1


def test_decay_measures_are_nan_without_a_decay_and_finite_with_one():
    constant = diagnose(make(decay(1.0), noise=0.01)).evidence
    assert math.isnan(constant.lr_trend) and math.isnan(constant.decay_gain)
    decayed = diagnose(make(decay(1.0), noise=0.01, schedule="cosine")).evidence
    assert decayed.lr_trend > 0 and decayed.lr_trend_z > 2 and 0 < decayed.decay_gain < 1
    assert any("decay gain" in reason for reason in diagnose(make(decay(1.0), noise=0.01, schedule="cosine")).reasons)
    assert diagnose(noise_floor(8, 0.3)).evidence.decay_gain > 1


def test_the_healthy_reason_says_when_half_the_fall_came_relative_to_the_warmup():
    during = diagnose(make(decay(80), noise=0.001, schedule="cosine", floor=0.5))
    after = diagnose(make(decay(20), noise=0.001, schedule="cosine", floor=0.5))
    plain = diagnose(make(decay(20), noise=0.001, floor=0.5))
    assert "half of it during the warmup" in during.reasons[0]
    assert "of the run after the warmup" in after.reasons[0]
    assert "of the run," in plain.reasons[0] and "warmup" not in plain.reasons[0]


@pytest.mark.parametrize("level", [0.0, 3.0, -2.0])
def test_a_perfectly_flat_loss_is_a_plateau_without_numeric_warnings(level):
    trace = Trace(step=np.arange(100), lr=np.full(100, 1e-3), loss=np.full(100, level))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no 0 * inf on a curve with no noise at all
        result = diagnose(trace)
    assert result.verdict == "plateau" and result.lr_factor > 1


def test_a_tenfold_raise_rests_only_on_rules_that_fired():
    from dataclasses import replace

    from lrkit.diagnosis import HALF_TIME, TREND, _lr_factor

    evidence = diagnose(FAMILIES["too_low"][0]).evidence
    decayed = replace(evidence, trend=0.0, lr_trend=4 * TREND, lr_trend_z=10.0, half_time=1.2 * HALF_TIME)
    # a steep pace per LR spent, but the decay gained more than the LR it spent: that rule did not fire
    assert _lr_factor("too_low", replace(decayed, decay_gain=1.01)) == 3.0
    assert _lr_factor("too_low", replace(decayed, decay_gain=0.9)) == 10.0

