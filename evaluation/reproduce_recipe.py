"""Recipes of ``synthscan reproduce``: the ``[reproduce]`` table of a TOML recipe, checked and completed.

A reproduce recipe fixes everything that decides a result before the run starts: the data (phantom sites,
sizes and seeds, or the user's manifests), the generator, the arms, the seeds, the classifier budget and the
pre-specified primary arm. Unknown keys are errors; the resolved recipe is saved in the run folder and its
sha256 identifies the run (a folder holding another recipe's run is refused).

The same file may hold a generator training recipe in its top-level tables (``recipes/paper.toml``):
``synthscan train`` ignores ``[reproduce]``, and ``[reproduce.generator] model = "train"`` trains from them.
"""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from synthscan.config import read_toml
from synthscan.errors import BadInputError

TASKS = ("metastasis", "amyloidosis")
STRATEGY_ARMS = ("conventional", "class-weight", "augment-positives", "augment-all")
REFERENCE_ARM = "real-only"
UPPER_BOUND_ARM = "upper-bound"

# Every key a recipe may set, with its default (a value's type is the type the recipe must give).
DEFAULTS: dict = {
    "name": "",
    "phantom_version": "",
    "seeds": [0, 1, 2, 3, 4],
    "tasks": list(TASKS),
    "workers": 2,
    "data": {
        "source": "phantom",  # or "manifests"
        "generator_site": "aurora-dpd",
        "generator_patients": 2000,
        "generator_seed": 1,  # the bundled model's training cohort (its model card)
        "holdout_patients": 300,
        "holdout_seed": 2,
        "train_site": "birch-mdp",
        "train_patients": 400,
        "train_seed": 3,
        "internal_test_fraction": 0.4,
        "external_sites": ["cedar-hmdp", "delta-dpd", "elm-mdp", "fjord-hdp"],
        "external_patients": 150,
        "external_seed": 4,
        "split_seed": 0,
        "manifests": {"generator": "", "generator_holdout": "", "train": "", "internal_test": "", "external": {}},
    },
    "generator": {
        "model": "bundled",  # "bundled", "train" (this file's top-level generator recipe) or a model folder
        "guidance_scale": 0.0,  # 0 = the model's default
        "steps": 0,  # 0 = the model's default
        "batch_size": 32,
        "seed": 100000,
    },
    "synthetic": {
        "ratios": [1.0, 2.0, 4.0],  # synthetic scans added = ratio x real training scans (per-class balance)
        "primary": 2.0,  # the pre-specified primary mixed arm (mixed-x2)
        "extra_per_condition": 100,  # beyond the largest mix, for fidelity and the reader study
    },
    "classifier": {
        "arch": "tiny",
        "grid": [256, 64],
        "steps": 150,
        "batch_size": 32,
        "lr": 1e-3,
        "eval_every": 25,
        "patience": 6,
        "val_fraction": 0.2,
    },
    "audit": {"false_positive_rate": 0.01, "grid": [128, 32], "encoder": True},
    "fidelity": {"n": 300, "judge_train": 1200, "judge_epochs": 15, "judge_members": 3},
    "survival": {"task": "metastasis", "arm": "primary", "seed": "first"},
    "reader": {"cases": 400, "readers": 4, "synthetic_fraction": 0.5, "accuracy": "detectability",
               "correlation": 0.3},
}


def mixed_arm(ratio: float) -> str:
    return f"mixed-x{ratio:g}"


@dataclass(frozen=True)
class Recipe:
    """The resolved ``[reproduce]`` settings of one recipe file."""

    settings: dict
    path: Path
    generator_recipe: dict  # the file's other top-level tables (a generator training recipe), maybe empty

    @property
    def sha256(self) -> str:
        text = json.dumps({"reproduce": self.settings, "generator_recipe": self.generator_recipe}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def __getitem__(self, key):
        return self.settings[key]

    @property
    def name(self) -> str:
        return self.settings["name"] or self.path.stem

    @property
    def arms(self) -> list[dict]:
        """Every arm in report order: reference, mixes, strategies, upper bound."""
        arms = [{"name": REFERENCE_ARM, "kind": "real", "strategy": "original",
                 "description": "small single-center set only (Heliyon strategy 'original')"}]
        for ratio in self.settings["synthetic"]["ratios"]:
            arms.append({"name": mixed_arm(ratio), "kind": "mixed", "strategy": "original", "ratio": ratio,
                         "description": f"real + {ratio:g}x as many synthetic scans, classes balanced first"})
        descriptions = {"conventional": "conventional augmentation (flips, affine, blur, count thinning)",
                        "class-weight": "class weight 1:10 (Heliyon)",
                        "augment-positives": "10x augmentation of positives (Heliyon)",
                        "augment-all": "10x augmentation of all scans (Heliyon)"}
        for strategy in STRATEGY_ARMS:
            arms.append({"name": strategy, "kind": "strategy", "strategy": strategy,
                         "description": descriptions[strategy]})
        arms.append({"name": UPPER_BOUND_ARM, "kind": "upper-bound", "strategy": "original",
                     "description": "real generator-site scans, as many as the largest mixed training set"})
        return arms

    @property
    def primary_arm(self) -> str:
        return mixed_arm(self.settings["synthetic"]["primary"])

    @property
    def survival_arm(self) -> str:
        arm = self.settings["survival"]["arm"]
        return self.primary_arm if arm == "primary" else arm

    @property
    def survival_seed(self) -> int:
        seed = self.settings["survival"]["seed"]
        return self.settings["seeds"][0] if seed == "first" else int(seed)

    def to_toml(self) -> str:
        """The resolved recipe as TOML (written to OUT/recipe.toml)."""
        lines = [f"# resolved recipe of {self.path.name} (sha256 {self.sha256})"]
        _emit(lines, {**self.generator_recipe, "reproduce": self.settings}, [])
        return "\n".join(lines) + "\n"


def _toml(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _emit(lines: list, table: dict, prefix: list) -> None:
    plain = {k: v for k, v in table.items() if not isinstance(v, dict) or _is_inline(prefix + [k])}
    if prefix and plain:
        lines.append(f"\n[{'.'.join(prefix)}]")
    for key, value in plain.items():
        lines.append(f"{key} = {_toml(value)}")
    for key, value in table.items():
        if isinstance(value, dict) and not _is_inline(prefix + [key]):
            _emit(lines, value, prefix + [key])


def _is_inline(path: list) -> bool:
    return path[-2:] == ["manifests", "external"]


def _check(table: dict, defaults: dict, where: str, path) -> dict:
    """``defaults`` completed by ``table``; unknown keys and values of the wrong kind are errors."""
    result = copy.deepcopy(defaults)
    for key, value in table.items():
        name = f"{where}.{key}"
        if key not in defaults:
            raise BadInputError(f"[{where}] unknown key {key!r} (known: {', '.join(sorted(defaults))})", path)
        default = defaults[key]
        if name == "reproduce.data.manifests.external":
            if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
                raise BadInputError(f"{name} must be a table of site = manifest path", path)
            result[key] = dict(value)
        elif isinstance(default, dict):
            if not isinstance(value, dict):
                raise BadInputError(f"{name} must be a table", path)
            result[key] = _check(value, default, name, path)
        elif name in ("reproduce.survival.seed", "reproduce.reader.accuracy"):
            result[key] = value  # a word or a number, checked below
        elif isinstance(default, bool) != isinstance(value, bool) or not isinstance(
                value, (int, float) if isinstance(default, float) else type(default)):
            raise BadInputError(f"{name} must be {type(default).__name__}, got {value!r}", path)
        else:
            result[key] = float(value) if isinstance(default, float) else value
    return result


def load_recipe(path) -> Recipe:
    """Read a recipe file and check its ``[reproduce]`` table completely before anything runs."""
    from synthscan.phantom import PHANTOM_VERSION
    from synthscan.phantom.sites import SITES

    path = Path(path)
    raw = read_toml(path, "recipe")
    if "reproduce" not in raw or not isinstance(raw["reproduce"], dict):
        raise BadInputError("no [reproduce] table: not a reproduce recipe", path)
    settings = _check(raw["reproduce"], DEFAULTS, "reproduce", path)
    generator_recipe = {k: v for k, v in raw.items() if k != "reproduce"}
    data, synthetic, reader = settings["data"], settings["synthetic"], settings["reader"]
    problems = [
        (settings["phantom_version"] in ("", PHANTOM_VERSION),
         f"reproduce.phantom_version is {settings['phantom_version']!r} but this synthscan simulates phantom "
         f"{PHANTOM_VERSION}: a recipe is fixed to one simulator version"),
        (len(settings["seeds"]) >= 1 and len(set(settings["seeds"])) == len(settings["seeds"])
         and all(isinstance(s, int) and s >= 0 for s in settings["seeds"]),
         "reproduce.seeds must be distinct integers >= 0"),
        (bool(settings["tasks"]) and set(settings["tasks"]) <= set(TASKS),
         f"reproduce.tasks must be a subset of {list(TASKS)}"),
        (data["source"] in ("phantom", "manifests"), "reproduce.data.source must be 'phantom' or 'manifests'"),
        (0 < data["internal_test_fraction"] < 1, "reproduce.data.internal_test_fraction must be in (0, 1)"),
        (bool(synthetic["ratios"]) and all(r > 0 for r in synthetic["ratios"]),
         "reproduce.synthetic.ratios must be numbers > 0"),
        (synthetic["primary"] in synthetic["ratios"],
         f"reproduce.synthetic.primary ({synthetic['primary']:g}) must be one of the ratios"),
        (settings["survival"]["task"] in settings["tasks"], "reproduce.survival.task must be one of the tasks"),
        (settings["survival"]["seed"] == "first" or isinstance(settings["survival"]["seed"], int),
         "reproduce.survival.seed must be 'first' or a seed"),
        (reader["accuracy"] == "detectability" or (isinstance(reader["accuracy"], (int, float))
                                                   and 0 < reader["accuracy"] < 1),
         "reproduce.reader.accuracy must be 'detectability' or a number in (0, 1)"),
        (reader["cases"] >= 0 and reader["readers"] >= 1, "reproduce.reader.cases >= 0 and readers >= 1"),
        (settings["workers"] >= 1, "reproduce.workers must be >= 1"),
        (settings["fidelity"]["judge_members"] >= 1, "reproduce.fidelity.judge_members must be >= 1"),
    ]
    if data["source"] == "phantom":
        for key in ["generator_site", "train_site"] + [f"external_sites[{i}]" for i in range(len(data["external_sites"]))]:
            site = data[key] if "[" not in key else data["external_sites"][int(key[15:-1])]
            problems.append((site in SITES, f"reproduce.data.{key}: unknown phantom site {site!r} "
                                            f"(sites: {', '.join(SITES)})"))
    else:
        manifests = data["manifests"]
        for key in ("generator", "generator_holdout", "train"):
            problems.append((bool(manifests[key]), f"reproduce.data.manifests.{key} is needed with source "
                                                   "'manifests'"))
        problems.append((bool(manifests["external"]), "reproduce.data.manifests.external: name at least one "
                                                      "external site"))
    for ok, message in problems:
        if not ok:
            raise BadInputError(message, path)
    for arm in {settings["survival"]["arm"]} - {"primary"}:
        if arm not in [a["name"] for a in Recipe(settings, path, generator_recipe).arms]:
            raise BadInputError(f"reproduce.survival.arm {arm!r} is not an arm of this recipe", path)
    if settings["generator"]["model"] == "train" and not generator_recipe:
        raise BadInputError("reproduce.generator.model = 'train' needs a generator recipe in the same file", path)
    return Recipe(settings, path, generator_recipe)
