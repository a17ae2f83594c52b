"""Tiny sweep objectives for the sweep tests: a known best LR (1e-2), and no real training.

They live in a module of their own so worker processes (``--entry sweep_objectives:quick``) can
import them.
"""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

NAP_SECONDS = 0.3


def bowl(lr: float, report) -> float:
    """Validation loss falls over 4 reports toward ``(log10(lr) + 2)**2``: best at lr = 1e-2."""
    final = (math.log10(lr) + 2) ** 2
    for step in range(4):
        report(step * 25 + 24, final + 1.0 / (step + 1))
    return final


def quick(lr: float, report) -> float:
    """``bowl``'s final loss after about 0.1 s, reporting nothing. With LRKIT_TEST_RENDEZVOUS=folder:count, a process's first call
    waits until ``count`` processes have checked in, so every worker of a test takes part."""
    rendezvous = os.environ.get("LRKIT_TEST_RENDEZVOUS")
    if rendezvous:
        folder, count = rendezvous.rsplit(":", 1)
        mine = Path(folder) / str(os.getpid())
        if not mine.exists():
            mine.touch()
            deadline = time.monotonic() + 300
            while len(list(Path(folder).iterdir())) < int(count) and time.monotonic() < deadline:
                time.sleep(0.05)
    time.sleep(0.1)
    return (math.log10(lr) + 2) ** 2


def napping(lr: float, report) -> float:
    """``bowl``'s final loss after sleeping ``NAP_SECONDS`` (at least that, however loaded the machine).
    With LRKIT_TEST_LOG=path, appends ``pid start end`` (``time.monotonic()``: one clock for every
    process of the machine) to that file."""
    start = time.monotonic()
    time.sleep(NAP_SECONDS)
    log = os.environ.get("LRKIT_TEST_LOG")
    if log:
        with open(log, "a") as handle:
            handle.write(f"{os.getpid()} {start!r} {time.monotonic()!r}\n")
    return (math.log10(lr) + 2) ** 2


def slow_bowl(lr: float, report) -> float:
    """``bowl``, with 0.4 s of training before each of its 4 reports: a trial of at least 1.6 s."""
    final = (math.log10(lr) + 2) ** 2
    for step in range(4):
        time.sleep(0.4)
        report(step * 25 + 24, final + 1.0 / (step + 1))
    return final


def hang_once(lr: float, report) -> float:
    """Like ``quick``, but the first call in a process started with LRKIT_TEST_HANG=path writes
    its LR to that path and hangs, for a test to kill it mid-trial."""
    marker = os.environ.get("LRKIT_TEST_HANG")
    if marker and not Path(marker).exists():
        report(24, 5.0)
        Path(marker).write_text(repr(lr))
        time.sleep(600)
    return quick(lr, report)


def always_nan(lr: float, report) -> float:
    """Every rate diverges."""
    return math.nan


def flat(lr: float, report) -> float:
    """The same loss at every rate: nothing to choose between."""
    return 0.5


def rising(lr: float, report) -> float:
    """Lower is better all the way down: the best rate lies below the range."""
    return 2.0 + math.log10(lr)


def returns_none(lr: float, report) -> None:
    """Forgets to return the loss."""


def _start_late() -> None:
    """With LRKIT_TEST_LATE=seconds:pid, a process that pid starts (a sweep's helper worker) starts
    that much late, as on a slow machine: it imports this module to unpickle its objective, before
    it joins the sweep."""
    late = os.environ.get("LRKIT_TEST_LATE")
    if late:
        seconds, parent = late.split(":")
        if os.getppid() == int(parent):
            time.sleep(float(seconds))


_start_late()
