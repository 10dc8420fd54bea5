"""The real CLI in a child process, and what a user error looks like."""
from __future__ import annotations

import subprocess
import sys


def raysweep(*args, timeout=300, **popen) -> subprocess.CompletedProcess:
    """The real CLI in a child process, as a user runs it (`popen`: env, cwd)."""
    return subprocess.run([sys.executable, "-m", "raysweep.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, **popen)


def one_error_line(proc) -> str:
    """A user error: exit status 2, one `raysweep: error:` line, no traceback."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert lines[-1].startswith("raysweep: error: ") and "Traceback" not in proc.stderr
    return lines[-1]
