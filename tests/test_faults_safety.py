"""Safety: YAML only through safe_load, checkpoints only through weights_only loads,
`--set` values parsed as data, the local dashboard bound to loopback."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest

from conftest import one_error_line, raysweep
from raysweep import worker


class _Exploit:
    def __reduce__(self):
        return (os.system, ("touch /tmp/raysweep-pwned",))


def test_checkpoint_loading_never_runs_pickled_code(tmp_path):
    (tmp_path / "c").mkdir()
    with open(tmp_path / "c" / worker.CHECKPOINT_FILE, "wb") as f:
        pickle.dump({"format": worker.CHECKPOINT_FORMAT, "x": _Exploit()}, f)
    with pytest.raises(worker.CheckpointError):
        worker.load_checkpoint(str(tmp_path / "c"))
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
