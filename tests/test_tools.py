"""The developer tools the README names run as written."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_cpu_per_test_prints_each_tests_and_modules_cpu(tmp_path):
    """README "Tests": `PYTHONPATH=tests pytest -p support.cpu_per_test` (one process)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")}
    env.update(PYTHONPATH="tests", CPU_PER_TEST_OUT=str(tmp_path / "cpu.jsonl"))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "support.cpu_per_test",
                           "-p", "no:cacheprovider", "tests/core/test_status.py"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:]
    table = proc.stdout[proc.stdout.index("busy CPU-seconds per test"):]
    assert "tests/core/test_status.py::" in table and "per module:" in table
    rows = (tmp_path / "cpu.jsonl").read_text().splitlines()
    assert len(rows) == table.count("tests/core/test_status.py::")
