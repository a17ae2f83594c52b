"""One sweep worker: runs trials of a shared study until it holds its target of finished trials
(or its time budget has run out).

Any number of workers, on one machine or many, may run this loop on the same study. The target
is exact: a worker whose new trial would go past it (counting the trials before it that have not
failed) marks that trial failed unrun and stops, so N workers never overshoot. Workers wait while
the last trials run elsewhere, so a trial whose worker dies is retried (same parameters) by one
that is still alive: through Optuna's heartbeats on a database, and on a journal file by seeing
that the owning process on this machine is gone. A trial stopped by Ctrl-C, or by an error raised in
the objective (which stops the worker, as the error is the user's to fix), is queued to run again
too, so a resumed sweep loses no LR. A worker with a deadline starts no trial, and stops waiting,
once it has passed.
"""

from __future__ import annotations

import contextlib
import copy
import math
import os
import socket
import time
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import optuna
from optuna.trial import TrialState

from lrkit import checks
from lrkit.sweeps.objective import Objective
from lrkit.sweeps.storage import RETRIES

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# user attributes lrkit keeps on each trial (visible in optuna-dashboard)
WORKER = "lrkit_worker"  # host:pid:start-time of the process running it
STEPS = "lrkit_steps"  # training steps the trial ran
DIVERGED = "lrkit_diverged"
SURPLUS = "lrkit_surplus"  # created after the target was reached; never ran
ERROR = "lrkit_error"  # "Type: message" of the exception the objective raised in a failed trial


class Surplus(Exception):
    """Raised inside a trial that the study no longer needs (marks it failed, unrun)."""


class Reporter:
    """The ``report(step, value)`` an objective receives: records the value, prunes when told.

    A non-finite value means the run diverged, so it is stopped (pruned) at once. A step reported
    again keeps its first value, as Optuna does, with a warning in the objective's step numbers
    (Optuna's own would count them from 1).
    """

    def __init__(self, trial: optuna.Trial) -> None:
        self._trial = trial
        self._reported: set[int] = set()
        self.steps = 0

    def __call__(self, step: int, value: float) -> None:
        step = checks.integer("step", step, minimum=0)
        number = checks.one_number(value)
        if number is None:
            raise TypeError(
                f"report(step, value): value must be the validation loss as a number, got {value!r} "
                f"({type(value).__name__})"
            )
        value = number
        self.steps = max(self.steps, step + 1)
        if not math.isfinite(value):
            self._trial.set_user_attr(DIVERGED, True)
            raise optuna.TrialPruned(f"validation loss {value} at step {step}")
        if step in self._reported:
            warnings.warn(
                f"report(step={step}, ...) again: only the first value reported at a step counts; "
                "pass the 0-based index of the last step (or epoch) trained",
                UserWarning,
                stacklevel=2,
            )
            return
        self._reported.add(step)
        self._trial.report(value, step + 1)  # Optuna's step: steps done, the pruners' resource
        if self._trial.should_prune():
            raise optuna.TrialPruned(f"pruned at step {step}")

    def spent(self, steps: int) -> None:
        """Tell the sweep how many steps the trial really trained (default: last report + 1)."""
        self.steps = checks.integer("steps", steps, minimum=0)


@dataclass(frozen=True)
class TrialRunner:
    """The Optuna objective around a user's ``train(lr, report)``: claims a slot, then trains."""

    objective: Objective
    min_lr: float
    max_lr: float
    target: int
    schedules: tuple[str, ...] | None = None
    warmup_steps: tuple[int, ...] = (0,)

    def __call__(self, trial: optuna.Trial) -> float:
        trial.set_user_attr(WORKER, process_id())
        trials = trial.study.get_trials(deepcopy=False)
        ahead = sum(1 for other in trials if other.number < trial.number and other.state != TrialState.FAIL)
        if ahead >= self.target:
            trial.set_user_attr(SURPLUS, True)
            raise Surplus(f"the study already holds {self.target} trials")
        lr = trial.suggest_float("lr", self.min_lr, self.max_lr, log=True)
        options = {}
        if self.schedules is not None:
            options["schedule"] = trial.suggest_categorical("schedule", self.schedules)
            options["warmup_steps"] = trial.suggest_categorical("warmup_steps", self.warmup_steps)
        reporter = Reporter(trial)
        try:
            returned = self.objective(lr, reporter, **options)
        except optuna.TrialPruned:
            raise
        except Exception as error:
            trial.set_user_attr(ERROR, f"{type(error).__name__}: {error}")
            error.add_note(
                f"lrkit: raised by the objective in trial #{trial.number} at lr={lr:.4g}; the sweep stopped. "
                f"Run it again to resume: this trial runs again with the same LR (up to {RETRIES} times)"
            )
            raise
        finally:
            trial.set_user_attr(STEPS, reporter.steps)
        value = checks.one_number(returned)
        if value is None:
            raise TypeError(
                f"the objective must return the validation loss as a number, got {returned!r} "
                f"({type(returned).__name__}) at lr={lr:.4g}"
            )
        if not math.isfinite(value):
            trial.set_user_attr(DIVERGED, True)
            return math.inf  # a result (the worst), not a failure to retry
        return value


def run_worker(
    study: optuna.Study,
    runner: TrialRunner,
    *,
    reclaim: Callable[[optuna.Study], None],
    on_progress: Callable[[int], None] | None = None,
    deadline: float | None = None,
    check: Callable[[], None] | None = None,
    poll_seconds: float = 0.5,
) -> bool:
    """Run trials until ``runner.target`` trials of ``study`` are complete or pruned, or until
    ``deadline`` (a ``time.monotonic()`` value) has passed. True when the study holds its target.

    The deadline is checked before each trial, never during one (as Optuna's ``timeout``): a
    running trial finishes, or is pruned, as it would have, and no trial starts after it.
    ``check()``, called there too, raises to stop this worker (another of its sweep failed).
    """
    last = -1
    with quiet_optuna():
        reclaim(study)  # a crashed run's trials first, so a resume retries them before new ones
        while True:
            if check is not None:
                check()
            trials = study.get_trials(deepcopy=False)
            finished = sum(1 for trial in trials if trial.state in FINISHED)
            if on_progress is not None and finished != last:
                on_progress(finished)
                last = finished
            if finished >= runner.target:
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False  # trials running elsewhere finish under their own workers' budgets
            waiting = any(trial.state == TrialState.WAITING for trial in trials)
            live = sum(1 for trial in trials if trial.state != TrialState.FAIL)
            if waiting or live < runner.target:
                try:
                    study.optimize(runner, n_trials=1, catch=(Surplus,), gc_after_trial=False)
                except BaseException:  # Ctrl-C or an error: Optuna failed the trial
                    retry_stopped(study)  # so a resume runs it again
                    raise
            else:
                time.sleep(poll_seconds)  # the last trials run elsewhere; retry them if they die
                reclaim(study)


def reclaim_stale(study: optuna.Study) -> None:
    """Fail (and retry) database trials whose worker stopped sending heartbeats."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.fail_stale_trials(study)


def reclaim_dead(study: optuna.Study) -> None:
    """Fail (and retry) journal trials left running by a process of this machine that is gone."""
    host = socket.gethostname()
    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        owner = str(trial.user_attrs.get(WORKER, ""))
        if not owner.startswith(f"{host}:") or process_alive(owner):
            continue
        try:
            study.tell(trial.number, state=TrialState.FAIL)
        except RuntimeError:  # another worker failed it first, and retries it
            continue
        retry_trial(study, trial)


def retry_stopped(study: optuna.Study) -> None:
    """Queue the trials that a Ctrl-C or an error stopped in this process to run again, with the
    same parameters: this process's failed trials (not surplus) that have no retry yet.

    Optuna marks a stopped trial failed. Looking for every one without a retry, rather than the
    last one, queues none twice when a process runs several sweeps, or is stopped between trials.
    """
    me = process_id()
    trials = study.get_trials(deepcopy=False)
    retried = {number for trial in trials for number in trial.system_attrs.get("retry_history", ())}
    for trial in trials:
        stopped = trial.state == TrialState.FAIL and trial.user_attrs.get(WORKER) == me
        if stopped and not trial.user_attrs.get(SURPLUS) and trial.number not in retried:
            retry_trial(study, trial)


def errors_of(study: optuna.Study, owner: str) -> list[str]:
    """What the objective raised in the failed trials of process ``owner`` (a ``process_id``)."""
    return [
        f"trial #{trial.number} at lr={trial.params['lr']:.4g}: {trial.user_attrs[ERROR]}"
        for trial in study.get_trials(deepcopy=False, states=(TrialState.FAIL,))
        if trial.user_attrs.get(WORKER) == owner and ERROR in trial.user_attrs
    ]


def retry_trial(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
    """Queue ``trial`` to run again with its parameters, as Optuna's heartbeat retry does (at most
    ``RETRIES`` times), leaving its error behind: the retry has not raised it."""
    trial = copy.copy(trial)
    trial.user_attrs = {key: value for key, value in trial.user_attrs.items() if key != ERROR}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=RETRIES)(study, trial)


def process_id(pid: int | None = None) -> str:
    """``host:pid:start`` naming a process uniquely on this machine (start time guards pid reuse)."""
    pid = os.getpid() if pid is None else pid
    _, started = _proc_stat(pid)
    return f"{socket.gethostname()}:{pid}:{started}"


def process_alive(owner: str) -> bool:
    """Whether the process ``owner`` (from ``process_id``, on this machine) still runs."""
    _, pid_text, started = owner.rsplit(":", 2)
    pid = int(pid_text)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    state, now_started = _proc_stat(pid)
    return state != "Z" and now_started == started


def _proc_stat(pid: int) -> tuple[str, str]:
    """A process's state letter and start time from /proc (``("?", "")`` where there is none)."""
    try:
        with open(f"/proc/{pid}/stat") as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return "?", ""
    return fields[0], fields[19]


@contextlib.contextmanager
def quiet_optuna() -> Iterator[None]:
    """Silence Optuna's per-trial log lines (lrkit reports progress itself), then restore them."""
    previous = optuna.logging.get_verbosity()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    try:
        yield
    finally:
        optuna.logging.set_verbosity(previous)
