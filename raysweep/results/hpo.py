"""The search (HPO) table: per searched arm, the sample chosen by validation accuracy.

A searched arm is a model with its options and every training value the search did not
sample. Its samples are ranked by their full-budget seeds' mean final validation top-1;
samples ASHA stopped are not eligible (their accuracy is after a shorter budget), and no
sample is ever chosen by test accuracy. The chosen sample's test top-1 is then reported:
that is the number a paper may quote for the tuned arm.
"""
from __future__ import annotations

from collections import defaultdict

import pandas as pd

from raysweep.results import cohorts as co
from raysweep.decide import stats as st
from raysweep.results.table import Table, means, sources, stat_columns, trial_keys
from raysweep.core.trial import TrialRecord, identity_key

VAL = co.final("val_top1")
TEST = co.final("test_top1")


def search_arm(record: TrialRecord) -> str:
    """The arm a search sample belongs to: its identity without the searched values (nor
    peak_lr, which follows from lr and the batch size)."""
    drop = set(record.searched) | {"peak_lr"}
    train = {k: v for k, v in record.train.identity().items() if k not in drop}
    return identity_key(record.model, {"network": record.network, "train": train})


def hpo(records: list[TrialRecord]) -> Table | None:
    """None when the run has no search sample."""
    searched = [r for r in records if r.sample is not None]
    if not searched:
        return None
    names = co.arm_names(searched, key=search_arm, skip=lambda r: set(r.searched) | {"peak_lr"})
    arms: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in searched:
        arms[search_arm(r)].append(r)
    rows = [_row(names[arm], recs) for arm, recs in sorted(arms.items(), key=lambda a: names[a[0]])]
    data = pd.DataFrame([row for row, _ in rows])
    display = pd.DataFrame({
        "arm": data["arm"], "samples": data["n_samples"].astype(str),
        "eligible": data["n_eligible"].astype(str), "chosen sample": data["chosen"],
        "searched values": data["searched"],
        "val top-1 (%)": means(data, "val_top1"), "test top-1 (%)": means(data, "top1"),
        "status": data["status"]})
    notes = [
        "Per arm (model, options and the training values not searched): the search sample "
        "with the highest mean final validation top-1 among samples whose seeds trained the "
        "full budget (eligible). Samples ASHA stopped are not eligible; nothing is chosen by "
        "test accuracy, so a run without a validation split (val_fraction 0) has no choice.",
        "val / test top-1: accuracy (%) of the chosen sample's full-budget seeds after their "
        "last epoch, mean ± std over seeds (n). status: every trial of the arm's search.",
    ]
    return Table("hpo", "Hyper-parameter search: the sample chosen by validation accuracy",
                 data, display, notes, {row["arm"]: src for row, src in rows},
                 latex=_latex(data), latex_types={"arm": "3cm", "searched values": "3cm"})


def _row(name: str, recs: list[TrialRecord]) -> tuple[dict, list[tuple[str, list[str]]]]:
    samples: dict[int, co.Cohort] = {}
    for cohort in co.cohorts(recs):
        if cohort.ending == co.FULL and cohort.per_seed(VAL):
            samples[cohort.first.sample] = cohort
    chosen = max(samples, key=lambda s: (st.mean_std(list(samples[s].per_seed(VAL).values()))[0],
                                         -s), default=None)
    best = samples.get(chosen)
    row = {"arm": name, "n_samples": len({r.sample for r in recs}), "n_eligible": len(samples),
           "chosen": "" if chosen is None else str(chosen),
           "searched": _values(best.first.searched) if best else "",
           **stat_columns("val_top1", best.per_seed(VAL) if best else {}),
           **stat_columns("top1", best.per_seed(TEST) if best else {}),
           "status": co.status_counts(recs),
           "trials": trial_keys(best.records) if best else "",
           "candidates": trial_keys(recs)}
    return row, sources(best.records if best else recs)


def _latex(data: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame({
        "arm": data["arm"], "samples": data["n_samples"].astype(str),
        "eligible": data["n_eligible"].astype(str), "chosen\nsample": data["chosen"],
        "searched values": data["searched"],
        "val top-1 (%)": means(data, "val_top1", show_n=False),
        "test top-1 (%)": means(data, "top1", show_n=False),
        "seeds": data["top1_n"].astype(str)})


def _values(searched: dict) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                     for k, v in sorted(searched.items()))
