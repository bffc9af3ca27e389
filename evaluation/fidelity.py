"""Fidelity of a generator, measured by a judge trained on real scans (DESIGN.md section 5).

Judge: a small 3-class CNN (normal / metastasis / amyloidosis grade >= 2) trained on real scans of the
generator site's training split, at the generator's canonical grid and intensity transform
(synthscan/preprocess.py), fitted ``members`` times with consecutive seeds. Each network's 256-d penultimate
activations are a feature space: the figures below in feature space are computed per network and
summarised by their median.

Figures (each next to its real-data reference):
- conditional accuracy: the judge's accuracy on samples of each condition, beside its accuracy on held-out
  real scans of that class (the "classification accuracy score" idea of Ravuri & Vinyals 2019, used here as
  in Haberl et al. 2025: does a synthetic metastasis scan look like a metastasis scan to a classifier); each
  with a Wilson CI, and their difference with Newcombe's hybrid score CI (Newcombe 1998, Stat Med 17:873,
  method 10; statsmodels);
- where the held-out manifest gives lesion counts, the judge's accuracy on real metastatic scans per Soloway
  extent of disease (EOD 1-4): how conspicuous a metastatic scan must be for the judge to see it, the ceiling
  of any generator's conditional accuracy for metastasis;
- Frechet distance in judge features (Heusel et al. 2017, "GANs trained by a two time-scale update rule...",
  NeurIPS; FID with the judge in place of Inception, as domain-specific FDs are recommended for medical
  images, e.g. Osuala et al. 2023) between n real held-out scans and n samples with the real class mix,
  beside the distance between two disjoint real held-out sets of n, per judge network, and the median of
  their ratios (no bootstrap CI: resampling with replacement inflates both distances by its duplicates, so a
  bootstrap interval misses the estimate itself; the spread over judge networks is the larger uncertainty);
- precision and recall of the k-NN manifolds (Kynkaenniemi et al. 2019, "Improved precision and recall
  metric for assessing generative models", NeurIPS; k = 3);
- detectability: out-of-fold AUC (DeLong CI) of a logistic regression telling real from synthetic in judge
  features (0.5 = indistinguishable to it);
- physics statistics per condition: total counts, bladder and kidney count fractions, heart-to-contralateral
  ratio (evaluation/hcl.py), number of focal hot spots; median [IQR] for real and synthetic.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from evaluation.wilson import wilson_interval
from synthscan.errors import BadInputError
from synthscan.model.conditions import class_from_labels, judge_class_of
from synthscan.model.critic import ScanClassifier, fit_classifier

JUDGE_CLASSES = ("normal", "metastasis", "amyloidosis")
JUDGE_FORMAT = "synthscan-judge/3"
EXTENT_NAMES = ("EOD 1 (1-5 lesions)", "EOD 2 (6-20)", "EOD 3 (> 20)", "EOD 4 (superscan)")


def judge_class(metastasis, amyloid_grade) -> int:
    """0 normal, 1 metastasis, 2 amyloidosis (grade >= 2); -1 for scans outside the three classes."""
    return judge_class_of(class_from_labels(metastasis, amyloid_grade))


def extent_of_disease(lesion_count, superscan=0) -> int | None:
    """Soloway's extent of disease of a metastatic bone scan (Soloway et al. 1988, Cancer 61:195): 1 fewer than
    6 lesions, 2 6-20, 3 more than 20 short of a superscan, 4 superscan; None when the lesion count is unknown."""
    count = pd.to_numeric(lesion_count, errors="coerce")  # the manifest reader has checked the column
    if pd.isna(count) or count < 1:
        return None
    if pd.to_numeric(superscan, errors="coerce") == 1:
        return 4
    return 1 if count <= 5 else 2 if count <= 20 else 3


def load_canonical(frame: pd.DataFrame, rows: int = 256, cols: int = 64, progress: bool = True):
    """Canonical counts ``(N, V, rows, cols)`` and native anterior pixel spacing of a manifest's scans."""
    from tqdm import tqdm

    from synthscan.io.dicom import read_scan
    from synthscan.io.manifest import scan_path
    from synthscan.preprocess import canonical_counts

    views = tuple(str(frame["views"].iloc[0]).split("+"))
    counts = np.zeros((len(frame), len(views), rows, cols), np.float32)
    spacing = np.zeros((len(frame), 2))
    for i, index in enumerate(tqdm(frame.index, desc="reading scans", unit="scan", disable=not progress, leave=False)):
        scan = read_scan(scan_path(frame, index), views=views)
        counts[i] = canonical_counts(scan, rows, cols)
        spacing[i] = np.array(scan.pixel_spacing_mm) * np.array(scan.shape) / (rows, cols)
    return counts, spacing


@dataclass(frozen=True)
class JudgeConfig:
    rows: int = 256
    cols: int = 64
    width: int = 16
    epochs: int = 15
    batch_size: int = 32
    lr: float = 2e-3
    seed: int = 0
    thinning: float = 0.3  # augmentation: each training scan keeps a random share in [thinning, 1] of its counts
    members: int = 3  # networks fitted with seeds seed, seed + 1, ...: the Frechet ratio is reported per member


class Judge:
    """Fit on canonical counts and judge classes; ``predict``/``features`` on canonical counts.

    The judge is an ensemble of ``config.members`` networks that differ only in their seed: it predicts with
    their mean probabilities, and ``features`` puts theirs side by side. One network's feature space is an
    accident of its initialisation (the same synthetic scans were 6.2x and 27.5x as far from real ones as real
    scans from each other in two networks fitted with seeds 0 and 1; benchmarks/RESULTS.md), so Frechet ratios are
    computed per member and reported with their median, as are the other figures in feature space.
    """

    def __init__(self, config: JudgeConfig = JudgeConfig()):
        self.config = config

    def _inputs(self, counts) -> torch.Tensor:
        from synthscan.preprocess import to_network

        return to_network(torch.as_tensor(counts))

    def fit(self, counts: np.ndarray, labels: np.ndarray, progress: bool = True) -> "Judge":
        if len(np.unique(labels[labels >= 0])) < 3:
            raise BadInputError("the judge needs real scans of all three classes (normal, metastasis, amyloidosis "
                                "grade >= 2) in its training manifest")
        c = self.config
        self.networks_ = [fit_classifier(counts, labels, len(JUDGE_CLASSES), c.width, c.epochs, c.batch_size, c.lr,
                                         c.seed + m, c.thinning, progress, desc=f"training judge {m + 1}/{c.members}")
                          for m in range(c.members)]
        return self

    @torch.no_grad()
    def member_outputs(self, counts) -> tuple[list[np.ndarray], np.ndarray]:
        """Each member's features and the members' mean class probabilities, from one pass of each network
        (its class scores are its head on its features)."""
        features, probabilities = [[] for _ in self.networks_], []
        for start in range(0, len(counts), 128):
            x = self._inputs(counts[start:start + 128])
            batch = [network.features(x) for network in self.networks_]
            probabilities.append(torch.stack([network.head(f).softmax(-1)
                                              for network, f in zip(self.networks_, batch)]).mean(0))
            for parts, f in zip(features, batch):
                parts.append(f)
        return [torch.cat(parts).numpy() for parts in features], torch.cat(probabilities).numpy()

    def predict_proba(self, counts) -> np.ndarray:
        return self.member_outputs(counts)[1]

    def predict(self, counts) -> np.ndarray:
        return self.predict_proba(counts).argmax(1)

    def member_features(self, counts) -> list[np.ndarray]:
        return self.member_outputs(counts)[0]

    def features(self, counts) -> np.ndarray:
        """The members' features side by side: one feature space (synthscan audit --judge)."""
        return np.concatenate(self.member_features(counts), axis=1)

    def save(self, folder) -> Path:
        from synthscan.io.atomic import save_weights, write_text

        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / "config.json", json.dumps({"format": JUDGE_FORMAT, "judge": asdict(self.config),
                                                       "network": self.networks_[0].config}, indent=2) + "\n")
        save_weights(torch.nn.ModuleList(self.networks_), folder / "model.safetensors")
        return folder

    @classmethod
    def load(cls, folder) -> "Judge":
        from safetensors.torch import load_file

        folder = Path(folder)
        try:
            config = json.loads((folder / "config.json").read_text())
            found = config["format"]
            assert str(found).startswith("synthscan-judge/")
        except (OSError, ValueError, KeyError, TypeError, AssertionError):
            raise BadInputError("not a synthscan judge folder (config.json, model.safetensors)", folder) from None
        if found != JUDGE_FORMAT:
            raise BadInputError(f"judge of an older format ({found}, this synthscan reads {JUDGE_FORMAT}): fit a "
                                "new one with --train", folder / "config.json")
        judge = cls(JudgeConfig(**config["judge"]))
        networks = torch.nn.ModuleList(ScanClassifier(**config["network"]) for _ in range(judge.config.members))
        networks.load_state_dict(load_file(str(folder / "model.safetensors")))
        judge.networks_ = [network.eval() for network in networks]
        return judge


# ------------------------------------------------------------------------------------------ distances


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)) of two feature sets (rows = samples)."""
    from scipy import linalg

    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    with warnings.catch_warnings():  # small sets (tests) give singular covariances; the formula still holds
        warnings.simplefilter("ignore", linalg.LinAlgWarning)
        root = np.real(linalg.sqrtm(cov_a @ cov_b))
    return float(((mu_a - mu_b) ** 2).sum() + np.trace(cov_a + cov_b - 2 * root))


def precision_recall(real: np.ndarray, fake: np.ndarray, k: int = 3) -> tuple[float, float]:
    """k-NN manifold precision (fakes inside the real manifold) and recall (reals inside the fake one)."""
    from scipy.spatial.distance import cdist

    def radii(points):
        distances = cdist(points, points)
        return np.sort(distances, axis=1)[:, k]  # column 0 is the point itself

    real_radii, fake_radii = radii(real), radii(fake)
    between = cdist(fake, real)
    precision = float((between <= real_radii[None, :]).any(axis=1).mean())
    recall = float((between.T <= fake_radii[None, :]).any(axis=1).mean())
    return precision, recall


def detectability(real: np.ndarray, fake: np.ndarray, seed: int = 0):
    """Out-of-fold AUC (DeLong CI) of a logistic regression separating real (0) from synthetic (1) features."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from evaluation.metrics import delong_auc

    features = np.concatenate([real, fake])
    labels = np.r_[np.zeros(len(real), int), np.ones(len(fake), int)]
    classifier = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=2000))
    folds = StratifiedKFold(n_splits=5, shuffle=True, random_state=seed)
    scores = cross_val_predict(classifier, features, labels, cv=folds, method="predict_proba")[:, 1]
    return delong_auc(labels, scores)


# ------------------------------------------------------------------------------------------ physics


def physics_statistics(counts: np.ndarray, spacing_mm: np.ndarray) -> pd.DataFrame:
    """Per scan: total counts, bladder and kidney count fractions, H/CL ratio, focal hot spots (canonical grid).

    Regions by fractions of body length from the head (evaluation/data.py ``body_extent``): bladder 45-60%
    (central third of the body width, anterior view), kidneys 26-40% (posterior view, lateral to the central
    fifth). Hot spots: connected regions at least 3x their local background (Gaussian, sigma 6 px) and above
    the 90th percentile of body pixels, outside the bladder box, counted on the mean of the views.
    """
    from scipy import ndimage

    from evaluation.data import body_extent, body_midline
    from evaluation.hcl import hcl_ratio

    rows = []
    for scan, spacing in zip(counts, spacing_mm):
        anterior, posterior = scan[0], scan[-1]
        total = float(scan.sum())
        top, bottom = body_extent(scan)
        length = bottom + 1 - top
        midline, half = body_midline(scan, (top, bottom))

        def band(lo, hi):
            return slice(int(top + lo * length), int(top + hi * length) + 1)

        centre = slice(int(midline - half / 3), int(midline + half / 3) + 1)
        bladder = float(anterior[band(0.45, 0.60), centre].sum() / max(anterior.sum(), 1))
        kidney_rows = posterior[band(0.26, 0.40)]
        spine = np.abs(np.arange(scan.shape[-1]) - midline) < half / 5
        kidneys = float(kidney_rows[:, ~spine].sum() / max(posterior.sum(), 1))
        hcl = hcl_ratio(anterior, spacing).ratio
        image = scan.mean(axis=0).astype(float)
        background = ndimage.gaussian_filter(image, 6)
        body = image[image > 0.05 * image.max()]
        hot = (image > 3 * background) & (image > np.percentile(body, 90) if body.size else False)
        hot[band(0.45, 0.60), centre] = False
        _, n_spots = ndimage.label(hot)
        rows.append({"total_counts": total, "bladder_fraction": bladder, "kidney_fraction": kidneys,
                     "hcl_ratio": float(hcl), "hot_spots": int(n_spots)})
    return pd.DataFrame(rows)


def _median_iqr(values: pd.Series) -> str:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return f"{q2:.3g} [{q1:.3g}-{q3:.3g}]"


# ------------------------------------------------------------------------------------------ report


@dataclass(frozen=True)
class FidelityReport:
    """All fidelity figures of one generator; ``summary()`` gives the Markdown report."""

    judge_accuracy_real: dict  # class -> {"accuracy", "correct", "n", "ci_low", "ci_high"} plus "overall"
    conditional_accuracy: dict  # condition -> the same
    accuracy_difference: dict  # condition -> synthetic minus real {"estimate", "ci_low", "ci_high"}
    frechet_distance: list  # per judge member: synthetic vs real
    frechet_distance_real: list  # per judge member: two disjoint real held-out sets
    n_frechet: int
    precision: float  # median over judge members
    recall: float  # median over judge members
    detectability_auc: dict  # estimate, ci_low, ci_high of the member with the median AUC (the upper one if two)
    detectability_aucs: list  # per judge member
    physics: dict  # condition -> statistic -> {"real", "synthetic"} (median [IQR])
    model_hash: str = ""
    judge_by_extent: dict = field(default_factory=dict)  # EOD name -> the judge on real metastatic scans of it

    def summary(self) -> str:
        lines = [f"# Fidelity of generator {self.model_hash[:8] or '(samples)'}", "",
                 "| condition | judge accuracy, real held-out | conditional accuracy, synthetic | synthetic - real |",
                 "|---|---|---|---|"]
        for name in (*JUDGE_CLASSES, "overall"):
            real, fake = self.judge_accuracy_real.get(name), self.conditional_accuracy.get(name)
            cell = lambda r: _proportion_text(r) if r and r["n"] else "-"  # noqa: E731
            d = self.accuracy_difference.get(name)
            difference = f"{d['estimate']:+.3f} ({d['ci_low']:+.3f} to {d['ci_high']:+.3f})" if d else "-"
            lines.append(f"| {name} | {cell(real)} | {cell(fake)} | {difference} |")
        if self.judge_by_extent:
            lines += ["", "The judge on real metastatic scans by extent of disease (Soloway 1988): " + ", ".join(
                f"{name} {_proportion_text(r)}" for name, r in self.judge_by_extent.items()) + "."]
        d = self.detectability_auc
        members = ", ".join(f"{fake:.3g} vs {real:.3g} ({ratio:.2f}x)" for fake, real, ratio in
                            zip(self.frechet_distance, self.frechet_distance_real, self.frechet_ratios))
        lines += ["", "Accuracies with 95% Wilson CIs; differences with 95% Newcombe CIs. The judge is an ensemble "
                      f"of {len(self.frechet_ratios)} networks (mean probabilities).", "",
                  f"- Frechet distance in judge features (n={self.n_frechet}), synthetic vs real and real vs real, "
                  f"per judge network: {members}; median ratio **{self.frechet_ratio:.2f}x**",
                  f"- precision {self.precision:.3f}, recall {self.recall:.3f} (k-NN manifolds, k=3; medians over "
                  "the networks)",
                  f"- real-vs-synthetic detectability (logistic regression on judge features, 5-fold): AUC "
                  f"{d['estimate']:.3f} (95% CI {d['ci_low']:.3f}-{d['ci_high']:.3f}), the median network's of "
                  f"{', '.join(f'{auc:.3f}' for auc in self.detectability_aucs)}", "",
                  "| condition | statistic | real median [IQR] | synthetic median [IQR] |", "|---|---|---|---|"]
        for condition, stats in self.physics.items():
            for name, cells in stats.items():
                lines.append(f"| {condition} | {name} | {cells['real']} | {cells['synthetic']} |")
        return "\n".join(lines) + "\n"

    @property
    def frechet_ratios(self) -> list[float]:
        return [fake / max(real, 1e-12) for fake, real in zip(self.frechet_distance, self.frechet_distance_real)]

    @property
    def frechet_ratio(self) -> float:
        """The median over judge networks of synthetic-vs-real over real-vs-real Frechet distance."""
        return float(np.median(self.frechet_ratios))


def _proportion(correct, n) -> dict:
    p = wilson_interval(int(correct), int(n))
    return {"accuracy": p.estimate, "correct": p.successes, "n": p.total, "ci_low": p.ci_low, "ci_high": p.ci_high}


def _proportion_text(r: dict) -> str:
    return f"{r['accuracy']:.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f}; n={r['n']})"


def _accuracy(predicted: np.ndarray, labels: np.ndarray) -> dict:
    result = {name: _proportion((predicted[labels == c] == c).sum(), (labels == c).sum())
              for c, name in enumerate(JUDGE_CLASSES)}
    result["overall"] = _proportion((predicted == labels).sum(), len(labels))
    return result


def _by_extent(predicted: np.ndarray, labels: np.ndarray, frame: pd.DataFrame) -> dict:
    """The judge's accuracy on the metastatic scans of ``frame`` per extent of disease, where the manifest gives
    lesion counts (and, for EOD 4, the phantom's ``superscan`` flag)."""
    if "lesion_count" not in frame:
        return {}
    superscan = frame["superscan"] if "superscan" in frame else pd.Series(0, index=frame.index)
    extent = np.array([extent_of_disease(count, flag) or 0 for count, flag in zip(frame["lesion_count"], superscan)])
    metastatic = labels == 1
    return {name: _proportion((predicted[rows] == 1).sum(), rows.sum())
            for grade, name in enumerate(EXTENT_NAMES, start=1) if (rows := metastatic & (extent == grade)).any()}


def _differences(synthetic: dict, real: dict) -> dict:
    """Synthetic minus real accuracy per condition, with Newcombe's hybrid score interval (independent samples)."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    result = {}
    for name, fake in synthetic.items():
        reference = real.get(name)
        if fake["n"] and reference and reference["n"]:
            low, high = confint_proportions_2indep(fake["correct"], fake["n"], reference["correct"], reference["n"],
                                                   method="newcomb", compare="diff")
            result[name] = {"estimate": fake["accuracy"] - reference["accuracy"], "ci_low": float(low),
                            "ci_high": float(high)}
    return result


def _labelled(frame: pd.DataFrame) -> tuple[pd.DataFrame, np.ndarray]:
    labels = np.array([judge_class(m, g) for m, g in zip(frame["metastasis"], frame["amyloid_grade"])])
    kept = frame[labels >= 0].copy()
    kept.attrs = dict(frame.attrs)  # the manifest's folder: paths are relative to it
    return kept, labels[labels >= 0]


def evaluate(judge: Judge, real: pd.DataFrame, synthetic: pd.DataFrame, n: int = 1000, seed: int = 0,
             progress: bool = True, model_hash: str = "") -> FidelityReport:
    """Score synthetic scans against held-out real scans with a fitted judge."""
    rows, cols = judge.config.rows, judge.config.cols
    real, real_labels = _labelled(real)
    synthetic, fake_labels = _labelled(synthetic)
    if len(real) < 4 or len(synthetic) < 4:
        raise BadInputError("need at least 4 real and 4 synthetic scans of the three judge classes")
    real_counts, real_spacing = load_canonical(real, rows, cols, progress)
    fake_counts, fake_spacing = load_canonical(synthetic, rows, cols, progress)
    (real_members, real_proba), (fake_members, fake_proba) = judge.member_outputs(real_counts), judge.member_outputs(
        fake_counts)
    real_predicted = real_proba.argmax(1)
    real_accuracy = _accuracy(real_predicted, real_labels)
    conditional = _accuracy(fake_proba.argmax(1), fake_labels)

    rng = np.random.default_rng(seed)
    order = rng.permutation(len(real))
    n_fd = min(n, len(real) // 2)
    set_a, set_b = order[:n_fd], order[n_fd:2 * n_fd]
    matched = []  # synthetic scans with the class mix of real set A
    for c in range(3):
        pool = rng.permutation(np.flatnonzero(fake_labels == c))
        matched += pool[: int((real_labels[set_a] == c).sum())].tolist()
    matched = np.array(matched)
    pairs = [(r[set_a], f[matched]) for r, f in zip(real_members, fake_members)]  # per judge member
    fd = [frechet_distance(r, f) for r, f in pairs]
    fd_real = [frechet_distance(r[set_a], r[set_b]) for r in real_members]
    precision, recall = np.median([precision_recall(r, f) for r, f in pairs], axis=0)
    aucs = [detectability(r, f, seed) for r, f in pairs]
    auc = sorted(aucs, key=lambda a: a.estimate)[len(aucs) // 2]

    real_physics = physics_statistics(real_counts, real_spacing)
    fake_physics = physics_statistics(fake_counts, fake_spacing)
    physics = {}
    for c, name in enumerate(JUDGE_CLASSES):
        if (real_labels == c).any() and (fake_labels == c).any():
            physics[name] = {stat: {"real": _median_iqr(real_physics[stat][real_labels == c]),
                                    "synthetic": _median_iqr(fake_physics[stat][fake_labels == c])}
                             for stat in real_physics.columns}
    return FidelityReport(real_accuracy, conditional, _differences(conditional, real_accuracy), fd, fd_real,
                          int(len(matched)), float(precision), float(recall),
                          {"estimate": auc.estimate, "ci_low": auc.ci_low, "ci_high": auc.ci_high},
                          [a.estimate for a in aucs], physics, model_hash,
                          _by_extent(real_predicted, real_labels, real))


def fit_judge(train: pd.DataFrame, config: JudgeConfig = JudgeConfig(), progress: bool = True) -> Judge:
    """Fit the judge on the real scans of a training manifest (rows outside the three classes skipped)."""
    train, labels = _labelled(train)
    counts, _ = load_canonical(train, config.rows, config.cols, progress)
    return Judge(config).fit(counts, labels, progress)


def write_report(report: FidelityReport, out) -> Path:
    from synthscan.io.atomic import write_text

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = {**asdict(report), "frechet_ratios": report.frechet_ratios, "frechet_ratio": report.frechet_ratio}
    write_text(out / "fidelity.json", json.dumps(figures, indent=2) + "\n")
    write_text(out / "fidelity.md", report.summary())
    return out / "fidelity.md"
