"""The engine's own cost as a study grows: the same trivial trial (a few milliseconds of
work per epoch) run N times through raysweep's driver and through plain Ray Tune with the
same concurrency, for each N, in one run.

    .venv/bin/python -m benchmarks.bench_engine_scale [--trials 50 200 1000] [--epochs 3]
        [--work-ms 5] [--concurrent 2]

raysweep's side is `driver.run_study` with everything a study run has on: trial records
(written atomically per start, per epoch and per end), plain progress lines (to
/dev/null), TensorBoard files and the metrics exporter; `--local`'s inline runner (Tune
reuses each trial's process, as `raysweep run --local` does). Only the Tune function is a
stand-in (`run_study(trial_function=...)`): it spins `--work-ms` per epoch and reports
what the worker loop reports (`report.encode`), so the driver's cost is measured
without training. Plain Tune's side is the Tuner a user would write for the same grid:
a function that spins the same time per epoch and reports a few numbers, the same
resources per trial (1 CPU), `max_concurrent_trials`, FIFO scheduling, process reuse and
Tune settings (its own loggers off, as raysweep runs Tune).

Each (side, N) runs in a fresh process with its own local Ray (started before the clock),
so each process's peak RSS is that driver's. Figures per N:

    wall/trial      whole run (run_study, or Tuner + fit) / N
    overhead/trial  wall × concurrent / N − epochs × work: what is not the trial's work
    peak RSS        the driver process's peak resident memory (ru_maxrss)
    bytes/trial     (peak RSS − RSS before the run) / N: the driver's state per trial

Targets: raysweep's overhead per trial ≤ 1.2× plain Tune's; bytes/trial not growing
with N (memory at most linear)."""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._util import machine

TARGET_RATIO = 1.2


def spin(seconds: float) -> None:
    """The trial's work: a busy wait, the same on both sides (no sleep: it holds a CPU)."""
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def raysweep_trial(config: dict, context) -> None:
    """A stand-in for `trainable.run_trial` that reports what the worker loop reports."""
    import ray.tune

    from raysweep.core.trial import EpochResult, Segment
    from raysweep.core.report import Report, encode, first_report

    spec, bench = context.spec(config), json.loads(os.environ["RAYSWEEP_BENCH_SCALE"])
    segment = Segment(first_epoch=1, runner="inline", workers=1, cpus_per_worker=1.0,
                      gpus_per_worker=0.0, device="cpu", hosts="localhost",
                      started_at="2026-01-01T00:00:00+00:00", setup_seconds=0.0,
                      resumed_from_epoch=None, resumed_optimizer_fingerprint=None,
                      worker_pid=os.getpid())
    for epoch in range(1, spec.train.epochs + 1):
        begin = time.perf_counter()
        spin(bench["work_s"])
        result = EpochResult(epoch=epoch, train_loss=1.0, val_loss=None, val_top1=None,
                             val_top5=None, test_loss=1.0, test_top1=10.0, test_top5=50.0,
                             lr=0.1, epoch_seconds=time.perf_counter() - begin,
                             images_per_s=1000.0, segment=0, optimizer_fingerprint=None)
        report = first_report(result, [segment], [], 0, 0) if epoch == 1 else Report(result)
        ray.tune.report(encode(report))


def plain_trial(config: dict) -> None:
    import ray.tune

    bench = json.loads(os.environ["RAYSWEEP_BENCH_SCALE"])
    for epoch in range(1, bench["epochs"] + 1):
        begin = time.perf_counter()
        spin(bench["work_s"])
        ray.tune.report({"epoch": epoch, "test_top1": 10.0,
                         "epoch_seconds": time.perf_counter() - begin})


def run_raysweep(n: int, args, tmp: Path) -> None:
    import yaml

    from raysweep.engine.driver import run_study
    from raysweep.observe.progress import PlainProgress
    from raysweep.store.records import read_records
    from raysweep.study.parse import load_study

    path = tmp / "scale.yaml"
    path.write_text(yaml.safe_dump({
        "name": "scale", "models": ["resnet_20"], "seeds": n,
        "defaults": {"epochs": args.epochs, "dataset": "synthetic", "train_size": 64,
                     "test_size": 64, "batch_size": 32},
        "asha": {"enabled": False},
        "resources": {"max_concurrent": args.concurrent, "cpus_per_worker": 1,
                      "gpus_per_worker": 0}}))
    study = load_study(str(path))
    with open(os.devnull, "w") as sink:
        progress = PlainProgress(study.name, n, sink)
        run_dir = run_study(study, str(tmp / "runs"), inline=True, progress=progress,
                            trial_function=raysweep_trial)
    records = read_records(run_dir)
    assert len(records) == n and all(r.status == "completed" for r in records), \
        f"raysweep side: {len(records)} records, statuses {sorted({r.status for r in records})}"


def run_plain(n: int, args, tmp: Path) -> None:
    import ray.tune

    os.environ["TUNE_DISABLE_AUTO_CALLBACK_LOGGERS"] = "1"   # as raysweep runs Tune
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    tuner = ray.tune.Tuner(
        ray.tune.with_resources(plain_trial, {"CPU": 1}),
        param_space={"trial": ray.tune.grid_search([f"t{i:05d}" for i in range(n)])},
        tune_config=ray.tune.TuneConfig(max_concurrent_trials=args.concurrent,
                                        reuse_actors=True),
        run_config=ray.tune.RunConfig(name="tune", storage_path=str(tmp / "runs"), verbose=0))
    grid = tuner.fit()
    assert len(grid) == n and not grid.errors, f"plain side: {len(grid)} results, {grid.errors}"


def one_case(side: str, n: int, args) -> dict:
    """Run one side at one size in this process (which starts its own local Ray)."""
    import psutil

    from raysweep.engine import cluster

    os.environ["RAYSWEEP_BENCH_SCALE"] = json.dumps({"work_s": args.work_ms / 1000,
                                                     "epochs": args.epochs})
    cluster.connect(local=True, address=None)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            run = run_raysweep if side == "raysweep" else run_plain
            import raysweep.engine.driver  # noqa: F401  (both sides' imports before the baseline)
            before = psutil.Process().memory_info().rss
            begin = time.perf_counter()
            run(n, args, Path(tmp))
            wall = time.perf_counter() - begin
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    finally:
        cluster.disconnect()
    work = args.epochs * args.work_ms / 1000
    return {"side": side, "trials": n, "wall": wall, "wall_per_trial": wall / n,
            "overhead_per_trial": wall * args.concurrent / n - work,
            "rss_before": before, "peak_rss": peak, "bytes_per_trial": (peak - before) / n}


def _case(cmd: list[str], tries: int = 3) -> dict:
    """One case's figures; a case whose Ray did not start (a loaded machine) runs again."""
    for attempt in range(tries):
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode == 0:
            return json.loads(proc.stdout.strip().splitlines()[-1])
        why = [ln for ln in proc.stderr.splitlines() if "Error" in ln or "Exception" in ln]
        print(f"# case {cmd[4:6]} failed (try {attempt + 1}): {(why or ['?'])[-1][:300]}",
              flush=True)
    raise SystemExit(f"bench_engine_scale: case {cmd[4:6]} failed {tries} times")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--trials", type=int, nargs="+", default=[50, 200, 1000])
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--work-ms", type=float, default=5.0, help="work per epoch, milliseconds")
    ap.add_argument("--concurrent", type=int, default=2, help="trials at once, both sides")
    ap.add_argument("--case", nargs=2, metavar=("SIDE", "N"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.case:
        print(json.dumps(one_case(args.case[0], int(args.case[1]), args)))
        return
    print(f"# {args.epochs} epochs × {args.work_ms:g} ms of work per trial, "
          f"{args.concurrent} trials at once; {machine()}", flush=True)
    print(f"{'trials':>6} {'side':9} {'wall/trial':>10} {'overhead/trial':>14} "
          f"{'peak RSS':>9} {'bytes/trial':>11}", flush=True)
    rows = []
    for n in args.trials:
        pair = {}
        for side in ("plain", "raysweep"):   # interleaved per size
            cmd = [sys.executable, "-m", "benchmarks.bench_engine_scale", "--case", side, str(n),
                   "--epochs", str(args.epochs), "--work-ms", str(args.work_ms),
                   "--concurrent", str(args.concurrent)]
            m = pair[side] = _case(cmd)
            print(f"{n:6d} {side:9} {m['wall_per_trial']:9.3f}s {m['overhead_per_trial']:13.3f}s "
                  f"{m['peak_rss'] / 2**20:7.0f}Mi {m['bytes_per_trial']:11.0f}", flush=True)
        rows.append(pair)
    print("\nsummary (raysweep ÷ plain Tune, within this run):")
    for pair in rows:
        p, r = pair["plain"], pair["raysweep"]
        ratio = r["overhead_per_trial"] / p["overhead_per_trial"]
        print(f"  {r['trials']:5d} trials: overhead/trial {r['overhead_per_trial']:.3f} s vs "
              f"{p['overhead_per_trial']:.3f} s = {ratio:.2f}× "
              f"({'met' if ratio <= TARGET_RATIO else 'NOT met'}: ≤ {TARGET_RATIO}×); driver "
              f"{r['bytes_per_trial'] / 1024:.1f} KiB/trial vs {p['bytes_per_trial'] / 1024:.1f}")


if __name__ == "__main__":
    main()
