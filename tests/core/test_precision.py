"""`amp: auto` is resolved before it enters a trial's key (raysweep.precision): off on
CPU, bf16 where every GPU computes in it, fp16 otherwise, said aloud for mixed GPUs."""
from __future__ import annotations

import json

import pytest

from raysweep.engine.driver import resume_study
from raysweep.errors import RecordError
from raysweep.core.precision import (Gpu, cluster_gpus, gpu_of_capability, gpu_of_type,
                                resolve_auto, resolve_here)
from raysweep.store.records import refuse_other_versions, write_record
from raysweep.study.parse import load_study
from raysweep.core.trial import TrialRecord
from support.studies import TINY, write_study
from support.factories import epoch, segment

A100 = gpu_of_capability("NVIDIA A100-SXM4-80GB", (8, 0))
V100 = gpu_of_capability("Tesla V100-SXM2-16GB", (7, 0))


def test_a_bf16_gpu_resolves_auto_to_bf16_and_an_fp16_gpu_to_fp16():
    assert (A100.bf16, V100.bf16) == (True, False)
    assert gpu_of_capability("H100", (9, 0)).bf16 and not gpu_of_capability("T4", (7, 5)).bf16
    assert resolve_auto([A100, A100], "the cluster").amp == "bf16"
    assert resolve_auto([V100], "the cluster").amp == "fp16"
    assert resolve_auto([], "this machine").amp == "off"
    assert resolve_auto(None, "this machine").amp == "off"


def test_gpus_of_different_kinds_resolve_to_fp16_and_say_so():
    mixed = resolve_auto([A100, V100], "the cluster")
    assert mixed.amp == "fp16"
    assert "different kinds" in mixed.why and A100.kind in mixed.why and V100.kind in mixed.why
    assert "set amp: bf16" in mixed.why


def test_the_cluster_gpus_are_read_from_rays_accelerator_type_labels():
    cpu_node = {"CPU": 8.0}
    a100 = {"CPU": 8.0, "GPU": 8.0, "accelerator_type:A100": 1.0}
    v100 = {"CPU": 8.0, "GPU": 4.0, "accelerator_type:V100": 1.0}
    unlabelled = {"CPU": 8.0, "GPU": 1.0}
    assert cluster_gpus([cpu_node], None) == []
    assert cluster_gpus([cpu_node, a100], None) == [gpu_of_type("A100")] == [Gpu("A100", True)]
    assert resolve_auto(cluster_gpus([a100], None, [v100]), "the cluster").amp == "fp16"
    assert cluster_gpus([unlabelled], None) == [Gpu("unknown GPU", False)]


def test_keys_on_cpu_name_amp_off(tmp_path):
    assert resolve_here().amp == "off"   # this machine has no GPU
    study = load_study(str(write_study(tmp_path, "amp", defaults=TINY, models=["resnet_20"])))
    assert study.defaults["amp"] == "auto" and study.asks_auto_amp()
    [cpu] = study.trials()
    assert cpu.train.amp == "off" and cpu.train.identity()["amp"] == "off"
    study.auto_amp = "bf16"              # as the driver sets it on a bf16 cluster
    [gpu] = study.trials()
    assert gpu.train.amp == "bf16" and gpu.key != cpu.key
    explicit = write_study(tmp_path, "off", defaults={**TINY, "amp": "off"}, models=["resnet_20"])
    assert load_study(str(explicit)).trials()[0].key == cpu.key   # off is off, however stated


def test_resume_keeps_the_precision_the_run_started_in(tmp_path):
    """A run started on bf16 GPUs resumes as bf16 from a driver that has none."""
    path = write_study(tmp_path, "bf", defaults={**TINY, "epochs": 2}, models=["resnet_20"])
    study = load_study(str(path))
    study.auto_amp = "bf16"
    [trial] = study.trials()
    run_dir = tmp_path / "runs" / "bf"
    started = TrialRecord.new(trial, "baseline", False, "2026-12-07T00:00:00+00:00")
    started.history, started.segments, started.status = [epoch(1)], [segment()], "interrupted"
    write_record(run_dir, started)
    (run_dir / "study.yaml").write_text(path.read_text())
    resumed = resume_study(run_dir, [], {}, None)
    assert resumed.auto_amp == "bf16" and [t.key for t in resumed.trials()] == [trial.key]


def test_records_of_version_2_are_refused_in_one_line(tmp_path):
    (tmp_path / "records").mkdir()
    (tmp_path / "records" / "resnet_20-0123456789.json").write_text(
        json.dumps({"record_version": 2, "key": "resnet_20-0123456789"}))
    with pytest.raises(RecordError) as refused:
        refuse_other_versions(tmp_path)
    message = str(refused.value)
    assert "\n" not in message and "record_version 2" in message
    assert "amp: auto unresolved" in message and "new --name" in message
