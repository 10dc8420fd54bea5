"""A report folder that rebuilds itself: it carries the records its numbers come from.

`report` copies into its output folder the trial records it read (`records/`, unchanged
bytes; hard links where it can) and the run's study files (`study.yaml` and the earlier
versions `study.N.yaml`), so `raysweep report FOLDER` on that folder (results/showcase, a
report copied off a cluster) rebuilds every table and plot from them, in place;
`check(FOLDER)` rebuilds it in a temporary folder and names every file that differs. The report's provenance points
to the records by a relative path (`records/`), never to the run folder they came from.

Byte for byte holds for the tables and provenance files; the PDF and PNG files carry no
date, so they match too when the same matplotlib draws them (each names its version).
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from raysweep.errors import RaysweepError
from raysweep.store.records import RECORDS_DIR
from raysweep.store.storage import atomic_write_bytes
from raysweep.core.trial import TrialRecord

STUDY_FILES = ("study.yaml", "study.*.yaml")


def is_report(folder: Path) -> bool:
    """Whether `folder` was written by `report` (its provenance.json has a "report" part)."""
    try:
        doc = json.loads((folder / "provenance.json").read_text())
    except (OSError, ValueError):
        return False
    return isinstance(doc, dict) and isinstance(doc.get("report"), dict)


def previous_files(folder: Path) -> list[str]:
    """The files the last report into `folder` wrote (relative paths), [] if none did."""
    if not is_report(folder):
        return []
    files = json.loads((folder / "provenance.json").read_text())["report"].get("files")
    return [f for f in files if isinstance(f, str)] if isinstance(files, list) else []


def carry(run_dir: Path, out: Path, records: list[TrialRecord]) -> list[Path]:
    """Copy the records read and the study files into `out` (nothing when `out` is the
    run folder itself). Records in `out/records/` that this report did not read are
    removed when a report wrote them; any other record there is an error (an --out
    pointing at another run folder must not mix two runs)."""
    if out.resolve() == run_dir.resolve():
        return []
    used = {f"{r.key}.json" for r in records}
    target = out / RECORDS_DIR
    found = target.glob("*.json") if target.is_dir() else []
    stale = sorted(p for p in found if p.name not in used)
    if stale and not is_report(out):
        raise RaysweepError(f"--out {str(out)!r} holds trial records of another run "
                            f"({stale[0].name}); choose an empty or report folder")
    for path in stale:
        path.unlink()
    written = []
    target.mkdir(parents=True, exist_ok=True)
    for name in sorted(used):
        written.append(target / name)
        _snapshot(run_dir / RECORDS_DIR / name, target / name)
    for pattern in STUDY_FILES:
        for path in sorted(run_dir.glob(pattern)):
            atomic_write_bytes(out / path.name, path.read_bytes())
            written.append(out / path.name)
    return written


def _snapshot(source: Path, path: Path) -> None:
    """`path` becomes a copy of `source`: a hard link where both are on one file system,
    else copied bytes; either way renamed into place whole. A link is a true snapshot
    because a record is only ever replaced (`atomic_write`), never changed in place, and it
    is what lets a report of 5,000 records carry them in a fraction of a second instead of
    several (a copy and an fsync each)."""
    if path.exists() and path.samefile(source):
        return
    tmp = path.with_name(f".{path.name}.link")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:     # another file system, or one without hard links
        atomic_write_bytes(path, source.read_bytes())
        return
    os.replace(tmp, path)


def remove_stale(out: Path, before: list[str], written: list[Path]) -> None:
    """Delete the tables and plots an earlier report into `out` wrote and this one did
    not (a model dropped from the study leaves no stale curves behind); files of a format
    this report did not write (`--format csv` into a folder with .md tables) stay."""
    now = {str(p.relative_to(out)) for p in written}
    suffixes = {p.suffix for p in written}
    for name in before:
        path = out / name
        if (name not in now and path.suffix in suffixes and path.parent == out
                and path.is_file()):
            path.unlink()


def check(folder: str | Path) -> list[str]:
    """Rebuild the report folder `folder` from the records it carries into a temporary
    folder; one line per file that differs, is missing or is extra ([] when it rebuilds
    byte for byte)."""
    from raysweep.results import report

    folder = Path(folder)
    if not is_report(folder):
        raise RaysweepError(f"{str(folder)!r} is not a report folder (no provenance.json "
                            f"written by raysweep report)")
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / folder.name
        shutil.copytree(folder, copy)
        for path in copy.iterdir():
            if path.is_file() and path.name != "provenance.json" and not _study_file(path):
                path.unlink()   # tables and plots: rebuilt from nothing but the records
        report(copy, formats=formats_of(folder))
        return differences(folder, copy)


def _study_file(path: Path) -> bool:
    return any(path.match(p) for p in STUDY_FILES)


def formats_of(folder: Path) -> tuple[str, ...]:
    """The table formats a report folder holds (those of its comparison table)."""
    from raysweep.results.export import FORMATS

    found = tuple(f for f in FORMATS if (folder / f"comparison.{f}").is_file())
    return found or FORMATS


def differences(expected: Path, rebuilt: Path) -> list[str]:
    def files(root: Path) -> dict[str, bytes]:
        return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}

    want, got = files(expected), files(rebuilt)
    out = [f"{name}: differs" for name in sorted(set(want) & set(got)) if want[name] != got[name]]
    out += [f"{name}: not rebuilt" for name in sorted(set(want) - set(got))]
    out += [f"{name}: rebuilt but not in {expected}" for name in sorted(set(got) - set(want))]
    return out
