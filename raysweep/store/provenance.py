"""What produced a run: study, code version, library versions, hardware, command.

Provenance is written into the run folder and copied into every report (files that end
up committed under `results/`), so it never holds a credential: the command line and
the resolved study pass through `redact`/`redact_value`, which replace with `***`

- URI userinfo and query strings/fragments (`s3://KEY:SECRET@bucket/p?token=T#f` →
  `s3://***@bucket/p?***`),
- the value of any `name=value` / `name: value` whose name looks secret (token, secret,
  password, passwd, pwd, key, credential, auth, signature, cookie), as in `--set
  api_token=...` or `AWS_SECRET_ACCESS_KEY=...`, and the argument after such a flag
  (`--password X`),
- bearer/basic authorization values, AWS-style key ids, well-known token formats (GitHub,
  GitLab, Slack, Hugging Face, OpenAI, Google API keys, JWTs, PEM private keys),
- long high-entropy strings (20+ characters mixing upper case, lower case and digits with
  at least 3.5 bits of entropy per character; 32+ hex digits).

Environment variables are never copied.
"""
from __future__ import annotations

import itertools
import json
import math
import os
import platform
import re
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import yaml

from raysweep.store.records import RemotePath, atomic_write_text

MASK = "***"

# A name (of a flag, option, key or environment variable) whose value is a secret: it
# contains one of these, or has one of the words below as a word (snake, kebab, camel case).
_SECRET_PARTS = ("token", "secret", "passw", "pwd", "credential", "signature", "cookie",
                 "apikey", "accesskey", "privatekey")
_SECRET_WORDS = {"key", "keys", "keyid", "auth", "authorization", "authentication"}

# Userinfo may hold an unencoded "/" (a secret key pasted as is): everything up to an "@"
# counts, so a rare "@" in a path over-redacts rather than leaks.
_URI_USERINFO = re.compile(r"\b([a-z][a-z0-9+.-]*://)[^\s@]+@", re.IGNORECASE)
_URI_QUERY = re.compile(r"\b([a-z][a-z0-9+.-]*://[^\s?#]*)[?#][^\s]*", re.IGNORECASE)
_NAME_THEN_VALUE = re.compile(r"([A-Za-z0-9_.\-]+)\s*[=:]\s*")
_VALUE_END = re.compile(r"[\s,;&]|$")
_AUTH_HEADER = re.compile(r"\b(bearer|basic|token)(\s+)[A-Za-z0-9._~+/=\-]{8,}", re.IGNORECASE)
_PEM = re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)",
                  re.DOTALL)
_KNOWN_TOKENS = re.compile(
    r"\b(?:(?:AKIA|ASIA|AGPA|AIDA|AROA|ANPA|ANVA|AIPA)[A-Z0-9]{16}"   # AWS key ids
    r"|gh[pousr]_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"       # GitHub
    r"|glpat-[A-Za-z0-9_\-]{20,}"                                      # GitLab
    r"|xox[abprs]-[A-Za-z0-9\-]{10,}"                                  # Slack
    r"|hf_[A-Za-z0-9]{20,}|sk-[A-Za-z0-9_\-]{20,}"                     # Hugging Face, OpenAI
    r"|AIza[A-Za-z0-9_\-]{35}"                                         # Google API keys
    r"|eyJ[A-Za-z0-9_\-]{5,}\.eyJ[A-Za-z0-9_\-]{5,}\.[A-Za-z0-9_\-]*)")  # JWTs
_CANDIDATE = re.compile(r"[A-Za-z0-9_+\-]{20,}={0,2}")
_MIN_ENTROPY_BITS = 3.5   # per character; English words and paths score lower


def redact(argv: list[str]) -> list[str]:
    """The command line with credentials replaced by `***`: each argument through
    `redact_text`, and the argument after a flag whose name looks secret."""
    out = []
    for i, arg in enumerate(argv):
        flag = argv[i - 1] if i else ""
        secret_flag = flag.startswith("-") and "=" not in flag and secret_name(flag)
        out.append(MASK if secret_flag and not arg.startswith("-") else redact_text(arg))
    return out


def redact_text(text: str) -> str:
    """`text` with every credential the module docstring lists replaced by `***`."""
    text = _PEM.sub(MASK, text)
    text = _URI_USERINFO.sub(rf"\1{MASK}@", text)
    text = _URI_QUERY.sub(rf"\1?{MASK}", text)
    text = _AUTH_HEADER.sub(rf"\1\2{MASK}", text)
    text = _mask_assignments(text)
    text = _KNOWN_TOKENS.sub(MASK, text)
    return _CANDIDATE.sub(lambda m: MASK if _looks_random(m.group(0)) else m.group(0), text)


def redact_value(value: Any, name: str = "") -> Any:
    """A YAML/JSON-like value with every string redacted, and every value under a key
    whose name looks secret replaced by `***` (a study's data, a provenance document)."""
    if isinstance(value, dict):
        return {k: redact_value(v, str(k)) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [redact_value(v, name) for v in value]
    if name and secret_name(name) and value not in (None, "", False, True):
        return MASK
    return redact_text(value) if isinstance(value, str) else value


def secret_name(name: str) -> bool:
    """Whether a flag, key or variable called `name` holds a secret (`api_token`,
    `AWS_SECRET_ACCESS_KEY`, `--password`, `clientKey`; not `keyboard` or `author`)."""
    flat = re.sub(r"[^a-z0-9]", "", name.lower())
    words = re.findall(r"[a-z]+", re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", name).lower())
    return any(p in flat for p in _SECRET_PARTS) or any(w in _SECRET_WORDS for w in words)


def _mask_assignments(text: str) -> str:
    """Mask the value of every `name=value` / `name: value` whose name looks secret;
    names are found without consuming values (`--set=api_token=X` has two names)."""
    out, pos = [], 0
    for m in _NAME_THEN_VALUE.finditer(text):
        if m.start() < pos or not secret_name(m.group(1)):
            continue
        end = _VALUE_END.search(text, m.end()).start()
        if end > m.end() and text[m.end():end] != MASK:
            out += [text[pos:m.end()], MASK]
            pos = end
    return "".join(out) + text[pos:]


def _looks_random(word: str) -> bool:
    core = word.rstrip("=")
    if len(core) >= 32 and re.fullmatch(r"[0-9a-fA-F]+", core):
        return True  # a hex key or digest
    classes = (re.search(r"[a-z]", core), re.search(r"[A-Z]", core), re.search(r"[0-9]", core))
    if not all(classes):
        return False
    counts = Counter(core)
    entropy = -sum(n / len(core) * math.log2(n / len(core)) for n in counts.values())
    return entropy >= _MIN_ENTROPY_BITS


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
    """Versions and hardware; deliberately no environment variable (they hold tokens)."""
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


def write_provenance(run_dir: Path | RemotePath, study, argv: list[str] | None = None) -> None:
    """study.yaml (as resolved, overrides applied) and provenance.json, appended per run
    so an incremental study keeps the history of what produced each batch of trials.
    `argv` (default: sys.argv) and the study are stored redacted; a run entry written by
    an older raysweep is redacted again when the file is rewritten."""
    keep_study_versions(run_dir, yaml.safe_dump(redact_value(study.raw), sort_keys=False))
    path = run_dir / "provenance.json"
    try:
        runs = json.loads(path.read_text())["runs"] if path.is_file() else []
    except (ValueError, KeyError, TypeError):
        runs = []  # a damaged provenance file is replaced, never a reason to fail a run
    runs.append({"study_file": relative(study.path), "run_dir": relative(str(run_dir)),
                 # the trials the run holds when done: `status` reads it instead of
                 # expanding study.yaml (which imports the model zoo and torch)
                 "trials_total": len(study.trials()) * (study.num_samples if study.search
                                                        else 1),
                 "argv": redact(list(sys.argv if argv is None else argv)), **environment()})
    doc = {"study": study.name, "runs": runs}
    atomic_write_text(path, json.dumps(redact_provenance(doc), indent=1))


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


def _changes(before: str, after: str, shown: int = 3) -> str:
    from raysweep.study.parse import differences

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
