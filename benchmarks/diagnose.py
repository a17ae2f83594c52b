"""How often ``lrkit.diagnose`` names the LR problem of a real training curve.

Labelled curves come from training each built-in task at rates relative to its grid-best LR
(``benchmarks/results/ground_truth.json``), several seeds each:

- best/100 and best/30: ``too_low``;
- best/3, best, 3x best: ``healthy``;
- 10x and 30x best, when the run ends worse (it kept less than 90% of the improvement the best
  LR makes on the validation loss, or diverged): ``too_high`` (``diverged`` counts as a hit).
  Such runs that end about as well as the best are left out as ambiguous, and counted.

The score is the balanced accuracy (mean recall over the three labels) and the count of healthy
curves called ``diverged`` (the goal: >= 90% and zero). The first rules were designed on synthetic
curves and seed-0 curves of charlm and digits-mlp only; the second version was designed after
looking at every task's curves, so no task is held out any more (see ``HISTORY``).
Trained traces are cached (``--cache``), so re-scoring does not retrain. Run

    nice -n 10 python -m benchmarks.diagnose --workers 1

``--heldout`` runs the same protocol on the first set of ``benchmarks.heldout_tasks``, which no rule
was designed on (their grid: ``results/ground_truth_heldout.json``), an out-of-sample test written
to ``results/diagnose_heldout.{md,json}``; ``--heldout third`` on the third set (every task under a
decaying schedule, made to test the decay rule), written to ``results/diagnose_heldout3.{md,json}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from benchmarks.ground_truth import load_ground_truth
from benchmarks.heldout_tasks import NAMES, THIRD, register_heldout
from lrkit.diagnosis import diagnose
from lrkit.files import atomic_write_text
from lrkit.tasks import train
from lrkit.trace import Trace

RESULTS = Path(__file__).parent / "results"
COMMAND = "nice -n 10 python -m benchmarks.diagnose --workers 1"
HELDOUT_SETS = {  # --heldout option: (tasks, ground truth, cache folder, report name, notes)
    "first": (NAMES, RESULTS / "ground_truth_heldout.json", "heldout", "diagnose_heldout", ()),
    "third": (
        THIRD,
        RESULTS / "ground_truth_heldout3.json",
        "heldout3",
        "diagnose_heldout3",
        (
            "Why this set: the decay rule (under a decaying LR, too_low is judged by the pace before "
            "the decay against the LR spent, and only when the decay gained no more than the LR it "
            "spent) was designed on charlm, the one built-in task whose LR decays, and checked "
            "against the first held-out set. These five tasks all decay their LR (multi-step, "
            "warmup + cosine, linear, warmup-stable-decay, exponential) and were trained after the "
            "rule was frozen. Decision written before they were diagnosed: keep the rule if its "
            "balanced accuracy here is at least that of the rule before it (commit 796fc83) and it "
            "calls no healthy curve diverged; otherwise revert it.",
        ),
    ),
}
CACHE = Path.home() / ".cache" / "lrkit-benchmarks" / "diagnose"
SEEDS = (0, 1, 2)
FACTORS = {1 / 100: "too_low", 1 / 30: "too_low", 1 / 3: "healthy", 1.0: "healthy", 3.0: "healthy"}
HIGH_FACTORS = (10.0, 30.0)
LABELS = ("too_high", "too_low", "healthy")
DESIGN_TASKS = (
    "charlm",
    "digits-mlp",
    "digits-cnn",
    "finetune-digits",
    "teacher-student",
    "cancer-logreg",
)  # the tasks whose curves were looked at while designing: since version 2, all of them
HISTORY = (
    "History: the rules were frozen before any held-out curve was seen; that version scored 72.1% "
    "balanced accuracy (held-out tasks 72.2%). Looking at the misses then showed healthy runs with "
    "heavy-tailed batch losses (cancer-logreg, teacher-student) called too_high for single-batch "
    "spikes, so a spike now has to last (the loss after it stays high too). The figures above are "
    "after that one change, so the held-out split is no longer clean for it. Version 2 (issue 5, "
    "76.7% before it) was designed after looking at all six tasks' curves, so there is no "
    "held-out task: the first loss counts as the start when it stands far above the noise (a fast "
    "first fall is no longer cut short by the smoothing, which had shrunk the progress and "
    "inflated every ratio); a spike must rise above the losses just before it; a loss that "
    "climbs back a quarter of the progress above its best so far, beyond its local noise, is "
    "too_high; a fall still steep at the end (trend >= 1) outweighs early bumps and swings; and "
    "a validation loss still falling over the last 30% of the trend window (>= 5% of the "
    "progress per doubling of the run, >= 2 standard errors) is too_low. A rebound share of 0.1, "
    "fitted to charlm's 10x runs (which climb back 0.12), scored 88.2% here but changed the "
    "verdict of a synthetic plateau logged every 2nd or 4th step and did nothing on held-out "
    "tasks, so the share stayed at the 0.25 set before looking. That version scored 85.5% here; "
    "most misses were charlm's too_low runs, which level off under the cosine decay just as its "
    "healthy runs do. Version 3 (the figures above) judges a decaying LR by the LR spent: the pace "
    "before the decay is fitted against the share of the run's LR spent, over the second half of "
    "the time at high LR, and the run is too_low when that pace would gain 25% of the progress "
    "per run's worth of LR and the decay gained no more than the LR it spent (a loss that the "
    "LR's noise holds up drops when the LR decays; one that a small LR holds back does not). It "
    "was designed on charlm, the only built-in task whose LR decays; held-out set 1 did not "
    "change (58.9%), and a third held-out set of five decaying tasks, trained after the rule was "
    "frozen, scored 72.7% against 70.9% for version 2 (pre-registered: keep it if not lower): "
    "[diagnose_heldout3.md](diagnose_heldout3.md). Every curve retrained on another machine "
    "(2026-12-01, same code and seeds; CPU arithmetic differs between machines) gave 91.2% here "
    "and 71.2% on set 3, where one 10x curve of heldout3-digits-adamw-wsd came out differently. "
    "A spike's persistence was then counted from the first point of its run of high points rather "
    "than from its highest (a fix found on synthetic curves, where a lasting 3-step spike whose last "
    "point was the highest went uncounted): 91.2% here, 58.9% on set 1, 74.2% on set 3."
)
KEPT = 0.9  # a high-LR run "ends worse" when it keeps less than this share of the best improvement


def cached(task: str, lr: float, seed: int, cache: str) -> Path:
    return Path(cache) / f"{task}_{lr:.6g}_{seed}.json"


def run_one(job: tuple[str, float, int, str]) -> dict:
    """Train one run (or read it from the cache) and return its trace path and scores."""
    task, lr, seed, cache = job
    summary = cached(task, lr, seed, cache)
    path = summary.with_suffix(".jsonl")
    if not summary.exists():
        result = train(task, lr, seed=seed)
        result.trace.save(path)
        numbers = {
            "score": result.score,
            "initial_val_loss": result.initial_val_loss,
            "diverged": result.diverged,
        }
        atomic_write_text(summary, json.dumps(numbers))
    return {
        "task": task,
        "lr": lr,
        "seed": seed,
        "trace": str(path),
        **json.loads(summary.read_text()),
    }


def label(factor: float, run: dict, best_loss: float) -> str | None:
    if factor in FACTORS:
        return FACTORS[factor]
    improvement = run["initial_val_loss"] - best_loss
    worse = run["diverged"] or run["score"] > best_loss + (1 - KEPT) * improvement
    return "too_high" if worse else None


def predicted_label(verdict: str) -> str:
    return "too_high" if verdict in ("diverged", "too_high") else verdict


def balanced_accuracy(rows: list[dict]) -> float:
    recalls = []
    for name in LABELS:
        picked = [row for row in rows if row["label"] == name]
        if picked:
            recalls.append(
                sum(predicted_label(row["verdict"]) == name for row in picked) / len(picked)
            )
    return sum(recalls) / len(recalls) if recalls else float("nan")


def confusion(rows: list[dict]) -> dict[str, dict[str, int]]:
    verdicts = ("diverged", "too_high", "too_low", "plateau", "healthy")
    counts = Counter((row["label"], row["verdict"]) for row in rows)
    return {name: {verdict: counts[(name, verdict)] for verdict in verdicts} for name in LABELS}


def evaluate(runs: list[dict], truths: dict) -> tuple[list[dict], int]:
    rows, ambiguous = [], 0
    for run in runs:
        truth = truths[run["task"]]
        factor = run["factor"]
        name = label(factor, run, truth.best_loss)
        if name is None:
            ambiguous += 1
            continue
        result = diagnose(Trace.load(run["trace"]))
        rows.append(
            {
                "task": run["task"],
                "factor": factor,
                "lr": run["lr"],
                "seed": run["seed"],
                "label": name,
                "verdict": result.verdict,
                "confidence": result.confidence,
                "score": run["score"],
                "diverged": run["diverged"],
                "evidence": result.evidence.to_dict(),
            }
        )
    return rows, ambiguous


def report(rows: list[dict], ambiguous: int, seconds: float, command: str) -> dict:
    held_out = [row for row in rows if row["task"] not in DESIGN_TASKS]
    design = [row for row in rows if row["task"] in DESIGN_TASKS]
    return {
        "command": command,
        "seconds": round(seconds, 1),
        "seeds": list(SEEDS),
        "curves": len(rows),
        "ambiguous_left_out": ambiguous,
        "balanced_accuracy": balanced_accuracy(rows),
        "balanced_accuracy_held_out_tasks": balanced_accuracy(held_out) if held_out else None,
        "balanced_accuracy_design_tasks": balanced_accuracy(design) if design else None,
        "healthy_called_diverged": sum(
            row["label"] == "healthy" and row["verdict"] == "diverged" for row in rows
        ),
        "healthy_runs_that_diverged": sum(
            row["label"] == "healthy" and row["diverged"] for row in rows
        ),
        "confusion": confusion(rows),
        "per_task": {
            task: {
                "curves": sum(row["task"] == task for row in rows),
                "balanced_accuracy": balanced_accuracy(
                    [row for row in rows if row["task"] == task]
                ),
                "confusion": confusion([row for row in rows if row["task"] == task]),
            }
            for task in dict.fromkeys(row["task"] for row in rows)
        },
        "runs": rows,
    }


def _scope(summary: dict, *, heldout: str | None) -> str:
    """Which of the scored tasks the rules were designed on."""
    if heldout:
        return (
            "- Out of sample: no rule was designed on these tasks (`benchmarks/heldout_tasks.py`); the "
            "rules in `src/lrkit/diagnosis.py` were frozen before any of their curves was diagnosed"
        )
    if summary["balanced_accuracy_held_out_tasks"] is None:
        return f"- No held-out task: all were looked at while designing ({', '.join(DESIGN_TASKS)})"
    return (
        "- Held-out tasks (not looked at while designing the rules): "
        f"{summary['balanced_accuracy_held_out_tasks']:.1%}; design tasks "
        f"({', '.join(DESIGN_TASKS)}): {summary['balanced_accuracy_design_tasks']:.1%}"
    )


def markdown(summary: dict, truths: dict, *, heldout: str | None = None) -> str:
    verdicts = ("diverged", "too_high", "too_low", "plateau", "healthy")
    truth_file = HELDOUT_SETS[heldout][1].name if heldout else "ground_truth.json"
    notes = list(HELDOUT_SETS[heldout][4]) if heldout else [HISTORY]
    lines = [
        (
            "# diagnose on held-out tasks: an out-of-sample test of the frozen rules"
            if heldout
            else "# diagnose: verdicts on labelled training curves of the built-in tasks"
        ),
        "",
        f"Command: `{summary['command']}` (this pass {summary['seconds'] / 60:.1f} min; trained traces are "
        + (
            "cached)."
            if heldout
            else "cached, and training them all took about 40 min on a busy shared 2-core machine)."
        ),
        f"Seeds {summary['seeds']}; LR factors relative to each task's grid-best LR "
        f"(`benchmarks/results/{truth_file}`): best/100, best/30 -> too_low; best/3, best, 3x -> healthy;",
        f"10x, 30x -> too_high when the run ends worse (keeps < {KEPT:.0%} of the best run's validation",
        "improvement, or diverges); `diverged` counts as too_high.",
        f"{summary['ambiguous_left_out']} high-LR runs that ended about as well as the best were left out as ambiguous.",
        *(
            [
                f"Planned runs not trained in time (scored with `--cached-only`): {summary['planned_runs_not_run']}."
            ]
            if summary.get("planned_runs_not_run")
            else []
        ),
        "",
        f"- **Balanced accuracy: {summary['balanced_accuracy']:.1%}** over {summary['curves']} curves (goal >= 90%)",
        _scope(summary, heldout=heldout),
        f"- Healthy curves called diverged: **{summary['healthy_called_diverged']}** (goal 0)",
        *(
            [
                f"- Labelling caveat: {summary['healthy_runs_that_diverged']} runs labelled healthy "
                "(best/3 to 3x best) diverged or ended worse than they began in training"
            ]
            if summary["healthy_runs_that_diverged"]
            else []
        ),
        (
            "- In-sample figures on the built-in tasks, which the rules were designed on: "
            "[diagnose.md](diagnose.md)"
            if heldout
            else "- Out-of-sample test on four held-out tasks: [diagnose_heldout.md](diagnose_heldout.md)"
        ),
        "",
        *[line for note in notes for line in (note, "")],
        "Confusion matrix (rows: label, columns: verdict):",
        "",
        "| label | " + " | ".join(verdicts) + " |",
        "|---|" + "---|" * len(verdicts),
    ]
    for name, counts in summary["confusion"].items():
        lines.append(f"| {name} | " + " | ".join(str(counts[v]) for v in verdicts) + " |")
    lines += [
        "",
        "Per task:",
        "",
        "| task | best LR | balanced accuracy | misses (factor: label -> verdict) |",
        "|---|---|---|---|",
    ]
    for task, entry in summary["per_task"].items():
        misses = Counter(
            f"{row['factor']:g}: {row['label']} -> {row['verdict']}"
            for row in summary["runs"]
            if row["task"] == task and predicted_label(row["verdict"]) != row["label"]
        )
        missed = ", ".join(f"{key} (x{count})" for key, count in sorted(misses.items())) or "none"
        lines.append(
            f"| {task} | {truths[task].best_lr:.3g} | {entry['balanced_accuracy']:.1%} | {missed} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument(
        "--cache", help=f"trace cache (default {CACHE}, and a folder in it per held-out set)"
    )
    parser.add_argument("--tasks", nargs="*")
    parser.add_argument(
        "--cached-only", action="store_true", help="score only the runs already in the cache"
    )
    parser.add_argument(
        "--heldout",
        nargs="?",
        const="first",
        choices=sorted(HELDOUT_SETS),
        help="score a held-out set instead (first when no set is named); writes results/diagnose_heldout*.{md,json}",
    )
    args = parser.parse_args(argv)
    if args.heldout:
        register_heldout()
    held = HELDOUT_SETS.get(args.heldout)
    truths = load_ground_truth(held[1]) if held else load_ground_truth()
    tasks = args.tasks or (list(held[0]) if held else list(truths))
    cache = args.cache or str(CACHE / held[2] if held else CACHE)
    Path(cache).mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    plan = [
        (task, factor, seed)
        for task in tasks
        for factor in (*FACTORS, *HIGH_FACTORS)
        for seed in SEEDS
    ]
    jobs = [(task, truths[task].best_lr * factor, seed, cache) for task, factor, seed in plan]
    if args.cached_only:
        keep = [cached(*job).exists() for job in jobs]
        skipped = Counter(task for (task, _, _), kept in zip(plan, keep, strict=True) if not kept)
        plan = [item for item, kept in zip(plan, keep, strict=True) if kept]
        jobs = [job for job, kept in zip(jobs, keep, strict=True) if kept]
    if args.workers > 1:
        # a spawned worker has not imported the held-out tasks: register them there too
        setup = register_heldout if args.heldout else None
        with ProcessPoolExecutor(max_workers=args.workers, initializer=setup) as pool:
            runs = list(pool.map(run_one, jobs))
    else:
        runs = [run_one(job) for job in jobs]
    for run, (_, factor, _) in zip(runs, plan, strict=True):
        run["factor"] = factor
    rows, ambiguous = evaluate(runs, truths)
    command = COMMAND + ("" if not held else " --heldout" + ("" if args.heldout == "first" else f" {args.heldout}"))
    summary = report(rows, ambiguous, time.perf_counter() - started, command)
    summary["planned_runs_not_run"] = dict(skipped) if args.cached_only else {}
    text = markdown(summary, truths, heldout=args.heldout)
    name = held[3] if held else "diagnose"
    RESULTS.mkdir(parents=True, exist_ok=True)
    atomic_write_text(RESULTS / f"{name}.json", json.dumps(summary, indent=1) + "\n")
    atomic_write_text(RESULTS / f"{name}.md", text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
