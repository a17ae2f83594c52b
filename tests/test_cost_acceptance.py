"""What a choice costs, checked the way a team lead would: the same run logged sparsely or densely,
a guarded run that skipped a NaN step, a rate that blows up after reaching the target, a choice
slower than the default, and the demo's report where the default LR is one of the runs."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest
import torch

import lrkit
from lrkit.cli.app import main
from lrkit.cost import compare_cost, steps_to_target
from lrkit.plots.cost import plot_cost
from lrkit.report import render_report
from lrkit.trace import Trace


def curve(tau: float = 30.0, steps: int = 300, **meta: object) -> Trace:
    """A noiseless loss falling as exp(-t / tau) to 0.01, logged every step."""
    t = np.arange(steps)
    return Trace(step=t, lr=np.full(steps, 0.1), loss=np.exp(-t / tau) + 0.01, meta=meta)


def cost_section(page: str) -> str:
    return re.search(r"<section id='cost'>.*?</section>", page, re.S).group(0)


def test_a_run_logged_every_10_steps_reaches_the_target_when_its_dense_log_does() -> None:
    dense = curve()
    sparse = dense.select(slice(0, None, 10))  # the same run, written every 10 steps
    assert abs(steps_to_target(sparse, 0.2) - steps_to_target(dense, 0.2)) <= 10
    assert compare_cost(sparse, dense, target_loss=0.2).speedup == pytest.approx(1, abs=0.2)


def test_the_cost_chart_draws_a_sparse_log_at_the_steps_it_covers() -> None:
    sparse, dense = curve().select(slice(0, None, 10)), curve(60)
    figure = plot_cost(sparse, dense, compare_cost(sparse, dense, target_loss=0.2))
    assert figure.axes[0].lines[0].get_xdata().max() == 291  # steps 0..290, as the cost counts them


def test_a_guarded_run_that_skipped_a_nan_step_still_reaches_the_target() -> None:
    torch.manual_seed(0)
    x = torch.randn(256, 4)
    y = x @ torch.tensor([1.0, -2.0, 0.5, 3.0])
    model = torch.nn.Linear(4, 1)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    guard = lrkit.Guard(model, optimizer)
    for step in range(200):
        batch = torch.randint(0, 256, (32,))
        loss = torch.nn.functional.mse_loss(model(x[batch]).squeeze(1), y[batch])
        if step == 5:
            loss = loss * math.nan  # one bad batch: the guard skips the step
        loss.backward()
        guard.step(loss)
        optimizer.zero_grad()
    guarded = guard.trace
    assert math.isnan(guarded.loss[5]) and guarded.loss[-1] < 1e-6
    cost = compare_cost(guarded, curve(60), target_loss=0.01)
    assert cost.chosen.steps is not None and cost.chosen.failure is None and cost.steps_saved is not None


def test_a_first_logged_loss_of_nan_does_not_sink_the_run() -> None:
    logged = curve()
    first_nan = logged.replace(loss=np.concatenate([[math.nan], logged.loss[1:]]))
    cost = compare_cost(first_nan, curve(60))
    assert cost.chosen.steps is not None and cost.chosen.steps <= steps_to_target(logged, cost.target_loss) + 1


def test_a_rate_that_blows_up_after_reaching_the_target_never_reaches_it() -> None:
    reached = curve()
    blown = reached.replace(loss=np.concatenate([reached.loss[:-1], [math.inf]]))
    assert steps_to_target(blown, 0.2) is not None  # it got there on the way...
    cost = compare_cost(blown, curve(60), target_loss=0.2)
    assert cost.chosen.steps is None and cost.chosen.failure == "it ended non-finite"  # ...but failed
    assert cost.steps_saved is None
    page = render_report(runs=[blown.replace(meta={"label": "hot"})], baseline=curve(60), target_loss=0.2)
    assert "hot never reached loss 0.2 (it ended non-finite): it saves nothing" in page


def test_a_slower_choice_is_reported_as_steps_and_money_more_not_negative_savings() -> None:
    slow, fast = curve(60, label="slow", seconds_per_step=0.01), curve(20, label="fast", seconds_per_step=0.01)
    page = render_report(runs=[slow], baseline=fast, price_per_gpu_hour=3.0)
    cost = compare_cost(slow, fast, price_per_gpu_hour=3.0)
    extra = -cost.steps_saved
    assert extra > 0
    section = cost_section(page)
    assert f"<th>extra steps</th><td>{extra} ({1 / cost.speedup:.2f}x more steps)</td>" in section
    assert f"<th>extra time</th><td>{extra * 0.01:.3g} s" in section
    assert f"<th>extra cost</th><td>{extra * 0.01 / 3600 * 3:.4g} at 3 per GPU-hour</td>" in section
    assert f"against {cost.baseline_steps} for fast: {extra} steps more" in page
    assert "<td>-" not in section and "saved" not in section


def test_a_loss_against_a_baseline_that_never_got_there_is_an_upper_bound() -> None:
    finder = Trace(step=np.arange(100), lr=np.geomspace(1e-5, 1, 100), loss=np.linspace(2, 1, 100))
    never = curve(1e4, steps=120, label="default")
    page = render_report(runs=[curve(label="chosen")], finder=finder, baseline=never, target_loss=0.2)
    total = steps_to_target(curve(), 0.2) + 100
    assert total > 120
    assert f"against 120 for default (which never got there): at most {total - 120} steps more" in page
    assert f"<th>extra steps</th><td>at most {total - 120} (at most" in cost_section(page)


def test_the_demo_report_shows_the_default_run_once_under_its_own_label() -> None:
    found, default = curve(20, lr=0.003), curve(60, lr=0.001)
    page = render_report(runs={"lr=0.003 (found)": found, "lr=0.001 (chosen)": default}, baseline=default)
    assert page.count("<h3>lr=0.001 (chosen)</h3>") == 1 and "<h3>lr=0.001</h3>" not in page
    assert "<th>steps to target, lr=0.001 (chosen)</th>" in page
    assert "lr=0.003 (found) reaches loss" in page and "for lr=0.001 (chosen):" in page


def test_the_report_states_the_step_time_the_saving_is_counted_with() -> None:
    chosen = curve(20, task="t", label="chosen", seconds_per_step=0.0011)
    default = curve(60, task="t", label="default", seconds_per_step=0.0009)  # one model: timing noise
    page = render_report(runs=[chosen], baseline=default)
    cost = compare_cost(chosen, default)
    assert cost.seconds_saved == pytest.approx(cost.steps_saved * 0.001)
    section = cost_section(page)
    assert "Time at 1 ms per step for both runs, as measured." in section
    assert f"<th>steps to target, chosen</th><td>{cost.chosen.steps} ({cost.chosen.steps * 0.001:.3g} s)</td>" in section


def test_report_help_says_how_the_default_target_is_chosen(capsys) -> None:
    assert main(["report", "--help"]) == 0
    assert "higher of the two runs' final" in " ".join(capsys.readouterr().out.split())


def test_a_log_first_written_after_n_steps_counts_the_steps_before_it(tmp_path) -> None:
    # Lightning writes every 50 steps from step 49; a validation loss comes after each evaluation
    for name, tau in (("chosen", 20.0), ("default", 60.0)):
        lines = ["step,train_loss,val_loss"]
        for step in range(300):
            lines.append(f"{step},{math.exp(-step / tau) + 0.01},")
            if step % 25 == 24:
                lines.append(f"{step},,{math.exp(-step / tau) + 0.02}")
        (tmp_path / f"{name}.csv").write_text("\n".join(lines) + "\n")
    chosen, default = (lrkit.read_log(tmp_path / f"{name}.csv", loss="val_loss") for name in ("chosen", "default"))
    assert chosen.step[0] == 24
    cost = compare_cost(chosen, default, target_loss=0.2)
    first_below = {tau: next(s for s in range(24, 300, 25) if math.exp(-s / tau) + 0.02 <= 0.2) for tau in (20, 60)}
    assert (cost.chosen.steps, cost.baseline.steps) == (first_below[20] + 1, first_below[60] + 1)
    assert cost.speedup == pytest.approx((first_below[60] + 1) / (first_below[20] + 1))
    resumed = curve().replace(step=curve().step + 1000)  # a log that starts mid-run counts from its first row
    assert compare_cost(resumed, resumed).chosen.run_steps == 300
