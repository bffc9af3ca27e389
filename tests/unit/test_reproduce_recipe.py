"""Reproduce recipes: unknown keys, wrong kinds and inconsistent settings are refused before anything runs."""

from __future__ import annotations

from pathlib import Path

import pytest

from evaluation.reproduce_recipe import load_recipe
from synthscan.config import load_config
from synthscan.errors import BadInputError

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _recipe(tmp_path, text: str) -> Path:
    path = tmp_path / "r.toml"
    path.write_text("[reproduce]\n" + text)
    return path


@pytest.mark.parametrize("name", ["paper-cpu.toml", "paper.toml", "smoke.toml"])
def test_shipped_recipes_load(name):
    recipe = load_recipe(RECIPES / name)
    arms = [arm["name"] for arm in recipe.arms]
    assert arms[0] == "real-only" and arms[-1] == "upper-bound" and recipe.primary_arm in arms
    assert {"conventional", "class-weight", "augment-positives", "augment-all"} <= set(arms)


def test_paper_cpu_is_the_issue_design():
    recipe = load_recipe(RECIPES / "paper-cpu.toml")
    assert len(recipe["seeds"]) >= 5 and recipe["generator"]["model"] == "bundled"
    assert len(recipe["data"]["external_sites"]) == 4 and len(recipe["synthetic"]["ratios"]) >= 2


@pytest.mark.parametrize("text, message", [
    ("colour = 1\n", "unknown key 'colour'"),
    ("[reproduce.classifier]\nsteps = 'many'\n", "reproduce.classifier.steps must be int"),
    ("[reproduce.data]\nexternal_sites = ['atlantis']\n", "unknown phantom site 'atlantis'"),
    ("phantom_version = '0.9'\n", "phantom_version is '0.9'"),
    ("[reproduce.synthetic]\nratios = [1.0]\nprimary = 2.0\n", "must be one of the ratios"),
    ("seeds = [1, 1]\n", "distinct"),
    ("[reproduce.data]\nsource = 'manifests'\n", "manifests.generator is needed"),
    ("[reproduce.generator]\nmodel = 'train'\n", "needs a generator recipe"),
    ("[reproduce.survival]\narm = 'magic'\n", "not an arm of this recipe"),
])
def test_bad_recipes_are_refused_with_the_key_named(tmp_path, text, message):
    with pytest.raises(BadInputError, match=message):
        load_recipe(_recipe(tmp_path, text))


def test_a_file_without_reproduce_table_is_refused(tmp_path):
    with pytest.raises(BadInputError, match=r"no \[reproduce\] table"):
        load_recipe(RECIPES / "default-cpu.toml")


def test_recipe_hash_follows_every_setting(tmp_path):
    one = load_recipe(_recipe(tmp_path, "seeds = [0, 1, 2, 3, 4]\n"))
    same = load_recipe(_recipe(tmp_path, ""))  # the default seeds
    other = load_recipe(_recipe(tmp_path, "[reproduce.classifier]\nsteps = 151\n"))
    assert one.sha256 == same.sha256 != other.sha256


def test_resolved_recipe_round_trips(tmp_path):
    recipe = load_recipe(RECIPES / "paper.toml")
    copy = tmp_path / "copy.toml"
    copy.write_text(recipe.to_toml())
    assert load_recipe(copy).settings == recipe.settings
    assert load_config(copy) == load_config(RECIPES / "paper.toml")


def test_train_ignores_the_reproduce_table(tmp_path):
    text = (RECIPES / "smoke.toml").read_text()
    bare = tmp_path / "bare.toml"
    bare.write_text(text[: text.index("[reproduce]")])
    assert load_config(RECIPES / "smoke.toml") == load_config(bare)
