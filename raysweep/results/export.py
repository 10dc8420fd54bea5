"""Writing tables (CSV, Markdown; LaTeX in `latex`) and the provenance files, atomically."""
from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path
from typing import Any

import pandas as pd

from raysweep import __version__
from raysweep.store.records import RECORDS_DIR
from raysweep.store.storage import atomic_write_text
from raysweep.results.latex import slug, to_latex
from raysweep.results.table import Table
from raysweep.core.trial import TrialRecord

FORMATS = ("md", "csv", "tex")
UNKNOWN = "unknown"


def write_table(table: Table, out_dir: Path, formats: tuple[str, ...]) -> list[Path]:
    written = []
    for fmt in formats:
        path = out_dir / f"{slug(table.name)}.{fmt}"
        atomic_write_text(path, {"csv": to_csv, "md": to_markdown, "tex": to_latex}[fmt](table))
        written.append(path)
    return written


def to_csv(table: Table) -> str:
    buf = io.StringIO()
    table.data.to_csv(buf, index=False)  # NaN → empty field
    return buf.getvalue()


# --- Markdown ---

def _md_cell(text: Any) -> str:
    # `*` escaped: redacted secrets (`***`) would otherwise render as emphasis.
    return str(text).replace("|", r"\|").replace("*", r"\*").replace("\n", " ")


def markdown_table(frame: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(_md_cell(c) for c in frame.columns) + " |",
             "|" + "|".join("---" for _ in frame.columns) + "|"]
    lines += ["| " + " | ".join(_md_cell(v) for v in row) + " |"
              for row in frame.itertuples(index=False)]
    return "\n".join(lines)


def to_markdown(table: Table) -> str:
    notes = "\n".join(f"- {_md_cell(n)}" for n in table.notes)
    return f"## {table.title}\n\n{markdown_table(table.display)}\n\n{notes}\n"


# --- provenance ---

def run_provenance(run_dir: Path) -> dict | None:
    """The engine's provenance.json, or None when it is missing or unreadable."""
    try:
        found = json.loads((run_dir / "provenance.json").read_text())
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def record_files(run_dir: Path, records: list[TrialRecord]) -> tuple[dict[str, str], list[str]]:
    """sha256 of every record file the report used, and the names of those it skipped."""
    used = {r.key for r in records}
    hashes, skipped = {}, []
    for path in sorted((run_dir / RECORDS_DIR).glob("*.json")):
        if path.stem in used:
            hashes[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
        else:
            skipped.append(path.name)
    return hashes, skipped


def write_provenance(run_dir: Path, out_dir: Path, records: list[TrialRecord],
                     tables: list[Table], files: list[Path] = ()) -> list[Path]:
    """provenance.json and .md of a report into `out_dir`; `files` are the tables and
    plots written (named in it, so that the next report there removes the stale ones).
    Every path in it is relative: the records are the copies in `out_dir/records/`."""
    from raysweep.store.provenance import redact_provenance

    # Redacted again: a provenance.json written before redaction existed may hold secrets.
    found = run_provenance(run_dir)
    found = redact_provenance(found) if found else found
    hashes, skipped = record_files(run_dir, records)
    doc = {
        "report": {"raysweep": __version__, "records": f"{RECORDS_DIR}/",
                   "records_used": len(hashes), "records_skipped": skipped,
                   "files": sorted(str(p.relative_to(out_dir)) for p in files)},
        "study": (found or {}).get("study", UNKNOWN),
        "runs": (found or {}).get("runs", UNKNOWN),
        "record_sha256": hashes,
        "tables": {t.name: {row: [{"key": k, "trial_ids": ids} for k, ids in src]
                            for row, src in t.sources.items()} for t in tables},
    }
    json_path, md_path = out_dir / "provenance.json", out_dir / "provenance.md"
    atomic_write_text(json_path, json.dumps(doc, indent=1, default=str) + "\n")
    atomic_write_text(md_path, provenance_markdown(doc))
    return [md_path, json_path]


_RUN_FIELDS = (("study file", "study_file"), ("git commit", "git_commit"),
               ("raysweep", "raysweep"), ("torch", "torch"), ("torchvision", "torchvision"),
               ("ray", "ray"), ("timm", "timm"), ("python", "python"), ("host", "host"),
               ("platform", "platform"), ("CPUs", "cpus"), ("GPUs", "gpus"),
               ("Ray cluster resources", "cluster_resources"), ("command", "argv"))


def _value(value: Any) -> str:
    if value is None or value == "" or value == []:
        return "none" if value == [] else UNKNOWN
    if isinstance(value, list):
        return " ".join(map(str, value))
    return str(value)


def _trial(source: dict) -> str:
    return f"{source['key']}: {' '.join(source['trial_ids']) or UNKNOWN}"


def provenance_markdown(doc: dict) -> str:
    out = ["# Provenance", "",
           f"Study: {doc['study']}; {doc['report']['records_used']} trial records read, "
           f"kept in `{doc['report']['records']}` beside this file (their sha256 are in "
           "provenance.json): `raysweep report` on this folder rebuilds every table and "
           "plot from them."]
    if doc["report"]["records_skipped"]:
        out.append("Skipped (unreadable) record files: "
                   + ", ".join(doc["report"]["records_skipped"]) + ".")
    runs = doc["runs"] if isinstance(doc["runs"], list) else []
    if not runs:
        out += ["", "What produced the run: unknown (no readable provenance.json in the run "
                "folder)."]
    for i, run in enumerate(runs, 1):
        rows = pd.DataFrame({"field": [f for f, _ in _RUN_FIELDS],
                             "value": [_value(run.get(k) if isinstance(run, dict) else None)
                                       for _, k in _RUN_FIELDS]})
        out += ["", f"## Run {i} of {len(runs)}", "", markdown_table(rows)]
    for name, rows in doc["tables"].items():
        frame = pd.DataFrame({
            "row": list(rows),
            "trials (key: Tune trial ids)": [", ".join(_trial(t) for t in src)
                                             for src in rows.values()]})
        out += ["", f"## {name}", "", markdown_table(frame)]
    return "\n".join(out) + "\n"
