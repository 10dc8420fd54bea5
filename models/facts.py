"""Parameter and FLOP counts of a registered model, and the fingerprint of the network it
builds (`network_fingerprint`: a trial's identity), without building it for real.

    from models import model_facts
    model_facts("resnet_20").flops                       # 81_637_888
    model_facts("ghost_resnet_20", ratio=3).params       # 108_980

Two sources, both exact:

1. `models/facts.json`, the counts of the real built models for the standard cases
   (`standard_cases`: every model at its defaults and with each choice option changed
   alone, at 100 classes). It is used only while its fingerprint equals this zoo's
   (`zoo_fingerprint`, a hash of every module under models/), so an edited model is
   never read from a stale file. Regenerate it after a zoo change with
   `python -m models.write_facts` (tests/test_models.py fails until then). The torch and
   timm versions it was written with are recorded, not fingerprinted: a fresh install
   with newer ones keeps the fast path, and tests/test_models.py compares the file with
   real builds in whatever environment runs it, so a version that changes a count fails
   there.
2. Anything else is built on the meta device: parameters and activations get shapes but
   no memory and no initialisation, and `FlopCounterMode` counts FLOPs from shapes
   alone. A model whose construction or forward reads a tensor's values fails on meta
   (meta tensors have none), so a meta count can differ from the real model's only if
   its code reads values (then it is built for real) or an operator's meta kernel
   differs from its CPU kernel, which tests/test_models.py rules out for every standard
   case.

Why both: the meta path still runs each model's Python construction and forward, about
11 s for the 33 models of `raysweep list models` on the shared 2-core development
machine, where the file answers in 2 ms and building them for real took 43 s
(`python -m benchmarks.bench_model_facts`, 2026-11-24, load average ~6).
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from models.registry import (FACTS_FILE, count_flops, count_params, create_model, get_entry,
                             index_record, list_models, stored_facts, zoo_fingerprint)

if TYPE_CHECKING:   # torch is imported where a model is built: a stored fact needs none
    import torch
FACTS_CLASSES = 100   # the classes of the standard cases (CIFAR-100)


@dataclass(frozen=True)
class ModelFacts:
    params: int     # trainable parameters
    flops: int      # forward FLOPs of one 32×32 image (a multiply-add counts 2)


def model_facts(name: str, num_classes: int = FACTS_CLASSES, **options) -> ModelFacts:
    """Parameter and FLOP counts of a model, as the real built model has them."""
    get_entry(name).check_options(options)
    # An option stated at its default is the same model: look it up as the default.
    chosen = {k: v for k, v in options.items() if not _is_default(name, k, v)}
    return _facts(name, num_classes, _options_key(chosen))


@functools.lru_cache(maxsize=None)
def _facts(name: str, num_classes: int, options_key: str) -> ModelFacts:
    stored = _stored().get((name, num_classes, options_key))
    return stored or count_on_meta(name, num_classes, **json.loads(options_key))


def count_on_meta(name: str, num_classes: int = FACTS_CLASSES, **options) -> ModelFacts:
    """Counts of the model built on the meta device (no memory, no initialisation); a
    model that cannot be built or run there is counted on a real CPU build."""
    import torch

    try:
        with torch.device("meta"):
            return count_built(create_model(name, num_classes=num_classes, **options))
    except (NotImplementedError, RuntimeError):
        return count_real(name, num_classes, **options)


def count_real(name: str, num_classes: int = FACTS_CLASSES, **options) -> ModelFacts:
    """Counts of the model built for real on the CPU: the reference the others must equal."""
    return count_built(create_model(name, num_classes=num_classes, **options))


def count_built(model: torch.nn.Module) -> ModelFacts:
    return ModelFacts(count_params(model), count_flops(model))


def standard_cases() -> list[tuple[str, dict[str, Any]]]:
    """(model, options) of every model at its defaults and with each choice option set to
    each other allowed value alone (a bool option flipped); free int/float options stay
    at their defaults. These are the entries of facts.json."""
    cases = []
    for name in list_models():
        cases.append((name, {}))
        for key, allowed in sorted(get_entry(name).options.items()):
            values = allowed if isinstance(allowed, tuple) else (True, False) if allowed is bool \
                else ()
            cases += [(name, {key: v}) for v in values if not _is_default(name, key, v)]
    return cases


def write_facts_file(path: Path = FACTS_FILE) -> int:
    """Count every standard case on a real build and write the file, with every registry
    entry (`models.registry`'s index); returns the count of cases."""
    import timm
    import torch

    from models.registry import _REGISTRY, _load_zoo

    _load_zoo()
    entries = [_entry(name, options) for name, options in standard_cases()]
    registry = ",\n  ".join(f"{json.dumps(name)}: {json.dumps(index_record(entry), sort_keys=True)}"
                            for name, entry in sorted(_REGISTRY.items()))
    about = ("The registry's entries (read by models.registry without importing the zoo) and "
             "the parameter and FLOP counts and network fingerprints of the real built "
             "models at 32x32, read by models.facts.model_facts and network_fingerprint; "
             "regenerate with `python -m models.write_facts`")
    # One entry per line: a zoo change shows as a readable diff.
    lines = ",\n  ".join(json.dumps(e, sort_keys=True) for e in entries)
    written_with = {"torch": torch.__version__, "timm": timm.__version__}
    path.write_text(f'{{"about": {json.dumps(about)},\n "fingerprint": '
                    f'{json.dumps(zoo_fingerprint())},\n "written_with": '
                    f'{json.dumps(written_with)},\n "registry": {{\n  {registry}\n}},\n'
                    f' "facts": [\n  {lines}\n]}}\n')
    return len(entries)


def _entry(name: str, options: dict[str, Any]) -> dict[str, Any]:
    """One standard case, counted and fingerprinted on one real build from seed 0 (the
    counts' eval forward changes no weight or buffer)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(name, num_classes=FACTS_CLASSES, **options)
    return {"model": name, "num_classes": FACTS_CLASSES, "options": options,
            **vars(count_built(model)), "network": fingerprint_built(model)}


def _stored_cases() -> list[dict]:
    """facts.json's cases, or none when it is missing or written for another zoo."""
    return stored_facts().get("facts", [])


@functools.lru_cache(maxsize=1)
def _stored() -> dict[tuple[str, int, str], ModelFacts]:
    return {(e["model"], e["num_classes"], _options_key(e["options"])):
            ModelFacts(e["params"], e["flops"]) for e in _stored_cases()}


@functools.lru_cache(maxsize=1)
def _stored_networks() -> dict[tuple[str, str], str]:
    return {(e["model"], _options_key(e["options"])): e["network"] for e in _stored_cases()
            if "network" in e}


# --- what a network computes: its fingerprint ---
#
# A trial's identity names the network, not the registry name that built it, so two
# names for one network (at ResNet-20's widths ECA's adaptive rule picks k = 3 in every
# block: ecanet20_adaptive is ecanet20_fixed_k3) are one trial. The fingerprint is taken
# of the reference build: FACTS_CLASSES classes and a 3×32×32 input, the zoo's input for
# every dataset. A trial's classes and data enter its key through its TrainConfig
# (dataset, synthetic_classes, data_fingerprint), and a zoo builder uses num_classes only
# for the classifier's width, so two names equal at the reference are equal at any class
# count (tests/test_network_identity.py checks it on the ECA family at 10 classes).

NETWORK_INPUT = (2, 3, 32, 32)   # images of the fixed input (float64, from seed 0)
NETWORK_DIGITS = 1e6             # outputs compared to 1e-6 of their largest magnitude


def network_fingerprint(name: str, **options) -> str:
    """The fingerprint of what `create_model(name, **options)` computes (16 hex digits):
    from facts.json for its standard cases, else from a real build (cached)."""
    get_entry(name).check_options(options)
    chosen = {k: v for k, v in options.items() if not _is_default(name, k, v)}
    return _network(name, _options_key(chosen))


@functools.lru_cache(maxsize=None)
def _network(name: str, options_key: str) -> str:
    stored = _stored_networks().get((name, options_key))
    return stored or fingerprint_real(name, **json.loads(options_key))


def fingerprint_real(name: str, **options) -> str:
    """The fingerprint of the model built for real on the CPU from seed 0 (the caller's
    random state is left as it was)."""
    import torch

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = create_model(name, num_classes=FACTS_CLASSES, **options)
    return fingerprint_built(model)


def fingerprint_built(model: torch.nn.Module) -> str:
    """sha256 of a network built from seed 0 (it is converted to float64 in place):
    every module's name, type and hyper-parameters (`extra_repr`), every parameter's and
    buffer's name, shape and dtype, and its outputs in eval and train mode on a fixed
    input. Outputs are computed in float64 and rounded to 1e-6 of their largest
    magnitude, so summation order (another CPU, another BLAS) does not change them, while
    any change of weights, order of operations or activation does."""
    import torch

    digest = hashlib.sha256()
    for qname, module in model.named_modules():
        kind = f"{type(module).__module__}.{type(module).__qualname__}"
        digest.update(f"{qname} {kind}({_ADDRESS.sub('', module.extra_repr())})\n".encode())
    for qname, t in [*model.named_parameters(), *model.named_buffers()]:
        digest.update(f"{qname} {tuple(t.shape)} {t.dtype} {t.requires_grad}\n".encode())
    model = model.double()
    x = torch.randn(NETWORK_INPUT, generator=torch.Generator().manual_seed(0),
                    dtype=torch.float64)
    with torch.random.fork_rng(devices=[]), torch.no_grad():
        torch.manual_seed(0)   # dropout and drop-path draws in train mode
        outputs = [model.eval()(x), model.train()(x)]
    for y in outputs:
        scale = y.abs().max().item()
        q = torch.round(y / scale * NETWORK_DIGITS) if scale > 0 else y
        digest.update(f"{tuple(y.shape)} {scale:.5e}\n".encode() + q.to(torch.int64).numpy().tobytes())
    return digest.hexdigest()[:16]


_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")   # a function's repr: differs per process


def network_name(network: str, default: str) -> str:
    """The name a key of this network starts with: the alphabetically first registered
    model whose standard build (facts.json) is this network, else `default` (a model
    with options off the standard cases). Readability only: a key's identity is its hash."""
    return _names_of_networks().get(network, default)


@functools.lru_cache(maxsize=1)
def _names_of_networks() -> dict[str, str]:
    names: dict[str, str] = {}
    for (model, _), network in sorted(_stored_networks().items()):
        names.setdefault(network, model)
    return names


def twins(name: str) -> list[str]:
    """Registered models whose default build is the same network as `name`'s (itself
    included, sorted)."""
    mine = network_fingerprint(name)
    return sorted(m for (m, options), network in _stored_networks().items()
                  if network == mine and options == "{}") or [name]


def _options_key(options: dict[str, Any]) -> str:
    return json.dumps(options, sort_keys=True)


def _is_default(name: str, key: str, value: Any) -> bool:
    defaults = get_entry(name).defaults
    return key in defaults and defaults[key] == value

