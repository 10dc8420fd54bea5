"""The table type every results table is built as, and how its cells are formatted.

A table comes twice: `data`, numeric columns for CSV (means, stds and n apart, the trial
keys of every row), and `display`, formatted cells ("mean ± std (n=k)") for Markdown and
LaTeX. NaN stays NaN in `data` and becomes an empty cell in `display`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from raysweep.decide import stats as st
from raysweep.results.cohorts import Cohort, Metric
from raysweep.core.trial import TrialRecord

if TYPE_CHECKING:   # pandas only where tables are built: `compare` prints without it
    import pandas as pd


@dataclass
class Table:
    name: str            # file stem
    title: str           # plain English: the caption of the LaTeX table
    data: pd.DataFrame   # numeric, for CSV; column "trials" lists the rows' trial keys
    display: pd.DataFrame
    notes: list[str] = field(default_factory=list)
    # row label -> [(trial key, its Ray Tune trial ids), ...]: where each row's numbers come from
    sources: dict[str, list[tuple[str, list[str]]]] = field(default_factory=dict)
    # The LaTeX table: the main columns only (the rest stay in CSV and Markdown), compact
    # cells ("\n" breaks a cell or a header into lines); None: `display` as it is.
    latex: pd.DataFrame | None = None
    # LaTeX column types of `latex`: "l", "r", or a width ("2.4cm") for a wrapped column.
    latex_types: dict[str, str] = field(default_factory=dict)


# --- cells ---

def fmt(x: float | None, digits: int = 2) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def fmt_signed(x: float, digits: int = 2) -> str:
    return "" if math.isnan(x) else f"{x:+.{digits}f}"


def fmt_mean(mean: float, std: float, n: int, digits: int = 2, show_n: bool = True) -> str:
    """airbench style: 'mean ± std (n=k)'; one seed has no std; no seed is an empty cell.
    `show_n=False` where a column of the table gives n."""
    if n == 0 or math.isnan(mean):
        return ""
    count = f" (n={n})" if show_n else ""
    if n < 2 or math.isnan(std):
        return f"{mean:.{digits}f}{count}"
    return f"{mean:.{digits}f} ± {std:.{digits}f}{count}"


def means(data: pd.DataFrame, prefix: str, show_n: bool = True) -> list[str]:
    return [fmt_mean(m, s, int(n), show_n=show_n) for m, s, n in
            zip(data[f"{prefix}_mean"], data[f"{prefix}_std"], data[f"{prefix}_n"])]


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return ""
    return "< 0.001" if p < 0.001 else f"{p:.3f}"


# --- columns of one cohort ---

def stat_columns(prefix: str, values: dict[int, float]) -> dict[str, float]:
    """{prefix_mean, prefix_std, prefix_n} of per-seed values."""
    mean, std, n = st.mean_std(list(values.values()))
    return {f"{prefix}_mean": mean, f"{prefix}_std": std, f"{prefix}_n": n}


def seed_mean(cohort: Cohort, metric: Metric) -> float:
    """A cost or throughput of the cohort's trials, mean over seeds (NaN when none has it)."""
    values = list(cohort.per_seed(metric).values())
    return float(sum(values) / len(values)) if values else st.NAN


def per_model(cohort: Cohort, value: str, scale: float) -> float:
    """A number that does not depend on the seed (params, FLOPs), in units of `scale`."""
    found = [getattr(r, value) for r in cohort.trials() if getattr(r, value) is not None]
    return found[0] / scale if found else st.NAN


def trial_keys(trials: list[TrialRecord]) -> str:
    return " ".join(r.key for r in trials)


def sources(trials: list[TrialRecord]) -> list[tuple[str, list[str]]]:
    return [(r.key, list(r.trial_ids)) for r in trials]
