"""Study files: load (a SafeLoader), validate, apply overrides, expand into trials.

A study is plain data. Every key is known; an unknown key or a bad value is a
`StudyError` whose one-line message names the key, the value and what is allowed.
See search_spaces/README.md for the format.
"""
from __future__ import annotations

import copy
import difflib
import itertools
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import yaml

from raysweep.datasets import readers as datasets
from raysweep.errors import StudyError, UnknownModelError
from raysweep.core.planning import FUSE_MODES, ResourcesConfig, check_divides
from raysweep.store.storage import what_is
from raysweep.study.sections import AshaConfig, SeedPlan
from raysweep.core.recipes import LR_SCALINGS, PAPER_GLOBAL_BATCH, RECIPES, SCHEDULERS, resolve
from raysweep.core.trial import ArmLabel, TrialSpec, identity_key

SPACES_DIR = Path(__file__).resolve().parents[2] / "search_spaces"

AUGMENTS = ("basic", "trivialaugment", "trivialaugment_erasing", "mixup_cutmix", "autoaugment")
AMP = ("auto", "bf16", "fp16", "off")
PIPELINES = ("auto", "tensor", "torchvision")
COMPILE_MODES = ("off", "default", "reduce-overhead", "max-autotune")
SEARCH_ALGORITHMS = ("random", "tpe")

# Names become folder and file names (run folders, TensorBoard folders, report files):
# a safe character set, no leading dot (hidden folders, `..`), and a length that keeps
# the paths built from them under the file system's limits.
NAME_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.()+=,@")
NAME_MAX = 64
# Bounds on what a study may be: its file, a --set value, its nesting, its trial count.
MAX_STUDY_BYTES = 1_000_000
MAX_SET_CHARS = 10_000
MAX_DEPTH = 20
MAX_TRIALS = 10_000   # a default fit for one run; `--max-trials N` raises it explicitly
MAX_VALUES = 100_000  # values a study's YAML holds once its aliases are expanded
# Integers a trial is built from are bounded: an unbounded one passes the schema and fails
# deep inside Ray, torch or TensorBoard (an epoch count past 2**63, a seed numpy refuses).
MAX_EPOCHS = 100_000
MAX_BATCH = 1 << 24          # images per step
MAX_IMAGES = 1 << 31         # train_size, test_size
MAX_SEED = 2**32 - 1         # numpy's seed range (torch's is wider)
MAX_SEEDS = 100_000          # seeds: N
MAX_SAMPLES = 100_000        # search.num_samples

__all__ = ["Study", "StudyError", "load_study", "parse_study", "apply_override", "find_space",
           "list_spaces"]


# --- the schema: key -> (check, default). A check returns an error text or None. ---

def _int(lo=None, hi=None, null=False):
    def check(v):
        if v is None and null:
            return None
        if isinstance(v, bool) or not isinstance(v, int):
            return "must be an integer" + (" or null" if null else "")
        if lo is not None and v < lo:
            return f"must be >= {lo}"
        if hi is not None and v > hi:
            return f"must be <= {hi}"
        return None
    return check


def _num(lo=None, hi=None, null=False, lo_open=False):
    def check(v):
        if v is None and null:
            return None
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "must be a number" + (" or null" if null else "")
        if not math.isfinite(v):
            return "must be a finite number"
        if lo is not None and (v <= lo if lo_open else v < lo):
            return f"must be {'>' if lo_open else '>='} {lo}"
        if hi is not None and v > hi:
            return f"must be <= {hi}"
        return None
    return check


def _below(hi):
    """A number in [0, hi)."""
    def check(v):
        problem = _num(0)(v)
        return problem or (f"must be < {hi}" if v >= hi else None)
    return check


def _choice(options, null=False):
    def check(v):
        if v is None and null:
            return None
        if v not in options:
            return f"must be one of {', '.join(options)}" + (" or null" if null else "")
        return None
    return check


def _type(t, name):
    return lambda v: None if isinstance(v, t) else f"must be {name}"


_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*):/")


def _local_folder(value: Any) -> str | None:
    """A data folder: a local path or a file:// URI. Any other URI is read as a URI (never
    as a relative path named `s3:`), and refused: datasets are read from local disk, and a
    URI's user-info would be a credential in every record."""
    if not isinstance(value, str):
        return "must be a path"
    scheme = _SCHEME.match(value)
    if not scheme or scheme.group(1).lower() == "file":
        return None
    from urllib.parse import urlsplit

    held = urlsplit(value)
    secret = " and holds credentials, which raysweep never stores" if (
        "@" in value.split("?", 1)[0] or held.query) else ""
    return (f"is a {scheme.group(1)}:// URI{secret}; allowed: a local folder or a file:// "
            f"URI (datasets are read from local disk on every node)")


def local_path(value: str) -> str:
    """A data folder as an absolute local path (`~` expanded, file:// unwrapped)."""
    if value.lower().startswith("file:"):
        from urllib.parse import unquote, urlsplit

        value = unquote(urlsplit(value).path)
    return str(Path(os.path.expanduser(value)).resolve())


TRAIN_SCHEMA: dict[str, tuple] = {
    "recipe": (_choice(tuple(RECIPES), null=True), None),   # null: the model's own recipe
    "epochs": (_int(1, MAX_EPOCHS), 300),
    "batch_size": (_int(1, MAX_BATCH), PAPER_GLOBAL_BATCH),   # global: images per step, all workers
    "lr": (_num(0, lo_open=True, null=True), None),         # peak lr (null: the recipe's)
    "lr_scaling": (_choice(LR_SCALINGS), "none"),           # how lr is scaled to batch_size
    "lr_base_batch": (_int(1, MAX_BATCH), PAPER_GLOBAL_BATCH),   # the global batch lr is stated for
    "weight_decay": (_num(0, null=True), None),
    "momentum": (_num(0, 1, null=True), None),
    "warmup_epochs": (_int(0, MAX_EPOCHS, null=True), None),
    "scheduler": (_choice(SCHEDULERS, null=True), None),
    "label_smoothing": (_below(1), 0.0),
    "augment": (_choice(AUGMENTS), "trivialaugment_erasing"),
    "sync_bn": (_type(bool, "true or false"), True),        # BatchNorm over the global batch
    "dataset": (_choice(tuple(datasets.DATASETS)), "cifar100"),
    "data_dir": (lambda v: _local_folder(v), "~/.cache/raysweep/data"),
    "download": (_type(bool, "true or false"), False),
    "data_checksums": (_type(bool, "true or false"), True),  # verify the dataset files
    "train_size": (_int(1, MAX_IMAGES, null=True), None),  # first N train images (null: all)
    "test_size": (_int(1, MAX_IMAGES, null=True), None),
    "test_fraction": (lambda v: None if v is None else _num(0, 1, lo_open=True)(v)
                      or (None if v < 1 else "must be < 1"), None),   # imagefolder only
    "val_fraction": (lambda v: None if v is None else _below(1)(v), None),  # null: dataset's
    "split_seed": (_int(0, MAX_SEED), 0),                             # seed of the validation split
    "synthetic_classes": (_int(2, 1000), 10),
    "amp": (_choice(AMP), "auto"),     # auto: resolved where trials run (raysweep.core.precision)
    "channels_last": (_type(bool, "true or false"), False),
    "compile": (_choice(COMPILE_MODES), "off"),              # torch.compile mode
    "loader_workers": (_int(0, 64), 0),                     # DataLoader processes per worker
    "pipeline": (_choice(PIPELINES), "auto"),               # auto: tensor (batched, on device)
}

ASHA_SCHEMA = {
    "enabled": (_type(bool, "true or false"), True),
    "grace_period": (_int(1, MAX_EPOCHS), 1),                            # epochs
    "reduction_factor": (_num(1, lo_open=True), 4),
    "by": (_choice(("trial", "arm")), "trial"),   # seed-aware ASHA: `arm`
}

SEED_PLAN_SCHEMA = {   # seeds: {min, max, detect} (raysweep.decide.seeding)
    "min": (_int(2, MAX_SEEDS), SeedPlan.min),   # seeds every arm runs: a paired test needs 2
    "max": (_int(2, MAX_SEEDS), SeedPlan.max),
    "detect": (_num(0, lo_open=True), SeedPlan.detect),   # points of top-1 accuracy
}

RESOURCES_SCHEMA = {
    "workers_per_trial": (_int(1, 1024), 1),
    "cpus_per_worker": (_num(0, lo_open=True), 1),
    "gpus_per_worker": (lambda v: None if v == "auto" else _num(0, 8)(v), "auto"),
    "max_concurrent": (lambda v: None if v == "auto" else _int(1, MAX_SEEDS)(v), "auto"),
    "max_failures": (_int(0, 100), 2),                       # worker-group restarts per trial
    "fuse": (_choice(FUSE_MODES), "off"),                    # fused arrays: auto = GPU trials
    "fuse_members": (_int(2, 64), 8),                        # trials per fused array at most
}

SEARCH_KINDS = ("loguniform", "uniform", "choice")


# --- the data classes that come out ---

@dataclass(frozen=True)
class Arm:
    """One thing to train: a model with options and training overrides."""
    model: str
    options: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    variant: str | None = None
    baseline: bool = False


@dataclass
class Study:
    name: str
    path: str
    defaults: dict[str, Any]
    arms: list[Arm]
    grid: dict[str, list]
    search: dict[str, Any]          # scope ("*" or a recipe) -> {key: distribution}
    search_algorithm: str           # random | tpe
    num_samples: int                # search samples per arm and seed
    seeds: list[int]
    asha: AshaConfig
    resources: ResourcesConfig
    raw: dict[str, Any]
    # What `amp: auto` means for this study's trials (raysweep.core.precision): set by the
    # driver from where they run; None until then (resolved for this machine).
    auto_amp: str | None = None
    # `seeds: {min, max, detect}`: `seeds` are then the pilot's (0..min−1) and the driver
    # adds seeds to the ablation variants whose verdict is open (raysweep.decide.seeding).
    seed_plan: SeedPlan | None = None
    # {arm_key: seeds}: what the run's recorded pilot seeds ask for (set by the driver
    # between rounds; arms not named run the pilot's `min`).
    seeds_wanted: dict[str, int] = field(default_factory=dict)

    def asks_auto_amp(self) -> bool:
        """Whether some trial of the study states `amp: auto` (and so needs resolving)."""
        return any("auto" in _arm_values("amp", self.defaults, arm, self.grid)
                   for arm in self.arms)

    def count(self) -> int:
        """Trials the study expands to (search samples included), counted without
        expanding it: an upper bound, before trials that arms share are merged."""
        points = math.prod(len(values) for values in self.grid.values())
        samples = self.num_samples if self.search else 1
        return len(self.arms) * points * len(self.all_seeds) * samples

    @property
    def all_seeds(self) -> list[int]:
        """Every seed a trial of the study may run: the pilot's and those adaptive seeding
        may add."""
        return self.seed_plan.seeds if self.seed_plan else self.seeds

    def most_trials(self) -> list[TrialSpec]:
        """Every trial adaptive seeds may run: ablation arms to `max` seeds, other arms
        their first `min` (the study's trials when its seeds are fixed)."""
        if self.seed_plan is None:
            return self.trials()
        return [s for s in self.trials(self.seed_plan.seeds)
                if s.seed < self.seed_plan.min or any(x.group for x in s.labels)]

    def total_trials(self, trials: list[TrialSpec] | None = None) -> int:
        """Trials a run of the study holds when it is done: each distinct trial once, a
        search's once per sample (`trials`: `self.trials()` when already expanded)."""
        expanded = self.trials() if trials is None else trials
        return len(expanded) * (self.num_samples if self.search else 1)

    def check_size(self, max_trials: int = MAX_TRIALS) -> None:
        """A study larger than `max_trials` is refused before anything is expanded."""
        if self.count() > max_trials:
            raise StudyError(
                f"the study expands to {self.count():,} trials ({len(self.arms)} arms × "
                f"{math.prod(len(v) for v in self.grid.values()):,} grid points × "
                f"{len(self.all_seeds)} seeds" + (f" × {self.num_samples} samples" if self.search
                                             else "") + f"), more than --max-trials="
                f"{max_trials:,} allows; narrow it, or pass --max-trials {self.count()} to "
                f"run them all")

    def iter_trials(self, seeds: list[int] | None = None) -> Iterator[TrialSpec]:
        """Every arm × grid point × seed (`seeds`, or the study's) as a resolved trial spec,
        lazily, in study order (trials that arms share come once per arm)."""
        keys = list(self.grid)
        for arm in self.arms:
            for point in itertools.product(*(self.grid[k] for k in keys)) or [()]:
                for seed in self.seeds if seeds is None else seeds:
                    yield make_trial(self, arm, dict(zip(keys, point)), seed)

    def trials(self, seeds: list[int] | None = None) -> list[TrialSpec]:
        """The expanded grid (`seeds`: these seeds instead of the study's), one spec per
        identity. Arms that resolve to the same trial (a baseline shared by several
        ablation groups, two model names of one network) are one trial carrying every
        arm's label."""
        if seeds is None and self.seed_plan is not None:
            return [s for s in self.trials(self.seed_plan.seeds)
                    if s.seed < self.seeds_wanted.get(s.arm_key, self.seed_plan.min)]
        by_identity: dict[str, TrialSpec] = {}
        for spec in self.iter_trials(seeds):
            same = identity_key("", spec.identity())   # the key without its name
            known = by_identity.get(same)
            by_identity[same] = spec if known is None else known.with_labels(
                known.labels + tuple(x for x in spec.labels if x not in known.labels))
        return list(by_identity.values())

    def twins(self) -> list[str]:
        """`a = b (same network)` for every trial whose labels name several models."""
        lines = []
        for spec in self.trials():
            names = list(dict.fromkeys(x.model for x in spec.labels if x.model))
            line = f"{' = '.join(names)} (same network)"
            if len(names) > 1 and line not in lines:
                lines.append(line)
        return lines

    def searched_keys(self, recipe: str) -> dict[str, dict]:
        """The distributions a search samples for trials of `recipe`."""
        return {**self.search.get("*", {}), **self.search.get(recipe, {})}


def make_trial(study: Study, arm: Arm, grid_point: dict, seed: int) -> TrialSpec:
    from models import get_entry

    entry = get_entry(arm.model)
    train = {**study.defaults, **grid_point, **arm.overrides}
    recipe = train.pop("recipe") or entry.recipe
    train["data_dir"] = local_path(train["data_dir"])
    if train["amp"] == "auto":   # resolved before it enters the key: precision is identity
        from raysweep.core.precision import resolve_here

        train["amp"] = study.auto_amp or resolve_here().amp
    val_fraction = train.pop("val_fraction")
    if val_fraction is None:
        val_fraction = datasets.info(train["dataset"]).val_fraction
    resolved = resolve(recipe, train, val_fraction)
    fingerprint = datasets.fingerprint(resolved)
    if fingerprint:
        resolved = resolved.replace(data_fingerprint=fingerprint)
    label = ArmLabel(arm.group, arm.variant or arm.model, arm.baseline, arm.model)
    return TrialSpec(study.name, arm.model, dict(arm.options), seed, resolved, (label,),
                     overrides={**grid_point, **arm.overrides})


# --- loading ---

def find_space(name_or_path: str) -> Path:
    path = Path(name_or_path)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if not path.is_file():
            raise StudyError(f"study file {name_or_path!r} {what_is(path)}; allowed: a "
                             f"YAML file, or a study name ({', '.join(list_spaces())})")
        return path
    candidate = SPACES_DIR / f"{name_or_path}.yaml"
    if not candidate.is_file():
        known = list_spaces()
        close = difflib.get_close_matches(name_or_path, known, n=2)
        hint = f"did you mean {', '.join(close)}?" if close else f"known: {', '.join(known)}"
        raise StudyError(f"unknown study {name_or_path!r}; {hint}")
    return candidate


def read_study_text(path: Path) -> str:
    """A study file's text: a regular file of at most MAX_STUDY_BYTES bytes of UTF-8."""
    if not path.is_file():
        raise StudyError(f"study file {str(path)!r} {what_is(path)}; allowed: a YAML file")
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_STUDY_BYTES + 1)
    except OSError as exc:
        raise StudyError(f"study file {str(path)!r} cannot be read: "
                         f"{exc.strerror or exc}") from None
    if len(data) > MAX_STUDY_BYTES:
        raise StudyError(f"{path} is over {MAX_STUDY_BYTES:,} bytes; allowed: a study file of "
                         f"at most {MAX_STUDY_BYTES:,}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise StudyError(f"{path} is not UTF-8 text (byte 0x{data[exc.start]:02x} at offset "
                         f"{exc.start}); allowed: a YAML study file in UTF-8") from None


def list_spaces() -> list[str]:
    return sorted(p.stem for p in SPACES_DIR.glob("*.yaml"))


def load_study(name_or_path: str, overrides: list[str] = (), cli: dict | None = None,
               groups: list[str] | None = None) -> Study:
    path = find_space(name_or_path)
    return study_from_text(read_study_text(path), str(path), overrides, cli, groups)


def study_from_text(text: str, path: str, overrides: list[str] = (), cli: dict | None = None,
                    groups: list[str] | None = None) -> Study:
    """A study from its YAML text (a study file, or the study.yaml a run keeps), with
    `--set` overrides and command-line values applied. Its `raw` is the study as run:
    overrides applied, only the selected groups."""
    if len(text) > MAX_STUDY_BYTES:
        raise StudyError(f"{path} is {len(text):,} characters; allowed: a study file of at "
                         f"most {MAX_STUDY_BYTES:,}")
    try:
        raw = _bounded(_read_yaml(text, path), path)
    except RecursionError:
        raise StudyError(f"{path} is nested too deeply to read; allowed: at most "
                         f"{MAX_DEPTH} levels") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise StudyError(f"{path}:{where} is not valid YAML: "
                         f"{getattr(exc, 'problem', None) or exc}") from None
    if not isinstance(raw, dict):
        raise StudyError(f"{path}: a study must be a mapping of keys, got {type(raw).__name__}")
    raw = copy.deepcopy(raw)
    for item in overrides:
        apply_override(raw, item)
    for dotted, value in (cli or {}).items():
        if value is not None:
            _set_dotted(raw, dotted, value)
    study = parse_study(raw, path, groups)
    if groups:
        study.raw = {**raw, "groups": {g: raw["groups"][g] for g in raw["groups"] if g in groups}}
    return study


class _StudyLoader(yaml.SafeLoader):
    """safe_load, except that only true / false are booleans. YAML 1.1 also reads a bare
    on / off / yes / no as one, but a study uses them as words (`compile: off`, `amp: off`,
    `fuse: on`)."""


_BOOL = "tag:yaml.org,2002:bool"
_StudyLoader.yaml_implicit_resolvers = {
    first: [r for r in resolvers if r[0] != _BOOL]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()}
_StudyLoader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


# YAML 1.2 reads 1e-06 and 1.0e5 as floats; YAML 1.1 (PyYAML) wants a dot and a signed
# exponent and reads them as strings.
_FLOAT = "tag:yaml.org,2002:float"
_StudyLoader.add_implicit_resolver(
    _FLOAT, re.compile(r"^[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)[eE][-+]?[0-9]+$"),
    list("-+.0123456789"))


def _construct_mapping(loader, node, deep=False):
    """SafeLoader's mapping, refusing a key given twice (YAML says keys are unique; PyYAML
    keeps the last one silently). Merge keys (`<<: *base`) may still be overridden."""
    if isinstance(node, yaml.MappingNode):
        seen = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge" or not isinstance(key_node,
                                                                         yaml.ScalarNode):
                continue
            key = loader.construct_object(key_node)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice (first on line {seen[key]})",
                    key_node.start_mark)
            seen[key] = key_node.start_mark.line + 1
    return yaml.SafeLoader.construct_mapping(loader, node, deep)


_StudyLoader.construct_mapping = _construct_mapping


def _read_yaml(text: str, where: str = "study") -> Any:
    loader = _StudyLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _count_values(node, where)
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _count_values(root: yaml.Node, where: str) -> int:
    """The values a document holds once its aliases are expanded, counted on the node
    graph (each node once) and refused past MAX_VALUES: a "billion laughs" file of 1 KB
    expands to 10**9 values; reading them would take minutes and gigabytes."""
    sizes: dict[int, int] = {}

    def size(node: yaml.Node, depth: int) -> int:
        known = sizes.get(id(node))
        if known is not None:
            if known < 0:
                raise StudyError(f"{where}: an alias refers to a value that contains it; "
                                 f"allowed: aliases of finished values")
            return known
        if depth > MAX_DEPTH + 2:
            raise StudyError(f"{where} is nested more than {MAX_DEPTH} levels deep; "
                             f"allowed: at most {MAX_DEPTH}")
        sizes[id(node)] = -1
        if isinstance(node, yaml.MappingNode):
            total = 1 + sum(size(k, depth + 1) + size(v, depth + 1) for k, v in node.value)
        elif isinstance(node, yaml.SequenceNode):
            total = 1 + sum(size(v, depth + 1) for v in node.value)
        else:
            total = 1
        if total > MAX_VALUES:
            raise StudyError(f"{where} expands (through its aliases) to more than "
                             f"{MAX_VALUES:,} values; allowed: at most {MAX_VALUES:,}")
        sizes[id(node)] = total
        return total

    return size(root, 0)


def apply_override(raw: dict, item: str) -> None:
    """`key=value` with a dotted key; the value is parsed as YAML data, never evaluated.

    A bare key means the study's own key when it is one (`seeds=3`, `models=[resnet_20]`),
    else `defaults.<key>` (`epochs=2`): no defaults key shares a name with a study key."""
    if len(item) > MAX_SET_CHARS:
        raise StudyError(f"--set {item[:40]!r}... is {len(item):,} characters; allowed: at "
                         f"most {MAX_SET_CHARS:,}")
    if "=" not in item:
        # (Not "expected key=value": the redactor masks what follows a word like "key".)
        raise StudyError(f"--set {item!r} has no '='; allowed: a dotted name, '=' and a "
                         f"value, e.g. --set epochs=2")
    key, text = item.split("=", 1)
    try:
        value = _bounded(_read_yaml(text, f"--set {key}"), f"--set {key}") if text else None
    except RecursionError:
        raise StudyError(f"--set {key}: the value is nested too deeply; allowed: at most "
                         f"{MAX_DEPTH} levels") from None
    except yaml.YAMLError:
        raise StudyError(f"--set {item!r}: value {text!r} is not valid YAML data") from None
    if "." not in key and key not in TOP_KEYS:
        key = f"defaults.{key}"
    _set_dotted(raw, key, value)


def _bounded(data: Any, where: str, depth: int = 0) -> Any:
    """`data`, checked to nest at most MAX_DEPTH levels."""
    if depth > MAX_DEPTH:
        raise StudyError(f"{where} is nested more than {MAX_DEPTH} levels deep; allowed: at "
                         f"most {MAX_DEPTH}")
    children = data.values() if isinstance(data, dict) else data if isinstance(data, list) else ()
    for child in children:
        _bounded(child, where, depth + 1)
    return data


def check_name(where: str, name: Any) -> str:
    """A study, group, variant or run name that is safe as a folder name."""
    if not isinstance(name, str) or not name:
        raise StudyError(f"{where}={name!r} must be a non-empty name")
    bad = sorted(set(name) - NAME_CHARS)
    if bad or name.startswith(".") or len(name) > NAME_MAX:
        why = (f"has {''.join(bad)!r}" if bad else "starts with '.'" if name.startswith(".")
               else f"is {len(name)} characters long")
        raise StudyError(f"{where}={name[:80]!r} {why}; allowed: letters, digits and "
                         f"- _ . ( ) + = , @, at most {NAME_MAX} characters, not starting "
                         f"with '.'")
    return name


def _set_dotted(raw: dict, dotted: str, value: Any) -> None:
    node = raw
    parts = dotted.split(".")
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise StudyError(f"cannot set {dotted!r}: {part!r} is not a mapping")
    node[parts[-1]] = value


def _check_section(where: str, data: Any, schema: dict) -> dict:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise StudyError(f"{where} must be a mapping, got {data!r}")
    for key in data:
        if key not in schema:
            close = difflib.get_close_matches(str(key), schema, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise StudyError(f"unknown key {where}.{key}{hint}; allowed: {', '.join(schema)}")
    out = {}
    for key, (check, default) in schema.items():
        value = data.get(key, default)
        problem = check(value)
        if problem:
            raise StudyError(f"{where}.{key}={value!r} {problem}")
        out[key] = value
    return out


TOP_KEYS = ("name", "description", "defaults", "models", "groups", "grid", "search",
            "seeds", "asha", "resources")


def parse_study(raw: dict, path: str, only_groups: list[str] | None = None) -> Study:
    for key in raw:
        if key not in TOP_KEYS:
            close = difflib.get_close_matches(str(key), TOP_KEYS, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise StudyError(f"unknown key {key!r}{hint}; allowed: {', '.join(TOP_KEYS)}")
    name = check_name("name", raw.get("name") or Path(path).stem)
    defaults = _check_section("defaults", raw.get("defaults"), TRAIN_SCHEMA)
    asha = AshaConfig.from_section(_check_section("asha", raw.get("asha"), ASHA_SCHEMA))
    resources = ResourcesConfig(**_check_section("resources", raw.get("resources"),
                                                 RESOURCES_SCHEMA))
    if asha.enabled and asha.grace_period > defaults["epochs"]:
        raise StudyError(f"asha.grace_period={asha.grace_period} is beyond the epoch budget "
                         f"defaults.epochs={defaults['epochs']}; allowed: 1..{defaults['epochs']}")
    arms = _parse_models(raw.get("models")) + _parse_groups(raw.get("groups"), only_groups)
    if not arms:
        raise StudyError(f"{path}: the study names no models and no groups")
    grid = _parse_grid(raw.get("grid"))
    search, algorithm, num_samples = _parse_search(raw.get("search"))
    _check_batches(defaults, arms, grid, resources.workers_per_trial)
    if asha.enabled or search:
        _check_validation(defaults, arms, grid, "asha.enabled=true" if asha.enabled
                          else "search")
    seeds, plan = _parse_seeds(raw.get("seeds", 1))
    if asha.by_arm and search:
        raise StudyError("asha.by=arm judges the seeds of one config together, but a search "
                         "draws other values on each seed; allowed with a search: by: trial")
    if plan is not None:
        _check_seed_plan(arms, search, defaults, grid, asha)
    return Study(name, path, defaults, arms, grid, search, algorithm, num_samples, seeds,
                 asha, resources, raw, seed_plan=plan)


def _check_seed_plan(arms: list[Arm], search: dict, defaults: dict, grid: dict,
                     asha: AshaConfig) -> None:
    """Adaptive seeds add seeds to ablation variants, deciding on validation top-1 over
    seeds that trained their full budget, a variant against its one baseline config."""
    if search:
        raise StudyError("seeds: {min, max, detect} adds seeds to ablation variants; a search "
                         "study has none: give seeds as a count")
    if not any(arm.group for arm in arms):
        raise StudyError("seeds: {min, max, detect} adds seeds to the variants of ablation "
                         "groups, and the study has no groups: give seeds as a count")
    if asha.enabled and asha.by == "trial":
        raise StudyError("seeds: {min, max, detect} tests a variant on every seed it runs, "
                         "but asha.by=trial stops single seeds; allowed: asha.by: arm, or "
                         "asha.enabled: false")
    several = [k for k, values in grid.items() if len(values) > 1]
    if several:
        raise StudyError(f"seeds: {{min, max, detect}} pairs each variant with one baseline "
                         f"config, but grid: {', '.join(several)} gives each arm several; "
                         f"allowed: one study per grid point (--set), or seeds as a count")
    _check_validation(defaults, arms, grid, "seeds: {min, max, detect}", "seeds as a count")


def _arm_values(key: str, defaults: dict, arm: Arm, grid: dict) -> list:
    """Every value `key` takes in an arm's trials."""
    if key in arm.overrides:
        return [arm.overrides[key]]
    return list(grid.get(key, [defaults[key]]))


def _check_batches(defaults: dict, arms: list[Arm], grid: dict, workers: int) -> None:
    for arm in arms:
        for batch in _arm_values("batch_size", defaults, arm, grid):
            check_divides(batch, workers)


def _check_validation(defaults: dict, arms: list[Arm], grid: dict, decider: str,
                      instead: str = "asha.enabled: false and no search") -> None:
    """A study that decides (ASHA, search) needs a validation split in every trial: the
    test split never drives a decision."""
    for arm in arms:
        for dataset in _arm_values("dataset", defaults, arm, grid):
            for fraction in _arm_values("val_fraction", defaults, arm, grid):
                if fraction is None:
                    fraction = datasets.info(dataset).val_fraction
                if fraction == 0:
                    raise StudyError(
                        f"{decider} decides on validation top-1, but val_fraction=0 leaves "
                        f"{arm.variant or arm.model} no validation split; allowed: "
                        f"val_fraction > 0, or {instead}")


def _parse_arm(where: str, data: Any, **tags) -> Arm:
    from models import get_entry

    if isinstance(data, str):
        data = {"model": data}
    if not isinstance(data, dict) or "model" not in data:
        raise StudyError(f"{where} must be a model name or a mapping with 'model', got {data!r}")
    extra = set(data) - {"model", "options", "set"}
    if extra:
        raise StudyError(f"unknown key {where}.{sorted(extra)[0]}; allowed: model, options, set")
    options = data.get("options") or {}
    overrides = data.get("set") or {}
    try:
        get_entry(data["model"]).check_options(options)
    except UnknownModelError as exc:
        raise StudyError(f"{where}: {exc}") from None
    checked = _check_section(f"{where}.set", overrides, TRAIN_SCHEMA)
    return Arm(data["model"], dict(options), {k: checked[k] for k in overrides}, **tags)


def _parse_models(models: Any) -> list[Arm]:
    if models is None:
        return []
    if not isinstance(models, list):
        raise StudyError(f"models must be a list of model names or mappings, got {models!r}")
    return [_parse_arm(f"models[{i}]", m) for i, m in enumerate(models)]


def _parse_groups(groups: Any, only: list[str] | None) -> list[Arm]:
    if groups is None:
        if only:
            raise StudyError(f"--group {only[0]!r}: this study has no groups")
        return []
    if not isinstance(groups, dict):
        raise StudyError(f"groups={str(groups)[:80]!s} is not allowed; allowed: a mapping of "
                         f"group name -> {{baseline, variants}}")
    for name in only or []:
        if name not in groups:
            close = difflib.get_close_matches(name, list(groups), n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise StudyError(f"unknown group {name!r}; {hint}allowed: {', '.join(groups)}")
    arms = []
    for gname, group in groups.items():
        check_name("groups", gname)
        if only and gname not in only:
            continue
        if not isinstance(group, dict) or set(group) - {"baseline", "variants", "description"}:
            raise StudyError(f"groups.{gname} must have 'baseline' and 'variants' (and an "
                             f"optional 'description'), got {group!r}")
        if "baseline" not in group or not isinstance(group.get("variants"), dict):
            raise StudyError(f"groups.{gname} needs a 'baseline' and a 'variants' mapping")
        arms.append(_parse_arm(f"groups.{gname}.baseline", group["baseline"],
                               group=gname, variant="baseline", baseline=True))
        for vname, variant in group["variants"].items():
            check_name(f"groups.{gname}.variants", vname)
            arms.append(_parse_arm(f"groups.{gname}.variants.{vname}", variant,
                                   group=gname, variant=vname))
    return arms


def _parse_grid(grid: Any) -> dict[str, list]:
    if grid is None:
        return {}
    if not isinstance(grid, dict):
        raise StudyError(f"grid={str(grid)[:80]!s} is not allowed; allowed: a mapping of "
                         f"training key -> list of values")
    for key, values in grid.items():
        if key not in TRAIN_SCHEMA:
            raise StudyError(f"unknown key grid.{key}; allowed: {', '.join(TRAIN_SCHEMA)}")
        if not isinstance(values, list) or not values:
            raise StudyError(f"grid.{key}={values!r} must be a non-empty list")
        for v in values:
            problem = TRAIN_SCHEMA[key][0](v)
            if problem:
                raise StudyError(f"grid.{key} value {v!r} {problem}")
    return grid


def _parse_search(search: Any) -> tuple[dict, str, int]:
    """{scope: {key: spec}}: scope "*" applies to every trial, a recipe name only to the
    trials of that recipe (lr ranges differ between SGD and AdamW families)."""
    if search is None:
        return {}, "random", 1
    allowed = {"algorithm", "num_samples", "params", "by_recipe"}
    if not isinstance(search, dict) or set(search) - allowed:
        raise StudyError("search must be a mapping with 'algorithm', 'num_samples', 'params' "
                         "and/or 'by_recipe'")
    algorithm = search.get("algorithm", "random")
    if algorithm not in SEARCH_ALGORITHMS:
        raise StudyError(f"search.algorithm={algorithm!r} must be one of "
                         f"{', '.join(SEARCH_ALGORITHMS)}")
    n = search.get("num_samples", 1)
    if _int(1, MAX_SAMPLES)(n):
        raise StudyError(f"search.num_samples={n!r} must be an integer in 1..{MAX_SAMPLES:,}")
    scopes = {"*": _parse_params("search.params", search.get("params"))}
    by_recipe = search.get("by_recipe") or {}
    for recipe, params in by_recipe.items():
        if recipe not in RECIPES:
            raise StudyError(f"unknown recipe search.by_recipe.{recipe}; allowed: "
                             f"{', '.join(RECIPES)}")
        scopes[recipe] = _parse_params(f"search.by_recipe.{recipe}", params)
    return {k: v for k, v in scopes.items() if v}, algorithm, n


def _parse_params(where: str, params: Any) -> dict:
    params = params or {}
    if not isinstance(params, dict):
        raise StudyError(f"{where} must be a mapping of training key -> distribution")
    for key, spec in params.items():
        if key not in TRAIN_SCHEMA:
            raise StudyError(f"unknown key {where}.{key}; allowed: {', '.join(TRAIN_SCHEMA)}")
        if not isinstance(spec, dict) or len(spec) != 1 or next(iter(spec)) not in SEARCH_KINDS:
            raise StudyError(f"{where}.{key}={spec!r} must be one of "
                             f"{{loguniform: [lo, hi]}}, {{uniform: [lo, hi]}}, {{choice: [...]}}")
        kind, args = next(iter(spec.items()))
        if not _valid_range(kind, args):
            raise StudyError(f"{where}.{key}.{kind}={args!r} must be "
                             + ("a non-empty list" if kind == "choice" else "[lo, hi] with lo < hi"
                                + (" and lo > 0" if kind == "loguniform" else "")))
        for value in args:  # every value a search can draw must be a valid training value
            problem = TRAIN_SCHEMA[key][0](value) or (
                "is resolved before a trial starts; allowed: bf16, fp16, off"
                if key == "amp" and value == "auto" else None)
            if problem:
                raise StudyError(f"{where}.{key}.{kind} value {value!r} {problem}")
    return params


def _valid_range(kind: str, args: Any) -> bool:
    if kind == "choice":
        return isinstance(args, list) and bool(args)
    return (isinstance(args, list) and len(args) == 2
            and all(isinstance(a, (int, float)) and not isinstance(a, bool)
                    and math.isfinite(a) for a in args)
            and args[0] < args[1] and (kind != "loguniform" or args[0] > 0))


def _parse_seeds(seeds: Any) -> tuple[list[int], SeedPlan | None]:
    """The seeds every arm runs, and the adaptive plan when `seeds` is a mapping."""
    if isinstance(seeds, dict):
        checked = _check_section("seeds", seeds, SEED_PLAN_SCHEMA)
        plan = SeedPlan(checked["min"], checked["max"], float(checked["detect"]))
        if plan.max < plan.min:
            raise StudyError(f"seeds.max={plan.max} is below seeds.min={plan.min}; allowed: "
                             f"{plan.min}..{MAX_SEEDS:,}")
        return plan.seeds[:plan.min], plan
    return _seed_list(seeds), None


def _seed_list(seeds: Any) -> list[int]:
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        if not 1 <= seeds <= MAX_SEEDS:
            bound = ">= 1" if seeds < 1 else f"<= {MAX_SEEDS:,}"
            raise StudyError(f"seeds={seeds!r} must be {bound} (a count) or a list of integers")
        return list(range(seeds))
    if isinstance(seeds, list) and seeds and all(
            isinstance(s, int) and not isinstance(s, bool) for s in seeds):
        bad = next((s for s in seeds if not 0 <= s <= MAX_SEED), None)
        if bad is not None:
            raise StudyError(f"seeds value {bad!r} is out of range; allowed: 0..{MAX_SEED}")
        return list(dict.fromkeys(seeds))
    raise StudyError(f"seeds={str(seeds)[:80]} must be a count in 1..{MAX_SEEDS:,}, a list "
                     f"of integers in 0..{MAX_SEED} or a mapping {{min, max, detect}}")
