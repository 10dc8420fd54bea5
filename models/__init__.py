"""raysweep's model zoo: CIFAR-sized backbones looked up by name.

    from models import create_model, list_models, model_facts
    net = create_model("resnet_20", num_classes=100)
    model_facts("resnet_20")          # ModelFacts(params=278324, flops=81637888), no build
"""
from models.registry import (FAMILIES, RECIPE_NAMES, ModelEntry, UnknownModelError, count_flops,
                             count_params, create_model, get_entry, list_models, register_model)

__all__ = ["FAMILIES", "RECIPE_NAMES", "ModelEntry", "ModelFacts", "UnknownModelError", "count_flops",
           "count_params", "create_model", "get_entry", "list_models", "model_facts",
           "register_model"]


def __getattr__(name: str):
    # models.facts imports torch; the results layer reads only FAMILIES and RECIPE_NAMES.
    if name in ("ModelFacts", "model_facts"):
        from models import facts

        return getattr(facts, name)
    raise AttributeError(f"module 'models' has no attribute {name!r}")
