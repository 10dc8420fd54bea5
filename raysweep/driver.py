"""Runs a study: Ray Tune schedules the trials (ASHA), each trial is a Tune function that
builds and fits a Ray Train `TorchTrainer`, and a Tune callback keeps one record per trial.

    study → trials → Tuner(run_trial, ASHA) → TorchTrainer per trial → records/
"""
from __future__ import annotations

import functools
import json
import os
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import ray
import ray.train
import ray.tune
from ray.train.torch import TorchTrainer
from ray.tune.integration.ray_train import TuneReportCallback
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler

from models import count_flops, create_model, get_entry
from raysweep import planning  # autoscale:
from raysweep import data
from raysweep import records as rec
from raysweep.cluster import allow_pending_trials, find_autoscaler  # autoscale:
from raysweep.errors import ResourceError  # autoscale:
from raysweep.provenance import write_provenance
from raysweep.study import Study, StudyError, trial_key
from raysweep.worker import CHECKPOINT_FILE, train_inline, train_loop_per_worker

# A trial's Tune function only waits on its Train run: it holds no CPU (Tune needs a
# non-empty bundle, so it holds a token 1 MiB of logical memory instead).
# autoscale: and a token of the head's own resource, so it runs on the head (Train puts
# the trial's controller beside it): a lost worker node then takes only Train workers,
# which the controller restarts elsewhere from the last checkpoint.
DRIVER_RESOURCES = {"CPU": 0, "memory": 2**20, planning.HEAD: 1e-4}
METRIC = "top1"          # validation top-1, percent
FINISHED = ("completed", "stopped", "diverged")


@dataclass(frozen=True)
class Resources:
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    max_concurrent: int

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def per_worker(self) -> dict[str, float]:
        out = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            out["GPU"] = self.gpus_per_worker
        return out


def plan_resources(study: Study, cluster: dict[str, float],
                   nodes: list[dict[str, float]] | None = None,
                   gpu_share: float | None = None,
                   autoscaler: planning.Autoscaler | None = None) -> Resources:
    """Size workers and trial concurrency from what the cluster has (and, with an
    autoscaler, what it can grow into): `raysweep.planning.plan_resources`."""
    # autoscale: the rules (node types included) live in raysweep.planning; this wrapper
    # keeps this driver's types and error class.
    try:
        plan = planning.plan_resources(study.resources, cluster, nodes, gpu_share, autoscaler)
    except ResourceError as exc:
        raise StudyError(str(exc)) from None
    r = plan.resources
    return Resources(r.workers, r.cpus_per_worker, r.gpus_per_worker, plan.max_concurrent)


# Forward FLOPs per 32×32 image under which one trial leaves most of a modern GPU idle
# (its step is bound by kernel launches, not arithmetic): `gpus_per_worker: auto` then
# packs such trials several to a GPU: resnet_20/32 (0.08/0.14 GFLOPs) get a quarter,
# resnet_56 and convnext_tiny (0.25/0.18) a half, resnet18 and coatnet_cifar_opt (1.1) a
# whole GPU (`raysweep list models` prints each model's FLOPs). benchmarks/README.md has
# the packing measurement behind the quarter.
AUTO_GPU_SHARES = ((0.15e9, 0.25), (0.6e9, 0.5))


def auto_gpu_share(flops: int) -> float:
    return next((share for limit, share in AUTO_GPU_SHARES if flops < limit), 1.0)


@functools.lru_cache(maxsize=None)
def _model_flops(model: str, options_json: str) -> int:
    return count_flops(create_model(model, **json.loads(options_json)))


def plan_trials(study: Study, trials: list[dict], cluster: dict[str, float],
                nodes: list[dict[str, float]] | None = None,
                autoscaler: planning.Autoscaler | None = None) -> int:  # autoscale:
    """Give each trial (in place) the resources its workers ask for; returns how many
    trials may run at once. With `gpus_per_worker: auto` on a GPU cluster, a one-worker
    trial of a small model gets a fraction of a GPU (`auto_gpu_share`); DDP trials keep
    whole GPUs (two ranks of one trial on one GPU would only contend)."""
    auto = (study.resources["gpus_per_worker"] == "auto"
            and planning.has_gpus(cluster, autoscaler)  # autoscale: GPU node types count
            and study.resources["workers_per_trial"] == 1)
    plans: dict[float | None, Resources] = {}
    for trial in trials:
        share = auto_gpu_share(_model_flops(trial["model"], json.dumps(
            trial["model_options"], sort_keys=True))) if auto else None
        if share not in plans:
            plans[share] = plan_resources(study, cluster, nodes, share, autoscaler)  # autoscale:
        trial["resources"] = plans[share].__dict__
    return max((p.max_concurrent for p in plans.values()), default=1)


def alive_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n["Alive"]]


def run_trial(config: dict[str, Any]) -> None:
    """The Tune function of one trial: build and fit its TorchTrainer, or (inline) run the
    train loop right here."""
    trial = resolved_trial(config)
    res = Resources(**trial["resources"])
    loop_config = {**trial, "cpus_per_worker": res.cpus_per_worker, "launched_at": time.time()}
    if config["inline"]:
        train_inline(loop_config, earlier_checkpoint(Path(config["tune_dir"]), trial))
        return
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=loop_config,
        scaling_config=ray.train.ScalingConfig(
            num_workers=res.workers, use_gpu=res.use_gpu,
            resources_per_worker=res.per_worker()),
        run_config=ray.train.RunConfig(
            # Named by the trial's identity (no timestamp): a resumed study finds the
            # same Train run folder and continues from its latest checkpoint. The name
            # is what the dashboard's Train tab and Train state API list the run and
            # its workers under.
            name=train_run_name(trial), storage_path=config["train_storage"],
            callbacks=[TuneReportCallback()],
            failure_config=ray.train.FailureConfig(max_failures=config["max_failures"]),
            checkpoint_config=ray.train.CheckpointConfig(num_to_keep=2)),
    )
    trainer.fit()


def trial_resources(config: dict[str, Any]) -> ray.tune.PlacementGroupFactory:
    """What a trial's Tune function holds: its worker's CPUs/GPU when the loop runs inline,
    else next to nothing (DRIVER_RESOURCES; the Train workers hold the rest)."""
    if not config["inline"]:
        return ray.tune.PlacementGroupFactory([DRIVER_RESOURCES])
    res = Resources(**config["trial"]["resources"])
    return ray.tune.PlacementGroupFactory([res.per_worker()])


def earlier_checkpoint(tune_dir: Path, trial: dict) -> str | None:
    """The newest checkpoint an earlier run of this inline trial left (its Tune trial
    folders are named after the trial's identity), so a resumed study continues it."""
    found = sorted(tune_dir.glob(f"{train_run_name(trial)}-*/checkpoint_*/{CHECKPOINT_FILE}"),
                   key=lambda p: p.stat().st_mtime)
    return str(found[-1].parent) if found else None


def resolved_trial(config: dict[str, Any]) -> dict[str, Any]:
    """The trial spec with this sample's searched values filled in (and its key to match)."""
    trial = config["trial"]
    search = config.get("search") or {}
    sampled = {**search.get("*", {}), **search.get(trial["train"]["recipe"], {})}
    if not sampled:
        return trial
    trial = {**trial, "train": {**trial["train"], **sampled}}
    return {**trial, "key": trial_key(trial)}


class RecordWriter(ray.tune.Callback):
    """Keeps `records/<key>.json` current as results arrive (on the driver, so it also
    sees trials that ASHA stops and trials whose workers die)."""

    def __init__(self, run_dir: Path | rec.RemotePath):
        self.run_dir = run_dir
        self.open: dict[str, dict] = {}

    def _record(self, trial) -> dict:
        spec = resolved_trial(trial.config)
        if spec["key"] not in self.open:
            kept = self._unfinished_on_disk(spec["key"])
            if kept:  # a resumed trial: keep its history up to its checkpoint
                self.open[spec["key"]] = {**kept, "trial_id": trial.trial_id,
                                          "status": "running", "finished_at": None}
                return self.open[spec["key"]]
            entry = get_entry(spec["model"])
            self.open[spec["key"]] = {
                **{k: spec[k] for k in ("key", "study", "group", "variant", "baseline", "model",
                                        "model_options", "seed")},
                "config": spec["train"], "trial_id": trial.trial_id,
                "family": entry.family, "innovation": entry.innovation,
                "params": None, "flops": None, "status": "running",
                "stopped_at_epoch": None, "error": None, "epochs": spec["train"]["epochs"],
                "history": [], "restarts": 0, "workers": spec["resources"]["workers"],
                "gpus_per_worker": spec["resources"]["gpus_per_worker"],
                "device": None, "hosts": None, "started_at": _now(), "finished_at": None,
                "runner": "inline" if trial.config["inline"] else "train-workers",
            }
        return self.open[spec["key"]]

    def _unfinished_on_disk(self, key: str) -> dict | None:
        found = rec.read_record(self.run_dir, key)
        return found if found and found["status"] not in FINISHED else None

    def on_trial_start(self, iteration, trials, trial, **info):
        rec.write_record(self.run_dir, self._record(trial))

    def on_trial_result(self, iteration, trials, trial, result, **info):
        record = self._record(trial)
        entry = {k: result[k] for k in rec.HISTORY_KEYS}
        earlier = record["history"]
        if result.get("resumed_history_json"):
            # A restarted trial: its checkpoint's history is the one that matches its
            # weights (the driver may have missed epochs while it was down).
            earlier = json.loads(result["resumed_history_json"])
        record["history"] = [h for h in earlier if h["epoch"] < entry["epoch"]] + [entry]
        entry["optimizer_fingerprint"] = result.get("optimizer_fingerprint")
        if result.get("resumed_optimizer_fingerprint") is not None:
            entry["resumed_optimizer_fingerprint"] = result["resumed_optimizer_fingerprint"]
        for key in ("params", "flops", "restarts", "device", "hosts", "world_size", "worker_pid"):
            record[key] = result.get(key, record.get(key))
        record["reported_rank"] = result.get("rank")
        if result.get("setup_seconds") is not None:
            record.setdefault("setup_seconds", []).append(round(result["setup_seconds"], 2))
        if result.get("diverged"):
            record["status"], record["stopped_at_epoch"] = "diverged", entry["epoch"]
            record["error"] = f"non-finite training loss at epoch {entry['epoch']}"
        rec.write_record(self.run_dir, record)
        print(f"raysweep: {trial.trial_id} {record['variant']} s{record['seed']} epoch "
              f"{entry['epoch']}/{record['epochs']} top1 {entry['top1']:.2f} val_loss "
              f"{entry['val_loss']:.3f} ({entry['epoch_seconds']:.1f} s)", flush=True)

    def on_trial_complete(self, iteration, trials, trial, **info):
        record = self._record(trial)
        if record["status"] != "diverged":
            done = rec.last_epoch(record)
            finished = done >= record["epochs"]
            record["status"] = "completed" if finished else "stopped"
            record["stopped_at_epoch"] = None if finished else done
        self._finish(trial, record)

    def on_trial_error(self, iteration, trials, trial, **info):
        record = self._record(trial)
        record["status"] = "errored"
        record["error"] = _error_text(trial)
        self._finish(trial, record)

    def _finish(self, trial, record):
        record["finished_at"] = _now()
        rec.write_record(self.run_dir, record)
        at = f" at epoch {record['stopped_at_epoch']}" if record["stopped_at_epoch"] else ""
        why = f": {record['error']}" if record["status"] == "errored" else ""
        print(f"raysweep: {trial.trial_id} {record['variant']} s{record['seed']} "
              f"{record['status']}{at}{why}", flush=True)
        self.open.pop(record["key"], None)


def run_study(study: Study, storage: str, name: str | None = None, resume: bool = False,
              timings: dict | None = None, inline: bool = False) -> Path | rec.RemotePath:
    """Run every trial of `study` that has no finished record under `storage/name`.

    `storage` is a local folder or a URI (s3://…): on a multi-node cluster every node
    writes checkpoints there, so it must be storage they all reach.
    `inline` (what `--local` asks for) runs one-worker trials inside their Tune function
    instead of a Train worker group; it applies only with local storage.
    Ray must already be initialised (see `raysweep.cluster.connect`)."""
    timings = timings if timings is not None else {}
    run_dir = rec.run_location(storage, name or study.name)
    if resume and not (run_dir / rec.RECORDS_DIR).is_dir():
        raise StudyError(f"--resume: no run named {run_dir.name!r} under {run_dir.parent}")
    _check_writable(run_dir)
    trials = [_absolute_paths(t) for t in study.trials()]
    for train in {json.dumps(_data_keys(t["train"]), sort_keys=True) for t in trials}:
        data.check_available(json.loads(train))
    done = {r["key"] for r in rec.read_records(run_dir) if r["status"] in FINISHED}
    todo = [t for t in trials if t["key"] not in done] if not study.search else trials
    autoscaler = find_autoscaler()  # autoscale: the node types it may add
    concurrent = plan_trials(study, todo, ray.cluster_resources(), alive_nodes(), autoscaler)
    if autoscaler:  # autoscale: trials that wait for nodes are the autoscaler's demand
        allow_pending_trials(len(todo) * study.num_samples)
    inline = inline and study.resources["workers_per_trial"] == 1 and isinstance(run_dir, Path)
    write_provenance(run_dir, study)
    timings.update(runner="inline" if inline else "train-workers", trials_total=len(trials),
                   trials_run=len(todo), max_concurrent=concurrent,
                   gpu_shares=sorted({t["resources"]["gpus_per_worker"] for t in todo}))
    if not todo:
        return run_dir
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(run_trial, trial_resources),
        param_space={
            "trial": ray.tune.grid_search(todo),
            **({"search": {scope: {k: _sampler(s) for k, s in params.items()}
                           for scope, params in study.search.items()}}
               if study.search else {}),
            "train_storage": str(run_dir / "train"),
            "inline": inline, "tune_dir": str(run_dir / "tune"),
            "max_failures": study.resources["max_failures"],
        },
        tune_config=ray.tune.TuneConfig(
            scheduler=_scheduler(study), num_samples=study.num_samples,
            max_concurrent_trials=concurrent,
            # Inline: the next trial starts in the last one's process, which already holds
            # torch and the model zoo (seconds per trial). Not for Train trials: a reused
            # Tune process that ASHA stopped can keep its Train run's workers, and the next
            # trial then waits for their resources forever.
            reuse_actors=inline,
            trial_name_creator=_trial_name, trial_dirname_creator=_trial_dirname),
        run_config=ray.tune.RunConfig(
            name="tune", storage_path=str(run_dir), verbose=0,
            callbacks=[RecordWriter(run_dir)],
            # Inline trials are retried by Tune (from their latest checkpoint), Train
            # runs by Train (their Tune function only fails once Train has given up).
            failure_config=ray.tune.FailureConfig(
                max_failures=study.resources["max_failures"] if inline else 0),
            checkpoint_config=ray.tune.CheckpointConfig(num_to_keep=2)),
    )
    begin = time.perf_counter()
    tuner.fit()
    timings["tune_seconds"] = time.perf_counter() - begin
    return run_dir


def _scheduler(study: Study):
    if not study.asha["enabled"]:
        return FIFOScheduler()
    # max_t one past the budget: ASHA would otherwise STOP every trial at its last epoch,
    # and a stopped Tune function kills its Train controller before the controller can
    # release the workers' placement group (Train's cleaner then has to find it later).
    return ASHAScheduler(time_attr="epoch", metric=METRIC, mode="max",
                         max_t=study.defaults["epochs"] + 1,
                         grace_period=study.asha["grace_period"],
                         reduction_factor=study.asha["reduction_factor"])


def _sampler(spec: dict):
    kind, args = next(iter(spec.items()))
    return {"loguniform": lambda: ray.tune.loguniform(*args),
            "uniform": lambda: ray.tune.uniform(*args),
            "choice": lambda: ray.tune.choice(args)}[kind]()


def _trial_name(trial) -> str:
    return f"{_label(trial.config['trial'])}-{trial.trial_id}"


def _trial_dirname(trial) -> str:
    # Named by the trial's identity, so `earlier_checkpoint` finds it after a resume.
    return f"{train_run_name(resolved_trial(trial.config))}-{trial.trial_id}"


def train_run_name(trial: dict) -> str:
    """`<group>.<variant>-s<seed>.<model>-<hash>`: readable, and stable across resumes."""
    return f"{_label(trial)}.{trial['key']}"


def _label(spec: dict) -> str:
    group = f"{spec['group']}." if spec["group"] else ""
    return f"{group}{spec['variant']}-s{spec['seed']}"


def _absolute_paths(trial: dict) -> dict:
    # Workers run in other folders (and on other nodes): ship an absolute data path.
    trial["train"]["data_dir"] = str(Path(os.path.expanduser(trial["train"]["data_dir"])).resolve())
    return trial


def _data_keys(train: dict) -> dict:
    return {k: train[k] for k in ("dataset", "data_dir", "download", "data_checksums",
                                  "train_size", "test_size", "synthetic_classes")}


def _check_writable(run_dir: Path | rec.RemotePath) -> None:
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("ok")
        probe.unlink()
    except OSError as exc:
        raise StudyError(f"storage path {str(run_dir)!r} is not writable: "
                         f"{exc.strerror or exc}") from None


def _error_text(trial) -> str:
    path = getattr(trial, "error_file", None) or ""
    if path and Path(path).is_file():
        lines = [ln for ln in Path(path).read_text().splitlines() if ln.strip()]
        return lines[-1][:2000] if lines else "unknown error"
    return str(getattr(trial, "error_msg", "") or "unknown error")[:2000]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
