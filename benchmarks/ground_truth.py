"""The ground truth every LR benchmark compares against: full trainings on a dense LR grid.

For each built-in task: 13 LRs from 1e-5 to 10 at half-decades x 3 seeds, then the two
quarter-decade neighbours of the best half-decade LR x 3 seeds. A run's score is its final
validation loss, a diverged run scored at its initial loss (``TrainResult.score``). The result is
cached in ``benchmarks/results/ground_truth.json``; recompute with

    python -m benchmarks.ground_truth --workers 2
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from lrkit.files import atomic_write_text
from lrkit.tasks import get_task, list_tasks, train

RESULTS = Path(__file__).parent / "results"
CACHE = RESULTS / "ground_truth.json"
SEEDS = (0, 1, 2)
HALF_DECADES = tuple(10.0 ** (exponent / 2) for exponent in range(-10, 3))  # 1e-5 .. 10
COMMAND = "python -m benchmarks.ground_truth --workers 2"


@dataclass(frozen=True)
class TaskTruth:
    """One task's grid: mean score per LR over the seeds, and the best of them."""

    task: str
    scores: dict[float, float]
    runs: list[dict]
    steps_per_run: int

    @property
    def seconds(self) -> float:
        """Wall time of all the task's runs, one after another."""
        return sum(run["seconds"] for run in self.runs)

    @property
    def best_lr(self) -> float:
        return min(self.scores, key=self.scores.__getitem__)

    @property
    def best_loss(self) -> float:
        return self.scores[self.best_lr]

    @property
    def grid_steps(self) -> int:
        """Training steps the whole grid cost (every LR x every seed, full runs)."""
        return len(self.runs) * self.steps_per_run

    def regret(self, mean_loss: float) -> float:
        """How much worse than the grid's best a mean final validation loss is (0 = as good)."""
        return mean_loss / self.best_loss - 1.0


def run_one(job: tuple[str, float, int]) -> dict:
    name, lr, seed = job
    result = train(name, lr, seed=seed)
    return {
        "task": name,
        "lr": lr,
        "seed": seed,
        "score": result.score,
        "val_loss": result.val_loss,
        "initial_val_loss": result.initial_val_loss,
        "metric": result.metric,
        "diverged": result.diverged,
        "steps_run": len(result.trace),
        "seconds": round(result.seconds, 3),
    }


def run_jobs(jobs: Sequence[tuple[str, float, int]], workers: int) -> list[dict]:
    if workers <= 1:
        return [run_one(job) for job in jobs]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return list(pool.map(run_one, jobs))


def mean_score(task: str, lr: float, seeds: Iterable[int] = SEEDS, workers: int = 1) -> float:
    """Mean score of full trainings of ``task`` at ``lr`` over ``seeds`` (the regret's numerator)."""
    runs = run_jobs([(task, lr, seed) for seed in seeds], workers)
    return statistics.fmean(run["score"] for run in runs)


def _scores(runs: list[dict]) -> dict[float, float]:
    by_lr: dict[float, list[float]] = {}
    for run in runs:
        by_lr.setdefault(run["lr"], []).append(run["score"])
    return {lr: statistics.fmean(scores) for lr, scores in sorted(by_lr.items())}


def compute_task(name: str, workers: int) -> TaskTruth:
    runs = run_jobs([(name, lr, seed) for lr in HALF_DECADES for seed in SEEDS], workers)
    best = min(_scores(runs).items(), key=lambda item: item[1])[0]
    quarter = 10.0**0.25
    runs += run_jobs([(name, lr, seed) for lr in (best / quarter, best * quarter) for seed in SEEDS], workers)
    return TaskTruth(name, _scores(runs), runs, get_task(name).steps)


def load_ground_truth(path: Path = CACHE) -> dict[str, TaskTruth]:
    """The cached grid per task name (compute it first with the command in this module's doc)."""
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing; run: {COMMAND}")
    data = json.loads(path.read_text())
    return {
        name: TaskTruth(name, _scores(entry["runs"]), entry["runs"], entry["steps_per_run"])
        for name, entry in data["tasks"].items()
    }


def save_ground_truth(truths: dict[str, TaskTruth], path: Path = CACHE, command: str = COMMAND) -> None:
    """Write the grid as JSON at ``path`` and as a table next to it (same name, ``.md``)."""
    seconds = sum(truth.seconds for truth in truths.values())
    payload = {
        "command": command,
        "seeds": list(SEEDS),
        "run_seconds": round(seconds, 1),
        "tasks": {
            name: {
                "best_lr": truth.best_lr,
                "best_loss": truth.best_loss,
                "steps_per_run": truth.steps_per_run,
                "scores": {f"{lr:.6g}": score for lr, score in truth.scores.items()},
                "runs": truth.runs,
            }
            for name, truth in truths.items()
        },
    }
    atomic_write_text(path, json.dumps(payload, indent=1) + "\n")
    lines = [
        "# Ground truth: full trainings on a dense LR grid",
        "",
        f"Command: `{command}` ({seconds / 60:.0f} min of runs, on a shared machine). Seeds {list(SEEDS)};",
        "half-decades 1e-5..10,",
        "plus the quarter-decade neighbours of the best. Score = final validation loss, a diverged",
        "run scored at its initial loss; mean over seeds.",
        "",
        "| task | default LR | best LR | best loss | loss at default | diverged LRs (>=1 seed) |",
        "|---|---|---|---|---|---|",
    ]
    for name, truth in truths.items():
        task = get_task(name)
        default = truth.scores.get(task.default_lr, math.nan)
        diverged = sorted({run["lr"] for run in truth.runs if run["diverged"]})
        first = f">= {diverged[0]:.3g}" if diverged else "none"
        lines.append(
            f"| {name} | {task.default_lr:g} | {truth.best_lr:.3g} | {truth.best_loss:.4f} | {default:.4f} | {first} |"
        )
    lines += ["", "Mean score per LR:", ""]
    for name, truth in truths.items():
        cells = ", ".join(f"{lr:.3g}: {score:.3f}" for lr, score in truth.scores.items())
        lines.append(f"- **{name}**: {cells}")
    atomic_write_text(path.with_suffix(".md"), "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", default=[task.name for task in list_tasks()])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    truths = load_ground_truth() if CACHE.exists() else {}
    for name in args.tasks:
        truths[name] = compute_task(name, args.workers)
        print(f"{name}: best lr {truths[name].best_lr:.3g}, loss {truths[name].best_loss:.4f}", flush=True)
        save_ground_truth(truths)
    return 0


if __name__ == "__main__":
    sys.exit(main())
