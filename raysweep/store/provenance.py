"""What produced a run: study, code version, library versions, hardware, command.

Provenance is written into the run folder and copied into every report (files that end
up committed under `results/`), so it never holds a credential: the command line and
the resolved study pass through `redact`/`redact_value` (store/redact.py). Environment
variables are never copied.
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import itertools
import json
import os
import platform
import re
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml

from raysweep.store.redact import redact, redact_text, redact_value
from raysweep.store.storage import RemotePath, atomic_write_text

def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True,
                             cwd=Path(__file__).resolve().parent, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10,
                               cwd=Path(__file__).resolve().parent).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return (out.stdout.strip() + ("+dirty" if dirty else "")) if out.returncode == 0 else None


def environment() -> dict:
    """Versions and hardware; deliberately no environment variable (they hold tokens).
    Read without importing torch, torchvision or timm (~4 s of CPU in a driver that trains
    nothing itself)."""
    import ray

    from raysweep import __version__
    from raysweep.core.precision import local_gpus

    return {
        "raysweep": __version__, "torch": package_version("torch"),
        "torchvision": package_version("torchvision"), "ray": ray.__version__,
        "timm": package_version("timm"), "python": platform.python_version(),
        "git_commit": git_commit(), "host": platform.node(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "gpus": [gpu.kind for gpu in local_gpus()],
        "cluster_resources": {k: v for k, v in ray.cluster_resources().items()
                              if k in ("CPU", "GPU", "memory")} if ray.is_initialized() else None,
    }


def package_version(package: str) -> str:
    """`package.__version__` without importing the package: torch, torchvision and timm
    write it into `<package>/version.py` at build time, with the CUDA build's tag that
    the installed metadata lacks (torch `2.15.0+cu132`, metadata `2.15.0`)."""
    spec = importlib.util.find_spec(package)
    source = Path(spec.origin).with_name("version.py") if spec and spec.origin else None
    if source is not None and source.exists():
        found = re.search(r"^__version__\s*=\s*['\"]([^'\"]+)['\"]", source.read_text(), re.M)
        if found:
            return found.group(1)
    return importlib.metadata.version(package)


def write_provenance(run_dir: Path | RemotePath, study, argv: list[str] | None = None,
                     lanes: int | None = None, same_sitting: bool = False) -> None:
    """study.yaml (as resolved, overrides applied) and provenance.json, appended per run
    so an incremental study keeps the history of what produced each batch of trials;
    `lanes`, the trials the run holds at once, is the ETA's divisor in `status`.
    `argv` (default: sys.argv) and the study are stored redacted; a run entry written by
    an older raysweep is redacted again when the file is rewritten. `same_sitting`: a
    later round of one command (adaptive seeds) updates the last entry's trial count and
    lanes instead of adding an entry."""
    keep_study_versions(run_dir, yaml.safe_dump(redact_value(study.raw), sort_keys=False))
    path = run_dir / "provenance.json"
    try:
        runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    except (ValueError, KeyError, TypeError):
        runs = []  # a damaged provenance file is replaced, never a reason to fail a run
    if same_sitting and runs:
        runs[-1].update(trials_total=study.total_trials(), **({"max_concurrent": lanes}
                                                               if lanes else {}))
    else:
        runs.append(_entry(run_dir, study, argv, lanes))
    doc = {"study": study.name, "runs": runs}
    atomic_write_text(path, json.dumps(redact_provenance(doc), indent=1))


def _entry(run_dir, study, argv: list[str] | None, lanes: int | None) -> dict:
    return {"study_file": relative(study.path), "run_dir": relative(str(run_dir)),
            # the trials the run holds when done: `status` reads it instead of expanding
            # study.yaml (which imports the model zoo and torch)
            "trials_total": study.total_trials(),
            **({"max_concurrent": lanes} if lanes else {}),
            # when this sitting started: `status` shows the time elapsed since
            "started_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "argv": redact(list(sys.argv if argv is None else argv)), **environment()}


def keep_study_versions(run_dir: Path | RemotePath, text: str) -> Path | RemotePath | None:
    """Write `text` as the run's study.yaml. A different study.yaml already there (a re-run
    under the same name with a changed study) is kept as study.N.yaml (N = 1, 2, ...: the
    order of the versions) and a one-line warning names what changed, so the records of
    every version still have the study they were run with. Returns the kept file."""
    path, kept = run_dir / "study.yaml", None
    before = path.read_text() if path.is_file() else None
    if before is not None and before != text:
        taken = {p.name for p in run_dir.glob("study.*.yaml")}
        kept = run_dir / next(f"study.{n}.yaml" for n in itertools.count(1)
                              if f"study.{n}.yaml" not in taken)
        atomic_write_text(kept, before)
        print(f"raysweep: run {run_dir.name!r} was made with another study "
              f"({_changes(before, text)}); the earlier one is kept as {kept.name}",
              file=sys.stderr, flush=True)
    atomic_write_text(path, text)
    return kept


def differences(before: Any, after: Any, where: str = "") -> list[str]:
    """`key: old → new` for every dotted key whose value differs between two studies."""
    if isinstance(before, dict) and isinstance(after, dict):
        return [d for k in sorted(set(before) | set(after), key=str)
                for d in differences(before.get(k), after.get(k), f"{where}.{k}".lstrip("."))]
    return [] if before == after else [f"{where}: {before!r} → {after!r}"]


def _changes(before: str, after: str, shown: int = 3) -> str:
    try:
        found = differences(yaml.safe_load(before), yaml.safe_load(after))
    except yaml.YAMLError:
        return "its study.yaml was unreadable"
    more = f"; {len(found) - shown} more" if len(found) > shown else ""
    return "; ".join(found[:shown]) + more if found else "its text changed"


def relative(path: str | None) -> str | None:
    """A local path under the working directory as a relative path (what a committed
    report shows: `runs/showcase`, not the home folder of the machine that ran it)."""
    if not path or "://" in path or not os.path.isabs(path):
        return path
    try:
        inside = Path(path).resolve().relative_to(Path.cwd().resolve())
    except ValueError:
        return path
    return str(inside)


def redact_provenance(doc: dict) -> dict:
    """A provenance document (the run's or a report's) with its command lines redacted:
    what a report calls on a provenance.json that an older raysweep wrote."""
    runs = doc.get("runs")
    if not isinstance(runs, list):
        return doc
    return {**doc, "runs": [{**run, "argv": redact([str(a) for a in run["argv"]]),
                             **({"run_dir": redact_text(str(run["run_dir"]))}
                                if "run_dir" in run else {})}
                            if isinstance(run, dict) and isinstance(run.get("argv"), list)
                            else run for run in runs]}
