"""Recipe resolution: bundled recipes validate, dotted overrides, switching the model family."""

import pytest

from deepkit.errors import ConfigError
from deepkit.recipe import list_recipes, resolve_recipe


@pytest.mark.parametrize("name", sorted(list_recipes()))
def test_bundled_recipes_validate(name):
    rec = resolve_recipe(name)
    assert rec.model["name"]


def test_override_sets_nested_value():
    rec = resolve_recipe("digits_cnn", ["trainer.epochs=3", "model.channels=[8,16]"])
    assert rec.trainer.epochs == 3 and rec.model["channels"] == [8, 16]


@pytest.mark.parametrize("order", [["model.name=mlp", "model.width=64"], ["model.width=64", "model.name=mlp"]])
def test_switching_model_drops_old_model_keys(order):
    rec = resolve_recipe("digits_cnn", order)  # digits_cnn has CNN-only keys (channels) that mlp would reject
    assert rec.model == {"name": "mlp", "width": 64}


def test_unknown_model_key_suggests_nearest():
    with pytest.raises(ConfigError, match="channels"):
        resolve_recipe("digits_cnn", ["model.chanels=[8]"])
