"""What produced a run: study, code version, library versions, hardware, command."""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from pathlib import Path

import yaml

from raysweep.records import atomic_write_text


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
    import ray
    import timm
    import torch
    import torchvision

    from raysweep import __version__

    gpus = ([torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
            if torch.cuda.is_available() else [])
    return {
        "raysweep": __version__, "torch": torch.__version__, "torchvision": torchvision.__version__,
        "ray": ray.__version__, "timm": timm.__version__, "python": platform.python_version(),
        "git_commit": git_commit(), "host": platform.node(), "platform": platform.platform(),
        "cpus": os.cpu_count(), "gpus": gpus,
        "cluster_resources": {k: v for k, v in ray.cluster_resources().items()
                              if k in ("CPU", "GPU", "memory")} if ray.is_initialized() else None,
    }


def write_provenance(run_dir: Path, study) -> None:
    """study.yaml (as resolved, overrides applied) and provenance.json, appended per run
    so an incremental study keeps the history of what produced each batch of trials."""
    atomic_write_text(run_dir / "study.yaml", yaml.safe_dump(study.raw, sort_keys=False))
    path = run_dir / "provenance.json"
    try:
        runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    except (ValueError, KeyError, TypeError):
        runs = []  # a damaged provenance file is replaced, never a reason to fail a run
    runs.append({"study_file": study.path, "argv": sys.argv, **environment()})
    atomic_write_text(path, json.dumps({"study": study.name, "runs": runs}, indent=1))
