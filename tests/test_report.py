"""The HTML report: built from real runs and range tests, self-contained, and opened offline in a
real browser (Debian's Chromium driven by Playwright)."""

from __future__ import annotations

import base64
import re
import warnings
from pathlib import Path

import numpy as np
import pytest

from lrkit.cli.app import main
from lrkit.cost import compare_cost
from lrkit.plots import plot_traces
from lrkit.report import render_report, write_report
from lrkit.report.document import duration
from lrkit.suggest import suggest
from lrkit.tasks import get_task, train
from lrkit.torch.finder import find_task_lr
from lrkit.trace import Trace, TraceBuilder

ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]


@pytest.fixture(scope="module")
def real():
    """A real range test and two real trainings of the logistic-regression task."""
    task = get_task("cancer-logreg")
    finder = find_task_lr(task, seed=0)
    chosen = train(task, finder.lr, seed=0)
    default = train(task, task.default_lr, seed=0)
    return finder, chosen, default


@pytest.fixture(scope="module")
def real_page(real) -> str:
    finder, chosen, default = real
    return render_report(runs=[chosen], finder=finder, baseline=default, price_per_gpu_hour=2.5)


def run(
    tau: float, steps: int = 200, *, seed: int = 0, label: str | None = None, events=(), timed: bool = True
) -> Trace:
    """A noisy decaying training curve (``timed``: its wall time recorded, as lrkit's training does)."""
    rng = np.random.default_rng(seed)
    record = TraceBuilder(**({"label": label} if label else {}), **({"seconds": steps * 0.02} if timed else {}))
    for step in range(steps):
        record.add(step, 0.1, float(np.exp(-step / tau) * (1 + 0.05 * rng.standard_normal()) + 0.01))
    for step, kind, detail in events:
        record.event(step, kind, detail)
    return record.build()


def sweep(meta: dict | None = None) -> Trace:
    """A range test: loss against an LR rising from 1e-5 to 10."""
    lr = np.geomspace(1e-5, 10, 120)
    x = np.log10(lr)
    loss = 2.0 - 1.5 / (1 + np.exp(-3 * (x + 2.5))) + np.exp(3 * (x - 0.3))
    return Trace(step=np.arange(120), lr=lr, loss=loss, meta={"kind": "range_test"} if meta is None else meta)


def images(page_html: str) -> list[bytes]:
    """The SVG charts embedded in the page, decoded."""
    return [base64.b64decode(data) for data in re.findall(r'src="data:image/svg\+xml;base64,([^"]+)"', page_html)]


def test_report_from_real_results_has_every_section(real, real_page: str) -> None:
    finder, chosen, default = real
    page = real_page
    for section in ("summary", "range-test", "schedule", "curves", "events", "cost"):
        assert f"id='{section}'" in page
    assert f"suggests lr {finder.lr:.3g}" in page
    charts = images(page)
    assert len(charts) == 5  # range test, overview, two diagnoses, cost (the LR was constant)
    assert all(chart.lstrip().startswith(b"<?xml") and b"<svg" in chart for chart in charts)
    comparison = compare_cost(
        chosen.trace.replace(meta={**chosen.trace.meta, "seconds": chosen.seconds}),
        default.trace.replace(meta={**default.trace.meta, "seconds": default.seconds}),
        search_steps=len(finder.trace),
        price_per_gpu_hour=2.5,
    )
    assert f"<td>{comparison.target_loss:.4g}</td>" in page
    assert f"{comparison.steps_saved}" in page
    assert "per GPU-hour" in page and "GPU-hours" in page


def test_report_is_self_contained(real_page: str) -> None:
    assert "<script" not in real_page
    assert not re.search(r"""(src|href)=["']https?:""", real_page)
    assert len(real_page) < 2_000_000


def test_report_is_deterministic() -> None:
    assert render_report(runs=[run(20, steps=60)]) == render_report(runs=[run(20, steps=60)])


def test_report_marks_diagnosis_schedule_and_guard_events_and_escapes_labels() -> None:
    noisy = run(30, events=[(120, "lr_cut", "loss spiked: LR halved"), (150, "skip", "NaN")])
    schedule = "warmup(20) >> cosine(peak=0.1, steps=180)"
    page = render_report(runs={"<b>guarded</b>": noisy}, schedule=schedule)
    assert "<code>warmup(20) &gt;&gt; cosine(peak=0.1, steps=180)</code>" in page
    assert "<td>lr_cut</td><td>loss spiked: LR halved</td>" in page
    assert "<td>120</td>" in page and "<td>150</td>" in page
    assert "class='verdict'" in page
    assert "&lt;b&gt;guarded&lt;/b&gt;" in page and "<b>guarded</b>" not in page
    assert len(images(page)) == 3  # schedule, overview, diagnosis
    assert "id='cost'" not in page


def test_report_from_a_range_test_alone_uses_lrkits_suggestion() -> None:
    trace = sweep()
    page = render_report(finder=trace)
    assert f"suggests lr {suggest(trace).lr:.3g}" in page
    assert "id='curves'" not in page and len(images(page)) == 1


def test_report_takes_any_rising_lr_as_a_range_test_and_refuses_a_training_run() -> None:
    other_tools = sweep(meta={})
    assert f"suggests lr {suggest(other_tools).lr:.3g}" in render_report(finder=other_tools)
    with pytest.raises(ValueError, match="finder is not a range test: its learning rate does not rise step by step"):
        render_report(finder=run(20))


def test_report_without_recorded_time_says_why_it_shows_no_money() -> None:
    page = render_report(runs=[run(20, timed=False)], baseline=run(60, timed=False), price_per_gpu_hour=2.5)
    assert "<th>money saved</th><td>unknown at 2.5 per GPU-hour: a run recorded no time" in page
    assert "<li>No money saved shown at 2.5 per GPU-hour" in page
    timed = render_report(runs=[run(20)], baseline=run(60), price_per_gpu_hour=2.5)
    assert "<th>money saved</th><td>" in timed and "unknown" not in timed


def test_report_draws_losses_at_or_below_zero_on_a_linear_axis() -> None:
    negative = run(20).replace(loss=-run(20).loss)  # a negative log-likelihood, say
    reaching_zero = run(20).replace(loss=np.append(run(20).loss[:-1], 0.0))
    assert plot_traces([negative]).axes[0].get_yscale() == "linear"
    assert plot_traces([run(30), reaching_zero]).axes[0].get_yscale() == "linear"
    assert plot_traces([run(20)]).axes[0].get_yscale() == "log"


def test_report_on_a_diverged_chosen_run_says_it_saves_nothing() -> None:
    loss = np.concatenate([np.exp(np.arange(30) / 3.0), [np.inf]])
    blown = Trace(step=np.arange(31), lr=np.ones(31), loss=loss, meta={"label": "lr=1"})
    page = render_report(runs=[blown], baseline=run(50), price_per_gpu_hour=1.0)
    assert "lr=1: diverged" in page
    assert "<th>steps to target, lr=1</th><td>never (in 31 steps; it ended non-finite)</td>" in page
    assert "never reached loss" in page and "it saves nothing" in page


def test_write_report_writes_atomically(tmp_path: Path) -> None:
    path = write_report(tmp_path / "out" / "report.html", runs=[run(20, steps=60)])
    assert path.read_text().startswith("<!doctype html>")
    assert [p.name for p in path.parent.iterdir()] == ["report.html"]


def test_report_refuses_bad_input() -> None:
    with pytest.raises(ValueError, match="nothing to report"):
        render_report()
    with pytest.raises(ValueError, match="baseline needs a chosen run"):
        render_report(finder=sweep(), baseline=run(30))
    with pytest.raises(ValueError, match="price_per_gpu_hour needs a baseline"):
        render_report(runs=[run(20)], price_per_gpu_hour=2.5)
    with pytest.raises(ValueError, match="target_loss needs a baseline"):
        render_report(runs=[run(20)], target_loss=0.1)
    with pytest.raises(ValueError, match=r"runs\['dead'\]: no finite loss"):
        render_report(runs={"dead": run(20).replace(loss=np.full(200, np.nan))})
    with pytest.raises(TypeError, match="runs must be a list of Traces"):
        render_report(runs=run(20))
    with pytest.raises(TypeError, match=r"runs\[0\] must be a Trace or a result with a .trace, got float"):
        render_report(runs=[0.5])
    with pytest.raises(ValueError, match="unknown schedule 'sawtooth'"):
        render_report(runs=[run(20)], schedule="sawtooth(1)")
    with pytest.raises(ValueError, match="price_per_gpu_hour must be >= 0"):
        render_report(runs=[run(20)], baseline=run(40), price_per_gpu_hour=-2)


def test_cli_writes_a_report_and_finds_the_range_test(tmp_path: Path, real, capsys) -> None:
    finder, chosen, default = real
    finder.trace.save(tmp_path / "find.csv")
    chosen.trace.save(tmp_path / "chosen.jsonl")
    default.trace.save(tmp_path / "default.jsonl")
    out = tmp_path / "report.html"
    code = main([
        "report", str(tmp_path / "chosen.jsonl"), str(tmp_path / "find.csv"),
        "--baseline", str(tmp_path / "default.jsonl"), "--out", str(out), "--price-per-gpu-hour", "3",
        "--schedule", f"constant({chosen.lr})",
    ])
    assert code == 0 and f"wrote {out}" in capsys.readouterr().out
    page = out.read_text()
    assert "id='range-test'" in page and "id='cost'" in page and f"lr={chosen.lr:g}" in page


def test_cli_shows_the_money_saved_from_traces_lrkit_training_saved(tmp_path: Path, real, capsys) -> None:
    _, chosen, default = real
    assert 0 < chosen.trace.meta["seconds_per_step"] * len(chosen.trace) < chosen.seconds
    chosen.trace.save(tmp_path / "chosen.jsonl")
    default.trace.save(tmp_path / "default.jsonl")
    out = tmp_path / "report.html"
    code = main([
        "report", str(tmp_path / "chosen.jsonl"), "--baseline", str(tmp_path / "default.jsonl"),
        "--price-per-gpu-hour", "2.5", "--out", str(out),
    ])
    printed = capsys.readouterr()
    assert code == 0 and printed.err == ""
    comparison = compare_cost(chosen.trace, default.trace, price_per_gpu_hour=2.5)
    expected = comparison.money_saved
    assert f"<th>money saved</th><td>{expected:.4g} at 2.5 per GPU-hour</td>" in out.read_text()
    # the report's cost line is printed too, naming the files as given, then the step times it used
    line, note = printed.out.splitlines()[-2:]
    steps = f"in {comparison.chosen_total_steps} steps against {comparison.baseline_steps} for"
    assert line.startswith(f"{tmp_path / 'chosen.jsonl'} reaches loss") and steps in line
    assert f" steps saved, {duration(comparison.seconds_saved)} saved, " in line
    assert line.endswith(f"{expected:.4g} saved at 2.5 per GPU-hour")
    assert note.startswith("Time at ") and note.endswith(
        ", as measured. Time from the run's recorded meta 'seconds_per_step' for both runs."
    )


def test_cli_notes_a_price_it_cannot_apply_to_untimed_runs(tmp_path: Path, capsys) -> None:
    run(20, timed=False).save(tmp_path / "chosen.jsonl")
    run(60).save(tmp_path / "default.jsonl")
    out = tmp_path / "report.html"
    code = main([
        "report", str(tmp_path / "chosen.jsonl"), "--baseline", str(tmp_path / "default.jsonl"),
        "--price-per-gpu-hour", "2.5", "--out", str(out),
    ])
    assert code == 0
    assert capsys.readouterr().err == (
        f"lrkit: note: no money saved shown: {tmp_path / 'chosen.jsonl'} recorded no time (a log's time column "
        "such as time, wall_time or timestamp, or meta 'seconds' or 'seconds_per_step', as "
        "lrkit.tasks.train writes)\n"
    )
    assert "money saved</th><td>unknown at 2.5 per GPU-hour" in out.read_text()


def test_cli_refuses_a_price_or_target_without_a_baseline(tmp_path: Path, capsys) -> None:
    run(20).save(tmp_path / "chosen.jsonl")
    for option in ("--price-per-gpu-hour", "--target-loss"):
        code = main(["report", str(tmp_path / "chosen.jsonl"), option, "2.5", "--out", str(tmp_path / "r.html")])
        assert code == 2
        assert capsys.readouterr().err == (
            f"lrkit: error: {option} needs --baseline, the run to compare the chosen one with\n"
        )
    assert not (tmp_path / "r.html").exists()


def test_cli_refuses_a_training_run_as_finder(tmp_path: Path, capsys) -> None:
    trained = tmp_path / "chosen.jsonl"
    run(20).save(trained)
    assert main(["report", str(trained), "--finder", str(trained), "--out", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == (
        f"lrkit: error: --finder {str(trained)!r} is not a range test: its learning rate does not rise step by "
        "step (and its meta has no kind 'range_test')\n"
    )
    assert not (tmp_path / "r.html").exists()


def test_cli_log_with_no_finite_loss_is_one_line_naming_it(tmp_path: Path, capsys) -> None:
    log = tmp_path / "allnan.csv"
    log.write_text("step,loss\n0,nan\n1,nan\n")
    assert main(["report", str(log), "--out", str(tmp_path / "r.html")]) == 2
    assert capsys.readouterr().err == (
        f"lrkit: error: {log}: no finite loss (every value is NaN or infinite): nothing to chart or diagnose\n"
    )


def test_cli_reports_negative_losses_without_warnings(tmp_path: Path, capsys) -> None:
    log = tmp_path / "nll.csv"
    log.write_text("step,loss\n" + "".join(f"{step},{-1 - step / 50}\n" for step in range(100)))
    out = tmp_path / "r.html"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert main(["report", str(log), "--out", str(out)]) == 0
    assert capsys.readouterr().err == ""
    overview = next(chart for chart in images(out.read_text()) if b"training loss of every run" in chart)
    assert "−2.50" in overview.decode()  # a linear axis's tick; a log axis cannot show one
    assert "nll recorded no learning rate" in out.read_text()


def test_cli_names_log_columns_like_diagnose(tmp_path: Path, capsys) -> None:
    log = tmp_path / "metrics.csv"  # a Lightning CSVLogger file that logged only val_loss
    log.write_text("epoch,step,val_loss\n" + "".join(f"0,{step},{2 / (1 + step / 20)}\n" for step in range(60)))
    out = tmp_path / "r.html"
    assert main(["report", str(log), "--out", str(out)]) == 2
    assert "no loss column among epoch, step, val_loss; name it with loss=... (--loss)" in capsys.readouterr().err
    assert main(["report", str(log), "--loss", "val_loss", "--step", "step", "--out", str(out)]) == 0
    assert "<h3>metrics</h3>" in out.read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "nothing to report"),
        (["missing.jsonl"], "does not exist"),
        (["--schedule", "cosine("], "malformed"),
    ],
)
def test_cli_bad_input_is_one_line(tmp_path: Path, capsys, extra: list[str], message: str) -> None:
    code = main(["report", *extra, "--out", str(tmp_path / "r.html")])
    err = capsys.readouterr().err.strip()
    assert code == 2 and message in err and "\n" not in err
    assert not (tmp_path / "r.html").exists()


def test_cli_unwritable_out_is_one_line_naming_out_before_reading_anything(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    out = blocker / "r.html"
    assert main(["report", str(tmp_path / "file"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err == f"lrkit: error: --out {str(out)!r} cannot be written: {str(blocker)!r}: Not a directory\n"


def test_cli_refuses_two_range_tests_without_finder(tmp_path: Path, real, capsys) -> None:
    finder, _, _ = real
    for name in ("a.csv", "b.csv"):
        finder.trace.save(tmp_path / name)
    code = main(["report", str(tmp_path / "a.csv"), str(tmp_path / "b.csv"), "--out", str(tmp_path / "r.html")])
    assert code == 2 and "name the one to show with --finder" in capsys.readouterr().err


def test_report_opens_offline_in_chromium_with_its_charts(tmp_path: Path, real_page: str) -> None:
    from playwright.sync_api import sync_playwright

    path = tmp_path / "report.html"
    path.write_text(real_page)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 1400})
        errors: list[str] = []
        requests: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(path.as_uri())
        page.wait_for_load_state("load")
        charts = page.evaluate(
            "[...document.images].map(i => [i.complete, i.naturalWidth, i.getBoundingClientRect().width])"
        )
        page.screenshot(path=str(ARTIFACTS / "report.png"), full_page=True)
        browser.close()
    assert errors == []
    assert all(url.startswith(("file:", "data:")) for url in requests)
    assert len(charts) == 5  # range test, overview, two diagnoses, cost
    assert all(complete and natural > 0 and shown > 300 for complete, natural, shown in charts)




@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.0, "0 s"), (0.000997, "0.997 ms"), (0.25, "250 ms"), (1.5, "1.5 s"), (45.0, "45 s"),
     (3330.0, "55.5 min"), (7200.0, "2 h")],
)
def test_durations_read_in_their_best_unit(seconds: float, text: str) -> None:
    """A step of an epoch-per-row log is an hour, not "3.33e+06 ms"; a fast step is ms, not "0.000997 s"."""
    assert duration(seconds) == text
