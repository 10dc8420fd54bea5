"""Safety: YAML only through safe_load, checkpoints only through weights_only loads,
`--set` values parsed as data, the local dashboard bound to loopback."""
from __future__ import annotations

import hashlib
import json
import os
import pickle
from pathlib import Path

import pytest

from support.cli import one_error_line, raysweep
from raysweep.store import checkpoints
from raysweep.errors import CheckpointError


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/raysweep-pwned",))


def test_checkpoint_loading_never_runs_pickled_code(tmp_path):
    folder = tmp_path / "checkpoints" / "k" / "epoch_0001"
    folder.mkdir(parents=True)
    data = pickle.dumps({"format": checkpoints.CHECKPOINT_FORMAT, "x": _Exploit()})
    (folder / checkpoints.CHECKPOINT_FILE).write_bytes(data)
    (folder / checkpoints.MARKER_FILE).write_text(json.dumps(
        {"epoch": 1, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}))
    with pytest.raises(CheckpointError, match="is unreadable"):
        checkpoints.load(folder, 1)
    state, skipped = checkpoints.latest(tmp_path, "k")
    assert state is None and "is unreadable" in skipped[0]
    assert not Path("/tmp/raysweep-pwned").exists()


def test_a_study_file_cannot_construct_python_objects(tmp_path):
    canary = tmp_path / "pwned"
    study = tmp_path / "evil.yaml"
    study.write_text(f'name: evil\nmodels: !!python/object/apply:os.system ["touch {canary}"]\n')
    line = one_error_line(raysweep("show", study))
    assert "evil.yaml" in line
    assert not canary.exists()


def test_the_local_dashboard_listens_on_loopback_only(ray_local):
    assert ray_local.startswith("http://127.0.0.1:")
