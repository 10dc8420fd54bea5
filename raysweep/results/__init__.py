"""The results layer: tables and plots rebuilt from a run's stored trial records only.

    from raysweep.results import report
    report("runs/ablations")          # → runs/ablations/report/*.md|csv|tex|pdf|png, provenance

It reads `records/*.json`, `provenance.json` and `study.yaml` of a run folder and never
writes there (except into the default output folder `<run>/report/`), so it works with
Ray stopped and on a copied results folder. The output folder carries copies of the
records and study files it was made from (`rebuild`): `report` on it rebuilds it in place,
byte for byte. The rules the tables follow (what is ranked,
averaged and tested together) are in results/README.md.

    cohorts     which trials' numbers may be averaged or ranked together
    stats       paired / Welch tests, Holm's correction, the detectable Δ
    comparison  Table 1 (models) and Table 2 (families)
    ablation    one table per ablation group
    hpo         the search table: per arm, the sample chosen by validation accuracy
    table       the Table type and cell formatting
    export      CSV, Markdown and provenance files;  latex  LaTeX that fits a page
    rebuild     the records a report folder carries; checking that it rebuilds exactly
    plots       PDF and 300-dpi PNG plots
"""
from __future__ import annotations

from pathlib import Path

import yaml

from raysweep.errors import NoRecordsError, RaysweepError
from raysweep.store.records import RECORDS_DIR, read_records


def report(run_dir: str | Path, out_dir: str | Path | None = None,
           formats: tuple[str, ...] = ("md", "csv", "tex")) -> list[Path]:
    """Write every table (in `formats`), plot and the provenance of `run_dir`'s records to
    `out_dir` (default `<run_dir>/report`); returns the paths written."""
    # Imported here, not with the package: `compare` and `status` use its statistics and
    # cells alone, without matplotlib and pandas (~1 s of start-up).
    from raysweep.results import ablation, comparison, export, hpo, plots, rebuild

    run_dir = Path(run_dir)
    bad = [f for f in formats if f not in export.FORMATS]
    if bad:
        raise RaysweepError(f"report format {bad[0]!r} is not one of {', '.join(export.FORMATS)}")
    records = read_records(run_dir)
    if not records:
        raise NoRecordsError(f"no readable trial records in {run_dir / RECORDS_DIR}")
    out = Path(out_dir) if out_dir is not None else default_out(run_dir)
    before = rebuild.previous_files(out)
    study = study_yaml(run_dir)
    order, descriptions = study_groups(study)
    table1 = comparison.comparison(records)
    ablations = ablation.ablations(records, order, descriptions, seed_plan(study))
    search = hpo.hpo(records)
    tables = [table1, comparison.families(table1), *ablations, *([search] if search else [])]
    written = [p for t in tables for p in export.write_table(t, out, tuple(formats))]
    written += plots.write_all(records, table1, ablations, out)
    carried = rebuild.carry(run_dir, out, records)
    rebuild.remove_stale(out, before, written)
    written += export.write_provenance(run_dir, out, records, tables, files=written)
    return written + carried


def default_out(run_dir: Path) -> Path:
    """A report folder (results/showcase) is rebuilt in place; a run writes to RUN/report."""
    from raysweep.results import rebuild

    return run_dir if rebuild.is_report(run_dir) else run_dir / "report"


def study_yaml(run_dir: Path) -> dict:
    """The run's study.yaml as a mapping; empty when the file is missing or unreadable
    (tables then sort variants by name, and a seed plan is not known)."""
    try:
        study = yaml.safe_load((run_dir / "study.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return {}
    return study if isinstance(study, dict) else {}


def study_groups(study: dict) -> tuple[dict[str, list[str]], dict[str, str]]:
    """Each ablation group's variant order and description from the study's mapping."""
    try:
        groups = study.get("groups") or {}
        order = {g: [v for v in spec.get("variants") or {}] for g, spec in groups.items()}
        descriptions = {g: spec["description"] for g, spec in groups.items()
                        if spec.get("description")}
    except (AttributeError, TypeError):
        return {}, {}
    return order, descriptions


def seed_plan(study: dict):
    """The study's adaptive seeds (`seeds: {min, max, detect}`), or None."""
    from raysweep.study.sections import SeedPlan

    seeds = study.get("seeds")
    if not isinstance(seeds, dict):
        return None
    return SeedPlan(**{k: seeds[k] for k in ("min", "max", "detect") if k in seeds})


__all__ = ["NoRecordsError", "report"]
