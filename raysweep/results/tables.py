"""The comparison, family and ablation tables, built from trial records.

Each table comes twice: `data`, numeric columns for CSV (means, stds and n apart, the
trial keys of every row), and `display`, formatted cells ("mean ± std (n=k)") for
Markdown and LaTeX. NaN stays NaN in `data` and becomes an empty cell in `display`.
"""
from __future__ import annotations

import json
import math
import warnings
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
import pandas as pd

from models.registry import FAMILIES
from raysweep.results import stats as st


@dataclass
class Table:
    name: str            # file stem
    title: str
    data: pd.DataFrame   # numeric, for CSV; column "trials" lists the rows' trial keys
    display: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    # row label -> [(key, trial_id), ...]: where each row's numbers come from
    sources: dict[str, list[tuple[str, str]]] = field(default_factory=dict)


# --- formatting ---

def fmt(x: float, digits: int = 2) -> str:
    return "" if x is None or math.isnan(x) else f"{x:.{digits}f}"


def fmt_mean(mean: float, std: float, n: int, digits: int = 2) -> str:
    """airbench style: 'mean ± std (n=k)'; one seed has no std; no seed is an empty cell."""
    if n == 0 or math.isnan(mean):
        return ""
    if n < 2 or math.isnan(std):
        return f"{mean:.{digits}f} (n={n})"
    return f"{mean:.{digits}f} ± {std:.{digits}f} (n={n})"


def fmt_delta(delta: float, se: float, digits: int = 2) -> str:
    if math.isnan(delta):
        return ""
    return f"{delta:+.{digits}f}" + ("" if math.isnan(se) else f" ± {se:.{digits}f}")


# --- arms: trials pooled over seeds ---

@dataclass
class Arm:
    label: str
    records: list[dict]

    def first(self, value: Callable[[dict], float]) -> float:
        """A per-model number (params, FLOPs): the same in every seed, so the first found."""
        found = [v for v in map(value, self.records) if not math.isnan(v)]
        return found[0] if found else st.NAN

    def stat(self, value: Callable[[dict], float]) -> tuple[float, float, int]:
        return st.mean_std(st.per_seed(self.records, value))

    @property
    def seeds(self) -> int:
        return len({r.get("seed") for r in self.records})

    @property
    def sources(self) -> list[tuple[str, str]]:
        return [(r["key"], r.get("trial_id") or "") for r in self.records]


def arms(records: list[dict]) -> list[Arm]:
    """Trials grouped by `stats.arm_id`, labelled by model, options and whatever part of
    the config tells this arm apart from the same model's other arms."""
    grouped: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        grouped[st.arm_id(r)].append(r)
    by_model: dict[str, list[dict]] = defaultdict(list)
    for ident in grouped:
        by_model[json.loads(ident)["model"]].append(json.loads(ident))
    out = []
    for ident, recs in grouped.items():
        spec = json.loads(ident)
        siblings = by_model[spec["model"]]
        differs = sorted(k for k in spec["config"] if len(
            {json.dumps(s["config"].get(k), default=str) for s in siblings}) > 1)
        extra = [f"{k}={v}" for k, v in sorted(spec["options"].items())]
        extra += [f"{k}={spec['config'][k]}" for k in differs]
        label = spec["model"] + (f" [{' '.join(extra)}]" if extra else "")
        out.append(Arm(label, sorted(recs, key=lambda r: (str(r.get("seed")), r["key"]))))
    return out


def _trials(arm: Arm) -> str:
    return " ".join(key for key, _ in arm.sources)


# --- Table 1 ---

def comparison(records: list[dict]) -> Table:
    budget = st.equal_budget_epoch(records)
    rows, found = [], arms(records)
    for arm in found:
        top1, top5 = arm.stat(st.final), arm.stat(lambda r: st.final(r, "top5"))
        at_budget = arm.stat(lambda r: st.at_epoch(r, budget))
        params = arm.first(st.params_m)
        rows.append({
            "label": arm.label, "model": arm.records[0]["model"],
            "family": arm.records[0].get("family"),
            "top1_mean": top1[0], "top1_std": top1[1], "top1_n": top1[2],
            "equal_budget_epoch": budget,
            "top1_at_budget_mean": at_budget[0], "top1_at_budget_std": at_budget[1],
            "top1_at_budget_n": at_budget[2],
            "top5_mean": top5[0], "top5_std": top5[1], "top5_n": top5[2],
            "params_M": params, "flops_M": arm.first(st.flops_m),
            "train_hours": arm.stat(st.train_seconds)[0] / 3600,
            "gpu_hours": arm.stat(st.gpu_hours)[0],
            "images_per_s": arm.stat(st.images_per_s)[0],
            "top1_per_M_params": top1[0] / params if params > 0 else st.NAN,
            "n_seeds": arm.seeds, "status": st.pooled_status(arm.records),
            "innovation": any(bool(r.get("innovation")) for r in arm.records),
            "trials": _trials(arm),
        })
    by_label = {arm.label: arm for arm in found}
    data = pd.DataFrame(rows)
    data.insert(0, "rank", data["top1_mean"].rank(ascending=False, method="min").astype("Int64"))
    data = data.sort_values(["top1_mean", "label"], ascending=[False, True], na_position="last",
                            ignore_index=True)
    at = f"top-1 @ epoch {budget}" if budget is not None else "top-1 @ equal budget"
    display = pd.DataFrame({
        "rank": [str(r) if not pd.isna(r) else "" for r in data["rank"]],
        "model": data["label"],
        "top-1 (%)": _means(data, "top1"),
        at: _means(data, "top1_at_budget"),
        "top-5 (%)": _means(data, "top5"),
        "params (M)": data["params_M"].map(lambda x: fmt(x, 4)),
        "FLOPs (M)": data["flops_M"].map(lambda x: fmt(x, 1)),
        "train time (h)": data["train_hours"].map(lambda x: fmt(x, 3)),
        "GPU-hours": data["gpu_hours"].map(lambda x: fmt(x, 3)),
        "images/s": data["images_per_s"].map(lambda x: fmt(x, 0)),
        "top-1 / M params": data["top1_per_M_params"].map(lambda x: fmt(x, 1)),
        "seeds": data["n_seeds"].astype(str),
        "status": data["status"],
        "innovation": data["innovation"].map(lambda b: "yes" if b else ""),
    })
    notes = [
        "top-1 / top-5: accuracy (%) on the test split after a trial's last finished epoch "
        "(not its best epoch: picking the best epoch by the test accuracy it reports would "
        "select on the test set); mean ± sample std over seeds (n = seeds with a result).",
        f"{at}: top-1 at epoch {budget}, the largest epoch that every trial with a history "
        "reached, so trials ASHA stopped early and finished ones are compared at an equal "
        "budget." if budget is not None else f"{at}: no trial finished an epoch.",
        "Rows are trials pooled over seeds: same model, model options and training config. "
        "A seed trained more than once with that config (e.g. a baseline shared by two "
        "ablation groups) is averaged first and counts once; the model label shows the "
        "options and config values that tell a model's rows apart.",
        "train time: wall time of the finished epochs (training and evaluation, start-up "
        "excluded), mean over seeds. GPU-hours = train time × workers × GPUs per worker, "
        "mean over seeds; empty on CPU runs. images/s: training throughput of all workers, "
        "mean over epochs and seeds. FLOPs: forward pass of one 32×32 image (a "
        "multiply-add counts 2). top-1 / M params: mean top-1 divided by params (M).",
        "Rank by mean final top-1; rows without a result are unranked. An empty cell has no "
        "measurement in the records (e.g. an errored trial that finished no epoch).",
    ]
    return Table("comparison", "Model comparison", data, display, notes,
                 {label: by_label[label].sources for label in data["label"]})


def _means(data: pd.DataFrame, prefix: str) -> list[str]:
    return [fmt_mean(m, s, n) for m, s, n in zip(data[f"{prefix}_mean"], data[f"{prefix}_std"],
                                                  data[f"{prefix}_n"])]


# --- Table 2 ---

def families(table1: Table) -> Table:
    """Table 2, from Table 1's rows."""
    rows, t1 = [], table1.data
    present = [f for f in FAMILIES if f in set(t1["family"])]
    present += sorted(set(t1["family"].dropna()) - set(present))
    for family in present:
        part = t1[t1["family"] == family]
        top1 = st.mean_std([v for v in part["top1_mean"] if not math.isnan(v)])
        rows.append({
            "family": family, "n_models": part["model"].nunique(),
            "n_rows": len(part), "top1_mean": top1[0], "top1_std": top1[1], "top1_n": top1[2],
            "params_M_mean": _nanmean(part["params_M"]),
            "train_hours_mean": _nanmean(part["train_hours"]),
            "trials": " ".join(part["trials"]),
        })
    data = pd.DataFrame(rows, columns=["family", "n_models", "n_rows", "top1_mean", "top1_std",
                                       "top1_n", "params_M_mean", "train_hours_mean", "trials"])
    display = pd.DataFrame({
        "family": data["family"],
        "mean top-1 (%)": _means(data, "top1"),
        "mean params (M)": data["params_M_mean"].map(lambda x: fmt(x, 4)),
        "mean train time (h)": data["train_hours_mean"].map(lambda x: fmt(x, 3)),
        "models": data["n_models"].astype(str),
        "Table 1 rows": data["n_rows"].astype(str),
    })
    notes = ["Over the Table 1 rows of each family: mean ± std of the rows' mean final top-1 "
             "(n = rows with a result), mean params and mean train time. models: distinct "
             "model names; a model trained with several configs has several rows. Families "
             "with no trial in this run are left out."]
    sources = {f: [s for label in t1.loc[t1["family"] == f, "label"] for s in table1.sources[label]]
               for f in data["family"]}
    return Table("families", "By technique family", data, display, notes, sources)


def _nanmean(values) -> float:
    values = [v for v in values if not math.isnan(v)]
    return float(np.mean(values)) if values else st.NAN


# --- ablation tables ---

def ablations(records: list[dict], order: dict[str, list[str]] | None = None,
              descriptions: dict[str, str] | None = None) -> list[Table]:
    """One table per group: every variant against the group's baseline (its records with
    baseline=True). `order` gives each group's variant order (the study's); others follow
    alphabetically."""
    groups: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if r.get("group") is not None:
            groups[r["group"]].append(r)
    return [_ablation(g, groups[g], (order or {}).get(g, []), (descriptions or {}).get(g))
            for g in sorted(groups)]


def _ablation(group: str, records: list[dict], order: list[str], description: str | None) -> Table:
    base = [r for r in records if r.get("baseline")]
    if len({st.arm_id(r) for r in base}) > 1:
        warnings.warn(f"ablation group {group!r}: its baseline records differ in config; "
                      "they are pooled", stacklevel=2)
    by_variant: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        if not r.get("baseline"):
            by_variant[r.get("variant") or r["model"]].append(r)
    names = [v for v in order if v in by_variant] + sorted(set(by_variant) - set(order))
    base_top1 = st.per_seed(base, st.final)
    base_params = Arm("", base).first(st.params_m)
    arms_ = ([(base[0].get("variant") or "baseline", base)] if base else []) \
        + [(v, by_variant[v]) for v in names]
    rows = [_ablation_row(group, v, recs, base_top1, base_params, is_base=recs is base)
            for v, recs in arms_]
    data = pd.DataFrame(rows)
    display = pd.DataFrame({
        "variant": data["variant"], "model": data["model"],
        "top-1 (%)": _means(data, "top1"),
        "Δ top-1": [fmt_delta(d, s) for d, s in zip(data["delta_top1"], data["delta_top1_se"])],
        "params (M)": data["params_M"].map(lambda x: fmt(x, 4)),
        "Δ params (M)": data["delta_params_M"].map(lambda x: "" if math.isnan(x) else f"{x:+.4f}"),
        "p (Welch)": data["p_welch"].map(lambda x: fmt(x, 3)),
        "vs noise": data["vs_noise"],
        "status": data["status"],
    })
    notes = [
        "top-1: final top-1 (%) at each trial's last finished epoch, mean ± std over seeds "
        "(n=k). Δ top-1 = variant mean − baseline mean; its ± is the standard error of the "
        "difference, sqrt(s_v^2/n_v + s_b^2/n_b), Welch's denominator. Δ params needs no "
        "spread: a model's parameter count does not depend on the seed.",
        "vs noise: Welch's t-test (unequal variances) of the variant's per-seed top-1 against "
        "the baseline's; p >= 0.05: 'within noise' (the difference is not larger than the "
        "seed-to-seed noise), p < 0.05: 'beyond noise'; 'n/a (1 seed)' when either side has "
        "fewer than 2 seeds.",
    ]
    if not base:
        notes.append(f"Group {group!r} has no baseline record, so no Δ.")
    sources = {v: Arm(v, recs).sources for v, recs in arms_}
    title = f"Ablation: {group}" + (f" ({description})" if description else "")
    return Table(f"ablation_{group}", title, data, display, notes, sources)


def _ablation_row(group: str, variant: str, recs: list[dict], base_top1: list[float],
                  base_params: float, is_base: bool = False) -> dict:
    arm = Arm(variant, recs)
    top1 = st.per_seed(recs, st.final)
    mean, std, n = st.mean_std(top1)
    params = arm.first(st.params_m)
    test = None if is_base else st.welch(top1, base_top1)
    models = sorted({r["model"] + "".join(f" {k}={v}" for k, v in
                                          sorted((r.get("model_options") or {}).items()))
                     for r in recs})
    return {
        "group": group, "variant": variant, "model": ", ".join(models), "baseline": is_base,
        "n_seeds": arm.seeds, "top1_mean": mean, "top1_std": std, "top1_n": n,
        "delta_top1": test["delta"] if test else st.NAN,
        "delta_top1_se": test["delta_se"] if test else st.NAN,
        "params_M": params,
        "delta_params_M": params - base_params if not is_base else st.NAN,
        "p_welch": test["p"] if test else st.NAN,
        "vs_noise": "baseline" if is_base else test["verdict"],
        "status": st.pooled_status(recs), "trials": _trials(arm),
    }
