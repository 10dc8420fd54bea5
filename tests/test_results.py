"""The results layer: every table number recomputed here from the stored records, the
exported files parsed, the plots looked at, and the records left untouched."""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.image import imread
from scipy import stats as sps

from raysweep.records import read_records, write_record
from raysweep.results import NoRecordsError, report, stats, tables

IGNORED_CONFIG = ("data_dir", "download", "data_checksums", "loader_workers")


# --- helpers that recompute from records, independently of the package ---

def final_top1(r, metric="top1"):
    return r["history"][-1][metric] if r["history"] else math.nan


def by_arm(records):
    arms = defaultdict(list)
    for r in records:
        cfg = {k: v for k, v in r["config"].items() if k not in IGNORED_CONFIG}
        arms[json.dumps([r["model"], r["model_options"], cfg], sort_keys=True)].append(r)
    return list(arms.values())


def seed_values(recs, value):
    per_seed = defaultdict(list)
    for r in recs:
        if not math.isnan(value(r)):
            per_seed[r["seed"]].append(value(r))
    return [float(np.mean(v)) for v in per_seed.values()]


def sd(values):
    return float(np.std(values, ddof=1)) if len(values) > 1 else math.nan


def close(a, b):
    return (math.isnan(a) and math.isnan(b)) or a == pytest.approx(b, rel=1e-9, abs=1e-12)


def sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((folder / "records").iterdir())}


def md_cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def copy_run(src: Path, dst: Path) -> Path:
    """Only what a copied results folder needs: records, study, provenance (no Ray state)."""
    shutil.copytree(src / "records", dst / "records")
    for name in ("study.yaml", "provenance.json"):
        shutil.copy(src / name, dst / name)
    return dst


@pytest.fixture(scope="module")
def smoke_report(smoke_run_dir, tmp_path_factory):
    before = sha(smoke_run_dir)
    out = tmp_path_factory.mktemp("report")
    written = report(smoke_run_dir, out)
    return {"run": smoke_run_dir, "out": out, "written": written, "before": before,
            "records": read_records(smoke_run_dir)}


# --- end to end on the real smoke run ---

def test_report_writes_every_table_plot_and_provenance(smoke_report):
    out, records = smoke_report["out"], smoke_report["records"]
    tables_ = ["comparison", "families", "ablation_demo"]
    expected = {f"{t}.{ext}" for t in tables_ for ext in ("md", "csv", "tex")}
    expected |= {"accuracy_bars.png", "accuracy_vs_params.png", "ablation_demo_delta.png",
                 "provenance.md", "provenance.json"}
    expected |= {f"curves_{m}.png" for m in {r["model"] for r in records}}
    assert {p.name for p in smoke_report["written"]} == expected
    assert {p.name for p in out.iterdir()} == expected  # no temp files left behind


def test_records_are_left_byte_identical(smoke_report):
    assert sha(smoke_report["run"]) == smoke_report["before"]


def test_comparison_rows_match_the_records(smoke_report):
    records = smoke_report["records"]
    table = pd.read_csv(smoke_report["out"] / "comparison.csv")
    arms = by_arm(records)
    assert len(table) == len(arms) == 3  # resnet_20, resnet_32, resnet_20 at lr 1e-7
    budget = min(r["history"][-1]["epoch"] for r in records if r["history"])
    assert budget == 1  # ASHA stopped tiny_lr at its first rung
    assert (table["equal_budget_epoch"] == budget).all()
    for recs in arms:
        row = table[table["trials"].map(lambda t: set(t.split()) == {r["key"] for r in recs})]
        assert len(row) == 1, [r["key"] for r in recs]
        row = row.iloc[0]
        top1 = seed_values(recs, final_top1)
        at_budget = seed_values(recs, lambda r: next(h["top1"] for h in r["history"]
                                                     if h["epoch"] == budget))
        top5 = seed_values(recs, lambda r: final_top1(r, "top5"))
        assert row["model"] == recs[0]["model"] and row["n_seeds"] == 2 == row["top1_n"]
        assert close(row["top1_mean"], np.mean(top1)) and close(row["top1_std"], sd(top1))
        assert close(row["top1_at_budget_mean"], np.mean(at_budget))
        assert close(row["top1_at_budget_std"], sd(at_budget))
        assert close(row["top5_mean"], np.mean(top5)) and close(row["top5_std"], sd(top5))
        assert close(row["params_M"], recs[0]["params"] / 1e6)
        assert close(row["flops_M"], recs[0]["flops"] / 1e6)
        hours = np.mean([sum(h["epoch_seconds"] for h in r["history"]) for r in recs]) / 3600
        assert close(row["train_hours"], hours)
        assert math.isnan(row["gpu_hours"])  # a CPU run has no GPU cost
        assert close(row["images_per_s"],
                     np.mean([np.mean([h["images_per_s"] for h in r["history"]]) for r in recs]))
        assert close(row["top1_per_M_params"], np.mean(top1) / (recs[0]["params"] / 1e6))
        texts = Counter("completed" if r["status"] == "completed"
                        else f"stopped by ASHA at epoch {r['stopped_at_epoch']}" for r in recs)
        assert {r["status"] for r in recs} <= {"completed", "stopped"}
        assert row["status"] == (next(iter(texts)) if len(texts) == 1 else
                                 "; ".join(f"{t} ×{n}" for t, n in sorted(texts.items())))
    assert list(table["top1_mean"]) == sorted(table["top1_mean"], reverse=True)
    assert list(table["rank"]) == [1, 2, 3]
    tiny = table[table["label"].str.contains("lr=1e-07")]
    assert len(tiny) == 1 and tiny.iloc[0]["status"] == "stopped by ASHA at epoch 1"


def test_family_table_matches_the_records(smoke_report):
    records = smoke_report["records"]
    fam = pd.read_csv(smoke_report["out"] / "families.csv")
    assert list(fam["family"]) == ["baseline"]  # resnet_20 and resnet_32
    arm_means = [np.mean(seed_values(recs, final_top1)) for recs in by_arm(records)]
    row = fam.iloc[0]
    assert row["n_models"] == 2 and row["n_rows"] == 3
    assert close(row["top1_mean"], np.mean(arm_means)) and close(row["top1_std"], sd(arm_means))
    assert close(row["params_M_mean"],
                 np.mean([recs[0]["params"] / 1e6 for recs in by_arm(records)]))
    assert set(row["trials"].split()) == {r["key"] for r in records}


def test_ablation_table_matches_the_records(smoke_report):
    records = smoke_report["records"]
    abl = pd.read_csv(smoke_report["out"] / "ablation_demo.csv")
    assert list(abl["variant"]) == ["baseline", "deeper", "tiny_lr"]  # the study's order
    base = [final_top1(r) for r in records if r["baseline"]]
    base_params = next(r for r in records if r["baseline"])["params"]
    assert abl.iloc[0]["vs_noise"] == "baseline" and math.isnan(abl.iloc[0]["delta_top1"])
    for _, row in abl.iloc[1:].iterrows():
        recs = [r for r in records if r["variant"] == row["variant"]]
        top1 = [final_top1(r) for r in recs]
        assert close(row["top1_mean"], np.mean(top1)) and close(row["top1_std"], sd(top1))
        assert close(row["delta_top1"], np.mean(top1) - np.mean(base))
        se = math.sqrt(np.var(top1, ddof=1) / 2 + np.var(base, ddof=1) / 2)
        assert close(row["delta_top1_se"], se)
        assert close(row["delta_params_M"], (recs[0]["params"] - base_params) / 1e6)
        if se == 0:
            continue
        p = sps.ttest_ind(top1, base, equal_var=False).pvalue
        assert close(row["p_welch"], p)
        assert row["vs_noise"] == ("within noise" if p >= 0.05 else "beyond noise")
        assert set(row["trials"].split()) == {r["key"] for r in recs}


def test_markdown_tables_are_well_formed(smoke_report):
    for path in smoke_report["out"].glob("*.md"):
        lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
        assert len(lines) >= 3, path
        widths = {len(md_cells(ln)) for ln in lines}
        assert len(widths) == 1, (path, widths)
        assert set(lines[1].replace("|", "")) == {"-"}
    md = (smoke_report["out"] / "comparison.md").read_text()
    assert "top-1 @ epoch 1" in md and "stopped by ASHA at epoch 1" in md
    assert re.search(r"\d+\.\d\d ± \d+\.\d\d \(n=2\)", md)


def test_latex_tables_are_balanced(smoke_report):
    for path in smoke_report["out"].glob("*.tex"):
        tex = path.read_text()
        assert tex.isascii(), path  # ±, Δ, × went through math mode
        assert re.findall(r"\\begin\{(\w+)\}", tex) == ["table", "tabular"]
        assert re.findall(r"\\end\{(\w+)\}", tex) == ["tabular", "table"]
        unescaped = re.sub(r"\\[{}%&_#$]", "", tex)
        depth = 0
        for ch in unescaped:
            depth += {"{": 1, "}": -1}.get(ch, 0)
            assert depth >= 0, path
        assert depth == 0, path
        text = re.sub(r"\\label\{[^}]*\}", "", "\n".join(tex.splitlines()[1:]))
        assert not re.search(r"(?<!\\)[%_#]", text), path  # escaped in cells and notes
        spec = re.search(r"\\begin\{tabular\}\{(\w+)\}", tex).group(1)
        body = tex.split("\\midrule\n")[1].split("\\bottomrule")[0].strip().splitlines()
        head = tex.split("\\toprule\n")[1].splitlines()[0]
        for row in [head, *body]:
            assert len(re.findall(r"(?<!\\)&", row)) == len(spec) - 1, row
            assert row.endswith(r"\\")


def test_plots_are_real_images(smoke_report):
    pngs = list(smoke_report["out"].glob("*.png"))
    assert len(pngs) >= 5
    for path in pngs:
        img = imread(path)
        assert img.shape[0] > 200 and img.shape[1] > 300, path
        assert len(np.unique(img.reshape(-1, img.shape[-1]), axis=0)) > 10, path


def test_provenance_names_the_run_and_each_rows_trials(smoke_report):
    out, run = smoke_report["out"], smoke_report["run"]
    prov = json.loads((out / "provenance.json").read_text())
    engine = json.loads((run / "provenance.json").read_text())
    assert prov["runs"] == engine["runs"] and prov["study"] == "fixture"
    assert prov["record_sha256"] == smoke_report["before"]
    comparison = pd.read_csv(out / "comparison.csv")
    rows = prov["tables"]["comparison"]
    assert list(rows) == list(comparison["label"])
    ids = {r["key"]: r["trial_id"] for r in smoke_report["records"]}
    for label, trials in zip(comparison["label"], comparison["trials"]):
        assert [t["key"] for t in rows[label]] == trials.split()
        assert all(t["trial_id"] == ids[t["key"]] for t in rows[label])
    md = (out / "provenance.md").read_text()
    assert (engine["runs"][0]["git_commit"] or "unknown") in md
    assert engine["runs"][0]["torch"] in md and engine["runs"][0]["ray"] in md
    assert all(key in md for key in ids)


def test_default_out_dir_and_formats_on_a_copied_folder(smoke_run_dir, tmp_path):
    run = copy_run(smoke_run_dir, tmp_path / "copy")
    written = report(run, formats=("csv",))
    assert all(p.parent == run / "report" for p in written)
    assert {p.suffix for p in written} == {".csv", ".png", ".md", ".json"}
    assert {p.name for p in written if p.suffix == ".md"} == {"provenance.md"}
    with pytest.raises(ValueError, match="'pdf'"):
        report(run, formats=("pdf",))


def test_corrupt_record_is_named_and_skipped(smoke_run_dir, tmp_path):
    run = copy_run(smoke_run_dir, tmp_path / "copy")
    (run / "records" / "zz-broken.json").write_text('{"key": "zz-broken", "hist')
    (run / "provenance.json").unlink()
    before = sha(run)
    with pytest.warns(UserWarning, match="zz-broken.json"):
        report(run, tmp_path / "out")
    assert sha(run) == before
    assert len(pd.read_csv(tmp_path / "out" / "comparison.csv")) == 3
    prov = json.loads((tmp_path / "out" / "provenance.json").read_text())
    assert prov["report"]["records_skipped"] == ["zz-broken.json"] and prov["runs"] == "unknown"
    assert "unknown" in (tmp_path / "out" / "provenance.md").read_text()


def test_empty_folder_raises_no_records_error(tmp_path):
    with pytest.raises(NoRecordsError, match=re.escape(str(tmp_path))):
        report(tmp_path)
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "bad.json").write_text("[]")
    with pytest.warns(UserWarning), pytest.raises(NoRecordsError) as err:
        report(tmp_path)
    assert isinstance(err.value, ValueError) and "\n" not in str(err.value)
    assert not (tmp_path / "report").exists()


# --- unit tests on in-memory records ---

def record(key, seed, top1s, model="resnet_20", status="completed", stopped=None, lr=0.1,
           gpus=0.0, workers=1, group=None, variant=None, baseline=False, seconds=10.0):
    return {"key": key, "trial_id": f"t-{key}", "model": model, "model_options": {},
            "seed": seed, "config": {"lr": lr, "data_dir": f"/somewhere/{key}"},
            "group": group, "variant": variant or model, "baseline": baseline,
            "family": "baseline", "innovation": False, "params": 1_000_000, "flops": 2_000_000,
            "status": status, "stopped_at_epoch": stopped, "error": None, "epochs": 3,
            "workers": workers, "gpus_per_worker": gpus,
            "history": [{"epoch": i + 1, "top1": t, "top5": t, "val_loss": 1.0,
                         "train_loss": 1.0, "lr": lr, "epoch_seconds": seconds,
                         "images_per_s": 100.0} for i, t in enumerate(top1s)]}


def test_welch_marks_noise_and_single_seeds():
    noisy = stats.welch([70.0, 72.0, 71.0], [71.0, 70.0, 72.5])
    assert noisy["verdict"] == "within noise" and noisy["p"] >= 0.05
    assert noisy["p"] == pytest.approx(
        sps.ttest_ind([70.0, 72.0, 71.0], [71.0, 70.0, 72.5], equal_var=False).pvalue)
    clear = stats.welch([80.0, 80.5, 81.0], [70.0, 70.4, 71.0])
    assert clear["verdict"] == "beyond noise" and clear["p"] < 0.05
    assert clear["delta"] == pytest.approx(80.5 - 70.46666666666667)
    base_var = np.var([70, 70.4, 71], ddof=1)
    assert clear["delta_se"] == pytest.approx(math.sqrt(0.25 / 3 + base_var / 3))
    single = stats.welch([80.0], [70.0, 71.0])
    assert single["verdict"] == "n/a (1 seed)" and math.isnan(single["p"])
    assert single["delta"] == pytest.approx(9.5)


def test_equal_budget_epoch_ignores_trials_without_history():
    recs = [record("a", 0, [10, 20, 30]), record("b", 0, [10], status="stopped", stopped=1),
            record("c", 0, [], status="errored")]
    assert stats.equal_budget_epoch(recs) == 1
    assert stats.equal_budget_epoch([record("c", 0, [], status="errored")]) is None
    t1 = tables.comparison(recs).data
    assert set(t1["top1_at_budget_mean"]) == {10.0}


def test_missing_numbers_stay_empty_and_gpu_hours_need_gpus():
    recs = [record("err", 0, [], model="resnet_32", status="errored"),
            record("gpu", 0, [50.0], model="resnet_56", gpus=1.0, workers=2, seconds=1800.0),
            record("cpu", 0, [40.0])]
    data = tables.comparison(recs).data.set_index("model")
    assert data.loc["resnet_32", ["top1_mean", "top5_mean", "train_hours", "images_per_s"]] \
        .isna().all()
    assert pd.isna(data.loc["resnet_32", "rank"]) and data.loc["resnet_32", "status"] == "errored"
    assert data.loc["resnet_56", "gpu_hours"] == pytest.approx(1.0)  # 0.5 h × 2 GPUs
    assert math.isnan(data.loc["resnet_20", "gpu_hours"])
    shown = tables.comparison(recs).display.set_index("model")
    assert shown.loc["resnet_32", "top-1 (%)"] == "" and shown.loc["resnet_20", "GPU-hours"] == ""


def test_seeds_pool_over_arms_and_a_repeated_seed_counts_once():
    recs = [record("a0", 0, [70.0], group="g1", variant="baseline", baseline=True),
            record("b0", 0, [72.0], group="g2", variant="baseline", baseline=True),
            record("a1", 1, [74.0], group="g1", variant="baseline", baseline=True),
            record("x0", 0, [10.0], lr=1e-7), record("x1", 1, [12.0], lr=1e-7,
                                                      status="stopped", stopped=1)]
    data = tables.comparison(recs).data.set_index("label")
    assert set(data.index) == {"resnet_20 [lr=0.1]", "resnet_20 [lr=1e-07]"}
    shared = data.loc["resnet_20 [lr=0.1]"]
    # seed 0 ran twice (two groups): (70 + 72) / 2 = 71, then mean over seeds of 71 and 74
    assert shared["top1_mean"] == pytest.approx(72.5) and shared["top1_n"] == 2
    assert shared["n_seeds"] == 2
    assert data.loc["resnet_20 [lr=1e-07]", "status"] == \
        "completed ×1; stopped by ASHA at epoch 1 ×1"


def test_written_records_round_trip_unchanged(tmp_path):
    """The report reads what the engine's writer wrote, and writes nothing back."""
    for r in (record("a", 0, [50.0, 60.0], status="completed"),
              record("b", 1, [55.0, 58.0], status="completed")):
        write_record(tmp_path, r)
    before = sha(tmp_path)
    written = report(tmp_path, tmp_path / "out", formats=("md",))
    assert sha(tmp_path) == before
    assert (tmp_path / "out" / "comparison.md") in written
    # Final epochs 60 and 58: one row although data_dir differs (where, not what, is trained).
    rows = [ln for ln in (tmp_path / "out" / "comparison.md").read_text().splitlines()
            if ln.startswith("| 1 ")]
    assert len(rows) == 1 and "59.00 ± 1.41 (n=2)" in rows[0]
