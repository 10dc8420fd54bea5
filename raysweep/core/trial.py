"""The data that flows study → trials → records → tables, as types.

    TrainConfig   the resolved training config of a trial (recipe values + study overrides)
    TrialSpec     one trial of a study: model, options, seed, TrainConfig, the study's labels
    TrialResources  what one trial runs on (not part of its identity)
    Launch        how a trial runs this time (run folder, runner, resources)
    EpochResult   one finished epoch (an entry of a record's history)
    Segment       one stretch of epochs trained by one launch of a trial
    TrialRecord   everything known about a trial: the only thing the tables read

A trial's identity (`TrialSpec.key`) is its network, seed and every `TrainConfig` value
that changes what is optimised (the precision included: `amp: auto` is resolved before
a spec exists, `raysweep.core.precision`); it leaves out where the data lives, how it is
read, the worker count and other execution choices (`TrainConfig.NOT_IDENTITY`). The network is
what the model computes, not its registry name: `models.facts.network_fingerprint` of
the model built with its options, so two names for one network (ecanet20_adaptive and
ecanet20_fixed_k3) are one trial carrying both labels. Trials with the same key are the
same experiment: a study runs each key once, and a re-run with another worker count
finds its finished trials.

Record versions: 3 (this one) keys trials by network fingerprint, stores `amp` resolved
(never `auto`), names each label's model (`ArmLabel.model`), the record's `network` and
each segment's `precision`; version 2 keyed by model name with `amp: auto` unresolved,
so its keys cannot be matched with version 3 ones: a version-2 run is refused in one line.

Units: accuracies in percent, losses in nats per image, times in seconds, learning
rates per optimizer step, batch sizes in images per optimizer step summed over workers.
"""
from __future__ import annotations

import dataclasses
import enum
import functools
import hashlib
import json
import math
import types
import typing
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from raysweep.core.status import FINISHED, Status
from raysweep.errors import RecordError

RECORD_VERSION = 3
# Why a record of an older version is refused (one line each).
OLD_VERSIONS = {
    1: "version 1 predates global batches and validation splits",
    2: "version 2 keys trials by model name and stores amp: auto unresolved, so a CPU and a "
       "GPU trial shared a key and two names of one network were two trials",
}

@dataclass(frozen=True)
class TrainConfig:
    """The resolved training config of one trial (`recipes.resolve`)."""
    recipe: str                 # the recipe these values started from (recipes.RECIPES)
    optimizer: str              # sgd | adamw
    epochs: int                 # epoch budget: passes over the training split
    batch_size: int             # global batch: images per optimizer step, summed over workers
    lr: float                   # peak lr as stated (study or recipe), for lr_base_batch
    lr_scaling: str             # none | linear | sqrt: from lr_base_batch to batch_size
    lr_base_batch: int          # the global batch `lr` is stated for (read when scaling)
    peak_lr: float              # the peak lr actually used at batch_size (lr after scaling)
    momentum: float | None      # SGD momentum; None for AdamW
    betas: tuple[float, float] | None   # AdamW (beta1, beta2); None for SGD
    weight_decay: float         # per step: L2 coefficient (SGD) or decoupled decay (AdamW)
    warmup_epochs: int          # linear warmup to peak_lr, epochs (warmup_cosine only)
    scheduler: str              # cosine | warmup_cosine | multistep | step_halve_5
    label_smoothing: float      # ε of the cross-entropy loss, 0 ≤ ε < 1
    augment: str                # train augmentation level (data.AUGMENTS)
    sync_bn: bool               # BatchNorm statistics over the global batch (all workers)
    dataset: str                # datasets.DATASETS
    train_size: int | None      # first N training images, before the validation split (None: all)
    test_size: int | None       # first N test images (None: all)
    test_fraction: float | None  # imagefolder without train/ and test/: share held out for test
    val_fraction: float         # share of the training images held out for validation, stratified
    split_seed: int             # seed of the validation split (never the trial seed)
    synthetic_classes: int | None   # classes of the synthetic set; None for other datasets
    data_fingerprint: str | None    # content of a user's image folder (imagefolder only)
    amp: str                    # bf16 | fp16 | off: resolved (a study's `auto`: raysweep.core.precision)
    pipeline: str               # tensor (batched on the device) | torchvision (per sample)
    # --- not identity (TrainConfig.NOT_IDENTITY): where the data is, how it executes ---
    channels_last: bool         # memory layout of activations
    compile: str                # torch.compile mode: off | default | reduce-overhead | max-autotune
    data_dir: str               # where the dataset lives (absolute on the driver)
    download: bool              # download the dataset when it is missing
    data_checksums: bool        # verify the dataset files' checksums
    loader_workers: int         # DataLoader processes per worker (torchvision pipeline)

    # The groups of fields other modules act on, declared here once (field names):
    # where the data is and how a trial executes, not what it optimises: a key leaves them out
    NOT_IDENTITY = ("data_dir", "download", "data_checksums", "loader_workers",
                    "channels_last", "compile")
    # which images a trial reads (checked once per distinct value, before trials start)
    DATA = ("dataset", "data_dir", "download", "data_checksums", "train_size", "test_size",
            "test_fraction", "val_fraction", "split_seed", "synthetic_classes",
            "data_fingerprint")
    # what a test accuracy measures and after how much training: tables never rank,
    # average or test across settings, and each setting has its own ASHA
    SETTING = ("dataset", "synthetic_classes", "data_fingerprint", "train_size", "test_size",
               "test_fraction", "val_fraction", "split_seed", "epochs")
    # what the members of one fused array may differ in (besides the seed)
    ARRAY_FREE = ("lr", "lr_scaling", "lr_base_batch", "peak_lr", "weight_decay")

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in self.to_dict().items() if k not in self.NOT_IDENTITY}

    def setting(self) -> tuple:
        return tuple(getattr(self, f) for f in self.SETTING)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes) -> "TrainConfig":
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class ArmLabel:
    """A study's name for a trial. A trial that several groups share (the same baseline
    in three ablation groups) is trained once and carries every label."""
    group: str | None           # ablation group; None for an entry of `models:`
    variant: str                # variant name ("baseline" for a group's baseline); the model for `models:`
    baseline: bool              # the group's baseline
    model: str | None = None    # the model the arm names (a trial's labels may name twins)


@dataclass(frozen=True)
class TrialSpec:
    """One trial of a study, fully resolved."""
    study: str
    model: str
    model_options: dict[str, Any]
    seed: int                   # random seed: initial weights, data order, augmentation draws
    train: TrainConfig
    labels: tuple[ArmLabel, ...]
    overrides: dict[str, Any] = field(default_factory=dict)  # values differing from the defaults (display)
    searched: dict[str, Any] = field(default_factory=dict)   # values a search sampled into `train`
    sample: int | None = None   # the search sample's number (1, 2, ...); None for grid trials
    sampled_from: str | None = None  # key of the unsampled spec a search drew this trial from

    @cached_property
    def network(self) -> str:
        """Fingerprint of the network the model builds with its options (not its name)."""
        from models.facts import network_fingerprint

        return network_fingerprint(self.model, **self.model_options)

    def identity(self, seed: bool = True) -> dict[str, Any]:
        ident = {"network": self.network, "train": self.train.identity()}
        return {**ident, "seed": self.seed} if seed else ident

    @cached_property
    def key_name(self) -> str:
        """The name a key starts with: for reading only, the same for every name of one
        network (`models.facts.network_name`)."""
        from models.facts import network_name

        return network_name(self.network, self.model)

    @cached_property
    def key(self) -> str:
        """`<name>-<hash>`: the trial's identity; names its record and checkpoints."""
        return identity_key(self.key_name, self.identity())

    @cached_property
    def arm_key(self) -> str:
        """The identity without the seed: trials with equal arm keys are seeds of one arm."""
        return identity_key(self.key_name, self.identity(seed=False))

    @property
    def label(self) -> str:
        """`group.variant-sSEED` of the first label: how progress lines name the trial."""
        first = self.labels[0]
        group = f"{first.group}." if first.group else ""
        sample = f"-n{self.sample}" if self.sample is not None else ""
        return f"{group}{first.variant}{sample}-s{self.seed}"

    def with_labels(self, labels: tuple[ArmLabel, ...]) -> "TrialSpec":
        return dataclasses.replace(self, labels=labels)

    def with_searched(self, values: dict[str, Any], sample: int | None) -> "TrialSpec":
        """This spec with a search sample's values in its TrainConfig (a new identity)."""
        train = rescale(self.train.replace(**values))
        return dataclasses.replace(self, train=train, searched=dict(values), sample=sample,
                                   sampled_from=self.key)


def rescale(train: TrainConfig) -> TrainConfig:
    """`peak_lr` from the stated `lr`, once, on the driver: `lr` itself with
    `lr_scaling: none`, else scaled from `lr_base_batch` to `batch_size` (linearly, or by
    the square root)."""
    ratio = train.batch_size / train.lr_base_batch
    factor = {"none": 1.0, "linear": ratio, "sqrt": math.sqrt(ratio)}[train.lr_scaling]
    return train.replace(peak_lr=train.lr * factor)


def identity_key(name: str, identity: dict[str, Any]) -> str:
    blob = json.dumps(identity, sort_keys=True, default=list)
    return f"{name}-{hashlib.sha1(blob.encode()).hexdigest()[:10]}"


@dataclass(frozen=True)
class TrialResources:
    """What one trial runs on. Not part of its identity: the same trial may run on 1
    worker today and on 8 tomorrow (its global batch is split over them)."""
    workers: int                # Train workers (DDP ranks)
    cpus_per_worker: float
    gpus_per_worker: float      # a fraction packs several trials on one GPU

    @property
    def use_gpu(self) -> bool:
        return self.gpus_per_worker > 0

    def per_worker(self) -> dict[str, float]:
        out = {"CPU": self.cpus_per_worker}
        if self.use_gpu:
            out["GPU"] = self.gpus_per_worker
        return out


@dataclass(frozen=True)
class Launch:
    """How a trial runs this time: where its run folder is, which runner, on what."""
    run_dir: str                # the run folder, a path or a URI (checkpoints live under it)
    runner: str                 # inline | train-workers | fused
    resources: TrialResources
    launched_at: float          # time.time() when the trial's Tune function started it


@dataclass
class EpochResult:
    """One finished epoch, rank 0's view of numbers summed over all workers."""
    epoch: int                  # 1-based
    train_loss: float | None    # mean training loss over the epoch's steps; None if not finite
    val_loss: float | None      # on the validation split; None without one (val_fraction 0)
    val_top1: float | None
    val_top5: float | None
    test_loss: float | None     # on the test split: recorded, never used for a decision
    test_top1: float
    test_top5: float
    lr: float                   # lr of the epoch's last optimizer step
    epoch_seconds: float        # wall time of the epoch: training and evaluation
    images_per_s: float         # training images per second, all workers together
    segment: int                # index into TrialRecord.segments
    optimizer_fingerprint: float | None  # sum |x| over the optimizer's state (a resume check)


@dataclass
class Segment:
    """A stretch of epochs trained by one launch of a trial: a first run, a worker-group
    restart or a resumed study, possibly on another worker count."""
    first_epoch: int            # the first epoch this launch trained
    runner: str                 # inline | train-workers | fused
    workers: int
    cpus_per_worker: float
    gpus_per_worker: float
    device: str                 # rank 0's device
    hosts: str                  # `host/node id` of every rank, in rank order
    started_at: str             # ISO-8601 UTC
    setup_seconds: float | None      # launch → first epoch; None after a worker restart
    resumed_from_epoch: int | None   # the checkpoint's epoch it continued from
    resumed_optimizer_fingerprint: float | None  # the optimizer state it resumed with
    worker_pid: int             # rank 0's process
    skipped_checkpoints: list[str] = field(default_factory=list)  # damaged ones passed over
    fused_members: int = 1      # trials trained together as one fused array (runner fused)
    precision: str = "float32"  # what the forward passes computed in: float32 | bf16 | fp16


@dataclass
class TrialRecord:
    """Everything known about one trial; stored as `records/<key>.json`."""
    key: str
    arm_key: str                # key without the seed: seeds of one arm share it
    study: str
    model: str
    model_options: dict[str, Any]
    seed: int
    labels: list[ArmLabel]
    train: TrainConfig
    searched: dict[str, Any]
    sample: int | None
    sampled_from: str | None    # key of the unsampled spec a search drew this trial from
    family: str                 # technique family (models.registry.FAMILIES)
    innovation: bool            # one of the papers' own designs
    params: int | None          # trainable parameters
    flops: int | None           # forward FLOPs of one input image (a multiply-add counts 2)
    status: Status
    stopped_at_epoch: int | None    # last epoch of a stopped, diverged or interrupted trial
    error: str | None
    history: list[EpochResult]
    segments: list[Segment]
    restarts: int               # launches after the first (worker-group restarts and resumes)
    trial_ids: list[str]        # Ray Tune trial ids, one per launch by Tune
    started_at: str
    finished_at: str | None
    network: str = ""           # fingerprint of the built network (TrialSpec.network)
    record_version: int = RECORD_VERSION
    traceback: str | None = None   # an errored trial's last traceback (Tune's error file)

    @classmethod
    def new(cls, spec: TrialSpec, family: str, innovation: bool, now: str) -> "TrialRecord":
        return cls(key=spec.key, arm_key=spec.arm_key, study=spec.study, model=spec.model,
                   model_options=dict(spec.model_options), seed=spec.seed,
                   labels=list(spec.labels), train=spec.train, searched=dict(spec.searched),
                   sample=spec.sample, sampled_from=spec.sampled_from, family=family,
                   innovation=innovation, params=None,
                   flops=None, status=Status.RUNNING, stopped_at_epoch=None, error=None,
                   history=[], segments=[], restarts=0, trial_ids=[], started_at=now,
                   finished_at=None, network=spec.network)

    @property
    def epochs(self) -> int:
        return self.train.epochs

    def spec(self) -> TrialSpec:
        """The trial spec this record is of (its key is the record's)."""
        spec = TrialSpec(self.study, self.model, self.model_options, self.seed, self.train,
                         tuple(self.labels), searched=self.searched, sample=self.sample,
                         sampled_from=self.sampled_from)
        if self.network:   # the network it was trained as, not as the zoo builds it today
            spec.__dict__["network"] = self.network
        return spec

    @property
    def label(self) -> str:
        """`group.variant-sSEED` of its first label, as progress lines name the trial."""
        return self.spec().label

    @property
    def last_epoch(self) -> int:
        return self.history[-1].epoch if self.history else 0

    @property
    def finished(self) -> bool:
        return self.status in FINISHED

    def gpu_hours(self) -> float | None:
        """Σ over segments of (its epochs' seconds × workers × GPUs per worker) / 3600;
        None when no segment used a GPU."""
        by_segment = {}
        for entry in self.history:
            by_segment[entry.segment] = by_segment.get(entry.segment, 0.0) + entry.epoch_seconds
        gpus = [(s.workers * s.gpus_per_worker, by_segment.get(i, 0.0))
                for i, s in enumerate(self.segments)]
        if not any(g > 0 for g, _ in gpus):
            return None
        return sum(g * secs for g, secs in gpus) / 3600

    def add_label(self, label: ArmLabel) -> bool:
        if label in self.labels:
            return False
        self.labels.append(label)
        return True

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: Any, where: str = "record") -> "TrialRecord":
        """A record from its JSON form; a RecordError (one line) if it is of another
        version or not a valid record."""
        version = record_version(data)
        if version is None:
            what = f"a JSON {type(data).__name__}" if not isinstance(data, dict) else (
                "no record_version, and not the key, model and status of a version 1 record")
            raise RecordError(f"{where}: not a trial record ({what})")
        if version != RECORD_VERSION:
            raise RecordError(
                f"{where}: record_version {version!r}, but this raysweep reads version "
                f"{RECORD_VERSION} ({OLD_VERSIONS.get(version, 'an unknown version')}, so "
                f"its trials cannot be matched with newer ones); re-run the study under a "
                f"new --name")
        return _build(cls, data, where)


def record_version(data: Any) -> Any:
    """The record version of a record's JSON data; None when it is no trial record. Version 1
    records had no `record_version`: a mapping without one is of version 1 only if it has
    their key, model and status."""
    if not isinstance(data, dict):
        return None
    if "record_version" in data:
        return data["record_version"]
    return 1 if {"key", "model", "status"} <= set(data) else None


# --- checked construction of the dataclasses above from JSON data ---

@functools.lru_cache(maxsize=None)
def _fields(cls) -> tuple[dict, list[str]]:
    # get_type_hints evaluates every annotation: once per class, not once per epoch entry
    # (it was most of the time `report` spent reading 5,000 records).
    return typing.get_type_hints(cls), [f.name for f in dataclasses.fields(cls)]


@functools.lru_cache(maxsize=None)
def _required(cls) -> frozenset[str]:
    return frozenset(f.name for f in dataclasses.fields(cls)
                     if f.default is dataclasses.MISSING
                     and f.default_factory is dataclasses.MISSING)


@functools.lru_cache(maxsize=None)
def _shape(hint) -> tuple:
    """(origin, args, is a dataclass) of a type hint, worked out once per hint."""
    return typing.get_origin(hint), typing.get_args(hint), dataclasses.is_dataclass(hint)


@functools.lru_cache(maxsize=None)
def _plan(cls) -> tuple[tuple, frozenset[str]]:
    """Per field of `cls`: (name, hint, the types it takes as they are, required); and
    the field names."""
    hints, names = _fields(cls)
    required = _required(cls)
    return (tuple((n, hints[n], _as_is(hints[n]), n in required) for n in names),
            frozenset(names))


def _build(cls, data: Any, where: str):
    if not isinstance(data, dict):
        raise RecordError(f"{where} must be a mapping, got {_short(data)}")
    fields, names = _plan(cls)
    if not data.keys() <= names:
        raise RecordError(f"{where}: unknown field {sorted(set(data) - names)[0]!r}")
    values = {}
    for name, hint, as_is, required in fields:
        if name not in data:
            if not required:
                continue
            raise RecordError(f"{where}: missing field {name!r}")
        value = data[name]
        values[name] = value if type(value) in as_is else _convert(hint, value, where, name)
    return cls(**values)


@functools.lru_cache(maxsize=None)
def _as_is(hint) -> frozenset[type]:
    """The value types `hint` takes as they are (a float for `float`, a float or None for
    `float | None`; an int is no float here, it is converted, nor a bool an int): most of
    a record's values, passed back after one lookup (reading 5,000 records spent most of
    its time building each value's path for messages)."""
    origin, args, _ = _shape(hint)
    plain = (float, int, str, bool, type(None))
    parts = args if origin in (typing.Union, types.UnionType) else (hint,)
    return frozenset(parts) if all(a in plain for a in parts) else frozenset()


def _convert(hint, value: Any, where: str, part: str | int | None = None):
    if type(value) in _as_is(hint):
        return value
    if part is not None:  # the path of the value, built only when a message needs it
        where = f"{where}.{part}" if isinstance(part, str) else f"{where}[{part}]"
    origin, args, is_dataclass = _shape(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        options = [a for a in args if a is not type(None)]
        return _convert(options[0], value, where) if len(options) == 1 else value
    if is_dataclass:
        return _build(hint, value, where)
    if origin is list:
        if not isinstance(value, list):
            raise RecordError(f"{where} must be a list, got {_short(value)}")
        return [_convert(args[0], v, where, i) for i, v in enumerate(value)]
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"{where} must be a list, got {_short(value)}")
        inner = args[0] if args else Any
        return tuple(_convert(inner, v, where, i) for i, v in enumerate(value))
    if origin is dict or hint is dict:
        if not isinstance(value, dict):
            raise RecordError(f"{where} must be a mapping, got {_short(value)}")
        return dict(value)
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RecordError(f"{where} must be a number, got {_short(value)}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise RecordError(f"{where} must be an integer, got {_short(value)}")
        return value
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return _member(hint, value, where)
    if hint in (str, bool):
        if not isinstance(value, hint):
            raise RecordError(f"{where} must be {hint.__name__}, got {_short(value)}")
        return value
    return value


def _member(kind: type[enum.Enum], value: Any, where: str) -> enum.Enum:
    try:
        return kind(value)
    except ValueError:
        allowed = ", ".join(m.value for m in kind)
        raise RecordError(f"{where} is {_short(value)}; allowed: {allowed}") from None


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def finite(value: float | None) -> float | None:
    """A metric as stored: None for a missing or non-finite number."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)
