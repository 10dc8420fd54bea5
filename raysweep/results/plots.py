"""Plots of the tables and of the per-epoch histories, each written as a vector PDF and a
300-dpi PNG (matplotlib's Agg canvas, no pyplot: a report never needs a display).

They follow the tables' rules: final accuracy only for full-budget rows; rows ASHA stopped
only at the equal-budget epoch; accuracy error bars clipped to [0, 100]; Δ bars are 95%
confidence intervals. Labels are laid out so that they never overlap.
"""
from __future__ import annotations

import gc
import textwrap
from collections import defaultdict
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import LogFormatter, MaxNLocator

from models.registry import FAMILIES
from raysweep.core.labels import arm_tags
from raysweep.store.storage import atomic_write
from raysweep.results import cohorts as co
from raysweep.results.latex import slug
from raysweep.results.table import Table
from raysweep.core.trial import TrialRecord

DPI = 300               # of the PNG files (dots per inch)
MAX_LEGEND = 12         # lines per curves plot that still get a legend entry
MAX_CURVES = 100        # lines per curves plot: more are unreadable and slow to draw
MAX_BARS = 100          # bars per panel (in the table's order): a 500-row chart is 150
                        # inches tall, unreadable, and took 8 of a 5,000-record report's s
MAX_POINT_LABELS = 60   # points of accuracy_vs_params that get a name label
MAX_PIXELS = 12_000     # longer side of a PNG: a 500-row bar chart at 300 dpi took 1 GB
LABEL_PT = 7            # font size of point labels (points)
ROW_IN = 0.3            # height of one bar (two label lines fit) or one point label (inches)
WRAP = 44               # characters per line of a bar's label (at most two lines)
# No creation date: a report rebuilt from the same records writes the same bytes (with the
# same matplotlib, which names itself in each file).
METADATA = {"pdf": {"CreationDate": None}, "png": {}}
COLORS = {"significant": "tab:green", "not significant": "tab:gray", "not tested": "tab:orange"}


def save(fig: Figure, stem: Path) -> list[Path]:
    """`stem`.pdf and `stem`.png, each written atomically (never a half-written plot)."""
    FigureCanvasAgg(fig)
    paths = []
    for fmt in ("pdf", "png"):
        path = stem.with_name(f"{stem.name}.{fmt}")
        dpi = min(DPI, MAX_PIXELS / max(fig.get_size_inches()))
        # Every figure has a constrained layout, which already fits its labels, legends
        # and titles inside it; bbox_inches="tight" measured them again on every save
        # (0.6 s against 0.2 s for a 49-bar delta chart's PDF).
        atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=dpi,
                                                 metadata=METADATA[fmt]))
        paths.append(path)
    return paths


def clipped_errors(mean, std) -> np.ndarray:
    """Asymmetric ±std error bars of accuracies, cut at 0 and 100 % (2 × n, for xerr)."""
    mean, std = np.asarray(mean, float), np.nan_to_num(np.asarray(std, float))
    return np.vstack([mean - np.clip(mean - std, 0, 100), np.clip(mean + std, 0, 100) - mean])


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in the records", ha="center", va="center",
            transform=ax.transAxes)


def _row_names(data: pd.DataFrame, suffix: list[str] | None = None) -> list[str]:
    multi = data["setting"].nunique() > 1
    names = [f"{n} ({s})" if multi else n for n, s in zip(data["name"], data["setting"])]
    return names if suffix is None else [f"{n}{x}" for n, x in zip(names, suffix)]


def _wrap(name: str) -> str:
    return "\n".join(textwrap.wrap(name, WRAP, max_lines=2, placeholder=" ..."))


# --- Table 1 ---

def accuracy_bars(table1: Table) -> Figure:
    """Final test top-1 of the full-budget rows; below it, when some rows were stopped
    early, every row at the equal-budget epoch."""
    data = table1.data
    full, full_shown = _first_rows(data[(data["ending"] == co.FULL) & data["top1_mean"].notna()])
    at_e = data[data["ending"].isin([co.FULL, co.STOPPED]) & data["top1_at_budget_mean"].notna()]
    epochs = sorted(set(at_e["equal_budget_epoch"].dropna().astype(int)))
    at_e, at_e_shown = _first_rows(at_e)
    stopped = at_e["ending"] == co.STOPPED
    names = [_row_names(full)]
    if stopped.any():
        names.append(_row_names(at_e, [f" (stopped at epoch {int(e)})" if s else ""
                                       for s, e in zip(stopped, at_e["end_epoch"])]))
    rows = [ROW_IN * max(len(n), 1) for n in names]
    fig = Figure(figsize=(7.5, 1.2 + sum(0.8 + r for r in rows)), layout="constrained")
    axes = fig.subplots(len(names), 1, squeeze=False, gridspec_kw={"height_ratios": rows})[:, 0]
    _bars(axes[0], full["top1_mean"], full["top1_std"], names[0], full["innovation"],
          [False] * len(full))
    axes[0].set_title(f"After the full training budget{full_shown}", fontsize=10)
    if len(names) > 1:
        _bars(axes[1], at_e["top1_at_budget_mean"], at_e["top1_at_budget_std"], names[1],
              at_e["innovation"], list(stopped))
        axes[1].set_title(f"At epoch {', '.join(map(str, epochs))}, which every model reached "
                          f"(hatched: stopped early){at_e_shown}", fontsize=10)
    kinds = [("tab:blue", "existing architecture", False),
             ("tab:red", "design proposed in the source reports", True)]
    shown = set(full["innovation"]) | set(at_e["innovation"])
    fig.legend(handles=[Patch(color=c, label=t) for c, t, new in kinds if new in shown],
               loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle("Test accuracy by model (mean ± std over seeds)")
    return fig


def _first_rows(data: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The first MAX_BARS rows, in the table's order, and the words a title adds when
    that is not all of them (the table has every row)."""
    if len(data) <= MAX_BARS:
        return data, ""
    return data.head(MAX_BARS), f": the first {MAX_BARS} of {len(data)} rows of the table"


def _bars(ax, means, stds, names, innovation, hatched) -> None:
    if len(names) == 0:
        _no_data(ax, "accuracy")
        return
    y = np.arange(len(names))[::-1]
    colors = np.where(np.asarray(innovation, bool), "tab:red", "tab:blue")
    bars = ax.barh(y, means, xerr=clipped_errors(means, stds), color=colors, capsize=2)
    for bar, hatch in zip(bars, hatched):
        if hatch:
            bar.set_hatch("///")
            bar.set_alpha(0.6)
    ax.set_yticks(y, [_wrap(n) for n in names], fontsize=8)
    ax.set_xlim(0, 100)
    ax.set_xlabel("test top-1 (%)")


def accuracy_vs_params(table1: Table) -> Figure:
    data = table1.data
    data = data[(data["ending"] == co.FULL)].dropna(subset=["top1_mean", "params_M"])
    labelled = len(data) <= MAX_POINT_LABELS
    fig = Figure(figsize=(8, max(4.5, 1.8 + ROW_IN * 0.8 * len(data) * labelled)),
                 layout="constrained")
    ax = fig.add_subplot()
    if data.empty:
        _no_data(ax, "full-budget accuracy with a parameter count")
    present = [f for f in FAMILIES if f in set(data["family"])]
    for family in present + sorted(set(data["family"].dropna()) - set(present)):
        part = data[data["family"] == family]
        ax.errorbar(part["params_M"], part["top1_mean"], capsize=2, fmt="o", label=family,
                    yerr=clipped_errors(part["top1_mean"], part["top1_std"]))
    if not data.empty:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(PlainLogFormatter())
        ax.xaxis.set_minor_formatter(PlainLogFormatter(labelOnlyBase=False))
        ax.legend(fontsize=8, title="family", title_fontsize=8, loc="upper left",
                  bbox_to_anchor=(0, -0.12), ncol=3, frameon=False)
        if labelled:  # hundreds of arrowed labels: unreadable, and minutes to draw
            _label_column(ax, data["params_M"].to_numpy(), data["top1_mean"].to_numpy(),
                          _row_names(data))
    ax.set_xlabel("parameters (millions, log scale)")
    ax.set_ylabel("test top-1 (%)")
    ax.set_title("Test accuracy against model size, after the full training budget")
    return fig


class PlainLogFormatter(LogFormatter):
    """Log-axis labels as plain numbers (0.2, not 1e-01 or 2×10⁻¹); LogFormatter still
    decides which minor ticks have room for a label."""
    def _num_to_string(self, x, vmin, vmax):
        return f"{x:g}"


def _label_column(ax, xs, ys, labels: list[str]) -> None:
    """Each point's label in a column right of the axes, at the point's height where it
    can be, pushed apart so that no two labels overlap, with a thin line to its point."""
    lo, hi = ax.get_ylim()
    frac = (ys - lo) / (hi - lo)
    height = ax.figure.get_figheight() * ax.get_position().height
    gap = 1.35 * LABEL_PT / 72 / max(height, 1e-3)      # one label line, in axes fractions
    order = np.argsort(frac)
    placed = np.clip(frac[order], 0, 1)
    for i in range(1, len(placed)):                      # push up ...
        placed[i] = max(placed[i], placed[i - 1] + gap)
    if len(placed) and placed[-1] > 1:                   # ... and back down from the top
        placed[-1] = 1
        for i in range(len(placed) - 2, -1, -1):
            placed[i] = min(placed[i], placed[i + 1] - gap)
    for i, target in zip(order, placed):
        ax.annotate(labels[i], xy=(xs[i], ys[i]), xytext=(1.03, target),
                    textcoords="axes fraction", va="center", fontsize=LABEL_PT,
                    arrowprops={"arrowstyle": "-", "lw": 0.4, "color": "0.75"})


# --- per-epoch histories ---

def training_curves(records: list[TrialRecord]) -> dict[str, Figure]:
    """Per model: accuracy and loss per epoch (validation split; test split when the run
    has none), one line per trial; stopped trials end in '|', diverged ones in 'x'."""
    by_model: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in records:
        by_model[r.model].append(r)
    return {model: _curves(model, recs) for model, recs in sorted(by_model.items())}


def _curves(model: str, recs: list[TrialRecord]) -> Figure:
    split = "val" if any(h.val_top1 is not None for r in recs for h in r.history) else "test"
    fig = Figure(figsize=(11, 4), layout="constrained")
    top1_ax, loss_ax = fig.subplots(1, 2)
    drawn = [r for r in sorted(recs, key=lambda r: (r.labels[0].variant, r.seed, r.key))
             if r.history]
    runs = len(drawn)
    drawn = drawn[:MAX_CURVES]
    tags = arm_tags(drawn)   # two arms with one label (a study changed between re-runs)
    for r in drawn:
        epochs = [h.epoch for h in r.history]
        end = {"stopped": "|", "diverged": "x"}.get(r.status, "")
        tag = f" [{tags[r.arm_key]}]" if r.arm_key in tags else ""
        name = f"{r.labels[0].variant}{tag}, seed {r.seed}" + (f" ({r.status})" if end else "")
        line, = top1_ax.plot(epochs, [_num(getattr(h, f"{split}_top1")) for h in r.history],
                             "-", marker=".", label=name)
        loss_ax.plot(epochs, [_num(getattr(h, f"{split}_loss")) for h in r.history], "-",
                     marker=".", color=line.get_color())
        if end:
            top1_ax.plot(epochs[-1:], [_num(getattr(r.history[-1], f"{split}_top1"))],
                         end, color=line.get_color(), markersize=9)
    where = "validation" if split == "val" else "test"
    for ax, what in ((top1_ax, f"{where} top-1 (%)"), (loss_ax, f"{where} loss (nats)")):
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(what)
        if not drawn:
            _no_data(ax, "finished epoch")
    if 0 < len(drawn) <= MAX_LEGEND:
        loss_ax.legend(*top1_ax.get_legend_handles_labels(), fontsize=7, loc="upper left",
                       bbox_to_anchor=(1.02, 1), frameon=False)
    shown = f"{len(drawn)} runs" if len(drawn) == runs else f"the first {len(drawn)} of {runs} runs"
    fig.suptitle(f"{model}: {where} accuracy and loss per epoch ({shown})")
    return fig


def _num(value: float | None) -> float:
    return np.nan if value is None else value


# --- ablations ---

def ablation_deltas(table: Table) -> Figure:
    data = table.data[~table.data["baseline"] & (table.data["ending"] == co.FULL)]
    data, shown = _first_rows(data.dropna(subset=["delta_top1"]))
    fig = Figure(figsize=(7.5, 1.6 + ROW_IN * max(len(data), 1)), layout="constrained")
    ax = fig.add_subplot()
    if data.empty:
        _no_data(ax, "variant with a full-budget Δ")
    else:
        y = np.arange(len(data))[::-1]
        kind = [next(k for k in COLORS if v.startswith(k)) for v in data["verdict"]]
        err = np.nan_to_num(np.vstack([data["delta_top1"] - data["delta_ci_low"],
                                       data["delta_ci_high"] - data["delta_top1"]]))
        ax.barh(y, data["delta_top1"], xerr=err, color=[COLORS[k] for k in kind], capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, data["variant"], fontsize=8)
        ax.set_xlabel("change in test top-1 against the baseline (percentage points), "
                      "95% confidence interval")
        fig.legend(handles=[Patch(color=c, label=f"{k} (α = 0.05, Holm)" if k != "not tested"
                                  else k) for k, c in COLORS.items() if k in kind],
                   loc="outside lower center", ncol=3, fontsize=8, frameon=False)
    ax.set_title(table.title.removeprefix("Ablation: ") + shown, fontsize=10)
    return fig


def write_all(records: list[TrialRecord], table1: Table, ablation_tables: list[Table],
              out_dir: Path) -> list[Path]:
    # Each figure is drawn, saved and dropped in turn: a run of many models and groups
    # never holds all of them at once.
    by_model: dict[str, list[TrialRecord]] = defaultdict(list)
    for r in records:
        by_model[r.model].append(r)
    figures = [("accuracy_bars", lambda: accuracy_bars(table1)),
               ("accuracy_vs_params", lambda: accuracy_vs_params(table1))]
    figures += [(f"curves_{slug(m)}", lambda m=m: _curves(m, by_model[m]))
                for m in sorted(by_model)]
    figures += [(f"{slug(t.name)}_delta", lambda t=t: ablation_deltas(t)) for t in ablation_tables]
    written = []
    for stem, draw in figures:
        written += save(draw(), out_dir / stem)
        # A saved figure and its canvas hold each other (and the canvas its 300-dpi pixel
        # buffer, 45 MB for a 50-bar chart) until the cyclic collector runs: collected
        # now, a report of 5,000 records peaked at ~360 MB instead of 625.
        gc.collect()
    return written
