"""Ablation tables: each variant of a group against the group's baseline.

A group's trials are the grid records whose labels name it (a baseline shared by three
groups is one trial with three labels); its baseline is the label with `baseline=True`.
Full-budget seeds are compared by a paired t-test over the seeds both arms share (Welch's
where they share fewer than two), with Holm's correction over the group's tests
(`raysweep.decide.stats`). Seeds that ASHA stopped are shown in rows of their own with
their Δ at the epoch they reached, untested: ASHA chose them for being behind.
"""
from __future__ import annotations

import math
import warnings
from collections import Counter, defaultdict
from dataclasses import dataclass

import pandas as pd

from raysweep.decide import seeding as sd
from raysweep.decide import stats as st
from raysweep.results import cohorts as co
from raysweep.results.table import (Table, fmt, fmt_p, fmt_signed, means, per_model, sources,
                                    stat_columns, trial_keys)
from raysweep.core.trial import ArmLabel, TrialRecord


@dataclass
class _Row:
    variant: str
    name: str                 # model, options and telling config values
    baseline: bool
    cohort: co.Cohort
    comparison: st.Comparison | None = None   # None: the baseline itself, or nothing to compare


def ablations(records: list[TrialRecord], order: dict[str, list[str]] | None = None,
              descriptions: dict[str, str] | None = None, plan: sd.SeedPlan | None = None
              ) -> list[Table]:
    """One table per group; `order` gives each group's variant order (the study's), others
    follow alphabetically; `descriptions` the groups' plain-English titles; `plan` the
    study's adaptive seeds, if it has them."""
    groups: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in records:
        if r.sample is None:
            for group in {label.group for label in r.labels if label.group is not None}:
                groups[group].append(r)
    return [ablation(g, groups[g], (order or {}).get(g, []), (descriptions or {}).get(g), plan)
            for g in sorted(groups)]


def label_in(record: TrialRecord, group: str) -> ArmLabel:
    """The record's label in `group`: its baseline label if it is the baseline."""
    found = [label for label in record.labels if label.group == group]
    return next((label for label in found if label.baseline), found[0])


def variant_in(record: TrialRecord, group: str) -> str:
    """The record's variant name in `group`; a trial that several variants name (two
    names of one network, trained once) is one row: `adaptive = k3`."""
    first = label_in(record, group)
    names = [first.variant] + [x.variant for x in record.labels
                               if x.group == group and x.variant != first.variant]
    return " = ".join(dict.fromkeys(names))


def ablation(group: str, records: list[TrialRecord], order: list[str],
             description: str | None, plan: sd.SeedPlan | None = None) -> Table:
    rows = _rows(group, records, order)
    base = _baseline(group, rows)
    variants = len({r.cohort.arm_key for r in rows if not r.baseline})
    seeding = {id(r): _seeding(r, rows, base, plan, variants) for r in rows}
    for r in rows:
        if math.isnan(seeding[id(r)].get("p", 0.0)):   # no look whose seeds all finished
            seeding[id(r)].pop("p")
            r.comparison = st.not_tested(r.comparison.delta, "no look with every seed's result")
    tested = [r for r in rows if r.comparison is not None and r.comparison.tested]
    # Adaptive seeds: Holm over each variant's sequential p (`seeding.verdict_p`).
    p_used = {id(r): seeding[id(r)].pop("p", r.comparison.p) for r in tested}
    adjusted = dict(zip((id(r.comparison) for r in tested),
                        st.holm([p_used[id(r)] for r in tested])))
    data = pd.DataFrame([{**_columns(group, r, rows, adjusted, len(tested)),
                          **seeding[id(r)], **_beats(r, base),
                          "p": p_used.get(id(r), st.NAN)} for r in rows])
    title = f"Ablation: {description or group.replace('_', ' ')}"
    return Table(f"ablation_{group}", title, data, _display(data, plan), _notes(len(tested), plan),
                 {label: sources(r.cohort.trials()) for label, r in zip(data["label"], rows)},
                 latex=_latex(data), latex_types={"variant": "1.8cm", "verdict": "3.2cm"})


def _seeding(row: _Row, rows: list[_Row], base: co.Cohort | str, plan: sd.SeedPlan | None,
             m: int) -> dict:
    """The row's seed count and, with adaptive seeds, why its seeding stopped there and
    its sequential p: the driver's rule replayed on the recorded seeds."""
    seeds = len(row.cohort.records)
    if plan is None or row.baseline or isinstance(base, str) or row.cohort.ending != co.FULL:
        return {"seeds": seeds, "seeding": ""}
    val, test = co.final("val_top1"), co.final("test_top1")
    arms = {row.cohort.arm_key, base.arm_key}
    ended = sd.ended_early([t for r in rows if r.cohort.arm_key in arms for t in r.cohort.trials()])
    path = sd.seeding_path(row.cohort.per_seed(val), base.per_seed(val), m, plan, ended)
    found = {"seeds": seeds, "seeding": path.why or "seeds still to run"}
    if row.comparison is not None and row.comparison.tested:
        found["p"] = sd.verdict_p(row.cohort.per_seed(test), base.per_seed(test), path.looks,
                                  plan)
    return found


def _beats(row: _Row, base: co.Cohort | str) -> dict:
    """P(the variant beats the baseline on a new seed) from the paired test's seeds."""
    c = row.comparison
    if c is None or c.test != "paired t" or isinstance(base, str):
        return {"beats": st.NAN, "beats_low": st.NAN, "beats_high": st.NAN}
    metric = co.final("test_top1")
    v, b = row.cohort.per_seed(metric), base.per_seed(metric)
    beats, low, high = st.beat_probability([v[s] - b[s] for s in sorted(set(v) & set(b))])
    return {"beats": beats, "beats_low": low, "beats_high": high}


def _rows(group: str, records: list[TrialRecord], order: list[str]) -> list[_Row]:
    names = co.arm_names(records)
    arms: dict[tuple[bool, str, str], list[TrialRecord]] = defaultdict(list)
    for r in records:
        arms[(not label_in(r, group).baseline, variant_in(r, group), r.arm_key)].append(r)
    rank = {v: i for i, v in enumerate(order)}
    keys = sorted(arms, key=lambda k: (k[0], rank.get(k[1].split(" = ")[0], len(rank)), k[1],
                                       names[k[2]]))
    configs = Counter(variant for _, variant, _ in keys)   # a variant run with 2 configs: 2 rows
    rows = []
    for key in keys:
        is_variant, variant, arm_key = key
        shown = variant if configs[variant] == 1 else f"{variant} ({names[arm_key]})"
        rows += [_Row(shown, names[arm_key], not is_variant, c) for c in co.cohorts(arms[key])]
    base = _baseline(group, rows)
    for row in rows:
        if not row.baseline and row.cohort.ending != co.NONE:
            row.comparison = _compare(row.cohort, base)
    return rows


def _baseline(group: str, rows: list[_Row]) -> co.Cohort | str:
    """The baseline's full-budget cohort, or why there is none."""
    arms = {r.cohort.arm_key for r in rows if r.baseline}
    if len(arms) != 1:
        why = "no baseline record" if not arms else f"{len(arms)} baseline configs"
        warnings.warn(f"ablation group {group!r}: {why}; no variant is compared", stacklevel=3)
        return why
    full = [r.cohort for r in rows if r.baseline and r.cohort.ending == co.FULL]
    return full[0] if full else "no full-budget baseline seed"


def _compare(cohort: co.Cohort, base: co.Cohort | str) -> st.Comparison:
    if isinstance(base, str):
        return st.not_tested(st.NAN, base)
    if cohort.setting != base.setting:
        return st.not_tested(st.NAN, "other data, split or epoch budget than the baseline")
    if cohort.ending == co.FULL:
        metric = co.final("test_top1")
        return st.compare(cohort.per_seed(metric), base.per_seed(metric))
    at = co.at_epoch(cohort.end_epoch)
    delta = st.compare(cohort.per_seed(at), base.per_seed(at)).delta
    return st.not_tested(delta, f"stopped by ASHA, Δ at epoch {cohort.end_epoch}")


def _columns(group: str, row: _Row, rows: list[_Row], adjusted: dict[int, float], m: int
             ) -> dict:
    c = row.comparison
    p_holm = adjusted.get(id(c), st.NAN)
    detectable = st.detectable_delta(c, m) if c is not None else st.NAN
    base_params = next((per_model(r.cohort, "params", 1e6) for r in rows if r.baseline), st.NAN)
    params = per_model(row.cohort, "params", 1e6)
    ended = row.cohort.ended
    return {
        "group": group, "variant": row.variant,
        "label": row.variant if row.cohort.ending == co.FULL else f"{row.variant} ({ended})",
        "model": row.name, "baseline": row.baseline, "ending": row.cohort.ending,
        "ended": ended, "end_epoch": row.cohort.end_epoch,
        **stat_columns("top1", row.cohort.per_seed(co.final("test_top1"))),
        **stat_columns("val_top1", row.cohort.per_seed(co.final("val_top1"))),
        "delta_top1": c.delta if c else st.NAN,
        "delta_ci_low": c.ci_low if c else st.NAN, "delta_ci_high": c.ci_high if c else st.NAN,
        "test": c.test if c and c.tested else "", "n_pairs": c.n_pairs if c else 0,
        "p": c.p if c else st.NAN, "p_holm": p_holm, "holm_m": m,
        "detectable_delta": detectable,
        "verdict": "baseline" if row.baseline else
                   st.verdict(c, p_holm, detectable) if c else "not tested: no result",
        "params_M": params,
        "delta_params_M": st.NAN if row.baseline else params - base_params,
        "status": row.cohort.status, "trials": trial_keys(row.cohort.trials()),
    }


def _display(data: pd.DataFrame, plan: sd.SeedPlan | None = None) -> pd.DataFrame:
    shown = pd.DataFrame({
        "variant": data["variant"], "model": data["model"], "ended": data["ended"],
        "seeds": data["seeds"].astype(str),
        "top-1 (%)": means(data, "top1"),
        "Δ top-1 (95% CI)": [_delta(d, lo, hi) for d, lo, hi in
                             zip(data["delta_top1"], data["delta_ci_low"], data["delta_ci_high"])],
        "test": [f"paired t (n={n})" if t == "paired t" else t
                 for t, n in zip(data["test"], data["n_pairs"])],
        "p": data["p"].map(fmt_p), "p (Holm)": data["p_holm"].map(fmt_p),
        "verdict": data["verdict"],
        "P(beats baseline) (95% CI)": [_share(b, lo, hi) for b, lo, hi in
                                       zip(data["beats"], data["beats_low"], data["beats_high"])],
        "params (M)": data["params_M"].map(lambda x: fmt(x, 3)),
        "Δ params (M)": data["delta_params_M"].map(lambda x: fmt_signed(x, 4)),
        "status": data["status"],
    })
    if plan is not None:
        shown.insert(shown.columns.get_loc("seeds") + 1, "seeding", data["seeding"])
    return shown


def _share(value: float, low: float, high: float) -> str:
    return "" if pd.isna(value) else f"{value:.2f} [{low:.2f}, {high:.2f}]"


def _latex(data: pd.DataFrame) -> pd.DataFrame:
    """The main columns, cells broken into lines; n is the seeds column."""
    stopped = [f"\n({e})" if k == co.STOPPED else "" for k, e in zip(data["ending"], data["ended"])]
    return pd.DataFrame({
        "variant": [v + s for v, s in zip(data["variant"], stopped)],
        "top-1 (%)": means(data, "top1", show_n=False),
        "seeds": data["top1_n"].astype(str),
        "Δ top-1\n(95% CI)": [_delta(d, lo, hi, "\n") for d, lo, hi in zip(
            data["delta_top1"], data["delta_ci_low"], data["delta_ci_high"])],
        "p\n(Holm)": data["p_holm"].map(fmt_p),
        "verdict": data["verdict"],
        "Δ params\n(M)": data["delta_params_M"].map(lambda x: fmt_signed(x, 4)),
    })


def _delta(delta: float, low: float, high: float, sep: str = " ") -> str:
    if pd.isna(low):
        return fmt_signed(delta)
    return f"{fmt_signed(delta)}{sep}[{fmt_signed(low)}, {fmt_signed(high)}]"


def _notes(m: int, plan: sd.SeedPlan | None = None) -> list[str]:
    adaptive = [] if plan is None else [
        f"Adaptive seeds (min {plan.min}, max {plan.max}, detect {plan.detect:g} points; "
        f"looks at {', '.join(map(str, plan.looks))} seeds): at each look a variant stops "
        "when its sequential p on validation top-1 is ≤ α/m ('decided', from the second "
        f"look on), when the interval of its validation Δ at level 1 − α/m lies inside "
        f"±{plan.detect:g} ('detect reached'), at max ('reached max'), or when a seed it "
        "needs ended short of its budget ('seeds ended early'); otherwise it runs to the "
        "next look. p is the sequential p of test top-1 over the looks it took, valid "
        "whatever stopped it (raysweep.decide.seeding; error rates: benchmarks/README.md, "
        "Calibration); Δ's interval and 'could detect' are the plain paired test's over "
        "the seeds run, so at max seeds p is about 1.2–1.3× the plain test's."]
    return adaptive + [
        "top-1: test accuracy (%) after each trial's last finished epoch, mean ± std over "
        "seeds (n). Rows are the seeds of one variant that ended the same way; seeds that "
        "ended at different epochs are never averaged together.",
        "Δ top-1 = variant − baseline (points), full-budget seeds only. Paired t-test over the "
        "seeds both arms share (same seed: same data order and augmentation draws): Δ is the "
        "mean of the per-seed differences and 95% CI its t interval (per comparison, not "
        "adjusted). Where fewer than 2 seeds are shared: Welch's t-test on the two sides' "
        "seeds (Δ = difference of the means).",
        f"p (Holm): Holm's step-down correction over the m = {m} tests of this group, so the "
        "chance of any false 'significant' in the group stays ≤ 0.05. 'not significant' "
        "does not show that the variant makes no difference: '|Δ| ≥ d' is the smallest "
        "difference these seeds detect with 80% power at the observed spread and α/m.",
        "Rows stopped by ASHA: Δ against the baseline at the epoch they reached, not tested "
        "(ASHA stopped them because they were behind). Diverged, errored and unfinished "
        "trials are counted in the status and never averaged.",
        "P(beats baseline): the probability that the variant's test top-1 beats the "
        "baseline's on a new seed, Φ(mean/std) of the per-seed differences (a normal model), "
        "with a 95% percentile bootstrap interval over the seeds (2,000 resamples).",
    ]
