"""The results layer: its table rules on hand-built records (tests/support/factories.py), its
statistics against scipy.stats computed here by hand, LaTeX compiled by pdflatex, plots
inspected, and (at the end, marked END-TO-END) the report of a real run."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import re
import shutil
import struct
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text
from scipy import stats as sps
from scipy.optimize import root_scalar

from raysweep.errors import NoRecordsError, RaysweepError
from raysweep.store.records import read_records
from raysweep.decide import stats
from raysweep.results import ablation, comparison, hpo, plots, report
from raysweep.results.export import write_table
from raysweep.results.latex import to_latex
from raysweep.core.trial import ArmLabel
from support.factories import record, search_sample, spec, write_run

README = Path(__file__).resolve().parents[2] / "results" / "README.md"


def climb(final: float, epochs: int = 3) -> list[float]:
    """A test top-1 history that rises one point per epoch to `final`."""
    return [final - (epochs - 1 - i) for i in range(epochs)]


def rows_of(table, **where) -> pd.DataFrame:
    data = table.data
    for column, value in where.items():
        data = data[data[column] == value]
    return data


def md_rows(path: Path) -> list[list[str]]:
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    return [[c.strip() for c in re.split(r"(?<!\\)\|", ln.strip())[1:-1]] for ln in lines]


def sha(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted((folder / "records").iterdir())}


# --- table rules on hand-built records ---

def mixed_run():
    """resnet_20: seeds 0, 1 ran the full 3 epochs, seed 2 was stopped by ASHA at epoch 1;
    resnet_32: seed 0 full, seed 1 stopped at 2, seed 2 stopped at 1."""
    return [record(spec("resnet_20", 0), top1=climb(70.0)),
            record(spec("resnet_20", 1), top1=climb(72.0)),
            record(spec("resnet_20", 2), status="stopped", top1=[5.0]),
            record(spec("resnet_32", 0), top1=climb(74.0)),
            record(spec("resnet_32", 1), status="stopped", top1=[30.0, 31.0]),
            record(spec("resnet_32", 2), status="stopped", top1=[20.0])]


def test_no_pooled_row_mixes_end_epochs(tmp_path):
    recs = mixed_run()
    table = comparison.comparison(recs)
    by_key = {r.key: r for r in recs}
    assert len(table.data) == 5     # 2 full-budget rows, 3 stopped rows (one per epoch)
    for _, row in table.data.iterrows():
        trials = [by_key[k] for k in row["trials"].split()]
        assert {t.last_epoch for t in trials} == {row["end_epoch"]}, row["label"]
        finals = [t.history[-1].test_top1 for t in trials]
        assert row["top1_mean"] == pytest.approx(np.mean(finals)) and row["top1_n"] == len(finals)
    full20 = rows_of(table, name="resnet_20", ending="full budget").iloc[0]
    assert full20["top1_mean"] == 71.0 and full20["top1_std"] == pytest.approx(math.sqrt(2))
    # Markdown and LaTeX show the same rows: never "resnet_20 37.x ± 33" pooled over endings.
    for fmt in ("md", "tex"):
        write_table(table, tmp_path, (fmt,))
    md = {r[1] + " / " + r[2]: r for r in md_rows(tmp_path / "comparison.md")[2:]}
    assert md["resnet_20 / full budget (3 epochs)"][3] == "71.00 ± 1.41 (n=2)"
    assert md["resnet_20 / stopped by ASHA at epoch 1"][3] == "5.00 (n=1)"
    assert md["resnet_32 / stopped by ASHA at epoch 2"][3] == "31.00 (n=1)"
    tex = (tmp_path / "comparison.tex").read_text()
    assert r"71.00 $\pm$ 1.41" in tex and "37." not in tex
    # The plot's full-budget panel has the full-budget rows only, at their final top-1.
    fig = plots.accuracy_bars(table)
    assert sorted(p.get_width() for p in fig.axes[0].patches) == [71.0, 74.0]
    # At epoch 1 (E): every row, the stopped ones too.
    assert sorted(p.get_width() for p in fig.axes[1].patches) == [5.0, 20.0, 30.0, 69.0, 72.0]


def test_a_diverged_seed_does_not_move_its_rows_mean():
    clean = [record(spec("resnet_20", s), top1=climb(v)) for s, v in ((0, 70.0), (1, 72.0))]
    diverged = record(spec("resnet_20", 2), status="diverged", top1=[1.0, 1.0])
    errored = record(spec("resnet_20", 3), status="errored", top1=[])
    without = rows_of(comparison.comparison(clean), name="resnet_20").iloc[0]
    table = comparison.comparison(clean + [diverged, errored])
    assert len(table.data) == 1
    row = table.data.iloc[0]
    assert row["top1_mean"] == without["top1_mean"] == 71.0 and row["top1_n"] == 2
    assert row["top1_at_budget_mean"] == without["top1_at_budget_mean"]
    assert row["status"] == "completed ×2; diverged at epoch 2 ×1; errored ×1"
    assert set(row["trials"].split()) == {r.key for r in clean + [diverged, errored]}


def test_one_early_diverged_trial_does_not_change_the_equal_budget_epoch():
    recs = [record(spec("resnet_20", 0), top1=climb(70.0)),
            record(spec("resnet_32", 0), status="stopped", top1=[50.0, 60.0])]
    assert comparison.comparison(recs).data["equal_budget_epoch"].unique().tolist() == [2]
    recs += [record(spec("resnet_56", 0), status="diverged", top1=[1.0]),
             record(spec("resnet_44", 0), status="errored", top1=[])]
    table = comparison.comparison(recs)
    assert table.data["equal_budget_epoch"].unique().tolist() == [2]
    assert "top-1 @ epoch 2 (%)" in table.display.columns
    at = rows_of(table, name="resnet_20").iloc[0]
    assert at["top1_at_budget_mean"] == 69.0     # resnet_20 at epoch 2, not at epoch 1
    assert rows_of(table, name="resnet_56").iloc[0]["top1_n"] == 0   # counted, not averaged


def test_ranks_list_full_budget_trials_first():
    recs = [record(spec("resnet_20", 0), top1=climb(60.0)),
            record(spec("resnet_32", 0), top1=climb(65.0)),
            # stopped after epoch 1 with a top-1 above every full-budget trial's final one
            record(spec("resnet_56", 0), status="stopped", top1=[90.0]),
            record(spec("resnet_44", 0), status="errored", top1=[])]
    data = comparison.comparison(recs).data
    assert list(data["name"]) == ["resnet_32", "resnet_20", "resnet_56", "resnet_44"]
    assert [None if pd.isna(r) else int(r) for r in data["rank"]] == [1, 2, None, None]
    assert list(data["ending"]) == ["full budget", "full budget", "stopped", "no result"]


def test_other_budgets_are_ranked_and_averaged_apart():
    recs = [record(spec("resnet_20", 0), top1=climb(60.0)),
            record(spec("resnet_32", 0), top1=climb(65.0)),
            record(spec("resnet_56", 0, epochs=5), top1=climb(70.0, 5))]
    table = comparison.comparison(recs)
    data = table.data.set_index("name")
    assert data["setting"].nunique() == 2
    assert data.loc["resnet_56", "rank"] == 1 and data.loc["resnet_32", "rank"] == 1
    fam = comparison.families(table).data
    assert sorted(fam["top1_n"]) == [1, 2] and sorted(fam["top1_mean"]) == [62.5, 70.0]



def test_other_test_fractions_are_other_settings():
    """An image folder split by raysweep: another test_fraction is another test set."""
    folder = dict(dataset="imagefolder", synthetic_classes=None, data_fingerprint="f00d")
    recs = [record(spec("resnet_20", 0, test_fraction=0.2, **folder), top1=climb(60.0)),
            record(spec("resnet_32", 0, test_fraction=0.5, **folder), top1=climb(65.0))]
    table = comparison.comparison(recs)
    data = table.data.set_index("name")
    assert data["setting"].nunique() == 2 and list(data["rank"]) == [1, 1]
    notes = " ".join(table.notes)
    assert "(20% of the folder's images)" in notes and "(50% of the folder's images)" in notes
    ablations = ablation.ablation("g", [
        record(spec("resnet_20", s, group="g", baseline=True, test_fraction=0.2, **folder))
        for s in range(2)] + [
        record(spec("resnet_32", s, group="g", variant="v", test_fraction=0.5, **folder))
        for s in range(2)], [], None).data.set_index("variant")
    assert ablations.loc["v", "verdict"] == \
        "not tested: other data, split or epoch budget than the baseline"


# --- ablation statistics ---

# Per-seed final test top-1 (%): the worked example of results/README.md.
BASELINE = {0: 70.1, 1: 71.3, 2: 69.8, 3: 70.6, 4: 71.0}
VARIANTS = {"wider": {0: 70.9, 1: 71.8, 2: 70.9, 3: 71.2, 4: 71.9},    # all 5 seeds shared
            "deeper": {0: 70.0, 1: 71.5, 2: 69.5, 3: 70.9},             # seed 4 missing
            "other_seeds": {10: 69.0, 11: 69.8, 12: 70.4},              # no seed shared
            "one_seed": {0: 72.0}}


def group_records(group="g", baseline=BASELINE, variants=VARIANTS, model="resnet_20"):
    """A baseline and variants (the same model at other learning rates), per-seed finals."""
    recs = [record(spec(model, s, group=group, baseline=True), top1=climb(v))
            for s, v in baseline.items()]
    for i, (name, values) in enumerate(variants.items()):
        recs += [record(spec(model, s, group=group, variant=name, lr=0.01 * (i + 1)),
                        top1=climb(v)) for s, v in values.items()]
    return recs


def by_hand(variant: dict, baseline: dict, m: int):
    """(delta, ci_low, ci_high, p, detectable) from scipy.stats, as results/README.md says."""
    shared = sorted(set(variant) & set(baseline))
    if len(shared) >= 2:
        d = np.array([variant[s] - baseline[s] for s in shared])
        n, se = len(d), d.std(ddof=1) / math.sqrt(len(d))
        p, df, delta = sps.ttest_rel([variant[s] for s in shared],
                                     [baseline[s] for s in shared]).pvalue, n - 1, d.mean()
    else:
        v, b = np.array(list(variant.values())), np.array(list(baseline.values()))
        va, vb = v.var(ddof=1) / len(v), b.var(ddof=1) / len(b)
        se, delta = math.sqrt(va + vb), v.mean() - b.mean()
        df = (va + vb) ** 2 / (va ** 2 / (len(v) - 1) + vb ** 2 / (len(b) - 1))
        p = sps.ttest_ind(v, b, equal_var=False).pvalue
    half = sps.t.ppf(0.975, df) * se
    return delta, delta - half, delta + half, p, power_80(df, m) * se


def power_80(df: float, m: int) -> float:
    """The noncentrality at which a two-sided t-test at level 0.05/m has 80% power, from
    the noncentral t directly (statsmodels' TTestPower computes power the same way)."""
    crit = sps.t.isf(0.05 / (2 * m), df)

    def power(nc):
        return sps.nct.sf(crit, df, nc) + np.nan_to_num(sps.nct.cdf(-crit, df, nc))

    return root_scalar(lambda nc: power(nc) - 0.8, bracket=(0.0, 100.0), xtol=1e-13).root


def holm_by_hand(pvalues: list[float]) -> list[float]:
    m, order = len(pvalues), np.argsort(pvalues)
    adjusted, running = [0.0] * m, 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def test_paired_and_holm_numbers_match_scipy():
    table = ablation.ablation("g", group_records(), list(VARIANTS), None)
    data = table.data.set_index("variant")
    tested = ["wider", "deeper", "other_seeds"]
    expected = {v: by_hand(VARIANTS[v], BASELINE, m=3) for v in tested}
    holm = dict(zip(tested, holm_by_hand([expected[v][3] for v in tested])))
    for v in tested:
        delta, low, high, p, detectable = expected[v]
        row = data.loc[v]
        assert row["test"] == ("Welch t" if v == "other_seeds" else "paired t")
        assert row["n_pairs"] == {"wider": 5, "deeper": 4, "other_seeds": 0}[v]
        for column, value in (("delta_top1", delta), ("delta_ci_low", low),
                              ("delta_ci_high", high), ("p", p), ("p_holm", holm[v]),
                              ("detectable_delta", detectable)):
            assert row[column] == pytest.approx(value, rel=1e-9), (v, column)
        significant = holm[v] < 0.05
        assert row["verdict"] == ("significant at α = 0.05 after Holm" if significant else
                                  "not significant at α = 0.05 after Holm; could detect "
                                  f"|Δ| ≥ {detectable:.2f}")
    assert data.loc["wider", "verdict"].startswith("significant")   # paired: seeds agree
    assert data.loc["one_seed", "verdict"] == "not tested: a side has 1 seed"
    assert math.isnan(data.loc["one_seed", "p_holm"]) and (data["holm_m"] == 3).all()
    # The same values unpaired: Welch cannot see what the shared seeds show.
    welch = sps.ttest_ind(list(VARIANTS["wider"].values()), list(BASELINE.values()),
                          equal_var=False).pvalue
    assert welch > 3 * expected["wider"][3]


def test_readme_works_the_example_of_the_test_above():
    text = README.read_text()
    tested = ["wider", "deeper", "other_seeds"]
    expected = {v: by_hand(VARIANTS[v], BASELINE, m=3) for v in tested}
    holm = holm_by_hand([expected[v][3] for v in tested])
    for v, p_holm in zip(tested, holm):
        delta, low, high, p, detectable = expected[v]
        for number in (f"{delta:+.2f}", f"[{low:+.2f}, {high:+.2f}]", f"{p:.4f}",
                       f"{p_holm:.4f}", f"{detectable:.2f}"):
            assert number in text, (v, number)


def test_readme_documents_every_rule():
    text = README.read_text()
    for rule in ("ranked only among", "stopped by ASHA", "never averaged together",
                 "equal-budget epoch", "diverged", "paired t-test", "Welch", "Holm",
                 "95% confidence interval", "could detect", "validation",
                 "Nothing is chosen by test accuracy",
                 "resizebox", "footnotesize", "pdflatex", "apt-get install", "300 dpi",
                 "vector PDF", "clipped to [0, 100]", "overlap", "setting"):
        assert rule in text, rule


def test_stopped_variant_is_shown_apart_and_not_tested():
    recs = group_records(variants={"wider": VARIANTS["wider"]})
    recs.append(record(spec("resnet_20", 5, group="g", variant="wider", lr=0.01),
                       status="stopped", top1=[40.0]))
    data = ablation.ablation("g", recs, [], None).data
    full = rows_of(ablation.ablation("g", group_records(variants={"wider": VARIANTS["wider"]}),
                                     [], None), variant="wider").iloc[0]
    rows = data[data["variant"] == "wider"].set_index("ending")
    assert rows.loc["full budget", "p"] == full["p"]      # the stopped seed changes nothing
    stopped = rows.loc["stopped"]
    assert stopped["verdict"] == "not tested: stopped by ASHA, Δ at epoch 1"
    # no baseline seed 5: Δ at epoch 1 against the baseline seeds' epoch 1 (mean 68.56)
    assert stopped["delta_top1"] == pytest.approx(40.0 - (np.mean(list(BASELINE.values())) - 2))
    assert math.isnan(stopped["p_holm"]) and (data["holm_m"] == 1).all()


def test_a_baseline_shared_by_groups_is_one_trial_in_each():
    labels = (ArmLabel("a", "baseline", True), ArmLabel("b", "baseline", True))
    recs = [record(spec("resnet_20", s).with_labels(labels), top1=climb(v))
            for s, v in BASELINE.items()]
    for group, model in (("a", "resnet_32"), ("b", "resnet_44")):
        recs += [record(spec(model, s, group=group, variant="deeper"), top1=climb(v + 1))
                 for s, v in BASELINE.items()]
    tables = ablation.ablations(recs)
    assert [t.name for t in tables] == ["ablation_a", "ablation_b"]
    for t in tables:
        assert list(t.data["variant"]) == ["baseline", "deeper"]
        assert t.data.iloc[1]["delta_top1"] == pytest.approx(1.0)
    assert list(comparison.comparison(recs).data["name"]) == ["resnet_32", "resnet_44",
                                                              "resnet_20"]   # resnet_20 once


# --- the search table ---

def test_hpo_chooses_by_validation_among_full_budget_samples():
    base = spec("resnet_56", 0)
    runs = {  # sample: (lr, val top-1, test top-1, status)
        0: (0.1, 60.0, 70.0, "completed"),     # the best test accuracy: must not matter
        1: (0.05, 65.0, 62.0, "completed"),    # the best validation accuracy among full ones
        2: (0.2, 80.0, 50.0, "stopped")}       # higher validation, but stopped: not eligible
    recs = []
    for sample, (lr, val, test, status) in runs.items():
        for seed in (0, 1):
            trial = search_sample(spec("resnet_56", seed), sample, lr=lr)
            n = 3 if status == "completed" else 1
            recs.append(record(trial, status=status, top1=climb(test + seed, n),
                               val_top1=climb(val + seed, n)))
    recs.append(record(base, top1=climb(99.0)))   # a grid trial: not in the search table
    table = hpo.hpo(recs)
    row = table.data.iloc[0]
    assert (row["chosen"], row["searched"], row["n_samples"], row["n_eligible"]) == \
        ("1", "lr=0.05", 3, 2)
    assert row["val_top1_mean"] == 65.5 and row["top1_mean"] == 62.5 and row["top1_n"] == 2
    assert "resnet_56" in set(comparison.comparison(recs).data["name"])
    assert len(comparison.comparison(recs).data) == 1
    blind = [record(search_sample(spec("resnet_56", 0), s, lr=lr), top1=climb(t),
                    val_top1=[None] * 3) for s, (lr, _, t, _) in runs.items()]
    assert hpo.hpo(blind).data.iloc[0]["chosen"] == ""    # no validation split: no choice
    assert hpo.hpo([record(base)]) is None


# --- paper-ready output ---

def wide_run() -> list:
    """Long names, many rows, every kind of ending: the hardest tables to fit a page."""
    recs = []
    for i, model in enumerate(["improved_resnet20_convnext", "coatnet_cifar_opt_large_stem",
                               "res2net_ca_v1b", "ghost_resnet_32", "edgenext"]):
        options = {"channel_attention": "none", "s3_depth": 5} if i == 1 else {}
        recs += [record(spec(model, s, options=options), top1=climb(60.0 + i + s)) for s in (0, 1)]
        recs.append(record(spec(model, 2, options=options), status="stopped", top1=[20.0 + i]))
    recs.append(record(spec("resnet_20", 0), status="diverged", top1=[1.0]))
    variants = {f"label_smoothing_0.{i}_with_long_name": {s: 70.0 + i * 0.1 + s * 0.2
                                                          for s in range(3)} for i in range(12)}
    return recs + group_records("training_tricks", {s: 70.0 + s * 0.3 for s in range(3)},
                                variants)


def overfull_boxes(log: str) -> list[float]:
    return [float(x) for x in re.findall(r"Overfull \\hbox \(([\d.]+)pt too wide\)", log)]


@pytest.mark.skipif(shutil.which("pdflatex") is None,
                    reason="pdflatex not installed (results/README.md: apt-get install "
                           "texlive-latex-recommended)")
def test_latex_tables_compile_without_overfull_boxes(tmp_path):
    recs = wide_run()
    tables = [comparison.comparison(recs), *ablation.ablations(recs), hpo.hpo(
        [record(search_sample(spec("resnet_56", 0), n, lr=0.1 / (n + 1), weight_decay=1e-4))
         for n in range(3)])]
    tables.insert(1, comparison.families(tables[0]))
    for t in tables:
        write_table(t, tmp_path, ("tex",))
    doc = tmp_path / "paper.tex"
    doc.write_text("\n".join([r"\documentclass{article}", r"\usepackage{booktabs,graphicx,array}",
                              r"\begin{document}",
                              *[rf"\input{{{t.name}.tex}}\clearpage" for t in tables],
                              r"\end{document}"]))
    proc = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name],
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    log = (tmp_path / "paper.log").read_text(errors="replace")
    assert proc.returncode == 0, log[-3000:]
    assert (tmp_path / "paper.pdf").read_bytes()[:4] == b"%PDF"
    assert [x for x in overfull_boxes(log) if x > 1.0] == [], log
    # The input is hard enough: all columns, not scaled to the page, are far too wide.
    every_column = to_latex(dataclasses.replace(tables[0], latex=None))
    bare = re.sub(r"\\resizebox.*\n", "", every_column).replace(r"\end{tabular}}", r"\end{tabular}")
    (tmp_path / "comparison.tex").write_text(bare)
    subprocess.run(["pdflatex", "-interaction=nonstopmode", doc.name], cwd=tmp_path,
                   capture_output=True, timeout=120)
    assert max(overfull_boxes((tmp_path / "paper.log").read_text(errors="replace"))) > 100


def text_boxes(fig):
    """Every text the figure draws, with its box in pixels (an annotation's text without
    its leader line; tick labels of ticks outside the axis limits are not drawn)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    renderer = canvas.get_renderer()
    undrawn = set()
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            slack = 1e-9 * (hi - lo)
            undrawn |= {id(label) for tick in axis.get_major_ticks() + axis.get_minor_ticks()
                        if not lo - slack <= tick.get_loc() <= hi + slack
                        for label in (tick.label1, tick.label2)}
    found = [t for t in fig.findobj(Text)
             if t.get_visible() and t.get_text().strip() and id(t) not in undrawn]
    return [(t.get_text(), Text.get_window_extent(t, renderer)) for t in found]


def overlaps(fig) -> list[tuple[str, str]]:
    boxes = text_boxes(fig)
    return [(a, b) for i, (a, box_a) in enumerate(boxes) for b, box_b in boxes[i + 1:]
            if box_a.shrunk(0.98, 0.9).overlaps(box_b.shrunk(0.98, 0.9))]


def test_plots_clip_error_bars_and_keep_labels_apart():
    recs = [record(spec(f"model_{i:02d}_with_a_rather_long_name", s),
                   top1=climb(v), innovation=i == 3)
            for i in range(14) for s, v in ((0, 99.5 - i * 0.05), (1, 90.0 - i * 0.05))]
    recs.append(record(spec("model_00_with_a_rather_long_name", 2), status="stopped",
                       top1=[50.0]))
    table = comparison.comparison(recs)
    assert (table.data["top1_mean"] + table.data["top1_std"] > 100).sum() >= 10
    figs = {"bars": plots.accuracy_bars(table), "scatter": plots.accuracy_vs_params(table)}
    for fig in figs.values():
        for ax in fig.axes:
            for line in ax.collections:       # error bar segments
                for seg in line.get_segments():
                    values = seg[:, 0] if fig is figs["bars"] else seg[:, 1]
                    assert values.min() >= 0 and values.max() <= 100
    # 14 points within 0.7 % of accuracy: their labels must still not overlap
    for name, fig in figs.items():
        assert overlaps(fig) == [], name


def test_plot_titles_are_plain_and_files_are_pdf_and_300_dpi_png(tmp_path):
    recs = small_run("eca_kernel", "k3")
    table = comparison.comparison(recs)
    ablations = ablation.ablations(recs, descriptions={"eca_kernel": "ECA kernel size"})
    written = plots.write_all(recs, table, ablations, tmp_path)
    assert {p.suffix for p in written} == {".pdf", ".png"}
    assert len(written) == 2 * (2 + 1 + 1)     # bars, scatter, 1 model's curves, 1 ablation
    for path in written:
        if path.suffix == ".pdf":
            assert path.read_bytes()[:5] == b"%PDF-"
        else:
            assert png_dpi(path) == pytest.approx(300, abs=0.1)
    figs = [plots.accuracy_bars(table), plots.accuracy_vs_params(table),
            plots.ablation_deltas(ablations[0]), *plots.training_curves(recs).values()]
    titles = [t for f in figs for t in [f.get_suptitle(), *(a.get_title() for a in f.axes)] if t]
    assert "ECA kernel size" in titles
    for title in titles:
        assert not re.search(r"ASHA|\barm\b|trial|cohort|record|eca_kernel|seeds'", title), title
    for fig in figs:
        assert overlaps(fig) == []


def small_run(group: str, variant: str) -> list:
    """One model (one curves plot): a baseline and a variant over 3 seeds, one seed of the
    variant stopped by ASHA: every kind of table row and plot, cheaply."""
    recs = group_records(group, {s: BASELINE[s] for s in range(3)},
                         {variant: {s: VARIANTS["wider"][s] for s in range(3)}})
    recs.append(record(spec("resnet_20", 9, group=group, variant=variant, lr=0.01),
                       status="stopped", top1=[40.0]))
    return recs


def png_dpi(path: Path) -> float:
    data = path.read_bytes()
    at = data.index(b"pHYs")
    x_per_m, _, unit = struct.unpack(">IIB", data[at + 4:at + 13])
    assert unit == 1    # metres
    return x_per_m * 0.0254


# --- the entry point ---

def test_report_reads_records_and_writes_every_file(tmp_path):
    recs = small_run("demo", "wider")
    run = write_run(tmp_path / "run", recs)
    (run / "records" / "zz-broken.json").write_text('{"key": "zz-broken", "hist')
    before = sha(run)
    with pytest.warns(UserWarning, match="zz-broken.json"):
        written = report(run)
    assert sha(run) == before   # records untouched
    out = run / "report"
    names = {p.name for p in written if p.parent == out}
    assert names == {p.name for p in out.iterdir() if p.is_file()}   # no temp files left behind
    for stem in ("comparison", "families", "ablation_demo"):
        assert {f"{stem}.md", f"{stem}.csv", f"{stem}.tex"} <= names
    for stem in ("accuracy_bars", "accuracy_vs_params", "ablation_demo_delta",
                 "curves_resnet_20"):
        assert {f"{stem}.pdf", f"{stem}.png"} <= names
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["report"]["records_skipped"] == ["zz-broken.json"]
    assert len(prov["record_sha256"]) == len(recs)
    csv = pd.read_csv(out / "comparison.csv")
    for label, trials in zip(csv["label"], csv["trials"]):
        assert [t["key"] for t in prov["tables"]["comparison"][label]] == trials.split()


def test_report_refuses_bad_input_in_one_line(tmp_path):
    with pytest.raises(NoRecordsError, match=re.escape(str(tmp_path))):
        report(tmp_path)
    write_run(tmp_path, [record()])
    with pytest.raises(RaysweepError, match=r"'pdf' is not one of md, csv, tex") as err:
        report(tmp_path, formats=("pdf",))
    assert "\n" not in str(err.value) and not (tmp_path / "report").exists()


# --- END-TO-END: the report of a real `raysweep run` (conftest's `smoke_run_dir`). ---

@pytest.mark.slow
def test_end_to_end_report_of_a_real_run(smoke_run_dir, tmp_path):
    records = read_records(smoke_run_dir)
    before = sha(smoke_run_dir)
    written = report(smoke_run_dir, tmp_path)
    assert sha(smoke_run_dir) == before
    names = {p.name for p in written}
    assert {"comparison.tex", "ablation_demo.csv", "accuracy_bars.pdf", "provenance.json"} <= names
    table = pd.read_csv(tmp_path / "comparison.csv")
    by_key = {r.key: r for r in records}
    for _, row in table.iterrows():     # every row: one arm, one end epoch, its own numbers
        trials = [by_key[k] for k in row["trials"].split()]
        assert len({t.arm_key for t in trials}) == 1
        counted = [t for t in trials if t.status in ("completed", "stopped")]
        assert len({t.last_epoch for t in counted}) <= 1
        if counted:
            assert row["top1_mean"] == pytest.approx(
                np.mean([t.history[-1].test_top1 for t in counted]))
    full = table[table["ending"] == "full budget"]
    assert list(full["rank"]) == list(range(1, len(full) + 1))
    assert table.loc[len(full):, "rank"].isna().all()


@pytest.mark.slow
def test_end_to_end_ablation_matches_scipy_on_a_real_run(smoke_run_dir, tmp_path):
    records = [r for r in read_records(smoke_run_dir) if r.status == "completed"]
    report(smoke_run_dir, tmp_path, formats=("csv",))
    abl = pd.read_csv(tmp_path / "ablation_demo.csv")
    label = {r.key: next(lb for lb in r.labels if lb.group == "demo") for r in records}
    base = {r.seed: r.history[-1].test_top1 for r in records if label[r.key].baseline}
    for _, row in abl[(abl["ending"] == "full budget") & ~abl["baseline"]].iterrows():
        var = {r.seed: r.history[-1].test_top1 for r in records
               if label[r.key].variant == row["variant"]}
        shared = sorted(set(var) & set(base))
        v, b = [var[s] for s in shared], [base[s] for s in shared]
        assert len(shared) == 2  # the fixture's seeds all complete (ASHA off)
        assert row["p"] == pytest.approx(sps.ttest_rel(v, b).pvalue, nan_ok=True)


@pytest.mark.parametrize("df, m", [(2, 3), (2, 1), (4, 3), (3.9, 2), (1, 1), (60, 12)])
def test_the_detectable_delta_has_80_percent_power_by_the_noncentral_t(df, m):
    """At the returned |Δ| the test (level α/m, its df) rejects with probability 0.80 when
    Δ̂/se follows the noncentral t; the normal shortcut falls short at small df (72% at
    df = 2, m = 3, as the tables said before)."""
    se = 0.7
    c = stats.Comparison("paired t", int(df) + 1, 1.0, se, float(df), 0.0, 2.0, 0.04)
    d = stats.detectable_delta(c, m)
    crit = sps.t.isf(0.05 / (2 * m), df)
    nc = d / se
    assert sps.nct.sf(crit, df, nc) + np.nan_to_num(sps.nct.cdf(-crit, df, nc)) == \
        pytest.approx(0.80, abs=1e-9)
    assert d == pytest.approx(power_80(df, m) * se, rel=1e-9)
    shortcut = (crit + sps.t.ppf(0.8, df)) * se
    if (df, m) == (2, 3):
        assert sps.nct.sf(crit, df, shortcut / se) == pytest.approx(0.72, abs=0.005)
    assert d >= shortcut - 1e-9


def test_a_bar_panel_shows_the_tables_first_rows_and_says_how_many_it_left_out(monkeypatch):
    monkeypatch.setattr(plots, "MAX_BARS", 3)
    recs = [record(spec(f"model_{i}", s), top1=climb(80.0 - i)) for i in range(5) for s in (0, 1)]
    bars = plots.accuracy_bars(comparison.comparison(recs))
    assert sorted(p.get_width() for p in bars.axes[0].patches) == [78.0, 79.0, 80.0]
    assert bars.axes[0].get_title().endswith(": the first 3 of 5 rows of the table")
    variants = {f"v{i}": {s: 60.0 + i + s for s in range(3)} for i in range(4)}
    [table] = ablation.ablations(group_records(variants=variants))
    deltas = plots.ablation_deltas(table)
    assert len(deltas.axes[0].patches) == 3
    assert deltas.axes[0].get_title().endswith(": the first 3 of 4 rows of the table")
    # Within the cap, nothing is left out and the titles say nothing of it.
    monkeypatch.setattr(plots, "MAX_BARS", 5)
    assert "first" not in plots.accuracy_bars(comparison.comparison(recs)).axes[0].get_title()


def test_adaptive_seeds_rows_say_why_seeding_stopped_and_test_only_complete_looks():
    """With a seed plan the table replays the driver's rule: a variant whose first look
    lost a seed (diverged) has no complete look, so no test, whatever its other seeds
    show; one whose three seeds are all there stops at `detect reached` (its interval
    lies inside ±detect) with the plain paired test's p times the sequential penalty."""
    from raysweep.decide import seeding as sd

    plan = sd.SeedPlan(3, 10, 5.0)

    def seeds(variant, baseline, finals, status=()):
        return [record(spec(group="g", variant=variant, baseline=baseline, seed=s, epochs=1,
                            lr=0.1 + len(variant) * 1e-3),
                       status=dict(status).get(s, "completed"), val_top1=[v], top1=[v])
                for s, v in enumerate(finals)]

    base = seeds("base", True, [80.0, 80.2, 79.9])
    close = seeds("close", False, [80.1, 80.2, 80.0])
    lost = seeds("lost", False, [70.0, 70.3, 70.1], status={2: "diverged"})
    data = ablation.ablation("g", base + close + lost, ["close", "lost"], None, plan).data
    rows = data.set_index("variant")
    assert rows.loc["close", "seeding"] == sd.DETECT_REACHED and rows.loc["close", "seeds"] == 3
    plain = sps.ttest_rel([80.1, 80.2, 80.0], [80.0, 80.2, 79.9]).pvalue
    assert rows.loc["close", "p"] == sd.sequential_p({3: plain}, plan) > plain
    assert rows.loc["lost", "seeding"] == sd.ENDED_EARLY
    assert rows.loc["lost", "verdict"] == "not tested: no look with every seed's result"
