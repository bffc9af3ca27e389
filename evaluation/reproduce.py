"""``synthscan reproduce``: the study design of Haberl et al. (EJNMMI 2025) end to end, stage by stage.

Stages (each writes its folder of OUT, then a marker ``OUT/stages/<stage>.json``; a rerun skips marked
stages, and within the classifiers stage every finished classifier run):

1. ``data``: phantom cohorts of the generator site (the generator's training cohort and a held-out cohort of
   other patients), the small single-center site and the external sites, or the user's manifests; a
   patient-grouped split of the small site into training and internal test scans.
2. ``generator`` (only with ``[reproduce.generator] model = "train"``): ``synthscan train`` on the generator
   site with the recipe file's generator tables.
3. ``sample``: synthetic scans per condition from the generator (never from the phantom).
4. ``audit``: memorization audit of the samples against the generator's training scans.
5. ``fidelity``: the judge of DESIGN.md section 5 on held-out generator-site scans vs the samples.
6. ``classifiers``: every task x arm x seed (equal optimizer steps), tested on the internal and external sites.
7. ``predictions``: all test predictions in ``OUT/predictions.csv``.
8. ``survival``: predicted-abnormal vs normal on the test sites (pre-specified task, arm and seed).
9. ``reader``: a simulated blinded reader study (real generator-site scans vs samples).
10. ``report``: ``OUT/report.md`` and ``report.html`` (evaluation/report.py).
"""

from __future__ import annotations

import json
import math
import platform
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from evaluation.reproduce_recipe import REFERENCE_ARM, Recipe, load_recipe
from synthscan.errors import BadInputError
from synthscan.io.atomic import atomic_path, write_text
from synthscan.io.manifest import grouped_split, read_manifest, write_manifest
from synthscan.mix import is_synthetic, mix, plan_counts, real_classes, rebase_paths

STAGES = ("data", "generator", "sample", "audit", "fidelity", "classifiers", "predictions", "survival", "reader",
          "report")
CONDITIONS = ("normal", "metastasis", "amyloidosis")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class Run:
    """The run folder: paths, run.json, stage markers."""

    def __init__(self, recipe: Recipe, out, progress: bool = True):
        self.recipe, self.out, self.progress = recipe, Path(out), progress

    # ------------------------------------------------------------------------------------------ folders
    def path(self, *parts) -> Path:
        return self.out.joinpath(*parts)

    def split(self, name: str) -> Path:
        return self.path("data", "splits", f"{name}.csv")

    @property
    def cache(self) -> Path:
        return self.path("cache")

    def open(self) -> None:
        """Create OUT or continue the run in it; refuse a folder holding anything else."""
        recipe_file, run_file = self.path("recipe.toml"), self.path("run.json")
        if self.out.exists() and not self.out.is_dir():
            raise BadInputError("output path exists and is not a folder", self.out)
        if run_file.is_file():
            previous = json.loads(run_file.read_text())
            if previous.get("recipe_sha256") != self.recipe.sha256:
                raise BadInputError(f"folder holds the run of another recipe ({previous.get('recipe_name')!r}, sha256 "
                                    f"{str(previous.get('recipe_sha256'))[:12]}); choose another --out", self.out)
            return
        if self.out.is_dir() and any(self.out.iterdir()):
            raise BadInputError("output folder exists, is not empty and holds no reproduce run", self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        write_text(recipe_file, self.recipe.to_toml())
        from synthscan import __version__
        from synthscan.phantom import PHANTOM_VERSION

        self.write_info({"recipe_name": self.recipe.name, "recipe_file": self.recipe.path.name,
                         "recipe_sha256": self.recipe.sha256, "phantom_version": PHANTOM_VERSION,
                         "synthscan_version": __version__, "seeds": self.recipe["seeds"],
                         "tasks": self.recipe["tasks"], "arms": self.recipe.arms,
                         "primary_arm": self.recipe.primary_arm, "reference_arm": REFERENCE_ARM,
                         "survival": {"task": self.recipe["survival"]["task"], "arm": self.recipe.survival_arm,
                                      "seed": self.recipe.survival_seed},
                         "data_source": self.recipe["data"]["source"], "sites": {}, "generator": {},
                         "stages": {}, "started": _now(),
                         "machine": f"{platform.machine()}, {_cpus()} CPUs, {platform.python_version()}"})

    def info(self) -> dict:
        return json.loads(self.path("run.json").read_text())

    def write_info(self, info: dict) -> None:
        write_text(self.path("run.json"), json.dumps(info, indent=2) + "\n")

    def update_info(self, **changes) -> None:
        info = self.info()
        info.update(changes)
        self.write_info(info)

    def done(self, stage: str) -> bool:
        return self.path("stages", f"{stage}.json").is_file()

    def mark(self, stage: str, seconds: float, **details) -> None:
        record = {"seconds": round(seconds, 1), "finished": _now(), **details}
        self.path("stages").mkdir(exist_ok=True)
        write_text(self.path("stages", f"{stage}.json"), json.dumps(record, indent=2) + "\n")
        info = self.info()
        info["stages"][stage] = record
        self.write_info(info)

    def say(self, text: str) -> None:
        if self.progress:
            print(text, flush=True)


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


# ================================================================================================ stages
def stage_data(run: Run) -> dict:
    data = run.recipe["data"]
    if data["source"] == "phantom":
        from synthscan.phantom.cohort import write_cohort
        from synthscan.phantom.sites import get_site

        cohorts = [("generator", data["generator_site"], data["generator_patients"], data["generator_seed"]),
                   ("generator-holdout", data["generator_site"], data["holdout_patients"], data["holdout_seed"]),
                   ("train-site", data["train_site"], data["train_patients"], data["train_seed"])]
        cohorts += [(f"external-{name}", name, data["external_patients"], data["external_seed"] + k)
                    for k, name in enumerate(data["external_sites"])]
        frames = {}
        for role, site, patients, seed in cohorts:
            folder = run.path("data", role)
            run.say(f"data: phantom {site}, {patients} patients (seed {seed}) -> {folder}")
            write_cohort(get_site(site), patients, folder, seed, workers=run.recipe["workers"],
                         progress=run.progress)
            frames[role] = read_manifest(folder / "manifest.csv")
        externals = {name: frames[f"external-{name}"] for name in data["external_sites"]}
        internal = None
    else:
        given = data["manifests"]
        frames = {role: read_manifest(given[key]) for role, key in
                  (("generator", "generator"), ("generator-holdout", "generator_holdout"), ("train-site", "train"))}
        externals = {name: read_manifest(path) for name, path in given["external"].items()}
        internal = read_manifest(given["internal_test"]) if given["internal_test"] else None
    for role, frame in [*frames.items(), *externals.items()]:
        _refuse_synthetic(frame, role)
    small = frames["train-site"]
    if internal is None:
        strata = _strata(small)
        fraction = data["internal_test_fraction"]
        train, internal = grouped_split(small.assign(_stratum=strata), (1 - fraction, fraction), stratify="_stratum",
                                        seed=data["split_seed"])
        train, internal = train.drop(columns="_stratum"), internal.drop(columns="_stratum")
    else:
        train = small
    shared = set(train["patient_id"].astype(str)) & set(internal["patient_id"].astype(str))
    if shared:
        raise BadInputError(f"{len(shared)} patient(s) in both the training and the internal test set")
    train_site = _site_name(small, "train-site")
    parts = {"train": train, "internal-test": _with_site(internal, train_site),
             "generator-train": frames["generator"], "generator-holdout": frames["generator-holdout"]}
    for name, frame in externals.items():
        parts[f"external-{name}"] = _with_site(frame, name)
    splits = run.path("data", "splits")
    splits.mkdir(parents=True, exist_ok=True)
    for name, frame in parts.items():
        write_manifest(rebase_paths(frame, splits), splits / f"{name}.csv")
    sites = {}
    roles = [("generator-train", "generator"), ("generator-holdout", "generator-holdout"), ("train", "train"),
             ("internal-test", "internal-test")] + [(f"external-{n}", "external") for n in externals]
    for split, role in roles:
        frame = parts[split]
        sites[split] = {"site": _site_name(frame, split), "role": role, "tracer": _distinct(frame, "tracer"),
                        "camera": _distinct(frame, "camera"), "studies": int(len(frame)),
                        "patients": int(frame["patient_id"].nunique()),
                        "positives": {"metastasis": _count(frame, "metastasis", 1),
                                      "amyloidosis": _count(frame, "amyloid_grade", 2)}}
    run.update_info(sites=sites, test_sets=["internal-test"] + [f"external-{n}" for n in externals])
    return {"studies": int(sum(len(f) for f in parts.values()))}


def _with_site(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Blank sites take ``name`` (the test-site name in predictions)."""
    site = frame["site"] if "site" in frame else pd.Series(pd.NA, index=frame.index, dtype=object)
    return frame.assign(site=site.astype(object).where(site.notna(), name))


def _refuse_synthetic(frame: pd.DataFrame, role: str) -> None:
    if is_synthetic(frame).any():
        raise BadInputError(f"the {role} manifest holds synthetic scans; reproduce needs real scans there",
                            frame.attrs.get("path"))


def _strata(frame: pd.DataFrame) -> pd.Series:
    return real_classes(frame).fillna("unlabelled")


def _site_name(frame: pd.DataFrame, fallback: str) -> str:
    sites = frame["site"].dropna().astype(str) if "site" in frame else pd.Series(dtype=str)
    return sites.mode().iloc[0] if len(sites) else fallback


def _distinct(frame: pd.DataFrame, column: str) -> str:
    values = frame[column].dropna().astype(str) if column in frame else pd.Series(dtype=str)
    return ", ".join(sorted(values.unique())) if len(values) else ""


def _count(frame: pd.DataFrame, column: str, at_least: int) -> int:
    if column not in frame:
        return 0
    return int((pd.to_numeric(frame[column], errors="coerce") >= at_least).sum())


def model_folder(run: Run):
    """The generator folder: the bundled model, a trained one in OUT/generator, or the recipe's folder."""
    choice = run.recipe["generator"]["model"]
    if choice == "bundled":
        from synthscan.sample import DEFAULT_MODEL

        return DEFAULT_MODEL
    if choice == "train":
        return run.path("generator", "model")
    return Path(choice)


def stage_generator(run: Run) -> dict:
    from synthscan.config import load_config
    from synthscan.train import train

    recipe_copy = run.path("generator", "recipe.toml")
    recipe_copy.parent.mkdir(parents=True, exist_ok=True)
    write_text(recipe_copy, run.recipe.to_toml())
    config = load_config(recipe_copy)
    folder = train(run.split("generator-train"), run.path("generator", "model"), config, progress=run.progress)
    return {"model": str(folder)}


def synthetic_plan(run: Run) -> dict[str, int]:
    """Synthetic scans per condition: the largest mix of any task and seed, plus the recipe's extra."""
    train = read_manifest(run.split("train"))
    counts = real_classes(train).value_counts().to_dict()
    largest = plan_counts(counts, ratio=max(run.recipe["synthetic"]["ratios"]), balance="per-class",
                          conditions=CONDITIONS)
    extra = run.recipe["synthetic"]["extra_per_condition"]
    return {c: largest.get(c, 0) + extra for c in CONDITIONS if largest.get(c, 0) + extra > 0}


def stage_sample(run: Run) -> dict:
    from synthscan.model.pipeline import SynthscanModel
    from synthscan.model.conditions import DRAWN_AMYLOID_GRADES, folder_name
    from synthscan.model.guidance import guidance_scale, negative_guidance
    from synthscan.sample import SampleRequest, sample

    generator = run.recipe["generator"]
    folder = model_folder(run)
    model = SynthscanModel.from_pretrained(folder)
    frames, seed = [], generator["seed"]
    for condition, n in synthetic_plan(run).items():
        out = run.path("synthetic", condition)
        request = SampleRequest(condition=condition, n=n, out=out, seed=seed, batch_size=generator["batch_size"],
                                steps=generator["steps"] or None,
                                guidance_scale=generator["guidance_scale"] or None)
        result = sample(request, folder, progress=run.progress)
        run.say(f"sample: {result.summary()}")
        frame = read_manifest(out / "manifest.csv")
        frames.append(rebase_paths(frame, run.path("synthetic")))
        seed += n  # disjoint noise seeds per condition
    write_manifest(pd.concat(frames, ignore_index=True), run.path("synthetic", "manifest.csv"))
    config = model.info.get("sampler", {})
    guidance = generator["guidance_scale"] or {  # amyloidosis: each grade it draws without --grade
        folder_name(c, g): guidance_scale(config, c, g) for c in synthetic_plan(run)
        for g in (DRAWN_AMYLOID_GRADES if c == "amyloidosis" else (None,))}
    negative = {c: negative_guidance(config, c) for c in synthetic_plan(run)}
    run.update_info(generator={"source": generator["model"], "model_hash": model.hash, "guidance_scale": guidance,
                               "negative_guidance": {c: list(pair) for c, pair in negative.items() if pair[0]},
                               "guidance_interval": list(config.get("guidance_interval", [])),
                               "steps": generator["steps"] or config.get("steps")})
    return {"scans": int(sum(len(f) for f in frames)), "model_hash": model.hash}


def stage_audit(run: Run) -> dict:
    from synthscan.audit_report import audit

    settings = run.recipe["audit"]
    model = None
    if settings["encoder"]:
        from synthscan.model.pipeline import SynthscanModel

        model = SynthscanModel.from_pretrained(model_folder(run))
    out = run.path("audit")
    result = audit(run.path("synthetic", "manifest.csv"), run.split("generator-train"), out,
                   holdout_path=run.split("generator-holdout"), model=model,
                   false_positive_rate=settings["false_positive_rate"], grid=tuple(settings["grid"]),
                   progress=run.progress, overwrite=True)
    return {"memorization_detected": bool(result["memorization_detected"])}


def stage_fidelity(run: Run) -> dict:
    from evaluation.fidelity import JudgeConfig, evaluate, fit_judge, write_report

    settings = run.recipe["fidelity"]
    train = read_manifest(run.split("generator-train"))
    if settings["judge_train"] and len(train) > settings["judge_train"]:
        train = train.sample(n=settings["judge_train"], random_state=0).sort_index()
    judge = fit_judge(train, JudgeConfig(epochs=settings["judge_epochs"], members=settings["judge_members"]),
                      progress=run.progress)
    real = read_manifest(run.split("generator-holdout"))
    synthetic = read_manifest(run.path("synthetic", "manifest.csv"))
    report = evaluate(judge, real, synthetic, n=settings["n"], progress=run.progress,
                      model_hash=run.info()["generator"].get("model_hash", ""))
    write_report(report, run.path("fidelity"))
    run.say(report.summary().splitlines()[0] if report.summary() else "fidelity written")
    return {"detectability_auc": report.detectability_auc["estimate"]}


def classifier_jobs(run: Run) -> list[dict]:
    return [{"task": task, "arm": arm["name"], "seed": seed} for task in run.recipe["tasks"]
            for arm in run.recipe.arms for seed in run.recipe["seeds"]]


def _training_frames(run: Run, task: str, arm: dict, seed: int, train: pd.DataFrame):
    """Training and validation manifests of one classifier run (validation: real small-site scans)."""
    from evaluation.data import split_train_val

    fit, val = split_train_val(train, task, seed, run.recipe["classifier"]["val_fraction"])
    if arm["kind"] == "mixed":
        synthetic = read_manifest(run.path("synthetic", "manifest.csv"))
        fit = mix(fit, synthetic, ratio=arm["ratio"], balance="per-class", conditions=CONDITIONS, seed=seed,
                  out_root=run.path("data", "splits"))
    elif arm["kind"] == "upper-bound":
        ratio = max(run.recipe["synthetic"]["ratios"])
        n = int(round(len(fit) * (1 + ratio)))
        generator = read_manifest(run.split("generator-train"))
        if n > len(generator):
            raise BadInputError(f"the upper bound needs {n} generator-site scans, the generator site has "
                                f"{len(generator)}", run.split("generator-train"))
        fit = generator.sample(n=n, random_state=seed).sort_index()
    return fit, val


def stage_classifiers(run: Run) -> dict:
    from tqdm import tqdm

    from evaluation.classifier import ClassifierConfig
    from evaluation.predict import predict_manifests, validation_threshold
    from evaluation.training import train_run

    settings = run.recipe["classifier"]
    train = read_manifest(run.split("train"))
    arms = {arm["name"]: arm for arm in run.recipe.arms}
    tests = [run.split(name) for name in run.info()["test_sets"]]
    jobs = classifier_jobs(run)
    trained = 0
    for job in tqdm(jobs, desc="classifiers", unit="run", disable=not run.progress):
        folder = run.path("classifiers", job["task"], job["arm"], f"seed-{job['seed']}")
        if (folder / "test_predictions.csv").is_file():
            continue
        arm = arms[job["arm"]]
        config = ClassifierConfig(task=job["task"], arch=settings["arch"], grid=tuple(settings["grid"]),
                                  strategy=arm["strategy"], seed=job["seed"], arm=job["arm"],
                                  steps=settings["steps"], batch_size=settings["batch_size"], lr=settings["lr"],
                                  eval_every=settings["eval_every"], patience=settings["patience"],
                                  val_fraction=settings["val_fraction"])
        fit, val = _training_frames(run, job["task"], arm, job["seed"], train)
        train_run(config, fit, val, folder, run.cache, "cpu", progress=False)
        predictions = predict_manifests(folder, tests, job["task"], run.cache, "cpu", progress=False)
        threshold = validation_threshold(folder)
        predictions["threshold"] = threshold.value if threshold is not None else np.nan
        with atomic_path(folder / "test_predictions.csv") as tmp:
            predictions.to_csv(tmp, index=False, float_format="%.6g")
        trained += 1
    return {"runs": len(jobs), "trained_now": trained}


def stage_predictions(run: Run) -> dict:
    frames = []
    for job in classifier_jobs(run):
        path = run.path("classifiers", job["task"], job["arm"], f"seed-{job['seed']}", "test_predictions.csv")
        frames.append(pd.read_csv(path, dtype={"study_id": str, "site": str, "arm": str}))
    predictions = pd.concat(frames, ignore_index=True)
    with atomic_path(run.path("predictions.csv")) as tmp:
        predictions.to_csv(tmp, index=False, float_format="%.6g")
    return {"rows": int(len(predictions))}


def stage_survival(run: Run) -> dict:
    from evaluation.survival import SurvivalAnalysis
    from evaluation.survival_cohort import load_cohort
    from evaluation.survival_report import write_report

    outcomes = pd.concat([read_manifest(run.split(name)) for name in run.info()["test_sets"]], ignore_index=True)
    outcomes_path = run.split("test-outcomes")
    write_manifest(outcomes, outcomes_path)
    survival = run.info()["survival"]
    cohort = load_cohort(run.path("predictions.csv"), outcomes_path, task=survival["task"], arm=survival["arm"],
                         seed=survival["seed"])
    if run.path("survival").exists():
        shutil.rmtree(run.path("survival"))
    try:
        analysis = SurvivalAnalysis().fit(cohort.frame)
    except BadInputError as error:  # e.g. no events in one group: a result of this run, not bad input
        write_text(run.path("survival", "not_estimable.json"), json.dumps({"reason": str(error)}, indent=2) + "\n")
        return {"not_estimable": str(error)}
    write_report(analysis, cohort, run.path("survival"))
    return {"logrank_p": float(analysis.logrank_.p_value)}


def reader_accuracy(run: Run) -> tuple[float, str]:
    """Simulated readers' real/synthetic accuracy: a number from the recipe or the detectability classifier's."""
    from scipy.stats import norm

    setting = run.recipe["reader"]["accuracy"]
    if setting != "detectability":
        return float(setting), "set in the recipe"
    auc = json.loads(run.path("fidelity", "fidelity.json").read_text())["detectability_auc"]["estimate"]
    # equal-variance normal observer: AUC = Phi(d'/sqrt 2); unbiased two-class accuracy = Phi(d'/2)
    accuracy = float(norm.cdf(norm.ppf(min(max(auc, 0.5005), 0.9995)) / math.sqrt(2)))
    return accuracy, (f"an observer as good as the detectability classifier (AUC {auc:.3f}): accuracy "
                      f"Phi(Phi^-1(AUC)/sqrt 2) = {accuracy:.3f}, an upper bound for human readers")


def stage_reader(run: Run) -> dict:
    from reader_study import simulate
    from reader_study.key import read_key
    from reader_study.packet import StudySettings, make_study_from_manifests
    from reader_study.report import score_study

    settings = run.recipe["reader"]
    if settings["cases"] == 0:
        return {"skipped": "reader.cases = 0"}
    folder = run.path("reader")
    if folder.exists():
        shutil.rmtree(folder)
    study = StudySettings(n_cases=settings["cases"], n_readers=settings["readers"],
                          synthetic_fraction=settings["synthetic_fraction"])
    make_study_from_manifests(run.split("generator-holdout"), run.path("synthetic", "manifest.csv"),
                              folder / "packets", study, seed=0)
    accuracy, why = reader_accuracy(run)
    key = read_key(folder / "packets" / "key.json")
    model = simulate.ReaderModel(accuracy=accuracy, correlation=settings["correlation"])
    paths = simulate.write_simulated_responses(key, model, None, 0, folder / "responses")
    score_study(folder / "packets" / "key.json", [str(p) for p in paths], folder / "results")
    write_text(folder / "readers.json", json.dumps({"accuracy": accuracy, "why": why,
                                                    "correlation": settings["correlation"]}, indent=2) + "\n")
    return {"reader_accuracy": accuracy}


def stage_report(run: Run) -> dict:
    from evaluation.report import write_report

    markdown, html = write_report(run.out)
    return {"report": [markdown.name, html.name]}


RUNNERS = {"data": stage_data, "generator": stage_generator, "sample": stage_sample, "audit": stage_audit,
           "fidelity": stage_fidelity, "classifiers": stage_classifiers, "predictions": stage_predictions,
           "survival": stage_survival, "reader": stage_reader, "report": stage_report}


NEEDS = {"data": [], "generator": ["data"], "sample": ["data", "generator"], "audit": ["sample"],
         "fidelity": ["sample"], "classifiers": ["data", "sample"], "predictions": ["classifiers"],
         "survival": ["predictions"], "reader": ["sample", "fidelity"], "report": []}


def planned_stages(recipe: Recipe) -> list[str]:
    return [s for s in STAGES if s != "generator" or recipe["generator"]["model"] == "train"]


def reproduce(recipe_path, out, stages=None, progress: bool = True) -> Path:
    """Run (or continue) the recipe's stages into ``out``; return the Markdown report's path (if made)."""
    recipe = load_recipe(recipe_path)
    planned = planned_stages(recipe)
    if stages:
        unknown = sorted(set(stages) - set(planned))
        if unknown:
            raise BadInputError(f"unknown or unplanned stage(s) {unknown} (this recipe: {', '.join(planned)})")
    run = Run(recipe, out, progress)
    run.open()
    for stage in planned:
        if stages and stage not in stages:
            continue
        if run.done(stage):
            run.say(f"{stage}: done before, skipped")
            continue
        missing = [s for s in NEEDS[stage] if s in planned and not run.done(s)]
        if missing:
            raise BadInputError(f"stage {stage!r} needs stage(s) {missing} first", run.out)
        began = time.perf_counter()
        details = RUNNERS[stage](run)
        seconds = time.perf_counter() - began
        run.mark(stage, seconds, **details)
        run.say(f"{stage}: finished in {seconds:.0f} s")
    return run.path("report.md")
