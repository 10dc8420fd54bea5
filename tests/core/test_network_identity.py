"""A model's identity in a key is the network it builds, not its registry name: at
ResNet-20's widths ECA's adaptive rule picks k = 3 in every block, so ecanet20_adaptive
and ecanet20_fixed_k3 are one network, trained once and counted once."""
from __future__ import annotations

import json

import torch

from models import create_model
from models.facts import (FACTS_FILE, fingerprint_built, network_fingerprint, network_name,
                          standard_cases, twins)
from raysweep.cli import main
from raysweep.store.records import read_records
from raysweep.results import ablation, comparison
from raysweep.study.parse import load_study
from support.studies import TINY, run, write_study

ECA = ["eca_resnet_20", "ecanet20_adaptive", "ecanet20_fixed_k3"]


def test_three_names_of_one_network_have_one_fingerprint_and_k5_another():
    assert twins("ecanet20_adaptive") == ECA
    assert len({network_fingerprint(n) for n in ECA}) == 1
    others = {network_fingerprint(n) for n in ("ecanet20_fixed_k5", "resnet_20")}
    assert network_fingerprint("ecanet20_adaptive") not in others and len(others) == 2
    moved = network_fingerprint("ecanet20_fixed_k3", eca_position="after_add")
    assert moved != network_fingerprint("ecanet20_fixed_k3")
    assert moved == network_fingerprint("ecanet20_adaptive", eca_position="after_add")
    # an option stated at its default is the default network
    assert network_fingerprint("ecanet20_fixed_k3", eca_position="before_add") == \
        network_fingerprint("ecanet20_fixed_k3")
    assert network_name(network_fingerprint("ecanet20_fixed_k3"), "x") == "eca_resnet_20"


def test_the_eca_family_has_stored_fingerprints():
    """The twins are found from models/facts.json (a case without a stored fingerprint
    is fingerprinted on a real build when a study names it)."""
    stored = json.loads(FACTS_FILE.read_text())["facts"]
    assert [(e["model"], e["options"]) for e in stored] == standard_cases()
    eca = [e for e in stored if e["model"].startswith(("eca", "ecanet"))]
    assert len(eca) == 21 and all(len(e["network"]) == 16 for e in eca)


def test_twins_stay_twins_at_another_class_count():
    """The fingerprint is of the 100-class build; the zoo uses num_classes only for the
    classifier, so names equal there are equal at 10 classes (and k5 still differs)."""
    def at_10(name):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(0)
            return fingerprint_built(create_model(name, num_classes=10))
    found = {n: at_10(n) for n in [*ECA, "ecanet20_fixed_k5"]}
    assert len({found[n] for n in ECA}) == 1 and found["ecanet20_fixed_k5"] != found[ECA[0]]


def twin_study(folder):
    return write_study(folder, "twins", defaults={**TINY, "epochs": 1}, seeds=2,
                       asha={"enabled": False},
                       groups={"eca": {"baseline": "resnet_20",
                                       "variants": {"adaptive": "ecanet20_adaptive",
                                                    "k3": "ecanet20_fixed_k3",
                                                    "k5": "ecanet20_fixed_k5"}}})


def test_show_says_the_twins_are_one_network_before_anything_runs(tmp_path, capsys):
    path = twin_study(tmp_path)
    assert main(["show", str(path), "--no-estimate"]) == 0
    out = capsys.readouterr().out
    assert "ecanet20_adaptive = ecanet20_fixed_k3 (same network)" in out.splitlines()
    assert "amp: auto → off" in out and "resolved for this machine" in out
    trials = load_study(str(path)).trials()
    assert len(trials) == 2 * 3   # resnet_20, the ECA twins once, k5; two seeds each
    assert all(t.train.amp == "off" for t in trials)


def test_twins_train_once_per_seed_and_are_counted_once(ray_local, tmp_path):
    run_dir = run(twin_study(tmp_path), tmp_path / "runs", inline=True)
    records = read_records(run_dir)
    assert len(records) == 6 and all(r.status == "completed" for r in records)
    twin = [r for r in records if r.network == network_fingerprint("ecanet20_adaptive")]
    assert sorted(r.seed for r in twin) == [0, 1]   # one trial per seed
    for r in twin:
        assert [(x.variant, x.model) for x in r.labels] == [
            ("adaptive", "ecanet20_adaptive"), ("k3", "ecanet20_fixed_k3")]
    assert all(r.train.amp == "off" and r.segments[0].precision == "float32" for r in records)

    [table] = ablation.ablations(records, {"eca": ["adaptive", "k3", "k5"]})
    assert list(table.data["variant"]) == ["baseline", "adaptive = k3", "k5"]
    assert set(table.data["holm_m"]) == {2}   # adaptive = k3 and k5: two tests, not three
    assert table.data["model"][1] == "ecanet20_adaptive = ecanet20_fixed_k3"

    table1 = comparison.comparison(records)
    assert sorted(table1.data["name"]) == [
        "ecanet20_adaptive = ecanet20_fixed_k3", "ecanet20_fixed_k5", "resnet_20"]
    assert table1.data["rank"].notna().sum() == 3   # three ranked rows, the twins one
    families = comparison.families(table1).data.set_index("family")
    assert families.loc["attention", "n_rows"] == 2   # the twins' row and k5's
    assert families.loc["attention", "n_models"] == 2
