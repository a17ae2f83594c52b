"""The guard and the range test on models of realistic size: time, memory, rollbacks, exactness.

The built-in tasks are tiny; users train models of 10M-100M+ parameters, where the copies the
guard and the range test keep (model and optimizer state) cost more than their bookkeeping. Two
models are built here, on synthetic data made in code (no download), both trained with AdamW:

- ``gpt``: a GPT-like causal transformer, 27M parameters (8192-token vocabulary, context 128,
  6 pre-norm blocks of width 512, 8 heads), on random token sequences;
- ``mlp``: a 25M-parameter MLP (1024-4096-4096-1024-10) on random features.

Measured in one process, everything side by side:

- **guard step**: the same training step bare, with ``Guard`` (snapshots in CPU memory), with
  ``should_stop`` also fed an improving validation loss every 10 steps (a best-weights snapshot
  each time), and with ``directory=`` (snapshots in a file). The arms take turns step by step
  (rotating who goes first) on one model and optimizer, so a slow moment of the shared machine
  hits every arm alike and no arm has faster memory than another. The guards snapshot every 5 of
  their steps (from the 4th on), so a short window holds several: the per-step ratio is of the
  medians of the other steps, and a snapshot's extra time (median over the steps that took one) is amortized over the
  default ``snapshot_every=50`` (the best-weights one over the 10 steps between validations);
- **rollback**: the time of a step whose spike rolls back, and whether the state that comes back
  equals, ``torch.equal``, the state when the snapshot was taken;
- **range test**: a ``find_lr`` step against a plain step, taking turns step by step (the test's
  ``loss_fn`` runs a plain step of the same model first), medians, with its one-off snapshot
  and restore (medians of 3) counted once per test of that many steps;
- **memory**: peak resident anonymous memory (sampled every 2 ms) above a warmed-up bare loop,
  while each runs a few steps (the guards with a snapshot every 4 steps and a rollback at the
  end), in units of the model's parameter bytes;
- **long run**: resident memory over 300 guarded AdamW steps with three rollbacks (the
  gradients of one backward pass reused, so the run is the guard's and the optimizer's work).

    nice -n 10 python -m benchmarks.large_model                 # both models; results/large_model.{md,json}
    nice -n 10 python -m benchmarks.large_model --models mlp --steps 30 --out /tmp/lm
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from lrkit.files import atomic_write_text
from lrkit.spikes import SpikeRule
from lrkit.torch.finder import find_lr
from lrkit.torch.guard import Guard
from lrkit.torch.snapshot import Snapshot

RESULTS = Path(__file__).parent / "results"
COMMAND = "nice -n 10 python -m benchmarks.large_model"
ARMS = ("bare", "guard", "guard+val", "guard+dir")
SNAPSHOT_EVERY = 5
VALIDATE_EVERY = 10


class GPT(nn.Module):
    """A small causal language model: token and position embeddings, pre-norm blocks, a head."""

    def __init__(self, vocab: int = 8192, width: int = 512, depth: int = 6, heads: int = 8, context: int = 128):
        super().__init__()
        self.tokens = nn.Embedding(vocab, width)
        self.positions = nn.Embedding(context, width)
        block = nn.TransformerEncoderLayer(
            width, heads, 4 * width, dropout=0.0, batch_first=True, norm_first=True
        )
        self.blocks = nn.TransformerEncoder(block, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(width)
        self.head = nn.Linear(width, vocab, bias=False)
        mask = nn.Transformer.generate_square_subsequent_mask(context)
        self.register_buffer("mask", mask, persistent=False)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        length = tokens.shape[1]
        hidden = self.tokens(tokens) + self.positions(torch.arange(length, device=tokens.device))
        hidden = self.blocks(hidden, mask=self.mask[:length, :length], is_causal=True)
        return self.head(self.norm(hidden))


@dataclass(frozen=True)
class Spec:
    """A model of realistic size, its batches and its loss."""

    name: str
    make: Callable[[], nn.Module]
    batch: Callable[[torch.Generator], tuple[torch.Tensor, torch.Tensor]]
    loss: Callable[[nn.Module, tuple[torch.Tensor, torch.Tensor]], torch.Tensor]
    about: str


def _gpt_batch(generator: torch.Generator, size: int = 2, length: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    tokens = torch.randint(0, 8192, (size, length + 1), generator=generator)
    return tokens[:, :-1], tokens[:, 1:]


def _gpt_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return nn.functional.cross_entropy(model(inputs).flatten(0, 1), targets.flatten())


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(1024, 4096), nn.GELU(), nn.Linear(4096, 4096), nn.GELU(),
        nn.Linear(4096, 1024), nn.GELU(), nn.Linear(1024, 10),
    )


def _mlp_batch(generator: torch.Generator, size: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.randn(size, 1024, generator=generator), torch.randint(0, 10, (size,), generator=generator)


def _mlp_loss(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    inputs, targets = batch
    return nn.functional.cross_entropy(model(inputs), targets)


SPECS = {
    "gpt": Spec("gpt", GPT, _gpt_batch, _gpt_loss, "GPT-like transformer, batch 2 x 64 tokens"),
    "mlp": Spec("mlp", _mlp, _mlp_batch, _mlp_loss, "MLP 1024-4096-4096-1024-10, batch 64"),
}


class Peak:
    """Peak resident memory of this process while inside the ``with``, sampled every 2 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._done = threading.Event()

    def __enter__(self) -> Peak:
        self.peak = resident()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._done.set()
        self._thread.join()
        self.peak = max(self.peak, resident())

    def _sample(self) -> None:
        while not self._done.wait(0.002):
            self.peak = max(self.peak, resident())


def resident() -> int:
    """Resident anonymous bytes of this process (Linux's /proc/self/statm: resident less shared),
    the memory a run holds; a file it maps (a snapshot read back) is page cache, not counted."""
    with open("/proc/self/statm") as handle:
        fields = handle.read().split()
    return (int(fields[1]) - int(fields[2])) * os.sysconf("SC_PAGE_SIZE")


def _state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    return {
        "model": {k: v.detach().clone() for k, v in model.state_dict().items()},
        "optimizer": {
            i: {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in state.items()}
            for i, state in enumerate(optimizer.state.values())
        },
        "lrs": [group["lr"] for group in optimizer.param_groups],
    }


def _equal(a: dict, b: dict) -> bool:
    """Model and optimizer state bit for bit (the LRs apart: a rollback cuts them)."""
    return (
        all(torch.equal(a["model"][k], b["model"][k]) for k in a["model"])
        and a["optimizer"].keys() == b["optimizer"].keys()
        and all(
            torch.equal(v, b["optimizer"][i][k]) if isinstance(v, torch.Tensor) else v == b["optimizer"][i][k]
            for i, state in a["optimizer"].items()
            for k, v in state.items()
        )
    )


def _build(spec: Spec, lr: float = 1e-4) -> tuple[nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(0)
    model = spec.make()
    return model, torch.optim.AdamW(model.parameters(), lr=lr)


def _train_step(spec, model, optimizer, batch, guard: Guard | None) -> float:
    """One training step; returns the seconds of its update (``optimizer.step()`` or ``guard.step``)."""
    optimizer.zero_grad(set_to_none=True)
    loss = spec.loss(model, batch)
    loss.backward()
    value = loss.item()
    started = time.perf_counter()
    if guard is None:
        optimizer.step()
    else:
        guard.step(value)
    return time.perf_counter() - started


def _arm_guard(arm: str, model, optimizer, directory: Path) -> Guard | None:
    """The guard of one arm: a snapshot every ``SNAPSHOT_EVERY`` steps from the 4th step on, so a
    short window holds several (each timed, then amortized over the default interval of 50)."""
    if arm == "bare":
        return None
    options = {"directory": directory / "guard"} if arm == "guard+dir" else {}
    if arm == "guard+val":  # its good snapshot as often as guard's, plus a best one
        options = {}
    rule = SpikeRule(warmup_steps=3)
    return Guard(model, optimizer, snapshot_every=SNAPSHOT_EVERY, rule=rule, **options)


def measure_guard(spec: Spec, steps: int, directory: Path, warmup: int = 2) -> dict:
    """Per-step time of each arm, taking turns step by step on one model; snapshot and rollback costs.

    Every arm steps the same model and optimizer (each guard sees every fourth step): separate
    copies would each sit in memory of their own, and a copy whose pages are slower (huge pages or
    not, NUMA) would pass for the guard's doing.
    """
    model, optimizer = _build(spec)
    generator = torch.Generator().manual_seed(1)
    for _ in range(warmup):  # untimed: the first steps allocate AdamW's state
        _train_step(spec, model, optimizer, spec.batch(generator), None)
    runs = {}
    for arm in ARMS:
        started = time.perf_counter()
        guard = _arm_guard(arm, model, optimizer, directory / arm)
        runs[arm] = {"guard": guard, "times": [], "updates": [], "snapshot_steps": [],
                     "first_snapshot": time.perf_counter() - started}
    kept = _state(model, optimizer)  # what the "guard" arm's snapshot holds
    for step in range(steps):
        order = ARMS[step % len(ARMS):] + ARMS[: step % len(ARMS)]
        for arm in order:
            run = runs[arm]
            guard = run["guard"]
            batch = spec.batch(generator)
            before = None if guard is None else (guard.last_good_step, id(guard._best))
            started = time.perf_counter()
            update = _train_step(spec, model, optimizer, batch, guard)
            if arm == "guard+val" and step % VALIDATE_EVERY == VALIDATE_EVERY - 1:
                guard.should_stop(100.0 - step)  # always a new best: a best-weights snapshot each time
            run["times"].append(time.perf_counter() - started)
            run["updates"].append(update)
            if guard is not None and before != (guard.last_good_step, id(guard._best)):
                run["snapshot_steps"].append(step)
                if arm == "guard":
                    kept = _state(model, optimizer)
    bare = statistics.median(runs["bare"]["times"])
    bare_update = statistics.median(runs["bare"]["updates"])
    result = {"steps": steps, "bare_step_s": bare, "bare_update_s": bare_update,
              "bare_times_s": runs["bare"]["times"], "arms": {}}
    for arm in ARMS[1:]:
        run = runs[arm]
        times = run["times"]
        snapshot_steps = set(run["snapshot_steps"])
        steady = statistics.median([t for i, t in enumerate(times) if i not in snapshot_steps])
        update = statistics.median([t for i, t in enumerate(run["updates"]) if i not in snapshot_steps])
        extra = statistics.median([times[i] - steady for i in snapshot_steps]) if snapshot_steps else 0.0
        per_step = extra / 50  # the default snapshot_every
        if arm == "guard+val":  # a best-weights snapshot per validation, one every VALIDATE_EVERY steps
            per_step = extra / VALIDATE_EVERY
        result["arms"][arm] = {
            "step_s": steady,
            "ratio": steady / bare,
            # the guard's own time (guard.step less optimizer.step), a shorter span, so less noisy
            "own_s": update - bare_update,
            "ratio_own": 1 + (update - bare_update) / bare,
            "ratio_own_amortized": 1 + (update - bare_update + per_step) / bare,
            "snapshot_extra_s": extra,
            "snapshots": len(snapshot_steps),
            "ratio_amortized": (steady + per_step) / bare,
            "first_snapshot_s": run["first_snapshot"],
            "times_s": times,
            "snapshot_steps": sorted(snapshot_steps),
        }
    result["rollback"] = _rollbacks(runs["guard"]["guard"], model, optimizer, kept)
    for run in runs.values():
        if run["guard"] is not None:
            run["guard"].close()
    return result


def _rollbacks(guard: Guard, model, optimizer, kept: dict, count: int = 3) -> dict:
    """Spike the guarded run ``count`` times: each rollback's time and whether it restored exactly."""
    seconds, exact = [], []
    for _ in range(count):
        for _ in range(guard.skip_batches):
            guard.judge(1.0, 1.0)
        for _ in range(guard.rule.confirm - 1):
            guard.judge(1e6, 1.0)
        started = time.perf_counter()
        guard.judge(1e6, 1.0)  # confirms the spike: restore, clear the gradients, cut the LR
        seconds.append(time.perf_counter() - started)
        state = _state(model, optimizer)
        cut = all(
            math.isclose(lr, kept_lr * guard.lr_scale) for lr, kept_lr in zip(state["lrs"], kept["lrs"], strict=True)
        )
        exact.append(cut and _equal(kept, state))
    return {"seconds": seconds, "median_s": statistics.median(seconds), "exact": all(exact)}


def measure_finder(spec: Spec, steps: int, repeats: int) -> dict:
    """Range-test step against a plain step, taking turns step by step; snapshot and restore once.

    The range test's ``loss_fn`` first runs one plain training step of the same model (timed apart),
    so the two alternate within the test: the range test's own step is the time from the end of one
    plain step to the start of the next call, everything it does per step included.
    """
    plain, own = [], []
    generator = torch.Generator().manual_seed(2)
    batches = [spec.batch(generator) for _ in range(steps + 2)]
    for repeat in range(repeats):
        marks = _finder_in_turns(spec, batches, steps, repeat)
        plain += [end - start for start, end in marks]
        own += [marks[i + 1][0] - marks[i][1] for i in range(len(marks) - 1)]
        gc.collect()
    model, optimizer = _build(spec)
    for batch in batches[:2]:
        _train_step(spec, model, optimizer, batch, None)
    takes, restores = [], []
    for _ in range(3):
        started = time.perf_counter()
        snapshot = Snapshot.take(model, optimizer)
        takes.append(time.perf_counter() - started)
        started = time.perf_counter()
        snapshot.restore()
        restores.append(time.perf_counter() - started)
        nbytes = snapshot.nbytes
        snapshot.discard()
        del snapshot
    take, restore = statistics.median(takes), statistics.median(restores)
    plain_step, finder_step = statistics.median(plain), statistics.median(own)
    return {
        "steps": steps,
        "repeats": repeats,
        "plain_step_s": plain_step,
        "finder_step_s": finder_step,
        "ratio": finder_step / plain_step,
        "ratio_with_setup": (finder_step * steps + take + restore) / (plain_step * steps),
        "snapshot_take_s": take,
        "snapshot_restore_s": restore,
        "snapshot_mib": nbytes / 2**20,
    }


def _finder_in_turns(spec: Spec, batches: list, steps: int, seed: int) -> list[tuple[float, float]]:
    """Run ``find_lr`` whose ``loss_fn`` first takes a plain step of the same model and optimizer
    (same memory, so no copy's pages can pass for the test's doing); (start, end) of each."""
    model, optimizer = _build(spec)
    for batch in batches[:2]:  # AdamW's state in place, as in a resumed run
        _train_step(spec, model, optimizer, batch, None)
    marks: list[tuple[float, float]] = []

    def loss_fn(model: nn.Module, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        started = time.perf_counter()
        _train_step(spec, model, optimizer, batch, None)
        marks.append((started, time.perf_counter()))
        return spec.loss(model, batch)

    find_lr(model, optimizer, loss_fn, batches[2:], steps=steps, min_lr=1e-6, max_lr=1e-4,
            stop_on_divergence=False, seed=seed)
    return marks


def measure_memory(spec: Spec, steps: int, directory: Path) -> dict:
    """Peak resident memory above a warmed-up bare loop, for each way of running a few steps.

    Run in a process of its own (see :func:`in_child`), with glibc's mmap threshold fixed, so
    every large tensor freed goes back to the system and the next one's pages show again.
    """
    model, optimizer = _build(spec)
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    generator = torch.Generator().manual_seed(3)
    batches = [spec.batch(generator) for _ in range(steps)]
    for batch in batches[:2]:
        _train_step(spec, model, optimizer, batch, None)
    with Peak() as bare:
        for batch in batches:
            _train_step(spec, model, optimizer, batch, None)
    base = bare.peak
    peaks = {"bare": 0}
    for arm in ARMS[1:]:
        with Peak() as peak:
            guard = _arm_guard(arm, model, optimizer, directory / "memory")
            for i, batch in enumerate(batches):
                _train_step(spec, model, optimizer, batch, guard)
                if arm == "guard+val" and i % 2 == 1:
                    guard.should_stop(100.0 - i)
            guard.rewind()
            guard.close()
            del guard
        peaks[arm] = peak.peak - base
    for name, options in (("find_lr", {}), ("find_lr+dir", {"directory": directory / "finder"})):
        with Peak() as peak:
            find_lr(model, optimizer, spec.loss, batches, steps=steps, min_lr=1e-6, max_lr=1e-4,
                    stop_on_divergence=False, **options)
        peaks[name] = peak.peak - base
    return {"param_mib": params / 2**20, "steps": steps,
            "extra_mib": {k: v / 2**20 for k, v in peaks.items()},
            "extra_in_params": {k: v / params for k, v in peaks.items()}}


def in_child(what: str, name: str, steps: int) -> dict:
    """Run a memory measurement in a fresh process (glibc's mmap threshold fixed), its result as JSON."""
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**17)}
    command = [sys.executable, "-m", "benchmarks.large_model", "--child", what, "--models", name,
               "--memory-steps", str(steps), "--threads", str(torch.get_num_threads())]
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=True,
                          cwd=Path(__file__).parent.parent)
    return json.loads(done.stdout.strip().splitlines()[-1])


def measure_long_run(spec: Spec, steps: int = 300) -> dict:
    """Resident memory along ``steps`` guarded steps with a spike (a rollback) every 80 steps."""
    model, optimizer = _build(spec, lr=1e-6)
    generator = torch.Generator().manual_seed(4)
    optimizer.zero_grad()
    spec.loss(model, spec.batch(generator)).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    guard = Guard(model, optimizer)
    samples, started = {}, time.perf_counter()
    for step in range(steps):
        if any(p.grad is None for p in model.parameters()):  # a skipped or rolled-back step cleared them
            for p, g in zip(model.parameters(), grads, strict=True):
                p.grad = g.clone()
        spike = step % 80 in (70, 71, 72)
        guard.step(100.0 if spike else 1.0 + 0.01 * math.sin(step))
        if step % 25 == 24:
            gc.collect()
            samples[step + 1] = resident() / 2**20
    seconds = time.perf_counter() - started
    values = list(samples.values())
    after_first = [v for s, v in samples.items() if s > 100]
    return {
        "steps": steps,
        "rollbacks": guard.rollbacks,
        "resident_mib": samples,
        "growth_after_first_rollback_mib": max(after_first) - min(after_first),
        "growth_mib": values[-1] - values[0],
        "seconds": seconds,
    }


def write_report(results: dict, out: Path, command: str) -> None:
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "large_model.json", json.dumps(results, indent=1, sort_keys=True) + "\n")
    lines = [
        "# The guard and the range test on models of realistic size",
        "",
        f"Command: `{command}` ({results['seconds'] / 60:.1f} min; torch {results['torch']}, "
        f"{results['threads']} threads, a shared 2-core CPU machine). Made by `benchmarks/large_model.py`.",
        "",
    ]
    for name, model in results["models"].items():
        guard, finder, memory = model["guard"], model["finder"], model["memory"]
        lines += [
            f"## {name}: {model['parameters'] / 1e6:.1f}M parameters, AdamW ({model['about']})",
            "",
            f"Bare step {guard['bare_step_s'] * 1e3:.0f} ms (median of {guard['steps']}; the arms take turns "
            "on one model, each guard seeing every fourth step).",
            "",
            "| arm | step (ms) | ratio to bare | guard's own time per step (ms) | ratio from it | snapshot, extra (ms) | snapshots | ratio with snapshots amortized (whole step / own time) | first snapshot (ms) |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for arm, row in guard["arms"].items():
            lines.append(
                f"| {arm} | {row['step_s'] * 1e3:.0f} | {row['ratio']:.3f} | {row['own_s'] * 1e3:.1f} | "
                f"{row['ratio_own']:.3f} | {row['snapshot_extra_s'] * 1e3:.0f} | {row['snapshots']} | "
                f"{row['ratio_amortized']:.3f} / **{row['ratio_own_amortized']:.3f}** | {row['first_snapshot_s'] * 1e3:.0f} |"
            )
        rollback = guard["rollback"]
        lines += [
            "",
            f"Rollback (restore + clear gradients + LR cut): median {rollback['median_s'] * 1e3:.0f} ms over "
            f"{len(rollback['seconds'])}; state restored exactly (torch.equal): {rollback['exact']}.",
            "",
            f"Range test, {finder['steps']} steps x {finder['repeats']}, medians: plain step "
            f"{finder['plain_step_s'] * 1e3:.0f} ms, range-test step {finder['finder_step_s'] * 1e3:.0f} ms "
            f"(ratio **{finder['ratio']:.3f}**; {finder['ratio_with_setup']:.3f} counting the snapshot and "
            f"restore once). Snapshot of {finder['snapshot_mib']:.0f} MiB: take {finder['snapshot_take_s'] * 1e3:.0f} ms, "
            f"restore {finder['snapshot_restore_s'] * 1e3:.0f} ms.",
            "",
            f"Peak resident memory above the bare loop, {memory['steps']} steps (parameters: "
            f"{memory['param_mib']:.0f} MiB):",
            "",
            "| run | extra MiB | in parameter sizes |",
            "|---|---|---|",
        ]
        for key, value in memory["extra_mib"].items():
            lines.append(f"| {key} | {value:.0f} | {memory['extra_in_params'][key]:.2f} |")
        lines.append("")
    if "long_run" in results:
        run = results["long_run"]
        samples = ", ".join(f"{step}: {mib:.0f}" for step, mib in run["resident_mib"].items())
        lines += [
            f"## Long guarded run ({results['long_run_model']}, {run['steps']} steps, {run['rollbacks']} rollbacks)",
            "",
            f"Resident MiB by step: {samples}. Growth after the first rollback: "
            f"{run['growth_after_first_rollback_mib']:.0f} MiB ({run['seconds']:.0f} s).",
            "",
        ]
    atomic_write_text(out / "large_model.md", "\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=list(SPECS), choices=list(SPECS))
    parser.add_argument("--steps", type=int, default=30, help="timed guard steps per arm")
    parser.add_argument("--finder-steps", type=int, default=12)
    parser.add_argument("--repeats", type=int, default=2, help="range-test repeats")
    parser.add_argument("--memory-steps", type=int, default=8)
    parser.add_argument("--long-run", default="mlp", help="model of the 300-step run ('none' to skip)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--child", choices=("memory", "long_run"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.child is not None:
        spec = SPECS[args.models[0]]
        with tempfile.TemporaryDirectory() as scratch:
            if args.child == "memory":
                done = measure_memory(spec, args.memory_steps, Path(scratch))
            else:
                done = measure_long_run(spec)
        print(json.dumps(done))
        return 0
    started = time.perf_counter()
    results: dict = {"torch": torch.__version__, "threads": args.threads, "models": {}}
    with tempfile.TemporaryDirectory() as scratch:
        for name in args.models:
            spec = SPECS[name]
            parameters = sum(p.numel() for p in spec.make().parameters())
            print(f"{name}: {parameters / 1e6:.1f}M parameters", flush=True)
            model = {"parameters": parameters, "about": spec.about}
            model["guard"] = measure_guard(spec, args.steps, Path(scratch))
            print(json.dumps({k: v for k, v in model["guard"].items() if k != "bare_times_s"}), flush=True)
            model["finder"] = measure_finder(spec, args.finder_steps, args.repeats)
            print(json.dumps(model["finder"]), flush=True)
            gc.collect()
            model["memory"] = in_child("memory", name, args.memory_steps)
            print(json.dumps(model["memory"]), flush=True)
            results["models"][name] = model
        if args.long_run != "none":
            results["long_run_model"] = args.long_run
            results["long_run"] = in_child("long_run", args.long_run, args.memory_steps)
            print(json.dumps(results["long_run"]), flush=True)
    results["seconds"] = time.perf_counter() - started
    command = (COMMAND + " " + " ".join(argv if argv is not None else sys.argv[1:])).rstrip()
    results["command"] = command
    write_report(results, args.out, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
