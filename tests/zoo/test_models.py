"""Every registered model, one parametrized test (timm style), plus the papers' counts."""
from __future__ import annotations

import copy
import dataclasses
import json
import subprocess
import sys

import pytest
import torch

from torch.utils.flop_counter import FlopCounterMode

from models import (FAMILIES, RECIPE_NAMES, ModelFacts, count_params, create_model, get_entry,
                    list_models, model_facts)
from models.facts import (FACTS_FILE, count_on_meta, fingerprint_built, fingerprint_real,
                          network_fingerprint, standard_cases, zoo_fingerprint)
from models.registry import UnknownModelError

ALL = list_models()


def _variants(name):
    """Each model once per stem it registers (the stem changes the network most)."""
    stems = get_entry(name).options.get("stem")
    return [{}] if not isinstance(stems, tuple) else [{"stem": s} for s in stems]


CASES = [(n, o) for n in ALL for o in _variants(n)]


@pytest.mark.parametrize("name, options", CASES,
                         ids=[f"{n}-{o.get('stem', 'default')}" for n, o in CASES])
def test_forward_backward_at_32px(name, options):
    """Every model at every stem trains a step on 32×32 images; and, at 100 classes,
    `model_facts` (models/facts.json while it is current, else the meta-device count)
    equals this real model's parameter and FLOP counts. The counted operators
    (convolutions, matmuls, attention) scale with the batch and are the same in train
    and eval mode, so half this batch-2 forward's count is count_flops' batch-1 eval
    count: the real forward this test runs anyway is the proof, where a separate real
    count of every model would cost more than this whole test."""
    torch.manual_seed(0)
    for classes in (100, 10):
        model = create_model(name, num_classes=classes, **options).train()
        if classes == 100:   # built from seed 0, as the fingerprint's reference build
            assert network_fingerprint(name, **options) == fingerprint_built(copy.deepcopy(model))
        with FlopCounterMode(display=False) as counter:
            out = model(torch.randn(2, 3, 32, 32))
        assert out.shape == (2, classes)
        out.float().logsumexp(1).mean().backward()
        grads = [p.grad for p in model.parameters() if p.requires_grad]
        assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
        if classes == 100:
            real = ModelFacts(count_params(model), counter.get_total_flops() // 2)
            assert model_facts(name, **options) == real


OPTION_CASES = [(n, o) for n, o in standard_cases() if o]


@pytest.mark.parametrize("name, options", OPTION_CASES,
                         ids=[f"{n}-{json.dumps(o, sort_keys=True)}" for n, o in OPTION_CASES])
def test_stored_facts_equal_meta_counts(name, options):
    """The entries with options, without a real build per case (about 5× dearer):
    write_facts_file counted each on a real build and test_facts_file_is_current pins
    the file to this zoo, so agreement proves the meta path, which answers every case
    the file lacks, exact on each of them."""
    assert model_facts(name, **options) == count_on_meta(name, **options)


# The option cases of the ResNet-20-scale models (under 2 M parameters: the ECA, Ghost
# and ConvNeXt-block variants, where two names can build one network), each a real build
# at a fraction of the cost of the large ones.
SMALL_OPTION_CASES = [(n, o) for n, o in OPTION_CASES if model_facts(n, **o).params < 2_000_000]


@pytest.mark.parametrize("name, options", SMALL_OPTION_CASES,
                         ids=[f"{n}-{json.dumps(o, sort_keys=True)}" for n, o in SMALL_OPTION_CASES])
def test_stored_network_fingerprints_equal_real_builds(name, options):
    """The stored fingerprints a trial's key reads, against real builds: every default
    case in the forward test above, and here the small models' option cases."""
    assert network_fingerprint(name, **options) == fingerprint_real(name, **options)


def test_facts_file_is_current():
    stored = json.loads(FACTS_FILE.read_text())
    assert stored["fingerprint"] == zoo_fingerprint(), \
        "models/ changed since models/facts.json was written: run python -m models.write_facts"
    assert [(e["model"], e["options"]) for e in stored["facts"]] == standard_cases()


def test_the_stored_registry_is_the_imported_zoos():
    """Until the zoo is imported, `get_entry` and `list_models` answer from facts.json's
    registry: it names exactly the zoo's models, each entry equal to the one the zoo
    registers (all but its builder, which imports its zoo module when called)."""
    from models.registry import _REGISTRY, _from_index, _load_zoo

    stored = json.loads(FACTS_FILE.read_text())["registry"]
    _load_zoo()
    assert sorted(stored) == sorted(_REGISTRY)
    for name, entry in _REGISTRY.items():
        assert dataclasses.replace(_from_index(name, stored[name]), builder=None) == \
            dataclasses.replace(entry, builder=None)


def test_a_model_is_built_from_its_own_module_alone():
    """Building from the stored registry imports only the module that registers the model:
    a CIFAR ResNet's trial imports neither timm nor torchvision (whose `ops` import
    torch._dynamo), and gets the network the fully imported zoo builds."""
    code = ("import sys, torch; from models import create_model; torch.manual_seed(0); "
            "net = create_model('resnet_20', num_classes=10); "
            "print(sorted(m for m in ('timm', 'torchvision', 'models.zoo.coatnet') "
            "if m in sys.modules)); "
            "print(sum(p.sum().item() for p in net.state_dict().values()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.splitlines()
    assert out[0] == "[]"
    from models.registry import _load_zoo

    _load_zoo()
    torch.manual_seed(0)
    net = create_model("resnet_20", num_classes=10)
    assert float(out[1]) == sum(p.sum().item() for p in net.state_dict().values())


@pytest.mark.parametrize("name", [n for n in ALL if get_entry(n).paper_params
                                  and get_entry(n).params_tolerance is not None])
def test_parameter_count_matches_the_seed(name):
    entry = get_entry(name)
    got = count_params(create_model(name))
    assert abs(got - entry.paper_params) <= entry.params_tolerance * entry.paper_params, \
        f"{name}: {got} parameters, paper says {entry.paper_params}"


def test_documented_deviations_are_in_the_models_readme():
    from pathlib import Path

    lines = (Path(__file__).parents[2] / "models" / "README.md").read_text().splitlines()
    for name in ALL:
        if get_entry(name).paper_params and get_entry(name).params_tolerance is None:
            assert any(name in ln and "deviation" in ln.lower() for ln in lines), \
                f"{name} deviates from the seed but models/README.md does not say why"


def test_registry_entries_are_well_formed():
    assert {"resnet_20", "resnet_32", "resnet_56"} <= set(ALL)
    for name in ALL:
        entry = get_entry(name)
        assert entry.family in FAMILIES and entry.recipe in RECIPE_NAMES


def test_resnet_20_is_exactly_the_seeds_network():
    assert count_params(create_model("resnet_20")) == 278_324


def test_unknown_option_names_the_accepted_ones():
    with pytest.raises(UnknownModelError, match="takes no option 'width'; accepted options"):
        create_model("resnet_20", width=2)
    with pytest.raises(UnknownModelError, match="unknown model 'resnet_21'"):
        create_model("resnet_21")
