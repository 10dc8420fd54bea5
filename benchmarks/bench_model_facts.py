"""`raysweep list models`'s parameter and FLOP counts for every registered model, three
ways, each in a fresh process as the CLI runs it:

    .venv/bin/python -m benchmarks.bench_model_facts [--repeats 3]

  built    build every model on the CPU and count it (what `list models` did)
  meta     build every model on the meta device and count it (models.facts' fallback)
  stored   models.model_facts: models/facts.json (the path `list models` takes)

Cases run in turn (built meta stored built meta stored ...); each prints the seconds of
the counting loop (after importing the zoo) and of the whole process; the ratio is the
median against `built` in the same run."""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

from benchmarks._util import machine

CASES = {
    "built": "from models import create_model, count_params, count_flops\n"
             "count = lambda n: (count_params(m := create_model(n)), count_flops(m))",
    "meta": "from models.facts import count_on_meta as count",
    "stored": "from models import model_facts as count",
}
LOOP = ("import json, time\nfrom models import list_models\nnames = list_models()\n{setup}\n"
        "begin = time.perf_counter()\nfor name in names:\n    count(name)\n"
        "print(json.dumps({{'models': len(names), 'seconds': time.perf_counter() - begin}}))")


def run(case: str) -> tuple[float, float, int]:
    begin = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", LOOP.format(setup=CASES[case])], check=True,
                         capture_output=True, text=True, env={**os.environ}).stdout
    result = json.loads(out.strip().splitlines()[-1])
    return result["seconds"], time.perf_counter() - begin, result["models"]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    times = {case: [] for case in CASES}
    for _ in range(args.repeats):
        for case in CASES:
            times[case].append(run(case))
    models = times["built"][0][2]
    print(f"# counts of {models} models, fresh process per case, median of {args.repeats}; "
          f"{machine()}")
    base = statistics.median(t[0] for t in times["built"])
    for case, runs in times.items():
        loop, total = (statistics.median(t[i] for t in runs) for i in (0, 1))
        print(f"{case:<7} loop {loop * 1000:9.1f} ms  process {total:6.2f} s  "
              f"loop vs built {loop / base:.2g}x")


if __name__ == "__main__":
    main()
