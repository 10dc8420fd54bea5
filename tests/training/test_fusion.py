"""Fused trial arrays: each member of an array trains as its separate trial would, epoch by
epoch; a member's checkpoint is a separate trial's checkpoint; which trials fuse; and,
through the real engine, an ASHA stop of one member, a failed array, and a re-run that
resumes its members from their checkpoints.

The equivalence runs in float64. In float32 the two differ in rounding from the first
step (a grouped convolution sums in another order than k single ones), and early
training amplifies any difference: two separate runs whose weights differ by one part in
1e7 disagree in their second decimal of loss within one epoch (as any non-bitwise change
would). In float64 the same code agrees to ~1e-12 after every epoch."""
from __future__ import annotations

import io
import subprocess
import sys

import pytest
import torch

from support.studies import TINY, run, scheduled_lrs, write_study
from support.factories import spec as make_spec
from raysweep.store import checkpoints
from raysweep.training import data, fusion
from raysweep.engine.members import plan_arrays
from raysweep.store.records import read_records
from raysweep.study.parse import load_study
from raysweep.core.trial import TrialResources
from raysweep.training.worker import Loop

COMPARED = ("train_loss", "val_loss", "val_top1", "val_top5", "test_loss", "test_top1",
            "test_top5", "lr", "optimizer_fingerprint")


@pytest.fixture
def float64():
    before = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(before)


def double_splits(t) -> data.Splits:
    """The trial's splits, whose batches come out as float64 (the models are float64)."""
    splits = data.prepare(t, torch.device("cpu"))
    for split in (splits.train, splits.val, splits.test):
        split.transform = (lambda f: lambda batch, draws: f(batch, draws).double())(
            split.transform)
    return splits


def members_of(optimizer: str) -> list:
    """Two seeds of one arm, and a third member with its own peak lr and weight decay."""
    sgd = optimizer == "sgd"
    base = dict(train_size=64, test_size=32, batch_size=16, optimizer=optimizer, momentum=0.9 if sgd else None,
                betas=None if sgd else (0.9, 0.999), peak_lr=0.05 if sgd else 3e-3,
                weight_decay=5e-4 if sgd else 0.05)
    return [make_spec(seed=0, **base), make_spec(seed=1, **base),
            make_spec(seed=2, **{**base, "peak_lr": base["peak_lr"] / 2,
                                 "weight_decay": base["weight_decay"] * 2})]


def separate(spec, splits, steps, epochs, state=None) -> list:
    """The trial as the engine trains it alone (worker.Loop), from scratch or a state."""
    shadow = fusion.new_shadow(spec, splits.classes, steps)
    if state:
        shadow.restore(state)
    loop = Loop(spec, shadow, shadow.model, splits, steps, torch.device("cpu"), None, 0, 1)
    return [loop.epoch(e, 0) for e in epochs]


def fused(specs, splits, steps, states=None):
    members = []
    for i, s in enumerate(specs):
        shadow = fusion.new_shadow(s, splits.classes, steps)
        if states:
            shadow.restore(states[i])
        members.append(fusion.Member(s, shadow, [], []))
    return fusion.FusedTrainer(members, splits, steps, torch.device("cpu"))


def assert_same(a, b) -> None:
    for name in COMPARED:
        # Evaluation losses are summed from float32 logits, as the train loop sums them.
        rel = 1e-6 if name in ("val_loss", "test_loss") else 1e-9
        assert getattr(a, name) == pytest.approx(getattr(b, name), rel=rel, abs=1e-9), name


@pytest.mark.parametrize("optimizer", ["sgd", "adamw"])
def test_each_member_trains_as_its_separate_trial_epoch_by_epoch(float64, optimizer):
    specs = members_of(optimizer)
    splits = double_splits(specs[0].train)
    steps = data.steps_per_epoch(len(splits.train), specs[0].train.batch_size)
    alone = [separate(s, splits, steps, (1, 2)) for s in specs]
    array = fused(specs, splits, steps)
    together = [array.epoch(1), array.epoch(2)]
    for i in range(3):
        for e in range(2):
            assert_same(together[e][i], alone[i][e])
    # The members are different trials: their numbers differ.
    assert len({r.train_loss for r in together[1]}) == 3
    assert together[1][2].lr == pytest.approx(together[1][0].lr / 2)


def test_a_members_checkpoint_is_a_separate_trials_checkpoint(float64):
    """After one fused epoch, each member's checkpoint continues as a separate trial, and
    an array rebuilt from the checkpoints (without member 1) continues as the array."""
    specs = members_of("sgd")
    splits = double_splits(specs[0].train)
    steps = data.steps_per_epoch(len(splits.train), specs[0].train.batch_size)
    array = fused(specs, splits, steps)
    array.epoch(1)
    saved = [stored(m.shadow.state()) for m in array.members]
    expected = array.epoch(2)
    for i, spec in enumerate(specs):
        [alone] = separate(spec, splits, steps, (2,), loaded(saved[i]))
        assert_same(alone, expected[i])
    rebuilt = fused([specs[0], specs[2]], splits, steps, [loaded(saved[0]), loaded(saved[2])])
    for got, want in zip(rebuilt.epoch(2), (expected[0], expected[2])):
        assert_same(got, want)


def stored(state: dict) -> bytes:
    buffer = io.BytesIO()
    torch.save(state, buffer)
    return buffer.getvalue()


def loaded(blob: bytes) -> dict:
    """A fresh copy of a stored state, loaded as `checkpoints` loads it (a trial that
    restores it trains its optimizer state in place)."""
    return torch.load(io.BytesIO(blob), weights_only=True)


def test_which_trials_fuse():
    gpu = TrialResources(1, 1, 0.25)
    seeds = [make_spec(seed=s) for s in range(3)]
    lr_variant = make_spec(seed=0, peak_lr=0.01, lr=0.01, variant="lr")
    other_momentum = make_spec(seed=0, momentum=0.5)
    mixup = [make_spec(seed=s, augment="mixup_cutmix") for s in (0, 1)]
    droppath = [make_spec("improved_resnet20_convnext", seed=s) for s in (0, 1)]
    alone = make_spec("resnet_32", seed=0)
    specs = [*seeds, lr_variant, other_momentum, *mixup, *droppath, alone]
    res = {s.key: gpu for s in specs}
    plans = plan_arrays(specs, res, "auto", 8, "/runs/x")
    [array] = {p for p in plans.values()}
    assert array.members == (*[s.key for s in seeds], lr_variant.key)   # study order
    assert array.resources == gpu
    # Two members at most: the four split into arrays of two.
    assert sorted(len(p.members) for p in set(
        plan_arrays(specs, res, "on", 2, "/runs/x").values())) == [2, 2]
    # On a CPU, auto fuses nothing (a fused step is slower there); off never fuses.
    cpu = {s.key: TrialResources(1, 1, 0.0) for s in specs}
    assert plan_arrays(specs, cpu, "auto", 8, "/runs/x") == {}
    assert plan_arrays(specs, res, "off", 8, "/runs/x") == {}
    # Seed-aware ASHA: an array holds the seeds of one arm, which reach its rungs together.
    by_arm = {p.members for p in plan_arrays(specs, res, "auto", 8, "/runs/x",
                                             by_arm=True).values()}
    assert by_arm == {tuple(s.key for s in seeds)}
    # ... and never split one arm into two arrays: one would train past a rung.
    assert plan_arrays(specs, res, "auto", 2, "/runs/x", by_arm=True) == {}
    assert "2 workers" in fusion.why_not_fused(seeds[0], 2, 10)
    assert "mixup_cutmix" in fusion.why_not_fused(mixup[0], 1, 10)
    assert "cannot be vmapped" in fusion.why_not_fused(droppath[0], 1, 10)  # DropPath draws


@pytest.mark.slow
def test_asha_stops_members_and_the_array_goes_on_without_them(ray_local, tmp_path):
    """A learner and two hopeless members (lr 1e-7, 2e-7) of one fused array; members
    report in study order, so at ASHA's rung (epoch 1) each hopeless one is judged
    against the learner, is stopped, and the array trains epoch 2 for the learner alone."""
    path = write_study(
        tmp_path, "asha", defaults={**TINY, "epochs": 2},
        models=["resnet_20", {"model": "resnet_20", "set": {"lr": 1e-7}},
                {"model": "resnet_20", "set": {"lr": 2e-7}}],
        asha={"grace_period": 1, "reduction_factor": 2}, resources={"fuse": "on"})
    timings = {}
    run_dir = run(path, tmp_path / "runs", timings=timings, inline=True)
    assert timings["fused_arrays"] == 1
    records = {r.train.peak_lr: r for r in read_records(run_dir)}
    learner, hopeless = records.pop(TINY["lr"]), list(records.values())
    assert learner.status == "completed" and [h.epoch for h in learner.history] == [1, 2]
    assert [(s.runner, s.fused_members) for s in learner.segments] == [("fused", 3)]
    for r in hopeless:
        assert r.status == "stopped" and r.stopped_at_epoch == 1
        assert r.history[0].val_top1 < learner.history[0].val_top1
        assert checkpoint_epochs(run_dir, r.key) == [1]   # trained no further
    assert checkpoint_epochs(run_dir, learner.key) == [2, 1]


def test_a_members_process_reaches_its_array_without_torch():
    """What a member's Tune process loads to call its array's actor (the engine modules
    and the actor class, as `ray.get_actor` loads it) imports no torch: a member only
    relays epochs, and torch would cost it ~4 s of CPU at start."""
    code = ("import sys; import raysweep.engine.trainable, raysweep.engine.members, "
            "raysweep.engine.arrays; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


def checkpoint_epochs(run_dir, key: str) -> list[int]:
    return [e for e, _ in checkpoints._epoch_folders(checkpoints.trial_folder(run_dir, key))]


def test_fixed_shape_evaluation_counts_only_the_real_images():
    """Under a CUDA-graph compile mode, evaluation pads the last partial batch to one
    shape; the padded rows change nothing."""
    specs = members_of("sgd")[:2]
    splits = data.prepare(specs[0].train, torch.device("cpu"))   # 32 test images: 1 batch
    array = fused(specs, splits, data.steps_per_epoch(len(splits.train), 16))
    plain = array.evaluate(splits.test)
    array.pad_eval = True
    assert array.evaluate(splits.test) == [pytest.approx(m, rel=1e-5) for m in plain]


@pytest.mark.slow
def test_a_failed_array_fails_each_member_and_a_rerun_resumes_them_as_an_array(ray_local,
                                                                               tmp_path):
    """Member 0's epoch-2 checkpoint cannot be written (a file stands where its folder
    goes): the array fails, and each member's record is `errored` after epoch 1 with the
    array's error. With the file gone, a re-run trains the rest as an array again from
    each member's epoch-1 checkpoint, with the lr schedule where an uninterrupted trial
    has it."""
    path = write_study(tmp_path, "arrays", defaults={**TINY, "epochs": 3, "train_size": 256},
                       models=["resnet_20"], seeds=2, asha={"enabled": False},
                       resources={"fuse": "on", "max_failures": 0})
    run_dir = tmp_path / "runs" / "arrays"
    [first, _] = load_study(str(path)).trials()
    blocker = checkpoints.trial_folder(run_dir, first.key) / "epoch_0002"
    blocker.parent.mkdir(parents=True)
    blocker.write_text("not a folder")
    failed = read_records(run(path, tmp_path / "runs", inline=True))
    assert [(r.status, r.last_epoch) for r in failed] == [("errored", 1)] * 2
    assert all("epoch_0002" in r.error for r in failed), failed[0].error
    blocker.unlink()

    run(path, tmp_path / "runs", inline=True)
    for r in read_records(run_dir):
        assert r.status == "completed" and [h.epoch for h in r.history] == [1, 2, 3]
        first_launch, second = r.segments
        assert (first_launch.runner, first_launch.fused_members) == ("fused", 2)
        assert (second.runner, second.fused_members, second.resumed_from_epoch) == (
            "fused", 2, 1)
        assert second.first_epoch == 2 and r.restarts == 1
        # The optimizer state it resumed with is the checkpointed one.
        assert second.resumed_optimizer_fingerprint == pytest.approx(
            r.history[0].optimizer_fingerprint, rel=1e-6)
        assert [h.lr for h in r.history] == pytest.approx(scheduled_lrs(r.train), rel=1e-9)
