"""PNG plots of the tables and the per-epoch histories (matplotlib's Agg canvas, no pyplot,
so a report never needs a display or touches the global backend)."""
from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from models.registry import FAMILIES
from raysweep.records import atomic_write
from raysweep.results import stats as st
from raysweep.results.export import slug
from raysweep.results.tables import Table

MAX_LEGEND = 12


def save(fig: Figure, path: Path) -> Path:
    """Write the PNG atomically (temp file, fsync, rename): never a half-written plot."""
    FigureCanvasAgg(fig)
    atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=120, bbox_inches="tight"))
    return path


def _no_data(ax, what: str) -> None:
    ax.text(0.5, 0.5, f"no {what} in the records", ha="center", va="center",
            transform=ax.transAxes)


def accuracy_bars(table1: Table, path: Path) -> Path:
    data = table1.data.dropna(subset=["top1_mean"])
    fig = Figure(figsize=(7, 1.2 + 0.35 * max(len(data), 1)))
    ax = fig.add_subplot()
    if data.empty:
        _no_data(ax, "top-1")
    else:
        y = np.arange(len(data))[::-1]
        colors = ["tab:red" if inn else "tab:blue" for inn in data["innovation"]]
        ax.barh(y, data["top1_mean"], xerr=data["top1_std"].fillna(0), color=colors,
                capsize=3)
        ax.set_yticks(y, data["label"], fontsize=8)
        ax.set_xlabel("final top-1 (%), mean ± std over seeds")
    ax.set_title("Top-1 by model (red: the seeds' own designs)")
    return save(fig, path)


def accuracy_vs_params(table1: Table, path: Path) -> Path:
    data = table1.data.dropna(subset=["top1_mean", "params_M"])
    fig = Figure(figsize=(7, 5))
    ax = fig.add_subplot()
    if data.empty:
        _no_data(ax, "top-1 with a parameter count")
    for family in [f for f in FAMILIES if f in set(data["family"])] + \
            sorted(set(data["family"].dropna()) - set(FAMILIES)):
        part = data[data["family"] == family]
        ax.errorbar(part["params_M"], part["top1_mean"], yerr=part["top1_std"].fillna(0),
                    fmt="o", capsize=3, label=family)
        for _, row in part.iterrows():
            ax.annotate(row["label"], (row["params_M"], row["top1_mean"]), fontsize=7,
                        xytext=(3, 3), textcoords="offset points")
    if not data.empty:
        ax.set_xscale("log")
        ax.legend(fontsize=8)
    ax.set_xlabel("parameters (M, log scale)")
    ax.set_ylabel("final top-1 (%)")
    ax.set_title("Accuracy vs parameters")
    return save(fig, path)


def training_curves(records: list[dict], out_dir: Path) -> list[Path]:
    """One PNG per model: validation top-1 and loss per epoch, one line per trial."""
    by_model: dict[str, list[dict]] = defaultdict(list)
    for r in records:
        by_model[r["model"]].append(r)
    written = []
    for model, recs in sorted(by_model.items()):
        fig = Figure(figsize=(11, 4))
        top1_ax, loss_ax = fig.subplots(1, 2)
        drawn = 0
        for r in sorted(recs, key=lambda r: (str(r.get("group")), str(r.get("variant")),
                                             str(r.get("seed")))):
            epochs = [h.get("epoch") for h in r["history"]]
            if not epochs:
                continue
            where = f"{r['group']}/{r['variant']}" if r.get("group") else r.get("variant") or model
            label = f"{where} s{r.get('seed')}"
            top1_ax.plot(epochs, [st.num(h.get("top1")) for h in r["history"]], "o-", label=label)
            loss_ax.plot(epochs, [st.num(h.get("val_loss")) for h in r["history"]], "o-")
            drawn += 1
        for ax, what in ((top1_ax, "val top-1 (%)"), (loss_ax, "val loss")):
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_ylabel(what)
            if not drawn:
                _no_data(ax, "finished epoch")
        if 0 < drawn <= MAX_LEGEND:
            top1_ax.legend(fontsize=7)
        fig.suptitle(f"{model}: training curves ({drawn} trials with a history)")
        written.append(save(fig, out_dir / f"curves_{slug(model)}.png"))
    return written


def ablation_deltas(table: Table, path: Path) -> Path:
    data = table.data[~table.data["baseline"]].dropna(subset=["delta_top1"])
    fig = Figure(figsize=(7, 1.5 + 0.4 * max(len(data), 1)))
    ax = fig.add_subplot()
    if data.empty:
        _no_data(ax, "variant with a Δ top-1")
    else:
        y = np.arange(len(data))[::-1]
        colors = [{"beyond noise": "tab:green", "within noise": "tab:gray"}.get(v, "tab:orange")
                  for v in data["vs_noise"]]
        ax.barh(y, data["delta_top1"], xerr=data["delta_top1_se"].fillna(0), color=colors,
                capsize=3)
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, data["variant"], fontsize=8)
        ax.set_xlabel("Δ top-1 vs baseline (points), ± standard error of the difference")
    ax.set_title(f"{table.title}\n(green: beyond seed noise, grey: within, orange: n/a)",
                 fontsize=9)
    return save(fig, path)


def write_all(records: list[dict], table1: Table, ablation_tables: list[Table],
              out_dir: Path) -> list[Path]:
    written = [accuracy_bars(table1, out_dir / "accuracy_bars.png"),
               accuracy_vs_params(table1, out_dir / "accuracy_vs_params.png")]
    written += training_curves(records, out_dir)
    written += [ablation_deltas(t, out_dir / f"{slug(t.name)}_delta.png") for t in ablation_tables]
    return written

