"""What limits any "landmark / margin" suggestion rule: where the best LR lies from a range test's
landmarks, over every task with a ground truth (built-in and the three held-out sets).

For each task and seed (0, 1, 2): the range test as ``benchmarks.finder`` runs it (1e-7..10, a
tenth of a run), and a slower two-stage test of the same cost (4% of a run over the 8 decades,
then the rest over the 3 decades around the first stage's edge, about 5x slower per step), which
tests whether a fast sweep is what scatters the landmarks. For each landmark (edge =
``max_stable_lr``, smoothed minimum, first rise, divergence): the spread across tasks of log10(best
grid LR / landmark), and the margin M that, chosen in hindsight on the tasks themselves, gives
``landmark / M`` the lowest median regret. Regret here is interpolated in log LR between the
trained scores (the ground-truth grids and the finder benchmarks' cached scores): a screen, not a
measurement, but it matches the measured regret of the shipped rule (``finder.md``) closely.

    python -m benchmarks.finder_limits      # writes benchmarks/results/finder_limits.{md,json}
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from benchmarks.finder import MAX_LR, MIN_LR, SCORES_CACHE
from benchmarks.finder_heldout import SETS
from benchmarks.ground_truth import CACHE, RESULTS, SEEDS, load_ground_truth
from benchmarks.heldout_tasks import register_heldout
from lrkit.files import atomic_write_text
from lrkit.tasks import get_task
from lrkit.torch.finder import FinderResult, find_task_lr

COMMAND = "nice -n 10 python -m benchmarks.finder_limits"
BUDGET, FIRST_STAGE, ZOOM_DECADES = 0.1, 0.04, 3
LANDMARKS = ("edge", "min", "rise", "div")
MARGINS = np.logspace(-0.5, 2.5, 61)  # 0.3x .. 300x, 20 per decade
SOURCES = {"built-in": (CACHE, SCORES_CACHE)} | {
    name: (path, RESULTS / f"{report}_scores.json") for name, (_, path, report) in SETS.items()
}


def landmarks(result: FinderResult) -> dict[str, float | None]:
    """The LRs a rule can read off one test; the edge is the one the shipped rule divides by 10
    (the smoothed minimum when the loss was still falling at max_lr)."""
    evidence = result.evidence
    return {
        "edge": result.max_stable_lr or evidence.get("min_loss_lr"),
        "min": evidence.get("min_loss_lr"),
        "rise": evidence.get("first_rise_lr"),
        "div": evidence.get("diverged_lr"),
    }


def run_case(job: tuple[str, int]) -> dict:
    """The finder benchmark's range test and the two-stage one, for one task and seed."""
    name, seed = job
    register_heldout()
    task = get_task(name)
    shipped = find_task_lr(task, seed=seed, min_lr=MIN_LR, max_lr=MAX_LR, budget=BUDGET)
    first = find_task_lr(task, seed=seed, min_lr=MIN_LR, max_lr=MAX_LR, budget=FIRST_STAGE)
    edge = landmarks(first)["edge"] or task.default_lr
    low = edge / 10 ** (ZOOM_DECADES - 1)
    rest = max(8, int(BUDGET * task.steps) - first.steps)
    zoomed = find_task_lr(task, seed=seed, min_lr=low, max_lr=min(edge * 10, MAX_LR), steps=rest)
    return {
        "task": name,
        "seed": seed,
        "shipped": landmarks(shipped),
        "two-stage": landmarks(zoomed),
    }


class Interpolated:
    """Regret at any LR, interpolated in log LR between a task's trained mean scores."""

    def __init__(self, scores: dict[float, float]) -> None:
        self.lrs = sorted(scores)
        self.log_lrs = np.log10(self.lrs)
        self.scores = [scores[lr] for lr in self.lrs]
        self.best = min(self.scores)

    def __call__(self, lr: float) -> float:
        clipped = min(max(lr, self.lrs[0]), self.lrs[-1])
        return float(np.interp(math.log10(clipped), self.log_lrs, self.scores)) / self.best - 1


def load_scores() -> dict[str, tuple[str, Interpolated, float]]:
    """Per task: its set, its interpolated regret and its best grid LR."""
    out = {}
    for set_name, (truth_path, scores_path) in SOURCES.items():
        cached = json.loads(scores_path.read_text()) if scores_path.exists() else {}
        for name, truth in load_ground_truth(truth_path).items():
            scores = dict(truth.scores)
            scores.update(
                {
                    float(key.split("@")[1]): v
                    for key, v in cached.items()
                    if key.split("@")[0] == name
                }
            )
            out[name] = (set_name, Interpolated(scores), truth.best_lr)
    return out


def analyse(cases: list[dict], scores: dict) -> dict:
    """Spread of log10(best / landmark) across tasks, and the hindsight-best margin per landmark."""
    out: dict[str, dict] = {}
    for test in ("shipped", "two-stage"):
        for mark in LANDMARKS:
            found = [c for c in cases if c[test][mark]]
            offsets: dict[str, list[float]] = {}
            for c in found:
                offsets.setdefault(c["task"], []).append(
                    math.log10(scores[c["task"]][2] / c[test][mark])
                )
            per_task = [statistics.fmean(v) for v in offsets.values()]
            row = {
                "tasks": len(per_task),
                "cases": len(found),
                "mean_offset": statistics.fmean(per_task),
                "sd_offset": statistics.pstdev(per_task),
            }
            for subset in ("built-in", "all"):
                chosen = [c for c in found if subset == "all" or scores[c["task"]][0] == subset]
                best = min(
                    (statistics.median(scores[c["task"]][1](c[test][mark] / m) for c in chosen), m)
                    for m in MARGINS
                )
                regrets = [scores[c["task"]][1](c[test][mark] / best[1]) for c in chosen]
                row[subset] = {
                    "margin": best[1],
                    "median": best[0],
                    "worst": max(regrets),
                    "cases": len(chosen),
                }
            out[f"{test} {mark}"] = row
    return out


def shipped_rule(cases: list[dict], scores: dict) -> dict[str, float]:
    """The shipped rule (edge / 10), interpolated the same way, per set: the screen's calibration."""
    by_set: dict[str, list[float]] = {}
    for c in cases:
        if c["shipped"]["edge"]:
            set_name, regret, _ = scores[c["task"]]
            by_set.setdefault(set_name, []).append(regret(c["shipped"]["edge"] / 10))
    return {name: statistics.median(v) for name, v in by_set.items()}


def covered(cases: list[dict], scores: dict, test: str, decades: int = 2) -> int:
    """Cases whose best grid LR lies between the test's edge / 10**decades and the edge."""
    return sum(
        c[test]["edge"] / 10**decades <= scores[c["task"]][2] <= c[test]["edge"]
        for c in cases
        if c[test]["edge"]
    )


READING = [
    "## Reading it",
    "",
    "- The best LR does not sit at a fixed distance below any landmark: across the 19 tasks its",
    "  offset from each landmark spreads by 0.6-0.8 decades (one standard deviation), so a rule",
    "  that divides a landmark by a constant misses the best LR by about 3-4x on a typical task.",
    "- Even with the margin fitted in hindsight on all 19 tasks, no landmark's median regret",
    "  comes under 10%; fitted on the six built-in tasks alone, only the first rise gets under 3%,",
    "  and only on the cases where the test shows one. A rule fitted there on two landmarks (30x",
    "  below the geometric mean of the edge and the blow-up, `finder.md`) reached 1.5% in sample",
    "  and a 70% median on the first held-out set. So the issue's goal (median <= 3% on the",
    "  built-in tasks, below every other row) is out of reach of rules of this form, and richer",
    "  rules fitted on these tasks have not held up out of sample: what decides the best rate here",
    "  (overfitting, how a long run's noise and schedule change the sustainable rate) is not in a",
    "  short test's training loss.",
    "- A slower sweep does not help: spending the same budget on a second pass over the three",
    "  decades below the first pass's edge (about 5x slower per step) moves the landmarks up",
    "  towards the best LR but spreads them more, not less.",
]


def write_report(
    cases: list[dict], table: dict, calibration: dict, coverage: dict[str, int], seconds: float
) -> None:
    atomic_write_text(
        RESULTS / "finder_limits.json",
        json.dumps(
            {"command": COMMAND, "seconds": round(seconds, 1), "table": table, "cases": cases},
            indent=1,
        )
        + "\n",
    )
    lines = [
        "# What limits a range-test suggestion rule",
        "",
        f"Command: `{COMMAND}` ({seconds:.0f} s). See the module's docstring for the protocol.",
        "`offset` = log10(best grid LR / landmark), averaged over seeds per task, then its mean and",
        "spread (standard deviation) across tasks. `hindsight` = the margin M that gives",
        "`landmark / M` the lowest median regret on those very tasks (fitted, so optimistic), and",
        "the median and worst regret it then gets (interpolated).",
        "",
        "| test | landmark | tasks | mean offset | sd offset (decades) | built-in: hindsight M, median, worst | all 19 tasks: hindsight M, median, worst |",
        "|---|---|---|---|---|---|---|",
    ]
    for key, row in table.items():
        cells = [
            f"{row[s]['margin']:.3g}x, {row[s]['median']:.1%}, {row[s]['worst']:.0%} ({row[s]['cases']} cases)"
            for s in ("built-in", "all")
        ]
        lines.append(
            f"| {key.replace(' ', ' | ', 1)} | {row['tasks']} | {row['mean_offset']:+.2f} | {row['sd_offset']:.2f} | "
            + " | ".join(cells)
            + " |"
        )
    calibrated = ", ".join(f"{name} {value:.1%}" for name, value in calibration.items())
    lines += [
        "",
        f"Calibration: the shipped rule (edge / 10) scored this way has median regret {calibrated}",
        "(measured with full trainings: built-in 8.7%, first 57.3%, second 33.9%, third 11.0%).",
        "",
        "The best grid LR lies between edge / 100 and the edge in "
        + " and ".join(f"{n} of {len(cases)} cases ({test})" for test, n in coverage.items())
        + ".",
        "",
        *READING,
    ]
    atomic_write_text(RESULTS / "finder_limits.md", "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    scores = load_scores()
    jobs = [(name, seed) for name in scores for seed in SEEDS]
    with ProcessPoolExecutor(args.workers) as pool:
        cases = list(pool.map(run_case, jobs))
    table = analyse(cases, scores)
    coverage = {test: covered(cases, scores, test) for test in ("shipped", "two-stage")}
    seconds = time.perf_counter() - started
    write_report(cases, table, shipped_rule(cases, scores), coverage, seconds)
    print((RESULTS / "finder_limits.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
