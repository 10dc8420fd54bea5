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
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

if TYPE_CHECKING:  # torch is imported by the zoo, not here: `report` reads FAMILIES only
    import torch.nn as nn

FAMILIES = ("baseline", "attention", "lightweight", "modern_conv", "hybrid", "mlp")
RECIPES = ("sgd", "sgd_ghostnet", "adamw", "adamw_convnext", "adamw_mixer")


from raysweep.errors import UnknownModelError  # noqa: E402  (one error base for the CLI)


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
    if recipe not in RECIPES:
        raise ValueError(f"recipe {recipe!r} not in {RECIPES}")

    def wrap(fn):
        key = name or fn.__name__
        if key in _REGISTRY:
            raise ValueError(f"model {key!r} registered twice")
        _REGISTRY[key] = ModelEntry(key, fn, family, recipe, innovation,
                                    dict(options or {}), paper_params, params_tolerance, source)
        return fn

    return wrap


def _load_zoo() -> None:
    # Importing the zoo modules runs their @register_model decorators.
    from models import zoo  # noqa: F401


def get_entry(name: str) -> ModelEntry:
    _load_zoo()
    if name not in _REGISTRY:
        close = difflib.get_close_matches(name, _REGISTRY, n=3)
        hint = f"; did you mean {', '.join(close)}?" if close else "; see `raysweep list models`"
        raise UnknownModelError(f"unknown model {name!r}{hint}")
    return _REGISTRY[name]


def list_models(pattern: str = "*") -> list[str]:
    _load_zoo()
    return sorted(n for n in _REGISTRY if fnmatch.fnmatch(n, pattern))


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
