"""Start-up of the commands a user runs many times a day: wall seconds of each in a fresh
process (median, min and max of --repeats), against `python -c pass` in the same run.

    .venv/bin/python -m benchmarks.bench_startup [--repeats 5]

Target (issue 27): every command below under 1 s on the 2-core machine (median, idle
machine). The run folders are two small finished runs written with the project's own
types (benchmarks.bench_scale.write_run), as `status` and `compare` meet them.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.bench_scale import write_run

TARGET_S = 1.0


def wall(argv: list[str]) -> float:
    begin = time.perf_counter()
    proc = subprocess.run(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    seconds = time.perf_counter() - begin
    if proc.returncode:
        raise SystemExit(f"{' '.join(argv)}: exit {proc.returncode}: {proc.stderr[-500:]}")
    return seconds


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=5)
    a = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        storage = Path(tmp) / "runs"
        write_run(storage / "a", 40, 3)
        write_run(storage / "b", 40, 3)
        commands = {
            "python -c pass": ["-c", "pass"],
            "raysweep --help": ["-m", "raysweep.cli", "--help"],
            "raysweep list spaces": ["-m", "raysweep.cli", "list", "spaces"],
            "raysweep list runs": ["-m", "raysweep.cli", "list", "runs", "--storage", storage],
            "raysweep status RUN": ["-m", "raysweep.cli", "status", storage / "a"],
            "raysweep compare RUN RUN": ["-m", "raysweep.cli", "compare", storage / "a",
                                         storage / "b"],
            "raysweep show smoke --no-estimate": ["-m", "raysweep.cli", "show", "smoke",
                                                  "--no-estimate"],
        }
        print(f"load average {os.getloadavg()[0]:.1f}; {a.repeats} runs each, fresh processes")
        print(f"{'command':<36} {'median s':>8} {'min':>6} {'max':>6} {'× python':>9}")
        base = None
        for name, args in commands.items():
            times = [wall([sys.executable, *map(str, args)]) for _ in range(a.repeats)]
            median = statistics.median(times)
            base = base or median
            flag = "" if name.startswith("python") or median < TARGET_S else "  over 1 s"
            print(f"{name:<36} {median:>8.2f} {min(times):>6.2f} {max(times):>6.2f} "
                  f"{median / base:>9.1f}{flag}")


if __name__ == "__main__":
    main()
