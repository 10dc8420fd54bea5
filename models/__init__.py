"""raysweep's model zoo: CIFAR-sized backbones looked up by name.

    from models import create_model, list_models
    net = create_model("resnet_20", num_classes=100)
"""
from models.registry import (FAMILIES, RECIPES, ModelEntry, ModelFacts, UnknownModelError,
                             count_flops, count_params, create_model, get_entry, list_models,
                             model_facts, register_model)

__all__ = ["FAMILIES", "RECIPES", "ModelEntry", "ModelFacts", "UnknownModelError", "count_flops",
           "count_params", "create_model", "get_entry", "list_models", "model_facts",
           "register_model"]
