"""`report`, `status` and `show` at scale: wall time and peak memory of each command in a
fresh process, on a run folder of N trial records written with the project's own types
(TrialRecord, EpochResult, Segment through records.write_record, study.yaml and
provenance.json as a run leaves them).

    .venv/bin/python -m benchmarks.bench_scale --records 5000 --epochs 10

Targets (issue 29): report of 5,000 records < 10 s and < 300 MB; status < 2 s; show of a
small study < 300 MB. The baseline, in the same run, is a Python process that only starts
and imports raysweep.cli (what every command pays), so a ratio says how much of a figure
is the command's own work.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from raysweep.store.records import write_record
from raysweep.core.trial import ArmLabel, EpochResult, Segment, TrialRecord, TrialSpec
from raysweep.study.parse import TRAIN_SCHEMA
from raysweep.core.recipes import resolve

MODELS = ("resnet_20", "resnet_32", "ghost_resnet_20", "eca_resnet_20")


def write_run(run_dir: Path, n: int, epochs: int) -> None:
    """A finished ablation run of `n` trials: 10 groups × 50 arms × seeds."""
    # A distinct identity per arm, baselines included (three groups with one baseline
    # config would be one trial with three labels, fewer records than asked for).
    def arm(g: int, v: int) -> dict:
        return {"model": MODELS[(g + v) % len(MODELS)], "set": {"weight_decay": (g * 50 + v) * 1e-6}}
    groups = {f"g{g}": {"baseline": arm(g, 0), "variants": {f"v{v}": arm(g, v) for v in range(1, 50)}}
              for g in range(10)}
    lrs = [0.003]
    seeds = max(1, -(-n // (10 * 50 * len(lrs))))
    study = {"name": "scale", "defaults": {"epochs": epochs, "dataset": "synthetic"},
             "groups": groups, "grid": {"lr": lrs}, "seeds": seeds, "asha": {"enabled": False}}
    run_dir.mkdir(parents=True)
    (run_dir / "study.yaml").write_text(yaml.safe_dump(study, sort_keys=False))
    (run_dir / "provenance.json").write_text(json.dumps(
        {"study": "scale", "runs": [{"argv": ["raysweep", "run", "scale"], "trials_total": n}]}))
    base = {k: d for k, (_, d) in TRAIN_SCHEMA.items() if k not in ("recipe", "val_fraction")}
    count = 0
    for g, spec in groups.items():
        arms = [(v, a["model"], a["set"])
                for v, a in {"baseline": spec["baseline"], **spec["variants"]}.items()]
        for variant, model, overrides in arms:
            for lr in lrs:
                for seed in range(seeds):
                    if count == n:
                        return
                    train = resolve("adamw", {**base, **overrides, "lr": lr, "epochs": epochs},
                                    val_fraction=0.1)
                    label = ArmLabel(g, variant, variant == "baseline")
                    spec_ = TrialSpec("scale", model, {}, seed, train, (label,))
                    record = TrialRecord.new(spec_, "baseline", False, "2026-12-07T00:00:00+00:00")
                    record.status, record.finished_at = "completed", "2026-12-07T01:00:00+00:00"
                    record.params, record.flops = 278_324, 81_637_888
                    record.segments = [Segment(1, "inline", 1, 1.0, 0.0, "cpu", "h/n", "2026-12-07",
                                               1.0, None, None, 1)]
                    acc = 50 + 10 * (seed % 3) + lr * 1000
                    record.history = [EpochResult(e, 1.0 / e, 1.1 / e, acc + e, acc + e + 10,
                                                  1.2 / e, acc + e - 1, acc + e + 9, lr, 2.5,
                                                  200.0, 0, 1.0) for e in range(1, epochs + 1)]
                    write_record(run_dir, record)
                    count += 1


def measure(args: list[str]) -> tuple[float, float, int]:
    """(seconds, peak RSS in MB, exit status) of `python -m raysweep.cli ARGS` (or of a bare
    `python -c` when `args` starts with -c)."""
    # Through /usr/bin/time: a child forked from this process (torch imported) would
    # count this process's pages in its peak until it execs.
    cmd = ["/usr/bin/time", "-f", "%e %M", sys.executable,
           *(args if args[0] == "-c" else ["-m", "raysweep.cli", *args])]
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds, kb = proc.stderr.strip().splitlines()[-1].split()[-2:]
    if proc.returncode:
        print(f"  {' '.join(args)}: exit {proc.returncode}: {proc.stderr[-500:]}")
    return float(seconds), int(kb) / 1024, proc.returncode


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--records", type=int, default=5000)
    p.add_argument("--epochs", type=int, default=10)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "runs" / "scale"
        begin = time.perf_counter()
        write_run(run_dir, a.records, a.epochs)
        print(f"{a.records} records of {a.epochs} epochs written in "
              f"{time.perf_counter() - begin:.1f} s; load average {os.getloadavg()[0]:.1f}")
        base_s, base_mb, _ = measure(["-c", "import raysweep.cli"])
        print(f"{'command':<34} {'seconds':>8} {'peak MB':>8} {'× baseline s':>12}")
        print(f"{'baseline: python, import cli':<34} {base_s:>8.1f} {base_mb:>8.0f} {1:>12.1f}")
        for name, args in (("status", ["status", run_dir]),
                           ("report", ["report", run_dir, "--out", Path(tmp) / "report"]),
                           ("show smoke --no-estimate", ["show", "smoke", "--no-estimate"])):
            seconds, mb, _ = measure([str(x) for x in args])
            print(f"{name:<34} {seconds:>8.1f} {mb:>8.0f} {seconds / base_s:>12.1f}")


if __name__ == "__main__":
    main()
