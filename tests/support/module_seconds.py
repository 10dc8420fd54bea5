"""The seconds each test module took in a full run, for the order `make test` hands
modules to its two processes (tests/conftest.py: slowest first). Refresh after a change
that moves a module's time by a minute or more:

    pytest -n 2 --dist loadfile --junitxml=/tmp/suite.xml
    python tests/support/module_seconds.py /tmp/suite.xml > tests/module_seconds.txt

The file only orders the work: a stale or missing line makes the suite slower, never
wrong."""
from __future__ import annotations

import collections
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

FILE = Path(__file__).resolve().parents[1] / "module_seconds.txt"


def read(path: Path = FILE) -> dict[str, float]:
    """{"tests/engine/test_cluster.py": seconds, ...}; {} without the file."""
    if not path.is_file():
        return {}
    rows = (line.split() for line in path.read_text().splitlines()
            if line.strip() and not line.startswith("#"))
    return {module: float(seconds) for seconds, module in rows}


def from_junit(xml_path: str) -> dict[str, float]:
    seconds: dict[str, float] = collections.Counter()
    for case in ET.parse(xml_path).getroot().iter("testcase"):
        module = case.get("classname").replace(".", "/") + ".py"
        seconds[module] += float(case.get("time") or 0)
    return seconds


if __name__ == "__main__":
    print("# seconds per test module in one full run (tests/support/module_seconds.py)")
    for module, s in sorted(from_junit(sys.argv[1]).items(), key=lambda kv: -kv[1]):
        print(f"{s:8.1f} {module}")
