"""Benchmark: a pruned LR sweep against the ground truth's full grid, in loss and in compute.

For each built-in task, ``lrkit.sweep`` searches the grid's own range (1e-5..10) with TPE and
Hyperband pruning, each trial one training at seed 0. The LR it says to train with
(``result.lr``, fitted across the trials) and its best trial's LR are then scored like the grid's
LRs (mean final validation loss over the grid's seeds; that scoring is not counted as sweep
compute). Goal: within 1% of the grid's best loss at <= 25% of the grid's training steps.

    nice -n 10 python -m benchmarks.sweep
    nice -n 10 python -m benchmarks.sweep --set third    # a held-out set of benchmarks.heldout_tasks
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from pathlib import Path

from benchmarks.finder_heldout import SETS as HELDOUT_SETS
from benchmarks.ground_truth import CACHE, HALF_DECADES, load_ground_truth, mean_score
from benchmarks.heldout_tasks import register_heldout
from lrkit.files import atomic_write_text
from lrkit.sweeps import TaskObjective, sweep
from lrkit.sweeps.search import DEFAULT_STUDY

RESULTS = Path(__file__).parent / "results"
COMMAND = "nice -n 10 python -m benchmarks.sweep"
REGRET_GOAL = 0.01
COMPUTE_GOAL = 0.25
SETS = {  # option: (ground truth file, report name)
    "builtin": (CACHE, "sweep"),
    **{name: (path, report.replace("finder", "sweep")) for name, (_, path, report) in HELDOUT_SETS.items()},
}


def run_one(name: str, truth, *, n_trials: int, sampler: str, pruner: str | None, seed: int) -> dict:
    started = time.perf_counter()
    result = sweep(
        TaskObjective(name, seed=0), min_lr=HALF_DECADES[0], max_lr=HALF_DECADES[-1], n_trials=n_trials,
        sampler=sampler, pruner=pruner, seed=seed, study=DEFAULT_STUDY,  # the name results were made with
    )
    seconds = time.perf_counter() - started
    loss = mean_score(name, result.lr)
    trial_loss = loss if result.lr == result.best_lr else mean_score(name, result.best_lr)
    return {
        "task": name,
        "sampler": sampler,
        "pruner": pruner,
        "seed": seed,
        "n_trials": n_trials,
        "lr": result.lr,
        "fitted": result.bowl is not None,
        "best_lr": result.best_lr,
        "sweep_loss": result.best_loss,
        "loss": loss,
        "trial_loss": trial_loss,
        "trial_regret": truth.regret(trial_loss),
        "grid_best_lr": truth.best_lr,
        "grid_best_loss": truth.best_loss,
        "regret": truth.regret(loss),
        "steps": result.steps_spent,
        "pruned": result.pruned,
        "seconds": round(seconds, 1),
    }


def verdict(row: dict, regret: str = "regret") -> str:
    ok = row[regret] <= REGRET_GOAL and row["compute"] <= COMPUTE_GOAL
    return "met" if ok else "missed"


def merge(rows: list[dict], report: str) -> list[dict]:
    """Earlier results for other (task, seed, settings) kept, these replacing any they repeat."""
    path = RESULTS / f"{report}.json"
    earlier = json.loads(path.read_text())["runs"] if path.exists() else []
    fresh = {key(row) for row in rows}
    return [row for row in earlier if key(row) not in fresh] + rows


def key(row: dict) -> tuple:
    return (row["task"], row["seed"], row["sampler"], row["pruner"], row["n_trials"])


def with_grid_cost(row: dict, truth) -> dict:
    """The grid's cost as the steps its runs really ran (a diverged run stops early, as a sweep's
    trials do), beside its nominal cost (every run to the end)."""
    grid = sum(run["steps_run"] for run in truth.runs)
    at_best = [run["score"] for run in truth.runs if run["lr"] == truth.best_lr]
    spread = (max(at_best) - min(at_best)) / statistics.fmean(at_best)
    standard_error = statistics.stdev(at_best) / math.sqrt(len(at_best)) / statistics.fmean(at_best)
    return {
        **row, "grid_steps": grid, "grid_steps_nominal": truth.grid_steps, "compute": row["steps"] / grid,
        "seed_spread": spread, "grid_se": standard_error,
    }


def write(rows: list[dict], report: str, truth_path: Path) -> None:
    truths = load_ground_truth(truth_path)
    rows = [with_grid_cost(row, truths[row["task"]]) for row in rows]
    payload = {"goal": {"regret": REGRET_GOAL, "compute": COMPUTE_GOAL}, "runs": rows}
    atomic_write_text(RESULTS / f"{report}.json", json.dumps(payload, indent=1) + "\n")
    commands = sorted({row["command"] for row in rows})
    minutes = sum(row["seconds"] for row in rows) / 60
    lines = [
        f"# Sweep: pruned search against the full grid ({truth_path.stem})",
        "",
        "Commands: " + ", ".join(f"`{command}`" for command in commands)
        + f" ({minutes:.1f} min of sweeping, one process, on a shared 2-core machine).",
        "",
        "Each sweep: LR range 1e-5..10 (the grid's), one training per trial at seed 0; `pruned` is",
        "pruned/trials. `lr` is the LR the sweep says to train with (`result.lr`: the minimum of a",
        "parabola in log LR through the better half of the complete trials, or the best trial's LR",
        "when they hold no bowl, marked `trial`); `trial LR` is the best single trial's. `regret` =",
        "the LR's mean final validation loss over the grid's 3 seeds / grid best - 1.",
        "`compute` = the sweep's training steps / the grid's (15 LRs x 3 seeds; steps its runs really",
        "ran, a diverged run stopping early like a sweep's trial). Goal: regret <= 1% and compute <= 25%.",
        "",
        "`seed spread` is how far the grid's 3 training seeds differ at the grid's best LR",
        "((max - min) / mean): the noise a one-seed trial's loss carries. `grid SE` is the standard",
        "error of the grid's best loss itself (3 seeds' standard deviation / sqrt(3) / mean): where it",
        "is above 1%, a 1% regret is below what the grid's own best can resolve.",
        "",
        "| task | seed | lr | regret | trial LR | trial regret | grid best LR | grid best | seed spread | grid SE | steps | compute | pruned | goal |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        fitted = "" if row["fitted"] else " (trial)"
        lines.append(
            f"| {row['task']} | {row['seed']} | {row['lr']:.3g}{fitted} | {row['regret']:+.2%} | {row['best_lr']:.3g} "
            f"| {row['trial_regret']:+.2%} | {row['grid_best_lr']:.3g} | {row['grid_best_loss']:.4f} "
            f"| {row['seed_spread']:.0%} | {row['grid_se']:.1%} | {row['steps']:,} | {row['compute']:.1%} | {row['pruned']}/{row['n_trials']} "
            f"| {verdict(row)} |"
        )
    computes = [row["compute"] for row in rows]
    nominal = sum(row["steps"] for row in rows) / sum(row["grid_steps_nominal"] for row in rows)
    lines += [
        "",
        f"Against the grid's nominal cost (every run to the end) the sweeps spent {nominal:.1%} overall; "
        f"median compute {statistics.median(computes):.1%} (most {max(computes):.1%}).",
        "",
        "| pick | goal met | goal met where grid SE <= 1% | median regret | worst regret |",
        "|---|---|---|---|---|",
    ]
    for label, column in (("`result.lr` (fit)", "regret"), ("best trial", "trial_regret")):
        regrets = [row[column] for row in rows]
        met = sum(verdict(row, column) == "met" for row in rows)
        resolved = [row for row in rows if row["grid_se"] <= REGRET_GOAL]
        met_resolved = sum(verdict(row, column) == "met" for row in resolved)
        lines.append(
            f"| {label} | {met} of {len(rows)} | {met_resolved} of {len(resolved)} | "
            f"{statistics.median(regrets):+.2%} | {max(regrets):+.2%} |"
        )
    atomic_write_text(RESULTS / f"{report}.md", "\n".join(lines + ["", *NOTES] ) + "\n")


NOTES = [
    "## Reading it",
    "",
    "The compute goal holds in every sweep. The loss goal is missed where the seed spread is",
    "large: each trial trains one seed, so a 1% regret is below what one-seed losses can resolve",
    "there. The single best trial is biased toward the LR whose one run was luckiest (the winner's",
    "curse); `result.lr` fits a curve through the better trials instead, so their noise averages",
    "out. The fit's form (better half, at least 3 trials, vertex kept within their span) was chosen",
    "by simulating sweeps on the built-in tasks' ground-truth grid; the held-out sets",
    "(`--set first|second|third`) test it on tasks it was not chosen on. Decision written down",
    "before they ran (2026-12-01): `result.lr` stays the fit if, over the three held-out sets",
    "together, it meets the goal in at least as many sweeps as the best trial and its median",
    "regret is no higher; otherwise `result.lr` goes back to the best trial's LR.",
    "",
    "Outcome (2026-12-01, `--set first`, `second`, `third`: 26 sweeps): the fit met the goal in 15",
    "of 26 against 7 for the best trial, median regret +0.62% against +3.86%, so it stays. On the",
    "built-in tasks, where its form was chosen, it did slightly worse in the same run (5 against 6",
    "of 12, median +1.65% against +1.23%): a fit through one-seed losses still follows their",
    "noise where the seed spread is tens of percent (digits-cnn, finetune-digits, teacher-student).",
    "Where a grid's best loss is near 0 (the wine tasks, ~0.001) any regret ratio is large.",
]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", help="default: every task in the ground truth")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1], help="sweep (sampler) seeds")
    parser.add_argument("--trials", type=int, default=12)
    parser.add_argument("--sampler", default="tpe")
    parser.add_argument("--pruner", default="hyperband")
    parser.add_argument("--set", choices=list(SETS), default="builtin", help="the built-in tasks or a held-out set")
    args = parser.parse_args(argv)
    truth_path, report = SETS[args.set]
    if args.set != "builtin":
        register_heldout()
    truths = load_ground_truth(truth_path)
    command = f"{COMMAND} {' '.join(sys.argv[1:] if argv is None else argv)}".strip()
    rows = []
    for name in args.tasks or list(truths):
        for seed in args.seeds:
            row = run_one(name, truths[name], n_trials=args.trials, sampler=args.sampler,
                          pruner=None if args.pruner == "none" else args.pruner, seed=seed)
            rows.append({**row, "command": command})
            print(f"{name} seed {seed}: lr {row['lr']:.3g}, regret {row['regret']:+.2%} "
                  f"(best trial {row['best_lr']:.3g}: {row['trial_regret']:+.2%}), "
                  f"steps {row['steps']:,} ({row['seconds']} s)", flush=True)
            write(merge(rows, report), report, truth_path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
