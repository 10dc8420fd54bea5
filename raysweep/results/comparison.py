"""Table 1 (model comparison) and Table 2 (by technique family).

Rules (results/README.md): a row is one cohort (the seeds of one arm that ended the same
way); ranks are given by mean final test top-1 among full-budget rows of one setting only;
ASHA-stopped rows follow, unranked, with the epoch they reached; every row is also shown
at the equal-budget epoch, the one epoch where all of them can be compared.
"""
from __future__ import annotations

import string

import numpy as np
import pandas as pd

from models.registry import FAMILIES
from raysweep.results import cohorts as co
from raysweep.decide import stats as st
from raysweep.results.table import (Table, fmt, means, per_model, seed_mean, sources,
                                    stat_columns, trial_keys)
from raysweep.core.trial import TrialRecord

ORDER = {co.FULL: 0, co.STOPPED: 1, co.NONE: 2}
COLUMNS = (   # of comparison.csv; "label" names the row in provenance, "name" the arm
    "setting", "rank", "label", "name", "model", "family", "innovation", "ending", "ended",
    "end_epoch", "top1_mean", "top1_std", "top1_n", "val_top1_mean", "val_top1_std",
    "val_top1_n", "top5_mean", "top5_std", "top5_n", "equal_budget_epoch",
    "top1_at_budget_mean", "top1_at_budget_std", "top1_at_budget_n", "params_M", "flops_M",
    "train_hours", "gpu_hours", "images_per_s", "top1_per_M_params", "n_seeds", "status",
    "trials")


def settings(records: list[TrialRecord]) -> dict[tuple, str]:
    """{setting: tag}: A, B, ... in a fixed order (the tag names it in a table)."""
    found = sorted({co.setting(r) for r in records}, key=repr)
    return {s: string.ascii_uppercase[i % 26] * (1 + i // 26) for i, s in enumerate(found)}


def comparison(records: list[TrialRecord]) -> Table:
    grid = [r for r in records if r.sample is None]   # search samples: hpo.*
    tags = settings(grid)
    budget = {s: co.equal_budget_epoch([r for r in grid if co.setting(r) == s]) for s in tags}
    names = co.arm_names(grid)
    rows, origin = [], {}
    for cohort in co.cohorts(grid):
        row = _row(cohort, names[cohort.arm_key], tags[cohort.setting], budget[cohort.setting])
        rows.append(row)
        origin[row["label"]] = sources(cohort.trials())
    data = _ranked(pd.DataFrame(rows, columns=list(COLUMNS)))
    epochs = {e for e in budget.values() if e is not None}
    at = f"epoch {epochs.pop()}" if len(epochs) == 1 else "epoch E"
    display = _display(data, at, multi=len(tags) > 1)
    notes = _notes(tags, budget, n_search=len(records) - len(grid))
    return Table("comparison", "Model comparison: test accuracy", data, display, notes,
                 {label: origin[label] for label in data["label"]},
                 latex=_latex(data, at, multi=len(tags) > 1),
                 latex_types={"model": "2.6cm", "status": "2.3cm"})


def _row(cohort: co.Cohort, name: str, tag: str, budget: int | None) -> dict:
    first = cohort.first
    ended = cohort.ended
    label = name if cohort.ending == co.FULL else f"{name} ({ended})"
    row = {"setting": tag, "rank": None, "label": label, "name": name, "model": first.model,
           "family": first.family, "innovation": first.innovation, "ending": cohort.ending,
           "ended": ended, "end_epoch": cohort.end_epoch,
           **stat_columns("top1", cohort.per_seed(co.final("test_top1"))),
           **stat_columns("val_top1", cohort.per_seed(co.final("val_top1"))),
           **stat_columns("top5", cohort.per_seed(co.final("test_top5"))),
           "equal_budget_epoch": budget,
           **stat_columns("top1_at_budget", cohort.per_seed(co.at_epoch(budget))),
           "params_M": per_model(cohort, "params", 1e6),
           "flops_M": per_model(cohort, "flops", 1e6),
           "train_hours": seed_mean(cohort, co.train_hours),
           "gpu_hours": seed_mean(cohort, co.gpu_hours),
           "images_per_s": seed_mean(cohort, co.images_per_s),
           "n_seeds": len(cohort.records), "status": cohort.status,
           "trials": trial_keys(cohort.trials())}
    row["top1_per_M_params"] = (row["top1_mean"] / row["params_M"]
                                if row["params_M"] > 0 else st.NAN)
    return row


def _ranked(data: pd.DataFrame) -> pd.DataFrame:
    """Full-budget rows ranked by mean final top-1 within their setting, first; then the
    stopped rows (no rank: their final top-1 is of a shorter budget); then rows with no
    result."""
    full = (data["ending"] == co.FULL) & data["top1_mean"].notna()
    data["rank"] = (data["top1_mean"].where(full).groupby(data["setting"])
                    .rank(ascending=False, method="min").astype("Int64"))
    data["_order"] = data["ending"].map(ORDER)
    data = data.sort_values(["_order", "setting", "rank", "label", "end_epoch"],
                            ascending=[True, True, True, True, False], na_position="last",
                            ignore_index=True)
    return data.drop(columns="_order")


def _display(data: pd.DataFrame, at: str, multi: bool) -> pd.DataFrame:
    shown = pd.DataFrame({
        "rank": [str(r) if not pd.isna(r) else "" for r in data["rank"]],
        "setting": data["setting"],
        "model": data["name"],
        "ended": data["ended"],
        "top-1 (%)": means(data, "top1"),
        "val top-1 (%)": means(data, "val_top1"),
        f"top-1 @ {at} (%)": means(data, "top1_at_budget"),
        "top-5 (%)": means(data, "top5"),
        "params (M)": data["params_M"].map(lambda x: fmt(x, 3)),
        "FLOPs (M)": data["flops_M"].map(lambda x: fmt(x, 1)),
        "train time (h)": data["train_hours"].map(lambda x: fmt(x, 3)),
        "GPU-hours": data["gpu_hours"].map(lambda x: fmt(x, 3)),
        "images/s": data["images_per_s"].map(lambda x: fmt(x, 0)),
        "top-1 / M params": data["top1_per_M_params"].map(lambda x: fmt(x, 1)),
        "seeds": data["n_seeds"].astype(str),
        "status": data["status"],
        "innovation": data["innovation"].map(lambda b: "yes" if b else ""),
    })
    if not multi:
        shown = shown.drop(columns="setting")
    if (data["val_top1_n"] == 0).all():
        shown = shown.drop(columns="val top-1 (%)")
    return shown


def _latex(data: pd.DataFrame, at: str, multi: bool) -> pd.DataFrame:
    """The main columns; n is the seeds column (every seed of a row has both accuracies)."""
    shown = pd.DataFrame({
        "rank": [str(r) if not pd.isna(r) else "" for r in data["rank"]],
        "setting": data["setting"], "model": data["name"],
        "top-1 (%)": means(data, "top1", show_n=False),
        f"top-1 @\n{at} (%)": means(data, "top1_at_budget", show_n=False),
        "seeds": data["n_seeds"].astype(str),
        "params (M)": data["params_M"].map(lambda x: fmt(x, 3)),
        "status": data["status"]})
    return shown if multi else shown.drop(columns="setting")


def _notes(tags: dict[tuple, str], budget: dict[tuple, int | None], n_search: int) -> list[str]:
    where = {s: (f"setting {t}: " if len(tags) > 1 else "") for s, t in tags.items()}
    epochs = "; ".join(f"{where[s]}E = {budget[s]}" if budget[s] is not None
                       else f"{where[s]}no trial finished an epoch" for s in tags)
    notes = [
        "top-1 / top-5: accuracy (%) on the test split after each trial's last finished "
        "epoch, mean ± sample std over seeds (n = seeds). val top-1: the same on the "
        "validation split held out of the training set. Nothing is chosen by test accuracy.",
        "Rows: the seeds of one model and training config that ended the same way. Ranked "
        "by mean final top-1 among rows that trained the full budget only; rows that ASHA "
        "stopped early follow, unranked, with the epoch they reached (their final top-1 is "
        "after a shorter budget). Seeds that ended at different epochs are never averaged "
        "together.",
        f"top-1 @ epoch E: test top-1 at epoch E, the last epoch that every full-budget and "
        f"every stopped trial reached, so every row is compared at an equal budget "
        f"({epochs}). Diverged, errored and unfinished trials are counted in the status "
        "and never averaged.",
        "train time: wall time of the finished epochs (training and evaluation), mean over "
        "seeds. GPU-hours: train time × GPUs, mean over seeds; empty on CPU. images/s: "
        "training throughput of all workers. FLOPs: forward pass of one image (a multiply-add "
        "counts 2). An empty cell: the records hold no such number.",
    ]
    if len(tags) > 1:
        notes.append("Settings (never ranked or averaged together): "
                     + "; ".join(f"{t}: {co.setting_text(s)}" for s, t in tags.items()) + ".")
    else:
        notes.append(f"Setting: {co.setting_text(next(iter(tags)))}." if tags else
                     "No grid trial in the records.")
    if n_search:
        notes.append(f"{n_search} search trials are not here: see the search table (hpo).")
    return notes


# --- Table 2 ---

def families(table1: Table) -> Table:
    """Per setting and technique family, over Table 1's full-budget rows only."""
    t1 = table1.data[(table1.data["ending"] == co.FULL) & table1.data["top1_mean"].notna()]
    present = [f for f in FAMILIES if f in set(t1["family"])]
    present += sorted(set(t1["family"].dropna()) - set(present))
    rows = []
    for tag in sorted(set(t1["setting"])):
        for family in present:
            part = t1[(t1["family"] == family) & (t1["setting"] == tag)]
            if part.empty:
                continue
            rows.append({
                "setting": tag, "family": family, "n_models": part["model"].nunique(),
                "n_rows": len(part),
                **stat_columns("top1", dict(enumerate(part["top1_mean"]))),
                "params_M_mean": _nanmean(part["params_M"]),
                "train_hours_mean": _nanmean(part["train_hours"]),
                "trials": " ".join(part["trials"])})
    data = pd.DataFrame(rows, columns=["setting", "family", "n_models", "n_rows", "top1_mean",
                                       "top1_std", "top1_n", "params_M_mean",
                                       "train_hours_mean", "trials"])
    multi = data["setting"].nunique() > 1
    display = pd.DataFrame({
        "setting": data["setting"], "family": data["family"],
        "mean top-1 (%)": means(data, "top1"),
        "mean params (M)": data["params_M_mean"].map(lambda x: fmt(x, 3)),
        "mean train time (h)": data["train_hours_mean"].map(lambda x: fmt(x, 3)),
        "models": data["n_models"].astype(str),
        "Table 1 rows": data["n_rows"].astype(str)})
    if not multi:
        display = display.drop(columns="setting")
    notes = ["Over the full-budget rows of Table 1 in each family (stopped rows trained a "
             "shorter budget and are left out): mean ± std of the rows' mean final test top-1 "
             "(n = rows), mean params and mean train time. models: distinct model names."]
    src = {}
    for tag, fam in zip(data["setting"], data["family"]):
        labels = t1.loc[(t1["family"] == fam) & (t1["setting"] == tag), "label"]
        src[f"{tag} {fam}" if multi else fam] = [s for lb in labels for s in table1.sources[lb]]
    return Table("families", "Test accuracy by technique family", data, display, notes, src)


def _nanmean(values) -> float:
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else st.NAN
