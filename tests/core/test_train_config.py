"""TrainConfig's field groups are declared once, on the type, and name its fields only."""
from __future__ import annotations

import dataclasses

import pytest

from models import RECIPE_NAMES
from raysweep.core.recipes import RECIPES
from raysweep.core.trial import TrainConfig
from support.factories import TRAIN

GROUPS = ("NOT_IDENTITY", "DATA", "SETTING", "ARRAY_FREE")


@pytest.mark.parametrize("group", GROUPS)
def test_a_group_names_fields_of_the_type_once_each(group):
    names = getattr(TrainConfig, group)
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(names) <= fields and len(set(names)) == len(names)


def test_groups_are_not_fields_and_drive_identity_and_setting():
    assert not {f.name for f in dataclasses.fields(TrainConfig)} & set(GROUPS)
    assert set(TRAIN.identity()) == {f.name for f in dataclasses.fields(TrainConfig)} - set(
        TrainConfig.NOT_IDENTITY)
    assert TRAIN.setting() == tuple(getattr(TRAIN, f) for f in TrainConfig.SETTING)
    assert TRAIN.replace(epochs=5).setting() != TRAIN.setting()
    assert TRAIN.replace(lr=0.5).setting() == TRAIN.setting()


def test_what_a_fused_array_may_vary_is_identity_and_no_setting():
    assert not set(TrainConfig.ARRAY_FREE) & set(TrainConfig.NOT_IDENTITY)
    assert not set(TrainConfig.ARRAY_FREE) & set(TrainConfig.SETTING)


def test_the_recipes_models_name_are_the_recipes_that_have_values():
    assert tuple(RECIPES) == RECIPE_NAMES
