"""The model registry: timm-style `@register_model` builders looked up by name.

A builder is a small function `builder(num_classes=100, **options) -> nn.Module`.
Its registry entry carries what the engine and the results layer need to know
without building it: technique family, default training recipe, whether it is one
of the papers' own designs, the options a study may override (with their allowed
values), and the papers' parameter count where they give one.
"""
from __future__ import annotations

import difflib
import fnmatch
import functools
import hashlib
import importlib
import inspect
import json
import pkgutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is imported by the zoo, not here: `report` reads FAMILIES only
    import torch.nn as nn

FAMILIES = ("baseline", "attention", "lightweight", "modern_conv", "hybrid", "mlp")
# The recipes a model may name; their values are raysweep.core.recipes.RECIPES (the zoo
# depends on nothing in raysweep; tests/core/test_train_config.py keeps the two in step).
RECIPE_NAMES = ("sgd", "sgd_ghostnet", "adamw", "adamw_convnext", "adamw_mixer")


class UnknownModelError(ValueError):
    """A model name or model option that the registry does not have. Defined here, not in
    raysweep: the zoo depends on nothing in the engine; `raysweep.errors.USER_ERRORS`
    names it, so the CLI prints it as one line like every other user error."""


@dataclass(frozen=True)
class ModelEntry:
    name: str
    builder: Callable[..., nn.Module]
    family: str
    recipe: str
    innovation: bool = False
    # option name -> allowed values (tuple) or a type (int/float/bool) for free values
    options: dict[str, Any] = field(default_factory=dict)
    paper_params: int | None = None  # the papers' parameter count at 100 classes
    # relative tolerance against paper_params; 0 = exact; None = a documented deviation
    # (models/README.md says why no faithful design reaches the paper's count)
    params_tolerance: float | None = 0.02
    source: str = ""
    module: str = ""         # the zoo module that registers it
    defaults: dict[str, Any] = field(default_factory=dict)   # each option's default value

    def check_options(self, overrides: dict[str, Any]) -> None:
        for key, value in overrides.items():
            if key not in self.options:
                accepted = ", ".join(sorted(self.options)) or "none"
                raise UnknownModelError(
                    f"model {self.name!r} takes no option {key!r}; accepted options: {accepted}")
            allowed = self.options[key]
            if isinstance(allowed, tuple):
                if value not in allowed:
                    raise UnknownModelError(
                        f"model {self.name!r} option {key}={value!r} is not allowed; "
                        f"allowed: {', '.join(map(repr, allowed))}")
            elif allowed is float:
                if isinstance(value, bool) or not isinstance(value, (int, float)):
                    raise UnknownModelError(
                        f"model {self.name!r} option {key}={value!r} must be a number")
            elif not isinstance(value, allowed) or (allowed is int and isinstance(value, bool)):
                raise UnknownModelError(
                    f"model {self.name!r} option {key}={value!r} must be {allowed.__name__}")

    def describe_options(self) -> str:
        parts = []
        for key, allowed in sorted(self.options.items()):
            if isinstance(allowed, tuple):
                parts.append(f"{key}∈{{{','.join(map(str, allowed))}}}")
            else:
                parts.append(f"{key}:{allowed.__name__}")
        return " ".join(parts)


_REGISTRY: dict[str, ModelEntry] = {}


def register_model(*, family: str, recipe: str, innovation: bool = False,
                   options: dict[str, Any] | None = None, paper_params: int | None = None,
                   params_tolerance: float | None = 0.02, source: str = "",
                   name: str | None = None):
    """Decorator: register `fn` under its own name (or `name`)."""
    if family not in FAMILIES:
        raise ValueError(f"family {family!r} not in {FAMILIES}")
    if recipe not in RECIPE_NAMES:
        raise ValueError(f"recipe {recipe!r} not in {RECIPE_NAMES}")

    def wrap(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} registered twice")
        params = inspect.signature(fn).parameters
        _REGISTRY[key] = ModelEntry(
            key, fn, family, recipe, innovation, dict(options or {}), paper_params,
            params_tolerance, source, fn.__module__,
            {k: params[k].default for k in options or {}
             if k in params and params[k].default is not inspect.Parameter.empty})
        return fn

    return wrap


_ZOO_LOADED = False


def _load_zoo() -> None:
    """Import every zoo module: their @register_model decorators fill _REGISTRY."""
    global _ZOO_LOADED
    from models import zoo

    for module in pkgutil.iter_modules(zoo.__path__):
        importlib.import_module(f"{zoo.__name__}.{module.name}")
    _ZOO_LOADED = True


# --- the stored index: entries without importing the zoo ---
#
# Importing the zoo imports torch, timm and torchvision (~7 s of CPU on the development
# machine), which a study's parse, `show` or `list` do not need: they read what
# models/facts.json stores of each entry (`registry`, written by `python -m
# models.write_facts`), used only while its fingerprint equals this zoo's. A model is
# imported when it is built, and only its own module: timm imports torchvision (whose
# `ops` import torch._dynamo), and the CIFAR ResNets need neither: ~1.5 s of CPU less per
# trial process of one (not more: torch.optim imports torch._dynamo at the first step).

FACTS_FILE = Path(__file__).with_name("facts.json")


def zoo_fingerprint() -> str:
    """A hash of the zoo's source: every module under models/."""
    digest = hashlib.sha256()
    root = Path(__file__).parent
    for path in sorted(root.rglob("*.py")):
        digest.update(path.relative_to(root).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


@functools.lru_cache(maxsize=1)
def stored_facts() -> dict[str, Any]:
    """models/facts.json, or {} when it is missing, unreadable or written for another zoo."""
    try:
        payload = json.loads(FACTS_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return payload if payload.get("fingerprint") == zoo_fingerprint() else {}


_TYPES = {"int": int, "float": float, "bool": bool}


def index_record(entry: ModelEntry) -> dict[str, Any]:
    """What facts.json stores of a registry entry (all but its builder)."""
    return {"module": entry.module, "family": entry.family, "recipe": entry.recipe,
            "innovation": entry.innovation, "paper_params": entry.paper_params,
            "params_tolerance": entry.params_tolerance, "source": entry.source,
            "options": {k: list(v) if isinstance(v, tuple) else v.__name__
                        for k, v in entry.options.items()},
            "defaults": entry.defaults}


def _from_index(name: str, stored: dict[str, Any]) -> ModelEntry:
    options = {k: tuple(v) if isinstance(v, list) else _TYPES[v]
               for k, v in stored["options"].items()}
    return ModelEntry(name, functools.partial(_build, name), stored["family"],
                      stored["recipe"], stored["innovation"], options, stored["paper_params"],
                      stored["params_tolerance"], stored["source"], stored["module"],
                      stored["defaults"])


def _build(name: str, **kwargs) -> nn.Module:
    """An index entry's builder: imports the module that registers it, then builds with
    the registered one."""
    importlib.import_module(_index()[name].module)
    return _REGISTRY[name].builder(**kwargs)


@functools.lru_cache(maxsize=1)
def _index() -> dict[str, ModelEntry]:
    return {name: _from_index(name, stored)
            for name, stored in stored_facts().get("registry", {}).items()}


def _entries() -> dict[str, ModelEntry]:
    """The registry: the imported zoo's if it is imported or the index is stale, else
    the index (also while only the modules of built models are imported)."""
    if not _ZOO_LOADED and _index():
        return _index()
    _load_zoo()
    return _REGISTRY


def get_entry(name: str) -> ModelEntry:
    entries = _entries()
    if name not in entries:
        close = difflib.get_close_matches(name, entries, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `raysweep list models`"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return entries[name]


def list_models(pattern: str = "*") -> list[str]:
    return sorted(n for n in _entries() if fnmatch.fnmatch(n, pattern))


def create_model(name: str, num_classes: int = 100, **overrides) -> nn.Module:
    entry = get_entry(name)
    entry.check_options(overrides)
    return entry.builder(num_classes=num_classes, **overrides)


def count_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def count_flops(model: nn.Module, size: int = 32) -> int:
    """Forward FLOPs of one size×size image (torch.utils.flop_counter counts a MAC as 2)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    # The input goes where the model is: models.facts counts on the meta device.
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(torch.zeros(1, 3, size, size, device=device))
    model.train(was_training)
    return counter.get_total_flops()
