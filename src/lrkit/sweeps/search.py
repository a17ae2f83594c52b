"""``lrkit.sweep``: search the learning rate on a log scale with Optuna, pruning on reported losses.

The study lives in a storage (``lrkit.sweeps.storage``) that any number of workers join by name;
running the same sweep again resumes it, counting the trials already finished toward ``n_trials``.
"""

from __future__ import annotations

import contextlib
import inspect
import math
import multiprocessing
import pickle
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import optuna
from optuna.trial import TrialState

from lrkit import checks
from lrkit.sweeps.objective import SCHEDULE_KINDS, Objective, TaskObjective
from lrkit.sweeps.result import SweepResult, TrialRow
from lrkit.sweeps.storage import StorageSpec, check_workers, open_storage, parse_storage
from lrkit.sweeps.worker import (
    DIVERGED,
    STEPS,
    SURPLUS,
    TrialRunner,
    errors_of,
    process_id,
    quiet_optuna,
    reclaim_dead,
    reclaim_stale,
    run_worker,
)

SAMPLERS = ("tpe", "random", "grid")
PRUNERS = ("hyperband", "successive_halving", "median", None)
DEFAULT_STUDY = "lrkit-sweep"
STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
    TrialState.FAIL: "failed",
}


class WorkerError(RuntimeError):
    """A helper process of this sweep stopped on an error (its traceback went to stderr)."""


@dataclass(frozen=True)
class Plan:
    """Everything a worker process needs to join the sweep (picklable)."""

    objective: Objective
    min_lr: float
    max_lr: float
    n_trials: int
    sampler: str
    pruner: str | None
    spec: StorageSpec
    study: str
    seed: int
    prior_lr: float | None
    heartbeat_seconds: int
    full_steps: int | None
    report_every: int | None
    schedules: tuple[str, ...] | None = None
    warmup_steps: tuple[int, ...] = (0,)
    timeout: float | None = None  # seconds; not a setting of the study, so each run has its own

    def settings(self) -> dict[str, object]:
        """What a study is created with and must be resumed with."""
        made: dict[str, object] = {"min_lr": self.min_lr, "max_lr": self.max_lr, "sampler": self.sampler}
        if self.schedules is not None:
            made.update(schedules=list(self.schedules), warmup_steps=list(self.warmup_steps))
        return made


def sweep(
    objective: Objective | str,
    *,
    min_lr: float | None = None,
    max_lr: float | None = None,
    n_trials: int = 20,
    sampler: str = "tpe",
    pruner: str | None = "hyperband",
    storage: str | Path | None = None,
    study: str | None = None,
    seed: int = 0,
    workers: int = 1,
    prior_lr: float | None = None,
    heartbeat_seconds: int = 60,
    schedules: Sequence[str] | None = None,
    warmup_steps: Sequence[int] | None = None,
    timeout: float | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Search the LR in ``[min_lr, max_lr]`` (log scale) until ``n_trials`` trials are finished,
    or until ``timeout`` seconds have passed.

    ``objective`` is ``train(lr, report) -> val_loss`` or a built-in task's name. ``storage`` is
    ``None`` (memory, this process), a journal file path (processes on one machine) or a
    database URL (machines); ``workers`` runs that many processes here. ``progress(finished,
    n_trials)`` is called as trials finish. The task's LR (or ``prior_lr``) is tried first.
    ``study`` defaults to the task's name or ``module:function`` (``default_study``).
    ``schedules`` (kinds from ``SCHEDULE_KINDS``) and ``warmup_steps`` (lengths) are searched with
    the LR and passed to the objective as keywords.

    ``timeout`` is a time budget, as Optuna's: no trial starts after it, and the trials running
    then finish (or are pruned) as they would have. Every local worker has the same deadline;
    ``result.timed_out`` says the budget ended the sweep before it held ``n_trials`` trials.
    """
    plan = make_plan(
        objective, min_lr=min_lr, max_lr=max_lr, n_trials=n_trials, sampler=sampler, pruner=pruner,
        storage=storage, study=study, seed=seed, workers=workers, prior_lr=prior_lr,
        heartbeat_seconds=heartbeat_seconds, schedules=schedules, warmup_steps=warmup_steps, timeout=timeout,
    )
    return run_plan(plan, workers=workers, progress=progress)


def default_study(objective: Objective) -> str:
    """The study a sweep joins when none is named: the task's name, or ``module:function`` as
    ``lrkit sweep --entry`` names it, so the API and the CLI resume (and bracket) the same study."""
    if isinstance(objective, TaskObjective):
        return objective.task
    module, name = getattr(objective, "__module__", None), getattr(objective, "__qualname__", "")
    if not module or not name.isidentifier():  # lambdas, local functions, partials, instances
        return DEFAULT_STUDY
    if module == "__main__":  # name it as --entry would: ``python -m`` by its module, a script by its file
        main = sys.modules["__main__"]
        spec, script = getattr(main, "__spec__", None), getattr(main, "__file__", None)
        module = spec.name if spec is not None else Path(script).stem if script else module
    return f"{module}:{name}"


def run_plan(
    plan: Plan, *, workers: int = 1, progress: Callable[[int, int], None] | None = None
) -> SweepResult:
    """Run a validated plan with ``workers`` processes on this machine (this one included).

    The time budget starts now, and the helpers share its deadline: ``time.monotonic()`` reads one
    clock for every process of a machine (CLOCK_MONOTONIC on Linux), so it means the same there.
    An error in a helper stops the sweep as one here does: this process raises ``WorkerError``
    before its next trial.
    """
    deadline = None if plan.timeout is None else time.monotonic() + plan.timeout
    optuna_study = open_study(plan)
    on_progress = None if progress is None else (lambda finished: progress(finished, plan.n_trials))
    helpers = _start_helpers(plan, workers - 1, deadline)
    owners = {helper: process_id(helper.pid) for helper in helpers}
    try:
        done = run_worker(
            optuna_study,
            _runner(plan),
            reclaim=_reclaimer(plan.spec),
            on_progress=on_progress,
            deadline=deadline,
            check=lambda: _check_helpers(owners, optuna_study),
        )
    except BaseException:
        for helper in helpers:  # an error or Ctrl-C here stops the whole local sweep
            helper.terminate()
        raise
    finally:
        for helper in helpers:
            helper.join()  # one stopped by the deadline has first finished its running trial
    return collect(optuna_study, plan, timed_out=not done)


def make_plan(
    objective: Objective | str,
    *,
    min_lr: float | None,
    max_lr: float | None,
    n_trials: int,
    sampler: str,
    pruner: str | None,
    storage: str | Path | None,
    study: str | None,
    seed: int,
    workers: int,
    prior_lr: float | None,
    heartbeat_seconds: int,
    schedules: Sequence[str] | None = None,
    warmup_steps: Sequence[int] | None = None,
    timeout: float | None = None,
) -> Plan:
    """Validate every argument of ``sweep`` and fill in the task's defaults."""
    seed = checks.integer("seed", seed)
    if isinstance(objective, str):
        objective = TaskObjective(objective, seed=seed)
    if not callable(objective):
        raise TypeError(f"objective must be a callable train(lr, report) -> val_loss or a task name, got {objective!r}")
    task = objective if isinstance(objective, TaskObjective) else None
    if (min_lr is None or max_lr is None) and task is None:
        raise ValueError("min_lr and max_lr are required unless the objective is a built-in task")
    bounds = task.bounds if task is not None else (min_lr, max_lr)
    min_lr = checks.positive("min_lr", bounds[0] if min_lr is None else min_lr)
    max_lr = checks.positive("max_lr", bounds[1] if max_lr is None else max_lr)
    checks.ordered("min_lr", min_lr, "max_lr", max_lr)
    n_trials = checks.integer("n_trials", n_trials, minimum=1)
    checks.one_of("sampler", sampler, SAMPLERS)
    pruner = None if pruner == "none" else pruner  # the CLI's word for no pruning works here too
    checks.one_of("pruner", pruner, PRUNERS)
    workers = checks.integer("workers", workers, minimum=1)
    heartbeat_seconds = checks.integer("heartbeat_seconds", heartbeat_seconds, minimum=1)
    if prior_lr is not None:  # asked for, so tried: a task's own LR outside the range is skipped
        prior_lr = checks.in_range("prior_lr", prior_lr, min_lr, max_lr)
    elif task is not None:
        prior_lr = task.prior_lr
    if study is not None and not isinstance(study, str):
        raise TypeError(f"study must be a name (a str), got {study!r} ({type(study).__name__})")
    if study is not None and not study.strip():
        raise ValueError(f"study must be a non-empty name, got {study!r}")
    if schedules is not None:
        kinds = _listed("schedules", schedules)
        schedules = tuple(checks.one_of("schedules", kind, SCHEDULE_KINDS) for kind in kinds)
    if warmup_steps is not None:
        if schedules is None:
            raise ValueError("warmup_steps needs schedules (the kinds to warm up into), got schedules=None")
        lengths = _listed("warmup_steps", warmup_steps)
        warmup_steps = tuple(checks.integer("warmup_steps", steps, minimum=0) for steps in lengths)
        too_long = [steps for steps in warmup_steps if task is not None and steps >= task.steps]
        if too_long:  # found now, not in whichever trial first draws it (the study keeps its settings)
            raise ValueError(f"warmup_steps must be < {task.steps}, the steps of task {task.task!r}, got {too_long[0]}")
    if timeout is not None:
        if not checks.is_real(timeout):
            raise TypeError(
                f"timeout must be a number of seconds (or None: no time budget), got {timeout!r} "
                f"({type(timeout).__name__})"
            )
        timeout = checks.positive("timeout", timeout)
    spec = parse_storage(storage)
    check_workers(spec, workers)
    _require_callable_as(objective, schedules is not None)
    if workers > 1:
        _require_picklable(objective, workers)
    return Plan(
        objective=objective, min_lr=min_lr, max_lr=max_lr, n_trials=n_trials, sampler=sampler,
        pruner=pruner, spec=spec, study=study or default_study(objective), seed=seed, prior_lr=prior_lr,
        heartbeat_seconds=heartbeat_seconds,
        full_steps=task.steps if task is not None else None,
        report_every=task.report_every if task is not None else None,
        schedules=schedules, warmup_steps=warmup_steps or (0,), timeout=timeout,
    )


def _listed(name: str, values: object) -> tuple:
    """``values`` as a tuple: a non-empty collection of choices, never one string (whose letters
    would be taken for the choices)."""
    if isinstance(values, str | bytes) or not isinstance(values, Iterable):
        raise TypeError(
            f"{name} must be a list of values, got {values!r} ({type(values).__name__}); for one value write [{values!r}]"
        )
    listed = tuple(values)
    if not listed:
        raise ValueError(f"{name} must hold at least one value, got {values!r} (None: not searched)")
    return listed


def open_study(plan: Plan, *, create: bool = True) -> optuna.Study:
    """Create the plan's study (enqueuing the grid or the prior LR) or join the existing one."""
    storage = open_storage(plan.spec, heartbeat_seconds=plan.heartbeat_seconds)
    options = {"study_name": plan.study, "storage": storage, "sampler": _sampler(plan), "pruner": _pruner(plan)}
    if create:
        try:
            with quiet_optuna():
                study = optuna.create_study(direction="minimize", **options)
        except optuna.exceptions.DuplicatedStudyError:
            pass
        else:
            study.set_user_attr("lrkit", plan.settings())
            for lr in _first_lrs(plan):
                study.enqueue_trial({"lr": lr})
            return study
    study = optuna.load_study(**options)
    _check_resumable(study, plan)
    return study


def collect(study: optuna.Study, plan: Plan, *, timed_out: bool = False) -> SweepResult:
    """The study's trials as a ``SweepResult`` (surplus trials that never ran are left out).

    ``timed_out``: this run stopped at its deadline (it counts only if the study holds fewer
    than ``n_trials`` finished trials: a helper's last trial may have filled it since).
    """
    rows = []
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(SURPLUS) or "lr" not in trial.params:
            continue
        if trial.state == TrialState.COMPLETE:
            loss = float(trial.value)
        elif trial.intermediate_values:
            loss = float(trial.intermediate_values[max(trial.intermediate_values)])
        else:
            loss = math.nan
        steps = trial.user_attrs.get(STEPS)
        rows.append(
            TrialRow(
                number=trial.number,
                lr=float(trial.params["lr"]),
                state=STATES.get(trial.state, trial.state.name.lower()),
                val_loss=loss,
                steps=None if steps is None else int(steps),
                diverged=bool(trial.user_attrs.get(DIVERGED, False)),
                retry_of=trial.system_attrs.get("failed_trial"),
                schedule=trial.params.get("schedule"),
                warmup_steps=trial.params.get("warmup_steps"),
            )
        )
    full_steps = plan.full_steps
    if full_steps is None:
        complete = [row.steps for row in rows if row.state == "complete" and row.steps and not row.diverged]
        full_steps = max(complete, default=None)
    finished = sum(row.state in ("complete", "pruned") for row in rows)
    return SweepResult(
        study=plan.study, storage=plan.spec.shown, sampler=plan.sampler, pruner=plan.pruner,
        min_lr=plan.min_lr, max_lr=plan.max_lr, n_trials=plan.n_trials, trials=tuple(rows),
        full_steps=full_steps, timeout=plan.timeout, timed_out=timed_out and finished < plan.n_trials,
    )


def grid_lrs(min_lr: float, max_lr: float, count: int) -> list[float]:
    """``count`` LRs evenly spaced on a log scale from ``min_lr`` to ``max_lr`` inclusive."""
    if count == 1:
        return [math.sqrt(min_lr * max_lr)]
    return [float(lr) for lr in np.geomspace(min_lr, max_lr, count)]


class TrialSeeded(optuna.samplers.BaseSampler):
    """Builds the real sampler afresh for each trial, seeded by (seed, trial number).

    One worker replays exactly for a seed, and workers sharing a study never draw the same numbers.
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make, self._seed = make, seed
        self._inner = make(seed)

    def before_trial(self, study, trial) -> None:
        entropy = np.random.SeedSequence([self._seed, trial.number]).generate_state(1)[0]
        self._inner = self._make(int(entropy))
        self._inner.before_trial(study, trial)

    def infer_relative_search_space(self, study, trial):
        return self._inner.infer_relative_search_space(study, trial)

    def sample_relative(self, study, trial, search_space):
        return self._inner.sample_relative(study, trial, search_space)

    def sample_independent(self, study, trial, param_name, param_distribution):
        return self._inner.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(self, study, trial, state, values) -> None:
        self._inner.after_trial(study, trial, state, values)


def _sampler(plan: Plan) -> optuna.samplers.BaseSampler:
    if plan.sampler == "tpe":
        startup = min(10, max(3, plan.n_trials // 4))
        return TrialSeeded(lambda seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=startup), plan.seed)
    # the grid is enqueued at creation; random fills any trial beyond it
    return TrialSeeded(lambda seed: optuna.samplers.RandomSampler(seed=seed), plan.seed)


def _pruner(plan: Plan) -> optuna.pruners.BasePruner:
    first = plan.report_every
    if plan.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=first or 1, max_resource=plan.full_steps or "auto", reduction_factor=3
        )
    if plan.pruner == "successive_halving":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=first or "auto", reduction_factor=3)
    if plan.pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=first or 0)
    return optuna.pruners.NopPruner()


def _first_lrs(plan: Plan) -> list[float]:
    if plan.sampler == "grid":
        return grid_lrs(plan.min_lr, plan.max_lr, plan.n_trials)
    if plan.prior_lr is not None and plan.min_lr <= plan.prior_lr <= plan.max_lr:
        return [plan.prior_lr]
    return []


def _check_resumable(study: optuna.Study, plan: Plan) -> None:
    """Refuse to join a study that is not this plan's: one that maximizes or has several
    objectives (its sampler and pruner would work against the loss), one that other code made
    (its trials would count toward ``n_trials``), or one made with other settings."""
    where = f"study {plan.study!r} in {plan.spec.shown}"
    directions = [direction.name.lower() for direction in study.directions]
    if directions != ["minimize"]:
        made = f"to {directions[0]}" if len(directions) == 1 else f"with {len(directions)} objectives"
        raise ValueError(
            f"{where} was made {made}; a sweep minimizes one, the validation loss: choose another study name"
        )
    made = study.user_attrs.get("lrkit")
    if made is None:
        # lrkit records its settings before it queues any trial, so trials without them are another's
        if study.get_trials(deepcopy=False):
            raise ValueError(
                f"{where} was not made by an lrkit sweep (it holds trials but no lrkit settings): "
                "choose another study name"
            )
        return
    if made == plan.settings():
        return
    shown = ", ".join(f"{key}={value!r}" for key, value in made.items())
    asked = ", ".join(f"{key}={value!r}" for key, value in plan.settings().items())
    raise ValueError(
        f"{where} was made with {shown}; this run asks for {asked}: resume with the same settings or "
        "choose another study name"
    )


def _runner(plan: Plan) -> TrialRunner:
    return TrialRunner(plan.objective, plan.min_lr, plan.max_lr, plan.n_trials, plan.schedules, plan.warmup_steps)


def _reclaimer(spec: StorageSpec) -> Callable[[optuna.Study], None]:
    if spec.kind == "journal":
        return reclaim_dead
    if spec.kind in ("database", "sqlite"):
        return reclaim_stale
    return lambda study: None


def _require_callable_as(objective: Objective, searched: bool) -> None:
    """Refuse an objective that cannot take the call the trials make (``schedule=`` and
    ``warmup_steps=`` too when they are searched) before a study is made with it."""
    keywords = ("schedule", "warmup_steps") if searched else ()
    try:
        inspect.signature(objective).bind(1.0, None, **dict.fromkeys(keywords))
    except TypeError as error:
        call = ", ".join(["lr", "report", *(f"{keyword}=..." for keyword in keywords)])
        raise TypeError(f"objective must take the call the sweep makes, ({call}), got {objective!r}: {error}") from None
    except ValueError:  # no signature to read (some builtins): the call itself decides
        pass


def _require_picklable(objective: Objective, workers: int) -> None:
    try:
        pickle.dumps(objective)
    except (pickle.PicklingError, AttributeError, TypeError) as error:
        raise TypeError(
            f"objective must be picklable (a module-level function or a task name) to run in "
            f"workers={workers} processes, got {objective!r}: {error}"
        ) from None


def _check_helpers(owners: dict[multiprocessing.process.BaseProcess, str], study: optuna.Study) -> None:
    """Raise ``WorkerError`` when a helper's objective raised (its failed trial says so as soon as
    it is told, before the helper has exited), or the helper exited on another error (a positive
    exit code). One killed by a signal is not an error here: its trial is reclaimed and run
    again, as a crashed worker's is."""
    for helper, owner in owners.items():
        raised = "; ".join(errors_of(study, owner))
        if raised:
            why = f"the objective raised in {raised}"
        elif helper.exitcode is not None and helper.exitcode > 0:
            why = f"it exited with code {helper.exitcode}"
        else:
            continue
        raise WorkerError(
            f"worker process {helper.pid} of this sweep stopped: {why} (its traceback is above); "
            "fix that and run the sweep again to resume: a trial the error stopped runs again, with the same LR"
        )


def _start_helpers(
    plan: Plan, count: int, deadline: float | None
) -> list[multiprocessing.process.BaseProcess]:
    context = multiprocessing.get_context("spawn")
    helpers = [context.Process(target=join_sweep, args=(plan, deadline), daemon=True) for _ in range(count)]
    for helper in helpers:
        helper.start()
    return helpers


def join_sweep(plan: Plan, deadline: float | None = None) -> None:
    """A helper worker process: join the plan's study and work until it is done or ``deadline``
    (the starting process's, a ``time.monotonic()`` value) has passed."""
    study = open_study(plan, create=False)
    # Ctrl-C reaches every process of the terminal: the starting one says so, and run_worker has
    # queued the trial it stopped here to run again. An error propagates, as a non-zero exit code
    # that (with the error on its failed trial) stops the starting process too
    with contextlib.suppress(KeyboardInterrupt):
        run_worker(study, _runner(plan), reclaim=_reclaimer(plan.spec), deadline=deadline)

