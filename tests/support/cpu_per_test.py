"""The machine's busy CPU-seconds per test, for finding what makes the suite slow (it is
CPU-bound: its wall time is its CPU over the cores). Measured from /proc/stat around each
test (setup, call and teardown), so it counts every process the test starts: its Ray
trials, CLI children and the session Ray's share while it runs. Meaningful only with
nothing else running and one pytest process:

    PYTHONPATH=tests .venv/bin/pytest -p support.cpu_per_test -p no:cacheprovider

prints the 30 dearest tests and each module's total at the end, and writes every test's
figures to $CPU_PER_TEST_OUT (JSON lines) when it is set. A session fixture (the shared
smoke run, the session Ray) counts in the first test that needs it."""
from __future__ import annotations

import json
import os
import time
from collections import Counter

import pytest

_rows: list[dict] = []


def busy_seconds() -> float:
    """CPU-seconds every core has spent busy since boot (user, nice, system, irq,
    softirq, steal)."""
    with open("/proc/stat") as stat:
        ticks = [int(v) for v in stat.readline().split()[1:]]
    return (sum(ticks[:3]) + sum(ticks[5:8])) / os.sysconf("SC_CLK_TCK")


def pytest_configure(config):
    if os.environ.get("PYTEST_XDIST_WORKER_COUNT"):
        raise pytest.UsageError("cpu_per_test measures one test at a time: run without -n")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
    cpu, wall = busy_seconds(), time.monotonic()
    yield
    row = {"test": item.nodeid, "cpu_s": round(busy_seconds() - cpu, 1),
           "wall_s": round(time.monotonic() - wall, 1)}
    _rows.append(row)
    if os.environ.get("CPU_PER_TEST_OUT"):
        with open(os.environ["CPU_PER_TEST_OUT"], "a") as out:
            out.write(json.dumps(row) + "\n")


def pytest_terminal_summary(terminalreporter):
    if not _rows:
        return
    write = terminalreporter.write_line
    total = sum(r["cpu_s"] for r in _rows)
    terminalreporter.section(f"busy CPU-seconds per test: {total:,.0f} in all")
    for r in sorted(_rows, key=lambda r: -r["cpu_s"])[:30]:
        write(f"{r['cpu_s']:8.1f} {r['wall_s']:8.1f}  {r['test']}")
    modules = Counter()
    for r in _rows:
        modules[r["test"].split("::")[0]] += r["cpu_s"]
    write("per module:")
    for module, cpu in modules.most_common():
        write(f"{cpu:8.1f}  {module}")
