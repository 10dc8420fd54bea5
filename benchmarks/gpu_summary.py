"""The summary table of `benchmarks/gpu_check.sh`: each goal of issue 30 with its figure
and met / not met, and the fusion decision, read from the raw outputs in one results
folder (a step that did not finish leaves its figure empty: "not measured").

    .venv/bin/python -m benchmarks.gpu_summary benchmarks/results/<gpu>-<date>

Extrapolation of the `eca_kernel` group (6 arms × 3 seeds) from a short run of E epochs
through `raysweep run` to 300 epochs: with R the Ray start and W the Tune wall of the
short run (both printed by `raysweep run`), and per trial (or fused array) s the launch →
first epoch (`setup_seconds`), e₁ its first epoch and e its later epochs (medians over the
records' `epoch_seconds`),

    T₃₀₀ = R + W × (s + e₁ + 299·e) / (s + e₁ + (E − 1)·e)

i.e. the short run's wall, waves and packing included, scaled by how much longer each
trial (array) runs; the trials of the group all have the same epoch count, so the waves
keep their shape.

Fusion decision rule: a fused array is worth the default (`fuse: auto`, fusing only trials
that get a GPU) when its images/s (the better of compile off and reduce-overhead) is at
least 1.3× the same trials packed as separate processes on the GPU, at 4 members (the four
quarter-GPU trials `gpus_per_worker: auto` packs) and at 8 (the default `fuse_members`).
"""
from __future__ import annotations

import json
import re
import statistics
import sys
from pathlib import Path

TARGET_IMAGES_S = 200_000
TARGET_EPOCH_S = 1.0
TARGET_GROUP_S = 30 * 60
FUSE_RATIO = 1.3
FULL_EPOCHS = 300
FUSION_MEMBERS = (1, 4, 8, 16)


def _read(folder: Path, name: str) -> str:
    path = folder / name
    return path.read_text(errors="replace") if path.is_file() else ""


def fusion_rates(text: str) -> dict[str, float]:
    """{case: images/s} from one bench_fusion output."""
    return {m[1].strip(): float(m[2]) for m in
            re.finditer(r"^\s+(\S.*?)\s+(\d+) images/s", text, re.M)}


def epoch_seconds(text: str) -> dict[int, float]:
    """{global batch: engine seconds per epoch} from bench_epoch_time's output."""
    return {int(m[1]): float(m[2]) for m in
            re.finditer(r"global batch\s+(\d+),.*?:\s+([\d.]+) s/epoch", text)}


def eca_extrapolation(text: str, records: Path) -> dict | None:
    """The short run's figures and T₃₀₀ (see the module's formula), or None."""
    ray = re.search(r"Ray start ([\d.]+) s, Tune ([\d.]+) s", text)
    files = sorted(records.glob("*.json")) if records.is_dir() else []
    if not ray or not files:
        return None
    recs = [json.loads(f.read_text()) for f in files]
    if any(r["status"] != "completed" for r in recs):
        return None
    epochs = recs[0]["train"]["epochs"]
    setup = statistics.median(s["setup_seconds"] or 0.0 for r in recs for s in r["segments"][:1])
    first = statistics.median(r["history"][0]["epoch_seconds"] for r in recs)
    later = [h["epoch_seconds"] for r in recs for h in r["history"][1:]] or [first]
    e = statistics.median(later)
    r_start, wall = float(ray[1]), float(ray[2])
    full = r_start + wall * (setup + first + (FULL_EPOCHS - 1) * e) / (
        setup + first + (epochs - 1) * e)
    return {"trials": len(recs), "epochs": epochs, "ray": r_start, "wall": wall,
            "setup": setup, "first": first, "epoch": e, "full": full}


def summarise(folder: Path) -> list[tuple[str, str, str]]:
    rows: list[tuple[str, str, str]] = []

    def row(goal: str, figure: str | None, met: bool | None) -> None:
        rows.append((goal, figure or "not measured",
                     "—" if met is None else ("met" if met else "not met")))

    fusion: dict[int, dict[str, float]] = {}
    for path in sorted(folder.glob("fusion_m*.txt")):   # fusion_m8.txt, fusion_m8_compiled.txt
        k = int(re.match(r"fusion_m(\d+)", path.name)[1])
        fusion.setdefault(k, {}).update(fusion_rates(path.read_text(errors="replace")))
    best = max(((rate, k, case) for k, rates in fusion.items() for case, rate in rates.items()
                if case.startswith("fused")), default=None)
    row(f"≥ {TARGET_IMAGES_S:,} training images/s of resnet_20 trials, all members",
        best and f"{best[0]:,.0f} images/s ({best[2]}, {best[1]} members)",
        best and best[0] >= TARGET_IMAGES_S)
    epochs = epoch_seconds(_read(folder, "epoch_time.txt"))
    row(f"one resnet_20 trial, batch 128: ≤ {TARGET_EPOCH_S:g} s per epoch with evaluation",
        ", ".join(f"batch {b}: {s:.2f} s/epoch" for b, s in sorted(epochs.items())) or None,
        epochs[128] <= TARGET_EPOCH_S if 128 in epochs else None)
    eca = {side: eca_extrapolation(_read(folder, f"eca_{side}.txt"),
                                   folder / f"eca_{side}_records")
           for side in ("fused", "separate")}
    done = {side: x["full"] for side, x in eca.items() if x}
    figure = "; ".join(f"{side} {x['full'] / 60:.1f} min (from {x['epochs']} epochs: "
                       f"W {x['wall']:.0f} s, s {x['setup']:.1f} s, e₁ {x['first']:.2f} s, "
                       f"e {x['epoch']:.2f} s)" for side, x in eca.items() if x)
    row("paper 002's eca_kernel group (6 arms × 3 seeds × 300 epochs) ≤ 30 min, extrapolated",
        figure or None, min(done.values()) <= TARGET_GROUP_S if done else None)
    agree = re.search(r"^agreement: (\w+)", _read(folder, "agreement.txt"), re.M)
    spread = re.search(r"^separate .*$", _read(folder, "agreement.txt"), re.M)
    row("fused members in bf16 agree with separate trials in distribution (final top-1)",
        spread and spread[0], agree and agree[1] == "yes")
    tests = re.search(r"^=*\s*(\d+ passed.*?|\d+ failed.*?|.*?skipped.*?)\s*=*$",
                      _read(folder, "gpu_tests.txt"), re.M)
    failed = tests and ("failed" in tests[1] or "error" in tests[1])
    row("GPU-only tests (pytest -m gpu)", tests and tests[1],
        False if failed else (True if tests and "passed" in tests[1] else None))
    ratios = {}
    for k, rates in fusion.items():
        fused = max((r for c, r in rates.items() if c.startswith("fused")), default=None)
        if fused and rates.get("packed"):
            ratios[k] = fused / rates["packed"]
    figure = ", ".join(f"{k} members {r:.2f}×" for k, r in sorted(ratios.items()))
    decided = all(k in ratios for k in (4, 8))
    wins = decided and all(ratios[k] >= FUSE_RATIO for k in (4, 8))
    verdict = (("recommend fuse: auto as the default" if wins else "keep fuse: off")
               if decided else "undecided (4 and 8 members not both measured)")
    row(f"fusion decision: fused ≥ {FUSE_RATIO}× packed at 4 and 8 members → {verdict}",
        figure or None, wins if decided else None)
    return rows


def main() -> None:
    folder = Path(sys.argv[1])
    rows = summarise(folder)
    steps = _read(folder, "steps.tsv").strip()
    if steps:
        print("steps (name, exit status, seconds; 124 = stopped at its time budget):")
        for line in steps.splitlines():
            print("  " + "  ".join(line.split("\t")))
    widths = [max(len(r[i]) for r in rows) for i in range(2)]
    print(f"\nsummary ({folder}):")
    print(f"{'goal':<{widths[0]}}  {'figure':<{widths[1]}}  met")
    for goal, figure, met in rows:
        print(f"{goal:<{widths[0]}}  {figure:<{widths[1]}}  {met}")


if __name__ == "__main__":
    main()
