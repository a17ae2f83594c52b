"""Benchmark the LR range test's suggestion against the dense-grid ground truth, and its overhead.

For every built-in task and finder seed (0, 1, 2), each row chooses an LR at a cost of at most a
tenth of one full run; the chosen LR is then trained in full with seeds 0, 1, 2. Regret = mean
final validation loss at the chosen LR / best grid loss - 1 (``benchmarks.ground_truth``).
Rows: lrkit's ``result.lr``; torch-lr-finder 0.2.2's steepest-gradient suggestion; Lightning's
``Tuner.lr_find`` suggestion; the minimum-loss LR / 10 as fastai computes it (EMA 0.98), read
from lrkit's own range test so that only the rule differs; the rule-of-thumb default
(Adam/AdamW 1e-3, SGD 1e-2). Every finder gets the
same sweep (1e-7 to 10, exponential) and the same step budget.

    python -m benchmarks.finder            # full benchmark, writes benchmarks/results/finder.{md,json}
    python -m benchmarks.finder --smoke    # one task, one seed, no scoring runs (CI)
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import math
import shutil
import statistics
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from benchmarks.ground_truth import RESULTS, SEEDS, TaskTruth, load_ground_truth, mean_score
from lrkit.files import atomic_write_text
from lrkit.tasks import Task, get_task, list_tasks
from lrkit.tasks.training import torch_threads
from lrkit.torch.finder import find_task_lr
from lrkit.torch.loaders import cycle
from lrkit.trace import Trace

COMMAND = "nice -n 10 python -m benchmarks.finder"
MIN_LR, MAX_LR, BUDGET = 1e-7, 10.0, 0.1
ROWS = ("lrkit", "lrkit val", "lrkit min/10", "torch-lr-finder", "lightning", "min-loss/10", "default")
SCORES_CACHE = RESULTS / "finder_scores.json"


def budget_steps(task: Task) -> int:
    return max(2, int(BUDGET * task.steps))


def choose_lrkit(task: Task, seed: int) -> tuple[dict[str, float | None], int]:
    """lrkit's suggestion, a tenth of lrkit's smoothed minimum, and fastai's min-loss/10 rule, all
    read from one lrkit range test."""
    result = find_task_lr(task, seed=seed, min_lr=MIN_LR, max_lr=MAX_LR, budget=BUDGET)
    minimum = result.evidence.get("min_loss_lr")
    return {
        "lrkit": result.lr,
        "lrkit min/10": None if minimum is None else max(minimum / 10, MIN_LR),
        "min-loss/10": min_loss_over_10(result.trace),
    }, result.steps


def choose_lrkit_val(task: Task, seed: int) -> tuple[float | None, int]:
    """lrkit's suggestion read from the validation loss (measured after every step of the test)."""
    result = find_task_lr(
        task, seed=seed, min_lr=MIN_LR, max_lr=MAX_LR, budget=BUDGET, validation=True
    )
    return result.lr, result.steps


def min_loss_over_10(trace: Trace, beta: float = 0.98) -> float:
    """fastai's classic rule as fastai computes it: the LR of the lowest bias-corrected EMA of
    the loss (beta 0.98), before the loss exceeds 4x its best, divided by 10."""
    smoothed, best, stop = [], math.inf, len(trace)
    running = 0.0
    for i, loss in enumerate(trace.loss):
        if not math.isfinite(loss):
            stop = i
            break
        running = beta * running + (1 - beta) * loss
        value = running / (1 - beta ** (i + 1))
        if i > 0 and value > 4 * best:
            stop = i
            break
        best = min(best, value)
        smoothed.append(value)
    return float(trace.lr[:stop][int(np.argmin(smoothed))]) / 10


def _criterion(task: Task) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """The task's loss as ``criterion(outputs, targets)``, the form torch-lr-finder calls."""
    return lambda outputs, targets: task.loss_fn(lambda _: outputs, (None, targets))


def choose_torch_lr_finder(task: Task, seed: int) -> tuple[float | None, int]:
    from torch_lr_finder import LRFinder

    model = task.model(seed)
    optimizer = task.optimizer(model.parameters(), MIN_LR)
    train_loader, _ = task.loaders(seed)
    torch.manual_seed(seed)
    finder = LRFinder(model, optimizer, _criterion(task), device="cpu")
    finder.range_test(
        train_loader, start_lr=MIN_LR, end_lr=MAX_LR, num_iter=budget_steps(task), step_mode="exp"
    )
    try:
        _, lr = finder.plot(suggest_lr=True)  # the package's steepest-gradient suggestion
    except (ValueError, TypeError):
        lr = None
    finally:
        import matplotlib.pyplot as plt

        plt.close("all")
    steps = len(finder.history["lr"])
    return lr, steps


def choose_lightning(task: Task, seed: int) -> tuple[float | None, int]:
    import lightning.pytorch as pl
    from lightning.pytorch.tuner import Tuner

    class Wrapped(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = task.model(seed)
            self.lr = task.default_lr

        def training_step(self, batch, batch_index):
            return task.loss_fn(self.net, batch)

        def configure_optimizers(self):
            return task.optimizer(self.net.parameters(), self.lr)

    train_loader, _ = task.loaders(seed)
    pl.seed_everything(seed, verbose=False)
    folder = tempfile.mkdtemp(prefix="lrkit-bench-lightning-")  # lr_find writes a checkpoint here
    trainer = pl.Trainer(
        default_root_dir=folder,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        max_epochs=-1,
    )
    module = Wrapped()
    finder = Tuner(trainer).lr_find(
        module,
        train_dataloaders=train_loader,
        min_lr=MIN_LR,
        max_lr=MAX_LR,
        num_training=budget_steps(task),
        mode="exponential",
        update_attr=False,
    )
    shutil.rmtree(folder, ignore_errors=True)
    return finder.suggestion(), len(finder.results["lr"])


def choose_all(task: Task, seed: int) -> dict[str, dict]:
    """Every row's chosen LR and the training steps it cost, for one task and finder seed."""
    chosen: dict[str, dict] = {}
    lrs, steps = choose_lrkit(task, seed)
    for row, lr in lrs.items():
        chosen[row] = {"lr": lr, "steps": steps}
    for row, choose in (
        ("lrkit val", choose_lrkit_val),
        ("torch-lr-finder", choose_torch_lr_finder),
        ("lightning", choose_lightning),
    ):
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            lr, steps = choose(task, seed)
        chosen[row] = {"lr": lr, "steps": steps}
    chosen["default"] = {"lr": task.default_lr, "steps": 0}
    for entry in chosen.values():
        if entry["lr"] is None:  # no suggestion: the user falls back to the rule of thumb
            entry.update(lr=task.default_lr, fallback=True)
        entry["lr"] = float(entry["lr"])
    return chosen


class Scores:
    """Mean full-training score per (task, LR), from the ground truth's grid or trained once and cached."""

    def __init__(self, truths: dict[str, TaskTruth], path: Path = SCORES_CACHE) -> None:
        self.truths, self.path = truths, path
        self.cache: dict[str, float] = json.loads(path.read_text()) if path.exists() else {}

    def __call__(self, task: str, lr: float) -> float:
        for grid_lr, score in self.truths[task].scores.items():
            if math.isclose(grid_lr, lr, rel_tol=1e-9):
                return score
        key = f"{task}@{lr:.6g}"
        if key not in self.cache:
            self.cache[key] = mean_score(task, float(f"{lr:.6g}"), SEEDS)
            if self.path.exists():  # keep what another run of this benchmark added meanwhile
                self.cache = {**json.loads(self.path.read_text()), **self.cache}
            atomic_write_text(self.path, json.dumps(self.cache, indent=1, sort_keys=True) + "\n")
        return self.cache[key]


def measure_overhead(
    task_name: str = "digits-mlp", steps: int = 300, repeats: int = 8
) -> dict[str, float]:
    """Seconds per range-test step / per plain training step, same model, runs interleaved.

    The two alternate which goes first, and the fastest repeat of each is kept (the one least
    disturbed by other processes on a shared machine).
    """
    task = get_task(task_name)
    plain, finder, whole = [], [], []

    def plain_run(seed: int) -> None:
        model = task.model(seed)
        optimizer = task.optimizer(model.parameters(), 1e-3)
        stream = cycle(task.loaders(seed)[0])
        started = time.perf_counter()
        for _ in range(steps):
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss_fn(model, next(stream))
            loss.item()
            loss.backward()
            optimizer.step()
        plain.append((time.perf_counter() - started) / steps)

    def finder_run(seed: int) -> None:
        started = time.perf_counter()
        result = find_task_lr(
            task, seed=seed, steps=steps, min_lr=1e-7, max_lr=1e-5, stop_on_divergence=False
        )
        whole.append((time.perf_counter() - started) / steps)
        finder.append(result.meta["sweep_seconds"] / steps)

    with torch_threads(1):
        for repeat in range(repeats):
            runs = (plain_run, finder_run) if repeat % 2 == 0 else (finder_run, plain_run)
            for run in runs:
                run(repeat)
    per_plain, per_finder, per_whole = (min(v) for v in (plain, finder, whole))  # least disturbed
    return {
        "task": task_name,
        "steps": steps,
        "repeats": repeats,
        "plain_ms_per_step": per_plain * 1e3,
        "finder_ms_per_step": per_finder * 1e3,
        "finder_ms_per_step_with_setup": per_whole * 1e3,
        "ratio": per_finder / per_plain,
        "ratio_with_setup": per_whole / per_plain,
    }


def summarize(cases: list[dict]) -> dict[str, dict[str, float]]:
    summary = {}
    for row in ROWS:
        regrets = [case["rows"][row]["regret"] for case in cases]
        costs = [case["rows"][row]["cost"] for case in cases]
        summary[row] = {
            "median_regret": statistics.median(regrets),
            "mean_regret": statistics.fmean(regrets),
            "worst_regret": max(regrets),
            "median_cost": statistics.median(costs),
            "max_cost": max(costs),
            "fallbacks": sum(bool(case["rows"][row].get("fallback")) for case in cases),
        }
    return summary


def write_report(cases: list[dict], summary: dict, overhead: dict, seconds: float) -> None:
    payload = {
        "command": COMMAND,
        "seconds": round(seconds, 1),
        "summary": summary,
        "overhead": overhead,
        "cases": cases,
    }
    atomic_write_text(RESULTS / "finder.json", json.dumps(payload, indent=1) + "\n")
    lines = [
        "# LR finder benchmark: regret against the dense grid",
        "",
        f"Command: `{COMMAND}` ({seconds / 60:.1f} min this time, with the trained scores already",
        "cached in `finder_scores.json`; from scratch it trains about 160 full runs; one CPU thread per run).",
        "Ground truth: `benchmarks/results/ground_truth.json` (`python -m benchmarks.ground_truth`).",
        "",
        f"Every finder sweeps {MIN_LR:g} to {MAX_LR:g} exponentially within {BUDGET:.0%} of one full run's steps;",
        "each (task, finder seed) case trains the chosen LR in full with seeds 0, 1, 2.",
        "Regret = mean final validation loss at the chosen LR / best grid loss - 1 (diverged runs score",
        "their initial loss). Cost = steps spent choosing / steps of one full run.",
        "A finder that gives no suggestion falls back to the rule-of-thumb default (counted in 'fallbacks').",
        "",
        *tables(cases, summary),
        "",
        "## Overhead",
        "",
        f"{overhead['task']}, {overhead['steps']} steps, fastest of {overhead['repeats']} interleaved repeats:",
        f"plain training step {overhead['plain_ms_per_step']:.3f} ms, range-test step "
        f"{overhead['finder_ms_per_step']:.3f} ms (ratio **{overhead['ratio']:.3f}**); counting the snapshot,",
        f"restore and model/loader setup once per test: {overhead['finder_ms_per_step_with_setup']:.3f} ms "
        f"(ratio {overhead['ratio_with_setup']:.3f}).",
        "",
        "## Note",
        "",
        *note(summary, cases),
    ]
    atomic_write_text(RESULTS / "finder.md", "\n".join(lines) + "\n")


def tables(cases: list[dict], summary: dict) -> list[str]:
    """The summary per row, then each case's chosen LR and regret per row, as Markdown."""
    lines = [
        "| row | median regret | mean regret | worst regret | median cost | fallbacks |",
        "|---|---|---|---|---|---|",
    ]
    for row, s in summary.items():
        lines.append(
            f"| {row} | {s['median_regret']:.1%} | {s['mean_regret']:.1%} | {s['worst_regret']:.1%} "
            f"| {s['median_cost']:.0%} | {s['fallbacks']}/{len(cases)} |"
        )
    lines += ["", "Per case (chosen LR, regret):", "", "| task | seed | best grid LR | " + " | ".join(ROWS) + " |"]
    lines.append("|---|---|---|" + "---|" * len(ROWS))
    for case in cases:
        cells = [f"{case['rows'][row]['lr']:.3g} ({case['rows'][row]['regret']:.1%})" for row in ROWS]
        lines.append(f"| {case['task']} | {case['seed']} | {case['best_lr']:.3g} | " + " | ".join(cells) + " |")
    return lines


def note(summary: dict, cases: list[dict]) -> list[str]:
    """The honest reading of the numbers: goals met or not, where lrkit loses, and why."""
    ours = summary["lrkit"]
    others = {row: s for row, s in summary.items() if not row.startswith("lrkit")}
    best_median = min(s["median_regret"] for s in others.values())
    best_worst = min(s["worst_regret"] for s in others.values())
    worst_case = max(cases, key=lambda case: case["rows"]["lrkit"]["regret"])
    lost = [
        f"{case['task']} seed {case['seed']}"
        for case in cases
        if any(
            case["rows"][row]["regret"] < case["rows"]["lrkit"]["regret"] - 0.02 for row in others
        )
    ]
    verdict = lambda ok: "met" if ok else "NOT met"  # noqa: E731
    return [
        f"- lrkit: median regret {ours['median_regret']:.1%} (goal <= 1%, must be <= 3%: "
        f"{verdict(ours['median_regret'] <= 0.03)}), worst {ours['worst_regret']:.1%} (goal <= 5%: "
        f"{verdict(ours['worst_regret'] <= 0.05)}), at {ours['max_cost']:.0%} of a run at most.",
        f"- Against the other rows: best other median {best_median:.1%} "
        f"(lrkit lower: {ours['median_regret'] < best_median}), best other worst {best_worst:.1%} "
        f"(lrkit lower: {ours['worst_regret'] < best_worst}).",
        f"- lrkit's worst case is {worst_case['task']} seed {worst_case['seed']} "
        f"(chose {worst_case['rows']['lrkit']['lr']:.3g}, best grid LR {worst_case['best_lr']:.3g}). "
        f"Cases where another row beat lrkit by more than 2 points: {', '.join(lost) or 'none'}.",
        "- What limits it. A test of a tenth of a run sweeps 8 decades in 30-60 steps, so the LR rises",
        "  30-90% per step and the loss blows up at rates a long run cannot sustain; how far above",
        "  depends on the optimizer and model (SGD with momentum 0.9 on digits-cnn: ~30x above the best",
        "  rate; AdamW with warmup and decay on charlm: ~1x). No single margin below any landmark of",
        "  the curve (edge, minimum, blow-up, steepest descent) serves every task: the best rate lies",
        "  0.03x to 1x of the edge across these six tasks. Fine-tuning a pre-trained body",
        "  (finetune-digits) wants rates below what the fresh head tolerates in the test, and a task",
        "  that overfits (held-out diabetes) wants rates the training loss cannot show at all.",
        "- Noise in the yardstick. Scores are means of 3 seeds; on digits-mlp and finetune-digits,",
        "  LRs a few percent apart differ by up to 10% in mean final loss, and the best grid loss is the",
        "  minimum of 15 such noisy means, so an LR next to the best still shows a few percent of regret.",
        "- How the rule was set. The edge (the step before the loss first jumps, or the smoothed",
        "  minimum, whichever comes first) and the decade margin come from the range-test literature",
        "  (fastai's minimum/10, Smith's 'where the loss stops falling'); the decade over 3x or 5x was",
        "  chosen after seeing four of these tasks, so these figures are in-sample. A rule fitted to all",
        "  six (30x below the geometric mean of the edge and the blow-up) scored a 1.5% median here but",
        "  a 70% median on four held-out tasks, worse than this rule there, so it was not adopted;",
        "  `finder_heldout.md` scores the shipped rule on those held-out tasks",
        "  (`python -m benchmarks.finder_heldout`). `finder_limits.md` bounds what any rule of the",
        "  form 'a landmark / a constant' can reach, over all 19 tasks with a ground truth",
        "  (`python -m benchmarks.finder_limits`).",
        f"- Command: `{COMMAND}` (needs `benchmarks/results/ground_truth.json`); trained scores are",
        "  cached in `benchmarks/results/finder_scores.json` (delete it to retrain everything).",
    ]


def run_cases(task_names: list[str], seeds: list[int], scores: Scores | None) -> list[dict]:
    cases = []
    for name in task_names:
        task = get_task(name)
        for seed in seeds:
            chosen = choose_all(task, seed)
            case = {"task": name, "seed": seed, "rows": chosen}
            if scores is not None:
                truth = scores.truths[name]
                case["best_lr"], case["best_loss"] = truth.best_lr, truth.best_loss
                for entry in chosen.values():
                    entry["score"] = scores(name, entry["lr"])
                    entry["regret"] = truth.regret(entry["score"])
                    entry["cost"] = entry["steps"] / task.steps
            print(
                name,
                seed,
                {row: round(entry["lr"], 6) for row, entry in chosen.items()},
                flush=True,
            )
            cases.append(case)
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=[task.name for task in list_tasks()])
    parser.add_argument("--seeds", nargs="*", type=int, default=list(SEEDS))
    parser.add_argument("--smoke", action="store_true", help="one task, one seed, no scoring runs")
    args = parser.parse_args(argv)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("lightning.pytorch").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    with torch_threads(1):
        if args.smoke:
            cases = run_cases(args.tasks[:1], args.seeds[:1], None)
            return 0 if all(entry["lr"] > 0 for entry in cases[0]["rows"].values()) else 1
        scores = Scores(load_ground_truth())
        missing = [name for name in args.tasks if name not in scores.truths]
        if missing:
            print(f"no ground truth yet for {', '.join(missing)}; skipped", flush=True)
        tasks = [name for name in args.tasks if name in scores.truths]
        cases = run_cases(tasks, args.seeds, scores)
    overhead = measure_overhead()
    summary = summarize(cases)
    write_report(cases, summary, overhead, time.perf_counter() - started)
    for row, s in summary.items():
        print(
            f"{row:16s} median {s['median_regret']:.2%} worst {s['worst_regret']:.2%} cost {s['median_cost']:.0%}"
        )
    print(f"overhead ratio {overhead['ratio']:.3f} (with setup {overhead['ratio_with_setup']:.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
