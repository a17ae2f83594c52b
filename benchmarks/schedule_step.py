"""Cost of one ``scheduler.step()``: lrkit's ScheduleLR against LambdaLR and PyTorch's native class for
the same schedule, side by side in one run, repetitions interleaved so machine load hits all alike.

Only ``scheduler.step()`` is timed (the optimizer is stepped once before, never inside the loop).
Goal: ScheduleLR costs no more than either (ratio <= 1.0). Run with

    nice -n 10 python -m benchmarks.schedule_step
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch.optim import lr_scheduler
from transformers import get_cosine_schedule_with_warmup

from lrkit import schedules as S
from lrkit.files import atomic_write_text
from lrkit.torch.scheduler import ScheduleLR

RESULTS = Path(__file__).parent / "results"
PEAK, STEPS, WARMUP = 0.1, 2000, 200
Factory = Callable[[torch.optim.Optimizer], object]


def _one_cycle_lambda(step: int) -> float:
    """OneCycleLR's default shape written by hand, as a multiplier of the peak."""
    up = 0.3 * STEPS - 1
    start, end = 1 / 25, 1 / 25 / 1e4
    if step <= up:
        return start + (1 - start) * 0.5 * (1 - math.cos(math.pi * step / up))
    progress = (step - up) / (STEPS - 1 - up)
    return end + (1 - end) * 0.5 * (1 + math.cos(math.pi * progress))


# case -> contender -> scheduler factory; each case is one schedule written three ways
CASES: dict[str, dict[str, Factory]] = {
    "cosine": {
        "lrkit": lambda o: ScheduleLR(o, S.cosine(peak=PEAK, steps=STEPS)),
        "LambdaLR": lambda o: lr_scheduler.LambdaLR(
            o, lambda i: 0.5 * (1 + math.cos(math.pi * min(i, STEPS) / STEPS))
        ),
        "native": lambda o: lr_scheduler.CosineAnnealingLR(o, STEPS),
    },
    "step": {
        "lrkit": lambda o: ScheduleLR(o, S.step_decay(PEAK, 300, 0.5)),
        "LambdaLR": lambda o: lr_scheduler.LambdaLR(o, lambda i: 0.5 ** (i // 300)),
        "native": lambda o: lr_scheduler.StepLR(o, 300, 0.5),
    },
    "warmup_cosine": {
        "lrkit": lambda o: ScheduleLR(o, S.warmup_cosine(PEAK, STEPS, warmup_steps=WARMUP)),
        "LambdaLR": lambda o: get_cosine_schedule_with_warmup(o, WARMUP, STEPS),  # transformers' LambdaLR
        "native": lambda o: lr_scheduler.SequentialLR(
            o,
            [lr_scheduler.LinearLR(o, 1e-8, 1.0, WARMUP), lr_scheduler.CosineAnnealingLR(o, STEPS - WARMUP)],
            milestones=[WARMUP],
        ),
    },
    "one_cycle": {
        "lrkit": lambda o: ScheduleLR(o, S.one_cycle(PEAK, STEPS)),
        "LambdaLR": lambda o: lr_scheduler.LambdaLR(o, _one_cycle_lambda),
        "native": lambda o: lr_scheduler.OneCycleLR(o, PEAK, total_steps=STEPS, cycle_momentum=False),
    },
}


def time_steps(factory: Factory, steps: int, groups: int) -> float:
    """Seconds per ``scheduler.step()`` over ``steps`` steps on a fresh optimizer."""
    params = [torch.nn.Parameter(torch.zeros(4)) for _ in range(groups)]
    optimizer = torch.optim.SGD([{"params": [p], "lr": PEAK / (i + 1)} for i, p in enumerate(params)], lr=PEAK)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scheduler = factory(optimizer)
        optimizer.step()
        step = scheduler.step
        start = time.perf_counter()
        for _ in range(steps - 1):
            step()
        elapsed = time.perf_counter() - start
    return elapsed / (steps - 1)


def run(repeats: int, groups: int) -> dict:
    samples: dict[str, dict[str, list[float]]] = {case: {name: [] for name in c} for case, c in CASES.items()}
    for _ in range(repeats):
        for case, contenders in CASES.items():
            for name, factory in contenders.items():  # interleaved: every contender in every round
                samples[case][name].append(time_steps(factory, STEPS, groups))
    rows = {}
    for case, by_name in samples.items():
        median = {name: statistics.median(values) for name, values in by_name.items()}
        rows[case] = {
            "us_per_step": {name: round(value * 1e6, 3) for name, value in median.items()},
            "ratio_vs_LambdaLR": round(median["lrkit"] / median["LambdaLR"], 3),
            "ratio_vs_native": round(median["lrkit"] / median["native"], 3),
        }
    return rows


def markdown(results: dict) -> str:
    lines = [
        "# ScheduleLR.step() cost vs LambdaLR and the native PyTorch scheduler",
        "",
        f"Command: `{results['command']}`",
        "",
        f"Machine: {results['machine']}. {results['steps']} steps per run, {results['param_groups']} param groups, "
        f"median of {results['repeats']} interleaved repetitions; only `scheduler.step()` is timed.",
        "",
        "| schedule | lrkit (us/step) | LambdaLR (us/step) | native (us/step) | lrkit / LambdaLR | lrkit / native |",
        "|---|---|---|---|---|---|",
    ]
    for case, row in results["cases"].items():
        us = row["us_per_step"]
        lines.append(
            f"| {case} | {us['lrkit']} | {us['LambdaLR']} | {us['native']} | "
            f"{row['ratio_vs_LambdaLR']} | {row['ratio_vs_native']} |"
        )
    lines += [
        "",
        "Goal: both ratios <= 1.0. LambdaLR is a hand-written Python lambda (transformers' own for "
        "warmup_cosine); native is CosineAnnealingLR, StepLR, SequentialLR(LinearLR, CosineAnnealingLR) "
        "and OneCycleLR. ScheduleLR evaluates the schedule 256 aligned steps at a time with NumPy and "
        "sets the groups' LRs directly, skipping LRScheduler's per-step machinery.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--groups", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    results = {
        "command": "python -m benchmarks.schedule_step" + "".join(f" {a}" for a in (argv or sys.argv[1:])),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, torch {torch.__version__}, load average {os.getloadavg()[0]:.1f} at start",
        "steps": STEPS,
        "param_groups": args.groups,
        "repeats": args.repeats,
        "cases": run(args.repeats, args.groups),
    }
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "schedule_step.json", json.dumps(results, indent=2) + "\n")
    text = markdown(results)
    atomic_write_text(RESULTS / "schedule_step.md", text)
    print(text)


if __name__ == "__main__":
    main()
