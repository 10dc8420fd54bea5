"""Runs a study: Ray Tune schedules the trials (ASHA on validation top-1), each trial is a
Tune function (`raysweep.engine.trainable`) that fits a Ray Train `TorchTrainer` or trains
inline, and a Tune callback (`raysweep.engine.record_writer`) keeps one record per trial.

    study → TrialSpecs → Tuner(run_trial, ASHA) → worker loop → records/

A grid study is one Tuner over every trial without a finished record. A search study is
one Tuner per (arm, seed): its samples compete only with each other under ASHA, and a
re-run counts the samples already finished (TPE is told their results). ASHA runs per
setting and epoch budget, its rungs seeded from the run's records (`raysweep.engine.rungs`), so
a trial a re-run adds or resumes is judged against the trials that ran before it.
"""
from __future__ import annotations

import contextlib
import logging
import os
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import ray
import ray.tune
from ray.tune.schedulers import FIFOScheduler

from raysweep.datasets import readers as datasets
from raysweep.observe import metrics
from raysweep.engine.members import ArrayKeeper, grid_order, plan_arrays
from raysweep.store import records as rec
from raysweep.engine.cluster import allow_pending_trials, find_autoscaler
from raysweep.errors import StudyError
from raysweep.core.planning import Autoscaler, plan_trials
from raysweep.core.precision import cluster_gpus, resolve_auto, resolve_here
from raysweep.store.provenance import differences, write_provenance
from raysweep.store.storage import RemotePath, run_location
from raysweep.observe.progress import Progress
from raysweep.engine.record_writer import Observer, RecordWriter
from raysweep.decide.seeding import seeds_wanted
from raysweep.engine.rungs import BudgetASHA, SeedAwareASHA
from raysweep.study.parse import Study, read_study_text, study_from_text
from raysweep.observe.tensorboard import TensorBoardWriter
from raysweep.engine.trainable import TrialContext, run_trial, safe_name
from raysweep.core.trial import TrialRecord, TrialSpec

METRIC = "val_top1"   # every decision (ASHA, search) is on the validation split


class Interrupted(Exception):
    """The study was stopped (Ctrl-C) before every trial ran: running trials are recorded
    as `interrupted` and resume from their last checkpoint."""


class NotStarted(Exception):
    """`confirm` declined the study's plan: no trial ran, nothing was written to the run."""


def run_study(study: Study, storage: str, name: str | None = None, resume: bool = False,
              timings: dict | None = None, inline: bool = False,
              progress: Progress | None = None,
              trial_function: Callable = run_trial,
              confirm: Callable[[list, dict, int], bool] | None = None) -> Path | RemotePath:
    """Run every trial of `study` that has no finished record under `storage/name`.

    `storage` is a local folder or a URI (s3://…): on a multi-node cluster every node
    writes checkpoints there, so it must be storage they all reach.
    `inline` (what `--local` asks for) runs one-worker trials inside their Tune function
    instead of a Train worker group; it applies only with local storage.
    `progress` (a live display or plain lines, `raysweep.observe.progress`) sees every record
    written; each trial also gets TensorBoard files and Ray metrics.
    `trial_function(config, context)` is every trial's Tune function: `run_trial`, or in
    `benchmarks/bench_engine_scale.py` a stand-in that reports the same results without
    training, so the driver's own cost can be measured.
    `confirm(trials, resources, concurrent)`, called with the plan before any trial
    starts (`raysweep run` states the cost and may ask), stops the run with `NotStarted`
    when it returns False.
    Ray must already be initialised (see `raysweep.engine.cluster.connect`)."""
    timings = timings if timings is not None else {}
    run_dir = run_location(storage, name or study.name)
    if resume and not (run_dir / rec.RECORDS_DIR).is_dir():
        raise StudyError(f"--resume: no run named {run_dir.name!r} under {run_dir.parent}")
    rec.check_writable(run_dir)
    rec.refuse_other_versions(run_dir)
    # On an autoscaling cluster, trials are planned on what its node types can grow into,
    # and trials that do not fit yet wait as placement groups: that is the demand the
    # autoscaler adds nodes for.
    autoscaler = find_autoscaler()
    resolve_precision(study, autoscaler)
    begin = time.perf_counter()
    timings.update(trials_run=0, rounds=0)
    asked = False   # `confirm` is asked before the first round that has trials to run
    while True:
        asked |= _round(study, run_dir, timings, inline, progress, trial_function,
                        None if asked else confirm, autoscaler)
        timings["rounds"] += 1
        if not _add_seeds(study, run_dir):
            break
    timings["tune_seconds"] = time.perf_counter() - begin
    return run_dir


def _add_seeds(study: Study, run_dir) -> bool:
    """Adaptive seeds (`seeds: {min, max, detect}`): after a round, the seeds each arm
    needs now that its pilot seeds are recorded (`raysweep.decide.seeding`); True when
    that asks for trials the study did not hold yet (another round runs them)."""
    if study.seed_plan is None:
        return False
    records = rec.read_records(run_dir)
    before = {s.key for s in study.trials()}
    study.seeds_wanted = seeds_wanted(records, study.seed_plan)
    # A re-run finds the later looks' seeds recorded: only unfinished ones need a round.
    added = {s.key for s in study.trials()} - before - {r.key for r in records if r.finished}
    if added:
        print(f"raysweep: adaptive seeds: {len(added)} more trial(s) for the variants still "
              f"open and their baselines (up to {max(study.seeds_wanted.values())} seeds)",
              flush=True)
    return bool(added)


def _round(study: Study, run_dir, timings: dict, inline: bool, progress: Progress | None,
           trial_function: Callable, confirm, autoscaler) -> bool:
    """Every trial of `study` without a finished record, in one Tuner (a grid) or one per
    (arm, seed) (a search); True when there were any (and `confirm`, if given, said yes)."""
    specs = study.trials()
    datasets.check_data(specs)
    records = _label_finished(run_dir, specs)
    todo = specs if study.search else [s for s in specs if not _finished(records, s.key)]
    resources, concurrent = plan_trials(study.resources, todo or specs, ray.cluster_resources(),
                                        alive_nodes(), autoscaler)
    if autoscaler:
        allow_pending_trials(len(todo) * study.num_samples)
    inline = inline and study.resources.workers_per_trial == 1 and isinstance(run_dir, Path)
    arrays = {} if study.search else plan_arrays(
        todo, resources, study.resources.fuse, study.resources.fuse_members, str(run_dir),
        by_arm=study.asha.by_arm)
    # Trials at once, an array's members side by side (as `_tune` counts them): the
    # lanes of the ETA, live and in `raysweep status`.
    lanes = concurrent * max((len(a.members) for a in arrays.values()), default=1)
    if confirm and todo and not confirm(todo, resources, concurrent):
        raise NotStarted(run_dir.name)
    write_provenance(run_dir, study, lanes=lanes, same_sitting=bool(timings["rounds"]))
    todo = grid_order(todo, arrays)
    context = TrialContext({s.key: s for s in specs}, resources, str(run_dir), inline,
                           study.resources.max_failures, arrays)
    timings.update(runner="inline" if inline else "train-workers",
                   max_concurrent=concurrent, fused_arrays=len(
                       {a.name for a in arrays.values()}),
                   gpu_shares=sorted({r.gpus_per_worker for r in resources.values()}))
    timings["trials_total"] = study.total_trials(specs)   # a search's samples, not its arms
    board, exporter = TensorBoardWriter(run_dir), metrics.Exporter()
    observers = [board.observe, exporter.observe]
    if progress:
        progress.preload(r for r in records if r.key in context.specs or r.sampled_from)
        progress.concurrency = lanes
        progress.total = max(progress.total, timings["trials_total"])
        observers.insert(0, progress.observe)
    try:
        if not study.search:
            if todo:
                _tune(study, context, run_dir,
                      {"trial": ray.tune.grid_search([s.key for s in todo])}, 1, concurrent,
                      None, observers, [r for r in records if r.sampled_from is None],
                      trial_function)
            timings["trials_run"] += len(todo)
            ended = {r.key for r in rec.read_records(run_dir) if r.finished or r.status == "errored"}
            if any(s.key not in ended for s in todo):
                raise Interrupted  # stopped between trials: some never started
        else:
            for base in specs:
                timings["trials_run"] += _search(study, context, run_dir, base, records,
                                                 concurrent, observers, trial_function)
    finally:
        board.close()
        exporter.close()
    return bool(todo)


def resolve_precision(study: Study, autoscaler: Autoscaler | None = None) -> None:
    """Set what `amp: auto` means for the study's trials from where they will run: the
    connected cluster's GPUs (alive nodes and the node types its autoscaler may add), or
    none when the study asks for no GPU. Says what it chose when a trial asks for auto.
    A study whose `auto_amp` is already set (a --resume keeps the run's) is left as is."""
    if study.auto_amp is not None:
        return
    if study.resources.gpus_per_worker == 0:
        found = resolve_auto([], "resources.gpus_per_worker: 0")
    else:
        me = ray.get_runtime_context().get_node_id()
        alive = [n for n in ray.nodes() if n["Alive"]]
        here = next((n["Resources"] for n in alive if n["NodeID"] == me), None)
        extra = [t.resources for t in autoscaler.node_types if t.max_workers > 0] \
            if autoscaler else []
        found = resolve_auto(cluster_gpus([n["Resources"] for n in alive], here, extra),
                             "the cluster")
    study.auto_amp = found.amp
    if study.asks_auto_amp():
        print(f"raysweep: {found.why}", flush=True)


def resume_study(run_dir, overrides: list[str], cli: dict, groups: list[str] | None) -> Study:
    """The study a run was started with (its study.yaml: overrides included), with this
    command line's values on top. A command line that would change the identity of a
    trial the run has started (finished, or interrupted with epochs to resume from) is
    refused, naming what differs: that would be another experiment."""
    stored = run_dir / "study.yaml"
    if not stored.is_file():
        raise StudyError(f"--resume: no run named {run_dir.name!r} under {run_dir.parent}")
    text = read_study_text(stored)
    _require_redacted_values(text, str(stored), overrides, cli)
    before = study_from_text(text, str(stored))
    study = study_from_text(text, str(stored), overrides, cli, groups)
    selected = set(groups or []) or None
    started = [r for r in rec.read_records(run_dir) if (r.finished or r.history)
               and (selected is None or {x.group for x in r.labels} & selected)]
    # `amp: auto` keeps the precision the run's trials were started in (the cluster may
    # be out of reach here); the first resolution under which no started trial is lost.
    candidates = dict.fromkeys([resolve_here().amp, "off", "bf16", "fp16"]) \
        if study.asks_auto_amp() and started else [None]
    for amp in candidates:
        study.auto_amp = amp
        keys = {s.key for s in study.trials()}
        lost = [r for r in started if r.key not in keys and r.sampled_from not in keys]
        if not lost:
            break
    if lost:
        study.auto_amp = None
        changes = "; ".join(differences(before.raw, study.raw))
        what = (f"this command line changes {changes}, which changes" if changes else
                "the run's study.yaml no longer describes")
        raise StudyError(f"--resume: {what} the identity of {len(lost)} trial(s) run "
                         f"{run_dir.name!r} has started; drop it, or run under a new --name")
    if study.auto_amp is not None:
        print(f"raysweep: amp: auto → {study.auto_amp}: the precision run {run_dir.name!r} "
              f"started its trials in", flush=True)
    return study


def _require_redacted_values(text: str, where: str, overrides: list[str], cli: dict) -> None:
    """A study.yaml stores credentials masked (`s3://***@bucket/data`): resuming from the
    masked value would read another path, so each masked value must be given again."""
    from raysweep.store.redact import MASK
    from raysweep.study.parse import _read_yaml

    def masked(value, where=""):
        if isinstance(value, dict):
            return [m for k, v in value.items() for m in masked(v, f"{where}.{k}".lstrip("."))]
        if isinstance(value, list):
            return [m for i, v in enumerate(value) for m in masked(v, f"{where}[{i}]")]
        return [(where, value)] if isinstance(value, str) and MASK in value else []

    given = {k if "." in k else f"defaults.{k}" for k in (o.split("=", 1)[0] for o in overrides)}
    given |= {k for k, v in (cli or {}).items() if v is not None}
    missing = [(k, v) for k, v in masked(_read_yaml(text, where)) if k not in given]
    if missing:
        key, value = missing[0]
        flag = {"defaults.data_dir": " (or --data-dir)"}.get(key, "")
        raise StudyError(f"--resume: {where} stores {key}={value!r} with a credential masked; "
                         f"give the value again: --set {key}=VALUE{flag}"
                         + (f" (and {len(missing) - 1} more masked value(s))"
                            if len(missing) > 1 else ""))


def _search(study: Study, context: TrialContext, run_dir, base: TrialSpec,
            records: list[TrialRecord], concurrent: int, observers,
            trial_function: Callable = run_trial) -> int:
    """The missing samples of one (arm, seed): finished samples count towards
    `num_samples`, and TPE starts from their results."""
    done = [r for r in records if r.sampled_from == base.key and r.finished and r.history]
    missing = study.num_samples - len(done)
    if missing <= 0:
        return 0
    space = {k: _sampler(s) for k, s in study.searched_keys(base.train.recipe).items()}
    _tune(study, context, run_dir, {"trial": base.key, "search": space}, missing,
          concurrent, searcher_for(study, base, done), observers,
          [r for r in records if r.sampled_from == base.key], trial_function)
    return missing


def searcher_for(study: Study, base: TrialSpec, done: list[TrialRecord]):
    """None (Tune's random sampling) or Optuna's TPE, told the finished samples' last
    validation top-1 (a sample ASHA stopped counts with the epoch it reached)."""
    if study.search_algorithm != "tpe":
        return None
    import optuna
    from ray.tune.search.optuna import OptunaSearch

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    # Tune flattens the search space: `{"search": {"lr": ...}}` is the parameter "search/lr".
    return OptunaSearch(
        # A new seed per re-run: the same one would draw the finished samples again.
        metric=METRIC, mode="max", seed=base.seed * 1_000 + len(done),
        points_to_evaluate=[{f"search/{k}": v for k, v in r.searched.items()}
                            for r in done] or None,
        evaluated_rewards=[r.history[-1].val_top1 for r in done] or None)


def _tune(study: Study, context: TrialContext, run_dir, param_space: dict, num_samples: int,
          concurrent: int, searcher, observers: list[Observer],
          recorded: list[TrialRecord], trial_function: Callable = run_trial) -> None:
    """One Tuner; `recorded`: the records its trials compete with at ASHA's rungs."""
    _quiet_tune()
    writer = RecordWriter(run_dir, context.spec, observers)
    keeper = ArrayKeeper(context.arrays, context.specs, str(run_dir))
    if context.arrays:
        # An array's members hold only tokens and run together: as many trials at once
        # as the largest arrays need, `concurrent` arrays (trials not fused still wait
        # for their own resources).
        concurrent *= max(len(a.members) for a in context.arrays.values())
    elif study.asha.by_arm:
        # Seed-aware ASHA pauses a seed at a rung until its siblings get there, and Tune
        # counts paused trials as running: room for every seed of the arms in flight
        # (resources, not this count, still decide how many train at once).
        concurrent *= max(Counter(s.arm_key for s in context.specs.values()).values())
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(_named_trainable(context, trial_function), context.pg_factory),
        param_space=param_space,
        tune_config=ray.tune.TuneConfig(
            scheduler=_scheduler(study, context, recorded), num_samples=num_samples, search_alg=searcher,
            max_concurrent_trials=concurrent,
            # Inline: the next trial starts in the last one's process, which already holds
            # torch and the model zoo (seconds per trial); a fused array's member, in the
            # process of a member of an earlier array. Not for Train trials: a reused
            # Tune process that ASHA stopped can keep its Train run's workers, and the next
            # trial then waits for their resources forever.
            reuse_actors=context.inline,
            trial_name_creator=lambda t: _trial_name(context, t),
            trial_dirname_creator=lambda t: _trial_name(context, t)),
        run_config=ray.tune.RunConfig(
            name="tune", storage_path=str(run_dir), verbose=0, callbacks=[writer, keeper],
            # Inline trials are retried by Tune (from their latest checkpoint), Train
            # runs by Train (their Tune function only fails once Train has given up).
            failure_config=ray.tune.FailureConfig(
                max_failures=context.max_failures if context.inline else 0)),
    )
    try:
        with ray_log(run_dir), _no_secret_env_vars():
            tuner.fit()
    except KeyboardInterrupt:  # a second Ctrl-C while Tune was stopping
        writer.interrupt_open()
        raise Interrupted from None
    finally:
        keeper.close()
    if writer.open:  # on Ctrl-C Tune ends its loop without ending the running trials
        writer.interrupt_open()
        raise Interrupted


LOG_FILE = "raysweep.log"


def log_path(run_dir) -> Path:
    """The run's log: Tune's messages and tracebacks (one per failed attempt of a trial).
    In the run folder; for a run on an object store, in the system's temp folder."""
    if isinstance(run_dir, Path):
        return run_dir / LOG_FILE
    import tempfile

    return Path(tempfile.gettempdir()) / f"raysweep-{run_dir.name}.log"


@contextlib.contextmanager
def ray_log(run_dir, name: str = "ray.tune"):
    """What logger `name` logs goes to the run's log, not the terminal, until the block
    ends (its own handlers are set aside meanwhile). "ray.tune": Tune logs a full
    traceback for each failed attempt of a trial (three for a trial retried twice), and
    the terminal gets one line per failed trial (progress) and a summary (`raysweep run`).
    "ray" (`raysweep run` without --verbose): Ray's own warnings, from start-up on."""
    from raysweep.store.redact import redact_text

    class RunLogHandler(logging.FileHandler):
        def format(self, record):
            # In the handler, not its formatter: `ray.init` replaces the formatters of
            # the "ray" logger's handlers with its own.
            return redact_text(super().format(record))

        def handleError(self, record):
            pass  # a full disk: no traceback about the log on the terminal either

    path = log_path(run_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    handler = RunLogHandler(path, encoding="utf-8", delay=True)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logger = logging.getLogger(name)
    saved = logger.handlers[:], logger.propagate
    logger.handlers, logger.propagate = [handler], False
    try:
        yield path
    finally:
        logger.handlers, logger.propagate = saved
        handler.close()


@contextlib.contextmanager
def _no_secret_env_vars():
    """Tune hands AWS_SECRET_ACCESS_KEY and its kin from the driver's environment to every
    trial actor as its runtime_env's env_vars, and Ray's runtime-env agent logs runtime
    envs in clear text (runtime_env_agent.log). A local Ray's workers inherit the driver's
    environment anyway; on a cluster, nodes get credentials from their own environment or
    role (cluster.yaml), never through Ray's logs."""
    from ray.tune.execution import class_cache
    from raysweep.store.redact import secret_name

    saved = class_cache.ENV_VARS_TO_PROPAGATE
    class_cache.ENV_VARS_TO_PROPAGATE = {v for v in saved if not secret_name(v)}
    try:
        yield
    finally:
        class_cache.ENV_VARS_TO_PROPAGATE = saved


def _named_trainable(context: TrialContext, trial_function: Callable = run_trial):
    """The Tune function as a trainable class whose actors name their trial: the
    dashboard's Actors page shows an actor's repr (recorded once, when the actor starts;
    an inline process that Tune reuses keeps its first trial's name)."""
    from ray.tune.trainable.function_trainable import wrap_function

    base = wrap_function(ray.tune.with_parameters(trial_function, context=context))

    class RaysweepTrial(base):
        def __repr__(self):
            return f"raysweep trial {self.trial_name}"

    return RaysweepTrial


def _quiet_tune() -> None:
    # raysweep writes its own TensorBoard files (`raysweep.observe.tensorboard`); Tune's default
    # loggers would log every reported number, JSON strings and process ids included ...
    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"
    # ... so Tune's result grid finds no result files at the end and says so: the records
    # are the results.
    logging.getLogger("ray.tune.analysis.experiment_analysis").setLevel(logging.ERROR)
    # Tune's interrupt messages point at Tuner.restore; raysweep prints its own, and its
    # own progress (`raysweep.observe.progress`) instead of Tune's experiment tables.
    logging.getLogger("ray.tune.tune").setLevel(logging.ERROR)
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"


def _trial_name(context: TrialContext, trial) -> str:
    return f"{safe_name(context.spec(trial.config).label)}-{trial.trial_id}"


def _scheduler(study: Study, context: TrialContext, recorded: list[TrialRecord]):
    """FIFO, or ASHA per setting and epoch budget with the recorded results already on
    its rungs (`raysweep.engine.rungs`)."""
    if not study.asha.enabled:
        return FIFOScheduler()
    if study.asha.by_arm:
        return SeedAwareASHA(METRIC, study.asha.grace_period, study.asha.reduction_factor,
                             context.spec, recorded, lockstep=frozenset(context.arrays))
    return BudgetASHA(METRIC, study.asha.grace_period, study.asha.reduction_factor,
                      context.spec, recorded)


def _sampler(spec: dict):
    kind, args = next(iter(spec.items()))
    return {"loguniform": lambda: ray.tune.loguniform(*args),
            "uniform": lambda: ray.tune.uniform(*args),
            "choice": lambda: ray.tune.choice(args)}[kind]()


def _finished(records: list[TrialRecord], key: str) -> bool:
    return any(r.key == key and r.finished for r in records)


def _label_finished(run_dir, specs: list[TrialSpec]) -> list[TrialRecord]:
    """The run's records, with this study's labels added to the finished trials it shares
    (a group added later whose baseline already ran names that baseline too)."""
    records = rec.read_records(run_dir) if (run_dir / rec.RECORDS_DIR).is_dir() else []
    by_key = {s.key: s for s in specs}
    for record in records:
        spec = by_key.get(record.key)
        if spec and record.finished and any([record.add_label(x) for x in spec.labels]):
            rec.write_record(run_dir, record)
    return records


def alive_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n["Alive"]]
