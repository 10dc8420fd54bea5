"""Small disks for full-disk tests."""
from __future__ import annotations

import subprocess
from pathlib import Path

import pytest


def tmpfs(folder: Path, size: str):
    """A tmpfs of `size` mounted at `folder/disk`, for full-disk tests (mounting needs
    root: the test is skipped otherwise). A generator: a fixture yields from it."""
    disk = folder / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)],
                             capture_output=True)
    if mounted.returncode:
        pytest.skip("mounting a small tmpfs needs root: "
                    + mounted.stderr.decode(errors="replace").strip())
    yield disk
    subprocess.run(["umount", str(disk)], check=True)
