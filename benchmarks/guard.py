"""Does the guard rescue runs started at a too-high LR, stay silent at a good one, and cost nothing?

For each built-in task with a ground truth (``benchmarks/results/ground_truth.json``), full runs
at 10x and 30x the grid-best LR, several seeds, in the same hand-written loop three ways:

- ``bare``: ``optimizer.step()``;
- ``guard``: ``lrkit.Guard`` (default settings) in place of ``optimizer.step()``;
- ``guard+best``: the same guard, also fed the validation loss (``should_stop`` with the default
  ``patience=None``, so it never stops) and ``restore_best()`` at the end;
- ``guard+watch``: the guard with ``watch_every`` an eighth of the run, so the curve since the last
  LR change is diagnosed eight times a run and a too-high verdict cuts the LR.

A run succeeds when its final validation loss is within 5% of the grid's best (its mean over the
seeds at the best LR). The same loop at the best LR gives the reference share (seeds vary), the
number of guard events there (goal: none) and the time per training step with and without the
guard (two copies run in lockstep, and the guard's own calls timed apart). Results in
``benchmarks/results/guard.{md,json}``, which list the commands that made them, for example:

    nice -n 10 python -m benchmarks.guard                         # every task with ground truth
    nice -n 10 python -m benchmarks.guard --tasks cancer-logreg --append
    nice -n 10 python -m benchmarks.guard --timing-only --timing-tasks charlm
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import torch

from benchmarks.ground_truth import load_ground_truth
from lrkit.files import atomic_write_text
from lrkit.tasks import evaluate, get_task
from lrkit.tasks.training import torch_threads
from lrkit.torch.guard import Guard, GuardStop
from lrkit.torch.loaders import cycle
from lrkit.torch.snapshot import Snapshot

RESULTS = Path(__file__).parent / "results"
COMMAND = "nice -n 10 python -m benchmarks.guard"
ARMS = ("bare", "guard", "guard+best", "guard+watch")
AT_BEST = ("bare", "guard", "guard+watch")  # the arms also run at the best LR
MULTIPLIERS = (10.0, 30.0)
TOLERANCE = 0.05


@dataclass(frozen=True)
class Run:
    task: str
    multiplier: float
    seed: int
    arm: str
    val_loss: float
    events: int
    rollbacks: int
    skipped: int
    stopped: bool
    lr_scale: float
    step_seconds: float

    def within(self, best: float) -> bool:
        return math.isfinite(self.val_loss) and self.val_loss <= best * (1 + TOLERANCE)


def run(task_name: str, lr: float, seed: int, arm: str, multiplier: float) -> Run:
    """One full training of the task in a plain loop, guarded or not."""
    task = get_task(task_name)
    steps = task.steps
    eval_every = max(1, steps // 10)
    model = task.model(seed)
    optimizer = task.optimizer(model.parameters(), lr)
    schedule = task.schedule(lr, steps)
    scheduler = None
    if schedule is not None:
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: schedule(step) / lr)
    train_loader, val_loader = task.loaders(seed)
    watch_every = max(10, steps // 8) if arm == "guard+watch" else None
    guard = None if arm == "bare" else Guard(model, optimizer, scheduler=scheduler, watch_every=watch_every)
    stopped, step_seconds = False, 0.0
    model.train()
    for step, batch in zip(range(steps), cycle(train_loader), strict=False):
        started = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss = task.loss_fn(model, batch)
        loss.backward()
        if guard is None:
            optimizer.step()
            if scheduler is not None:
                scheduler.step()
        else:
            try:
                guard.step(loss)
            except GuardStop:
                stopped = True
                break
        step_seconds += time.perf_counter() - started
        if arm == "guard+best" and ((step + 1) % eval_every == 0 or step + 1 == steps):
            guard.should_stop(evaluate(task, model, val_loader)[0])
    if arm == "guard+best" and guard.best_val_loss < math.inf:
        guard.restore_best()
    val_loss = evaluate(task, model, val_loader)[0]
    return Run(
        task_name,
        multiplier,
        seed,
        arm,
        val_loss if math.isfinite(val_loss) else math.nan,
        0 if guard is None else len(guard.trace.events),
        0 if guard is None else guard.rollbacks,
        0 if guard is None else guard.skipped,
        stopped,
        1.0 if guard is None else guard.lr_scale,
        step_seconds / steps,
    )


def timing(task_name: str, lr: float, steps: int) -> dict[str, float]:
    """Time per training step at ``lr``, bare and guarded, two ways.

    End to end: two copies of the run advance in lockstep (which goes first alternates), so a busy
    machine slows both alike; the median step of each is taken. Direct: in the guarded copy, the
    guard's own calls (the ones ``Guard.step`` makes around ``optimizer.step()``) are timed apart,
    which stays exact on a busy machine. Both add the guard's snapshots back, amortized over
    ``snapshot_every`` steps (the medians leave those steps out).
    """
    task = get_task(task_name)
    arms = {}
    for arm in ("bare", "guard"):
        model = task.model(0)
        optimizer = task.optimizer(model.parameters(), lr)
        guard = Guard(model, optimizer) if arm == "guard" else None
        arms[arm] = (model, optimizer, guard, cycle(task.loaders(0)[0]), [])
    own: list[float] = []
    for step in range(steps):
        for arm in ("bare", "guard") if step % 2 else ("guard", "bare"):
            model, optimizer, guard, data, times = arms[arm]
            batch = next(data)
            started = time.perf_counter()
            optimizer.zero_grad(set_to_none=True)
            loss = task.loss_fn(model, batch)
            loss.backward()
            if guard is None:
                optimizer.step()
            else:
                before = time.perf_counter()
                approved = guard.judge(loss, guard.grad_norm())
                between = time.perf_counter()
                if approved:
                    optimizer.step()
                stepped = time.perf_counter()
                guard.applied()
                own.append((between - before) + (time.perf_counter() - stepped))
            times.append(time.perf_counter() - started)
    model, optimizer, guard, _, _ = arms["guard"]
    started = time.perf_counter()
    for _ in range(5):
        Snapshot.take(model, optimizer)  # what the guard keeps every snapshot_every steps
    snapshot = (time.perf_counter() - started) / 5 / guard.snapshot_every
    bare = statistics.median(arms["bare"][4])
    guarded = statistics.median(arms["guard"][4]) + snapshot
    overhead = statistics.median(own) + snapshot
    return {
        "bare": bare,
        "guard": guarded,
        "ratio": guarded / bare,
        "overhead": overhead,
        "direct_ratio": 1 + overhead / bare,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", nargs="*", help="task names (default: every task with ground truth)")
    parser.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    parser.add_argument("--timing-steps", type=int, default=1000, help="steps per arm for timing")
    parser.add_argument("--timing-tasks", nargs="*", default=[], help="tasks to time only (no runs)")
    parser.add_argument(
        "--timing-only", action="store_true", help="redo only the timing, keeping the runs in guard.json"
    )
    parser.add_argument("--append", action="store_true", help="add to the runs already in guard.json")
    argv = sys.argv[1:] if argv is None else argv
    args = parser.parse_args(argv)
    truths = load_ground_truth()
    names = args.tasks or list(truths)
    command = " ".join([COMMAND, *argv])
    previous = json.loads((RESULTS / "guard.json").read_text()) if args.append or args.timing_only else {}
    commands = [*previous.get("commands", []), command]
    if args.timing_only:
        with torch_threads(1):
            previous["time_per_step"] = {
                name: timing(name, truths[name].best_lr, args.timing_steps)
                for name in [*names, *args.timing_tasks]
            }
        previous["commands"] = commands
        atomic_write_text(RESULTS / "guard.json", json.dumps(previous, indent=1) + "\n")
        atomic_write_text(RESULTS / "guard.md", markdown(previous))
        print(markdown(previous))
        return
    started = time.perf_counter() - previous.get("seconds", 0.0)
    runs = [Run(**{k: v for k, v in r.items() if k != "within"}) for r in previous.get("runs", [])]
    times: dict[str, dict[str, float]] = dict(previous.get("time_per_step", {}))
    with torch_threads(1):
        for name in [*names, *args.timing_tasks]:
            truth = truths[name]
            times[name] = timing(name, truth.best_lr, args.timing_steps)
            print(f"{name} time per step: {times[name]}", flush=True)
            for multiplier in (1.0, *MULTIPLIERS) if name in names else ():
                for seed in args.seeds:
                    for arm in ARMS if multiplier != 1.0 else AT_BEST:
                        result = run(name, truth.best_lr * multiplier, seed, arm, multiplier)
                        runs.append(result)
                        print(
                            f"{name} {multiplier:g}x seed {seed} {arm}: val {result.val_loss:.4f} "
                            f"(best {truth.best_loss:.4f}) events {result.events}",
                            flush=True,
                        )
            done = sorted({r.task for r in runs})
            report = summarize(
                runs, times, {n: truths[n].best_loss for n in done}, {n: truths[n].best_lr for n in done}, args.seeds
            )
            report["seconds"] = round(time.perf_counter() - started, 1)
            report["commands"] = commands
            RESULTS.mkdir(exist_ok=True)
            atomic_write_text(RESULTS / "guard.json", json.dumps(report, indent=1) + "\n")
            atomic_write_text(RESULTS / "guard.md", markdown(report))
    print(markdown(report))


def summarize(runs, times, best_loss, best_lr, seeds) -> dict:
    shares: dict[str, dict[str, float]] = {}
    for multiplier in (1.0, *MULTIPLIERS):
        for arm in ARMS:
            chosen = [r for r in runs if r.multiplier == multiplier and r.arm == arm]
            if chosen:
                shares.setdefault(f"{multiplier:g}x", {})[arm] = statistics.fmean(
                    r.within(best_loss[r.task]) for r in chosen
                )
    at_best = [r for r in runs if r.multiplier == 1.0 and r.arm == "guard"]
    watched = [r for r in runs if r.multiplier == 1.0 and r.arm == "guard+watch"]
    return {
        "command": COMMAND,
        "seeds": seeds,
        "tolerance": TOLERANCE,
        "best_lr": best_lr,
        "best_loss": best_loss,
        "share_within": shares,
        "events_at_best_lr": sum(r.events for r in at_best),
        "runs_at_best_lr": len(at_best),
        "watch_events_at_best_lr": sum(r.events for r in watched),
        "watch_runs_at_best_lr": len(watched),
        "time_per_step": times,
        "runs": [asdict(r) | {"within": r.within(best_loss[r.task])} for r in runs],
    }


def markdown(report: dict) -> str:
    lines = [
        "# Guard benchmark",
        "",
        f"Made by these commands, in order (seeds {report['seeds']}, {report.get('seconds', '?')} s of runs):",
        "",
        *[f"    {command}" for command in report.get("commands", [report["command"]])],
        "",
        f"Share of runs whose final validation loss is within {report['tolerance']:.0%} of the grid's "
        "best (mean over seeds at the best LR, from `benchmarks/results/ground_truth.json`):",
        "",
        "| start LR | " + " | ".join(ARMS) + " |",
        "|---|" + "---|" * len(ARMS),
    ]
    for start, by_arm in report["share_within"].items():
        cells = [f"{by_arm[arm]:.0%}" if arm in by_arm else "-" for arm in ARMS]
        lines.append(f"| {start} best | " + " | ".join(cells) + " |")
    lines += [
        "",
        f"Guard events in {report['runs_at_best_lr']} guarded runs at the best LR: "
        f"**{report['events_at_best_lr']}**; with the watch, in {report.get('watch_runs_at_best_lr', 0)} runs: "
        f"**{report.get('watch_events_at_best_lr', '-')}**.",
        "",
        "Per run (final validation loss; guard: rollbacks / skipped steps / final LR scale; "
        "`stop` = GuardStop; watch: events / final LR scale):",
        "",
        "| task | start | seed | best | " + " | ".join(ARMS) + " | guard actions | watch actions |",
        "|---|---|---|---|" + "---|" * len(ARMS) + "---|---|",
    ]
    by_key: dict[tuple, dict[str, dict]] = {}
    for r in report["runs"]:
        by_key.setdefault((r["task"], r["multiplier"], r["seed"]), {})[r["arm"]] = r
    for (task, multiplier, seed), arms in by_key.items():
        g = arms.get("guard")
        actions = (
            f"{g['rollbacks']} / {g['skipped']} / {g['lr_scale']:.3g}" + (" stop" if g["stopped"] else "")
            if g
            else "-"
        )
        w = arms.get("guard+watch")
        watch = f"{w['events']} / {w['lr_scale']:.3g}" + (" stop" if w["stopped"] else "") if w else "-"
        lines.append(
            f"| {task} | {multiplier:g}x | {seed} | {report['best_loss'][task]:.4f} | "
            + " | ".join(_cell(arms.get(arm)) for arm in ARMS)
            + f" | {actions} | {watch} |"
        )
    lines += [
        "",
        "Time per training step at the best LR (forward, backward, step), median over "
        "`--timing-steps` steps. *End to end*: a bare and a guarded copy run in lockstep; *direct*: "
        "the guard's own calls timed apart inside the guarded copy, over the bare step. Both "
        "include the guard's snapshots amortized over `snapshot_every` steps:",
        "",
        "| task | bare (ms) | guard (ms) | end-to-end ratio | guard's own time (µs) | direct ratio |",
        "|---|---|---|---|---|---|",
    ]
    for task, t in report["time_per_step"].items():
        lines.append(
            f"| {task} | {t['bare'] * 1e3:.3f} | {t['guard'] * 1e3:.3f} | {t['ratio']:.3f} "
            f"| {t['overhead'] * 1e6:.0f} | {t['direct_ratio']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def _cell(r: dict | None) -> str:
    if r is None:
        return "-"
    return f"{r['val_loss']:.4f}" + (" ✓" if r["within"] else "")


if __name__ == "__main__":
    main()
