"""How fast the explorer answers and the report renders.

The explorer must feel live while the slider moves: one ``POST /api/paths`` (three LRs x 200 steps
of a real ``torch.optim`` optimizer) should come back well under the ~100 ms people notice. The
report is a file written once: a few seconds is fine; its size should stay well under a few MB.
Requests go through Starlette's TestClient (the whole app, no network). Run with

    nice -n 10 python -m benchmarks.explore
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from starlette.testclient import TestClient

from lrkit.explore.app import create_app
from lrkit.files import atomic_write_text
from lrkit.landscapes import list_surfaces
from lrkit.report import render_report
from lrkit.trace import Trace, TraceBuilder

RESULTS = Path(__file__).parent / "results"


def timed(call, repeats: int) -> tuple[float, float]:
    """Median wall and CPU seconds of ``repeats`` calls (after one warm-up call). CPU time (all
    threads of this process) is what the call costs on an idle core; wall time includes waiting
    for a busy machine."""
    call()
    walls, cpus = [], []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        call()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


def explorer_rows(repeats: int) -> list[dict]:
    client = TestClient(create_app())
    rows = []
    for surface in list_surfaces():
        for optimizer in ("sgd", "adam"):
            body = {"surface": surface, "optimizer": optimizer, "lrs": [1.0, 1e-5, 0.05], "steps": 200}
            paths = timed(lambda body=body: client.post("/api/paths", json=body).raise_for_status(), repeats)
            test = {"surface": surface, "optimizer": optimizer}
            ranged = timed(lambda test=test: client.post("/api/range-test", json=test).raise_for_status(), repeats)
            rows.append({
                "surface": surface, "optimizer": optimizer,
                "paths_ms": paths[0] * 1e3, "paths_cpu_ms": paths[1] * 1e3,
                "range_test_ms": ranged[0] * 1e3, "range_test_cpu_ms": ranged[1] * 1e3,
            })
    contour = timed(lambda: client.get("/api/surface/rosenbrock").raise_for_status(), repeats)
    rows.append({"surface": "rosenbrock", "optimizer": "-", "contours_ms": contour[0] * 1e3, "contours_cpu_ms": contour[1] * 1e3})
    return rows


def synthetic_run(tau: float, steps: int, seed: int) -> Trace:
    rng = np.random.default_rng(seed)
    record = TraceBuilder(label=f"tau {tau:g}", seconds=steps * 0.01)
    for step in range(steps):
        record.add(step, 0.01, float(np.exp(-step / tau) * (1 + 0.05 * rng.standard_normal()) + 0.01))
    return record.build()


def report_rows(repeats: int) -> list[dict]:
    lr = np.geomspace(1e-6, 10, 100)
    x = np.log10(lr)
    finder = Trace(step=np.arange(100), lr=lr, loss=2 - 1.5 / (1 + np.exp(-3 * (x + 2.5))) + np.exp(3 * (x - 0.3)),
                   meta={"kind": "range_test"})
    cases = {
        "1 run, 600 steps": {"runs": [synthetic_run(60, 600, 0)]},
        "range test + chosen + baseline, 600 steps": {
            "runs": [synthetic_run(60, 600, 0)], "finder": finder, "baseline": synthetic_run(200, 600, 1),
            "price_per_gpu_hour": 2.5,
        },
        "range test + 3 runs + baseline, 5000 steps": {
            "runs": [synthetic_run(600, 5000, s) for s in range(3)], "finder": finder,
            "baseline": synthetic_run(2000, 5000, 9), "price_per_gpu_hour": 2.5,
        },
    }
    rows = []
    for name, arguments in cases.items():
        wall, cpu = timed(lambda arguments=arguments: render_report(**arguments), repeats)
        size = len(render_report(**arguments).encode())
        rows.append({"case": name, "render_s": wall, "render_cpu_s": cpu, "size_kb": size / 1024})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    load = os.getloadavg()[0]
    explorer = explorer_rows(args.repeats)
    report = report_rows(max(1, args.repeats // 2))
    machine = (f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}, "
               f"torch {torch.__version__}, load average {load:.1f} at start")
    lines = [
        "# Explorer latency and report rendering",
        "",
        "Command: `nice -n 10 python -m benchmarks.explore`",
        "",
        f"Machine: {machine}. Median of {args.repeats} requests after one warm-up (TestClient, in-process).",
        "",
        "| surface | optimizer | POST /api/paths, 3 LRs x 200 steps: CPU ms (wall ms) | POST /api/range-test: CPU ms (wall ms) |",
        "|---|---|---|---|",
    ]
    for row in explorer:
        if "paths_ms" in row:
            lines.append(
                f"| {row['surface']} | {row['optimizer']} | {row['paths_cpu_ms']:.0f} ({row['paths_ms']:.0f}) "
                f"| {row['range_test_cpu_ms']:.0f} ({row['range_test_ms']:.0f}) |"
            )
    contour = next(row for row in explorer if "contours_ms" in row)
    lines += [
        "",
        f"GET /api/surface/rosenbrock (120 x 120 contour grid): {contour['contours_cpu_ms']:.0f} ms CPU "
        f"({contour['contours_ms']:.0f} ms wall).",
        "",
        "| report | render: CPU s (wall s) | size (KB) |",
        "|---|---|---|",
        *(f"| {row['case']} | {row['render_cpu_s']:.2f} ({row['render_s']:.2f}) | {row['size_kb']:.0f} |" for row in report),
        "",
        "Goal: a slider move (/api/paths) well under 100 ms on an idle core; a report in a few seconds "
        "and well under a few MB. CPU time (this process, all threads) is what a request costs on an "
        "idle core; wall time here includes waiting for a shared, busy machine. Each path step is a "
        "real torch.optim step, whose Python overhead dominates /api/paths.",
        "",
    ]
    RESULTS.mkdir(exist_ok=True)
    atomic_write_text(RESULTS / "explore.md", "\n".join(lines))
    payload = {"command": "nice -n 10 python -m benchmarks.explore", "machine": machine,
               "explorer": explorer, "report": report}
    atomic_write_text(RESULTS / "explore.json", json.dumps(payload, indent=2) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
