"""A report folder carries its records and rebuilds byte for byte: every committed study
under results/, a report of a real run (the smoke fixture's records), and hand-built
records whose change the check must see."""
from __future__ import annotations

import json
import re
from pathlib import Path

import matplotlib
import pytest
import yaml

from raysweep.cli import main
from raysweep.results import report
from raysweep.results.rebuild import check
from raysweep.store.records import write_record
from support.factories import record, spec, write_run

RESULTS = Path(__file__).resolve().parents[2] / "results"
STUDIES = sorted(p for p in RESULTS.iterdir() if p.is_dir())
PLOTS = (".pdf", ".png")


def drawn_by(folder: Path) -> set[str]:
    """The matplotlib versions that drew a folder's PNG files (each names its version)."""
    return {m.group(1).decode() for p in folder.glob("*.png")
            for m in [re.search(rb"Matplotlib version\s*([0-9][0-9.]*[0-9])", p.read_bytes())]
            if m}


def mismatches(folder: Path) -> list[str]:
    """`check`'s differences; plots only when this matplotlib drew them (a PNG or PDF of
    another matplotlib version differs in its bytes, never in its numbers)."""
    plots_comparable = drawn_by(folder) <= {matplotlib.__version__}
    return [d for d in check(folder)
            if plots_comparable or not d.split(":")[0].endswith(PLOTS)]


@pytest.mark.parametrize("study", STUDIES, ids=[p.name for p in STUDIES])
def test_a_committed_study_rebuilds_byte_for_byte(study):
    if not (study / "records").is_dir():
        pytest.skip(f"results/{study.name} carries no records yet: regenerate it with "
                    f"`raysweep run {study.name} --local` then `raysweep report "
                    f"runs/{study.name} --out results/{study.name}` (results/README.md)")
    prov = json.loads((study / "provenance.json").read_text())
    assert prov["report"]["records"] == "records/"      # relative: the folder's own copies
    assert all(not run["run_dir"].startswith("/") for run in prov["runs"])
    assert mismatches(study) == []


def test_a_report_of_a_real_run_rebuilds_in_place(smoke_run_dir, tmp_path):
    out = tmp_path / "results" / "demo"
    report(smoke_run_dir, out)
    assert sorted(p.name for p in (out / "records").iterdir()) == \
        sorted(p.name for p in (smoke_run_dir / "records").iterdir())
    assert (out / "study.yaml").read_bytes() == (smoke_run_dir / "study.yaml").read_bytes()
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["report"]["records"] == "records/" and "run_dir" not in prov["report"]
    assert str(tmp_path) not in (out / "provenance.md").read_text()
    assert mismatches(out) == []
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    assert main(["report", str(out)]) == 0            # in place: the same bytes
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert main(["report", str(out), "--check"]) == 0


def test_the_check_names_a_table_that_no_longer_matches_its_records(tmp_path, capsys):
    recs = [record(spec(seed=s, group="g", baseline=True), top1=[40.0, 45.0, 50.0 + s])
            for s in range(3)]
    recs += [record(spec("resnet_32", seed=s, group="g", variant="deeper"),
                    top1=[40.0, 46.0, 52.0 + s * s]) for s in range(3)]
    run = write_run(tmp_path / "run", recs)
    (run / "study.yaml").write_text(yaml.safe_dump({"name": "s", "groups": {"g": {
        "baseline": "resnet_20", "variants": {"deeper": "resnet_32"}}}}))
    out = tmp_path / "out"
    report(run, out)
    changed = out / "records" / f"{recs[3].key}.json"     # a record the tables no longer match
    data = json.loads(changed.read_text())
    data["history"][-1]["test_top1"] += 1.0
    changed.write_text(json.dumps(data, indent=1, sort_keys=True))
    assert main(["report", str(out), "--check"]) == 1
    found = capsys.readouterr().out.splitlines()
    assert {"comparison.md: differs", "comparison.csv: differs", "ablation_g.tex: differs",
            "provenance.json: differs"} <= set(found)
    # Reported again without resnet_32's records: their copies and its curves go too.
    assert (out / "curves_resnet_32.png").is_file()
    for r in recs[3:]:
        (run / "records" / f"{r.key}.json").unlink()
    report(run, out)
    assert sorted(p.name for p in (out / "records").iterdir()) == \
        sorted(f"{r.key}.json" for r in recs[:3])
    assert not (out / "curves_resnet_32.png").exists()
    assert not (out / "curves_resnet_32.pdf").exists() and (out / "comparison.md").is_file()


def test_report_refuses_an_out_folder_holding_another_run_s_records(tmp_path):
    run = write_run(tmp_path / "run", [record(spec(seed=0))])
    other = write_run(tmp_path / "other", [record(spec(seed=1))])
    with pytest.raises(Exception, match="holds trial records of another run"):
        report(run, other)
    assert len(list((other / "records").iterdir())) == 1


def test_a_reports_records_are_a_snapshot_of_the_runs(tmp_path):
    """The copies are hard links where they can be (5,000 records in a fraction of a
    second); a record the run replaces later leaves the report's copy as it was."""
    recs = [record(spec(seed=s), top1=[40.0, 50.0 + s]) for s in range(2)]
    run = write_run(tmp_path / "run", recs)
    out = tmp_path / "out"
    report(run, out)
    name = f"{recs[0].key}.json"
    assert (out / "records" / name).samefile(run / "records" / name)
    before = (out / "records" / name).read_bytes()
    recs[0].history[-1].test_top1 = 99.0
    write_record(run, recs[0])
    assert (out / "records" / name).read_bytes() == before != (run / "records" / name).read_bytes()
    assert main(["report", str(out), "--check"]) == 0
