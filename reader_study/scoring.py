"""Scoring a blinded real-vs-synthetic reader study: accuracy, agreement, diagnosis and image quality.

Every reader reads every case. All intervals are two-sided 95%.

- **Accuracy** at telling real from synthetic, per reader and pooled. Two intervals:
  ``wilson_low/high`` is the Wilson score interval (Wilson 1927) with reads treated as independent, as
  reader-study papers usually report it; ``ci_low/high`` is a percentile bootstrap that resamples readers
  and cases (two-way clustered; cases are resampled within real and within synthetic so the design's mix is
  kept). Reads of one case, or by one reader, are correlated, so the bootstrap interval is the honest one.
- **Fleiss' kappa** (Fleiss 1971, Psychol Bull 76:378) on the real/synthetic calls; point estimate as
  statsmodels' ``fleiss_kappa(method="fleiss")``. ``se_null`` is the large-sample standard error *under the
  null hypothesis kappa = 0* (Fleiss, Nee & Landis 1979, Psychol Bull 86:974; the one R's
  ``irr::kappam.fleiss`` uses for its z test): it tests agreement beyond chance and does not give an interval.
  The confidence interval ``ci_low/high`` is a percentile bootstrap over cases (readers fixed).
- **Cohen's kappa** (Cohen 1960) for every pair of readers; the number of cases on which readers disagree.
- **Diagnosis** (normal / metastasis / amyloidosis): accuracy against the intended condition on synthetic
  cases and against the labels on real cases, and their difference (clustered bootstrap).
- **Image quality** (Likert 1-5), synthetic vs real: Mann-Whitney U test on the reads (two-sided; it treats
  reads as independent) and the mean difference with a clustered bootstrap interval.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass

import numpy as np

from evaluation.wilson import wilson_interval as _wilson

from reader_study.responses import DIAGNOSES, SOURCES
from synthscan.errors import BadInputError


@dataclass(frozen=True)
class ReadMatrix:
    """All reads of a study as (readers, cases) arrays; every reader read every case."""

    readers: tuple[str, ...]
    case_ids: tuple[str, ...]
    truth_synthetic: np.ndarray      # (C,) bool
    truth_condition: np.ndarray      # (C,) index into DIAGNOSES
    truth_grade: np.ndarray          # (C,) amyloid grade, 0 = none or unknown
    judged_synthetic: np.ndarray     # (R, C) bool
    diagnosis: np.ndarray            # (R, C) index into DIAGNOSES
    grade: np.ndarray                # (R, C) amyloid grade called, 0 = none
    quality: np.ndarray              # (R, C) 1-5
    confidence: np.ndarray           # (R, C) 1-5

    @classmethod
    def from_frame(cls, reads) -> ReadMatrix:
        """From a tidy table with one row per read (see ``responses.read_responses``)."""
        frame = reads.sort_values(["reader", "case_id"])
        readers = tuple(sorted(frame["reader"].unique()))
        case_ids = tuple(sorted(frame["case_id"].unique()))
        if len(frame) != len(readers) * len(case_ids):
            raise ValueError(f"{len(frame)} reads but {len(readers)} readers x {len(case_ids)} cases: "
                             "every reader must read every case once")

        def matrix(column, convert):
            values = np.array([convert(v) for v in frame[column]])
            return values.reshape(len(readers), len(case_ids))

        first = frame[frame["reader"] == readers[0]]
        code = {name: i for i, name in enumerate(DIAGNOSES)}
        return cls(
            readers=readers, case_ids=case_ids,
            truth_synthetic=first["truth_synthetic"].to_numpy(dtype=int).astype(bool),
            truth_condition=np.array([code[c] for c in first["truth_condition"]]),
            truth_grade=first["truth_amyloid_grade"].fillna(0).to_numpy(dtype=int),
            judged_synthetic=matrix("judged_source", lambda v: v == "synthetic"),
            diagnosis=matrix("diagnosis", lambda v: code[v]),
            grade=matrix("amyloid_grade", lambda v: 0 if v is None or v != v else int(v)),
            quality=matrix("quality", int), confidence=matrix("confidence", int))

    @property
    def correct(self) -> np.ndarray:
        """(R, C) bool: the reader told real from synthetic correctly."""
        return self.judged_synthetic == self.truth_synthetic[None, :]


# ---------------------------------------------------------------- result records


@dataclass(frozen=True)
class Accuracy:
    """A proportion of reads with its Wilson and clustered-bootstrap 95% intervals."""

    label: str
    successes: int
    n: int
    estimate: float
    ci_low: float          # percentile bootstrap, readers and cases resampled (cases only for one reader)
    ci_high: float
    wilson_low: float      # Wilson score interval, reads treated as independent
    wilson_high: float
    p_value: float         # exact binomial test against chance (0.5), reads treated as independent

    def summary(self) -> str:
        return (f"{self.label}: {self.estimate:.3f} ({self.successes}/{self.n}); "
                f"95% CI bootstrap {self.ci_low:.3f}-{self.ci_high:.3f}, "
                f"Wilson {self.wilson_low:.3f}-{self.wilson_high:.3f}")


@dataclass(frozen=True)
class FleissKappa:
    """Fleiss' kappa with its null-hypothesis SE (z test) and a case-bootstrap 95% CI."""

    label: str
    estimate: float
    se_null: float         # Fleiss, Nee & Landis (1979) SE under kappa = 0: for the z test only
    z: float
    p_value: float         # two-sided, from z
    ci_low: float          # percentile bootstrap over cases, readers fixed
    ci_high: float
    n_cases: int
    n_readers: int

    def summary(self) -> str:
        return (f"{self.label}: Fleiss' kappa {self.estimate:.3f} (95% CI case bootstrap {self.ci_low:.3f}-"
                f"{self.ci_high:.3f}; SE under H0 {self.se_null:.3f}, z = {self.z:.2f}, p = {self.p_value:.2g})")


@dataclass(frozen=True)
class PairKappa:
    """Cohen's kappa between two readers."""

    reader_a: str
    reader_b: str
    estimate: float
    agreement: float       # observed proportion of cases with the same call

    def summary(self) -> str:
        return f"{self.reader_a} vs {self.reader_b}: Cohen's kappa {self.estimate:.3f} (agree {self.agreement:.2f})"


@dataclass(frozen=True)
class Difference:
    """Synthetic minus real, with a clustered-bootstrap 95% CI (and a test where one applies)."""

    label: str
    real: float
    synthetic: float
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float | None = None
    statistic: float | None = None   # Mann-Whitney U where p_value comes from that test

    def summary(self) -> str:
        test = "" if self.p_value is None else f", Mann-Whitney U = {self.statistic:.0f}, p = {self.p_value:.2g}"
        return (f"{self.label}: synthetic {self.synthetic:.3f} vs real {self.real:.3f}, difference "
                f"{self.estimate:+.3f} (95% CI {self.ci_low:+.3f} to {self.ci_high:+.3f}){test}")


@dataclass(frozen=True)
class StudyResult:
    """Everything ``score`` measures; ``summary()`` is the plain-text report."""

    n_readers: int
    n_cases: int
    n_synthetic_cases: int
    pooled: Accuracy
    per_reader: tuple[Accuracy, ...]
    synthetic_detected: Accuracy     # synthetic cases called synthetic (sensitivity for "synthetic")
    real_recognized: Accuracy        # real cases called real (specificity)
    called_synthetic: tuple[float, ...]   # per reader, fraction of all cases called synthetic
    fleiss: FleissKappa
    cohen: tuple[PairKappa, ...]
    disagreements: int               # cases on which not all readers gave the same real/synthetic call
    diagnosis_real: Accuracy
    diagnosis_synthetic: Accuracy
    diagnosis_difference: Difference
    diagnosis_fleiss: FleissKappa
    grade_real: Accuracy             # amyloid grade called exactly, among amyloidosis cases called amyloidosis
    grade_synthetic: Accuracy
    confusion_real: tuple[tuple[int, ...], ...]       # rows: intended condition, columns: reader's diagnosis
    confusion_synthetic: tuple[tuple[int, ...], ...]
    quality: Difference
    confidence: Difference
    quality_counts_real: tuple[int, ...]              # reads rating 1..5
    quality_counts_synthetic: tuple[int, ...]
    n_boot: int
    seed: int

    def summary(self) -> str:
        lines = [f"{self.n_readers} readers x {self.n_cases} cases ({self.n_synthetic_cases} synthetic)",
                 self.pooled.summary(), self.synthetic_detected.summary(), self.real_recognized.summary()]
        lines += ["  " + a.summary() for a in self.per_reader]
        lines += [self.fleiss.summary(),
                  f"cases with disagreement: {self.disagreements}/{self.n_cases}"]
        lines += ["  " + k.summary() for k in self.cohen]
        lines += [self.diagnosis_real.summary(), self.diagnosis_synthetic.summary(),
                  self.diagnosis_difference.summary(), self.diagnosis_fleiss.summary(),
                  self.grade_real.summary(), self.grade_synthetic.summary(),
                  self.quality.summary(), self.confidence.summary()]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return _plain(asdict(self))


def _plain(value):
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, (np.floating, float)):
        return None if not math.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


# ---------------------------------------------------------------- statistics


def wilson_interval(successes: int, n: int) -> tuple[float, float]:
    """Wilson score interval (Wilson 1927) as (low, high): evaluation/wilson.py's, shared with the metrics."""
    result = _wilson(successes, n)
    return result.ci_low, result.ci_high


def category_table(ratings: np.ndarray, n_categories: int) -> np.ndarray:
    """(readers, cases) category indices -> (cases, categories) counts, the layout of Fleiss (1971)."""
    ratings = np.asarray(ratings)
    return np.stack([(ratings == k).sum(axis=0) for k in range(n_categories)], axis=1)


def fleiss_kappa(table) -> float:
    """Fleiss' kappa of a (subjects, categories) table of counts, the same number of raters per subject."""
    return float(_fleiss_weighted(np.asarray(table, float), np.ones((1, len(table))))[0])


def _fleiss_weighted(table: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Fleiss' kappa for each row of case weights (B, subjects): bootstrap replicates in one pass."""
    raters = table.sum(axis=1)
    n = raters[0]
    if not np.all(raters == n) or n < 2:
        raise ValueError("Fleiss' kappa needs the same number (>= 2) of raters for every subject")
    agreement = ((table * table).sum(axis=1) - n) / (n * (n - 1))          # P_i
    total = weights.sum(axis=1)
    observed = weights @ agreement / total                                   # P-bar
    proportions = (weights @ table) / (total[:, None] * n)                  # p_j
    expected = (proportions ** 2).sum(axis=1)                                # P-bar_e
    with np.errstate(divide="ignore", invalid="ignore"):
        kappa = (observed - expected) / (1 - expected)
    return np.where(expected >= 1 - 1e-12, np.nan, kappa)


def fleiss_se_null(table) -> float:
    """Large-sample SE of Fleiss' kappa under kappa = 0 (Fleiss, Nee & Landis 1979, eq. 12)."""
    table = np.asarray(table, float)
    n_subjects, n = len(table), table.sum(axis=1)[0]
    p = table.sum(axis=0) / (n_subjects * n)
    pq = p * (1 - p)
    if pq.sum() == 0:
        return math.nan
    variance = 2 / (pq.sum() ** 2 * n_subjects * n * (n - 1)) * (pq.sum() ** 2 - (pq * (1 - 2 * p)).sum())
    return math.sqrt(variance)


def min_fleiss_kappa(unanimous: int, n_cases: int, n_readers: int, called_fraction: float = 0.5) -> float:
    """The smallest Fleiss' kappa of two-category calls with ``unanimous`` of ``n_cases`` cases unanimous.

    A unanimous case has agreement P_i = 1; any other case at least that of the most even split, so
    P-bar >= (u + (C - u) * P_even) / C; chance agreement is p^2 + (1 - p)^2 for the fraction p of one call.
    A check on published figures: cases with disagreement and kappa constrain each other.
    """
    r = n_readers
    low, high = r // 2, r - r // 2
    even = (low * (low - 1) + high * (high - 1)) / (r * (r - 1))
    observed = (unanimous + (n_cases - unanimous) * even) / n_cases
    chance = called_fraction ** 2 + (1 - called_fraction) ** 2
    return (observed - chance) / (1 - chance)


def cohen_kappa(a, b) -> float:
    """Cohen's kappa between two raters' labels (Cohen 1960); NaN when chance agreement is 1."""
    a, b = np.asarray(a), np.asarray(b)
    labels = np.union1d(a, b)
    observed = np.mean(a == b)
    expected = sum(np.mean(a == k) * np.mean(b == k) for k in labels)
    return math.nan if expected >= 1 - 1e-12 else float((observed - expected) / (1 - expected))


def bootstrap_weights(n_readers: int, strata: np.ndarray, n_boot: int, rng: np.random.Generator,
                      resample_readers: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Multiplicity weights of a two-way (reader x case) bootstrap; cases are resampled within strata.

    Returns ``(reader_weights (B, R), case_weights (B, C))``: how often each reader and case is drawn.
    """
    strata = np.asarray(strata)
    case_weights = np.zeros((n_boot, len(strata)))
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        draws = rng.integers(0, len(members), size=(n_boot, len(members)))
        for b in range(n_boot):
            case_weights[b] += np.bincount(members[draws[b]], minlength=len(strata))
    if resample_readers and n_readers > 1:
        draws = rng.integers(0, n_readers, size=(n_boot, n_readers))
        reader_weights = np.stack([np.bincount(d, minlength=n_readers) for d in draws]).astype(float)
    else:
        reader_weights = np.ones((n_boot, n_readers))
    return reader_weights, case_weights


def _weighted_mean(values, mask, reader_weights, case_weights) -> np.ndarray:
    """Mean of ``values`` over reads in ``mask`` for each bootstrap replicate."""
    values, mask = np.asarray(values, float), np.asarray(mask, float)
    numerator = np.einsum("br,rc,bc->b", reader_weights, values * mask, case_weights)
    denominator = np.einsum("br,rc,bc->b", reader_weights, mask, case_weights)
    with np.errstate(divide="ignore", invalid="ignore"):
        return numerator / denominator


def _percentiles(replicates: np.ndarray) -> tuple[float, float]:
    replicates = replicates[np.isfinite(replicates)]
    if not replicates.size:
        return math.nan, math.nan
    low, high = np.percentile(replicates, [2.5, 97.5])
    return float(low), float(high)


def _accuracy(label, hits, mask, reader_weights, case_weights) -> Accuracy:
    from scipy.stats import binomtest

    hits, mask = np.asarray(hits, bool), np.asarray(mask, bool)
    successes, n = int((hits & mask).sum()), int(mask.sum())
    low, high = _percentiles(_weighted_mean(hits, mask, reader_weights, case_weights))
    wilson = wilson_interval(successes, n)
    p_value = binomtest(successes, n, 0.5).pvalue if n else math.nan
    return Accuracy(label, successes, n, successes / n if n else math.nan, low, high, *wilson, float(p_value))


def _fleiss(label, ratings, n_categories, case_weights) -> FleissKappa:
    from scipy.stats import norm

    table = category_table(ratings, n_categories).astype(float)
    estimate = fleiss_kappa(table)
    se = fleiss_se_null(table)
    z = estimate / se if se and math.isfinite(se) and math.isfinite(estimate) else math.nan
    p_value = float(2 * norm.sf(abs(z))) if math.isfinite(z) else math.nan
    low, high = _percentiles(_fleiss_weighted(table, case_weights))
    return FleissKappa(label, estimate, se, z, p_value, low, high, len(table), int(table.sum(axis=1)[0]))


def _difference(label, values, real_mask, synthetic_mask, reader_weights, case_weights, test=False) -> Difference:
    values = np.asarray(values, float)
    real = float(values[real_mask].mean())
    synthetic = float(values[synthetic_mask].mean())
    replicates = (_weighted_mean(values, synthetic_mask, reader_weights, case_weights)
                  - _weighted_mean(values, real_mask, reader_weights, case_weights))
    low, high = _percentiles(replicates)
    p_value = statistic = None
    if test:
        from scipy.stats import mannwhitneyu

        result = mannwhitneyu(values[synthetic_mask], values[real_mask], alternative="two-sided")
        p_value, statistic = float(result.pvalue), float(result.statistic)
    return Difference(label, real, synthetic, synthetic - real, low, high, p_value, statistic)


def _confusion(truth: np.ndarray, called: np.ndarray, case_mask: np.ndarray) -> tuple[tuple[int, ...], ...]:
    k = len(DIAGNOSES)
    matrix = np.zeros((k, k), int)
    for row in called[:, case_mask]:
        np.add.at(matrix, (truth[case_mask], row), 1)
    return tuple(tuple(int(v) for v in r) for r in matrix)


def score(reads: ReadMatrix, n_boot: int = 2000, seed: int = 0) -> StudyResult:
    """Score a complete study (see the module docstring for every statistic)."""
    if n_boot < 100:
        raise BadInputError(f"--n-boot must be >= 100, got {n_boot}")
    rng = np.random.default_rng(seed)
    n_readers, n_cases = reads.judged_synthetic.shape
    synthetic = reads.truth_synthetic
    reader_weights, case_weights = bootstrap_weights(n_readers, synthetic, n_boot, rng)
    single_reader_weights = np.ones((n_boot, 1))
    correct = reads.correct
    everything = np.ones_like(correct, bool)
    synthetic_reads = np.broadcast_to(synthetic[None, :], correct.shape)

    per_reader = tuple(
        _accuracy(name, correct[r:r + 1], everything[r:r + 1], single_reader_weights, case_weights)
        for r, name in enumerate(reads.readers))
    cohen = tuple(
        PairKappa(reads.readers[a], reads.readers[b],
                  cohen_kappa(reads.judged_synthetic[a], reads.judged_synthetic[b]),
                  float(np.mean(reads.judged_synthetic[a] == reads.judged_synthetic[b])))
        for a, b in itertools.combinations(range(n_readers), 2))
    calls = reads.judged_synthetic
    diagnosed = reads.diagnosis == reads.truth_condition[None, :]
    amyloidosis = DIAGNOSES.index("amyloidosis")
    graded = diagnosed & (reads.truth_condition[None, :] == amyloidosis) & (reads.truth_grade[None, :] > 0)
    grade_hit = reads.grade == reads.truth_grade[None, :]
    fleiss_label = "real/synthetic calls"
    return StudyResult(
        n_readers=n_readers, n_cases=n_cases, n_synthetic_cases=int(synthetic.sum()),
        pooled=_accuracy("pooled accuracy (real vs synthetic)", correct, everything, reader_weights, case_weights),
        per_reader=per_reader,
        synthetic_detected=_accuracy("synthetic cases called synthetic", correct, synthetic_reads,
                                     reader_weights, case_weights),
        real_recognized=_accuracy("real cases called real", correct, ~synthetic_reads, reader_weights, case_weights),
        called_synthetic=tuple(float(v) for v in calls.mean(axis=1)),
        fleiss=(_fleiss(fleiss_label, calls.astype(int), len(SOURCES), case_weights) if n_readers > 1
                else _undefined_kappa(fleiss_label, n_cases)),
        cohen=cohen,
        disagreements=int((calls.any(axis=0) & ~calls.all(axis=0)).sum()),
        diagnosis_real=_accuracy("diagnosis correct, real cases", diagnosed, ~synthetic_reads,
                                 reader_weights, case_weights),
        diagnosis_synthetic=_accuracy("diagnosis = intended condition, synthetic cases", diagnosed, synthetic_reads,
                                      reader_weights, case_weights),
        diagnosis_difference=_difference("diagnostic accuracy", diagnosed, ~synthetic_reads, synthetic_reads,
                                         reader_weights, case_weights),
        diagnosis_fleiss=(_fleiss("diagnoses", reads.diagnosis, len(DIAGNOSES), case_weights) if n_readers > 1
                          else _undefined_kappa("diagnoses", n_cases)),
        grade_real=_accuracy("amyloid grade exact, real cases", grade_hit, graded & ~synthetic_reads,
                             reader_weights, case_weights),
        grade_synthetic=_accuracy("amyloid grade = intended grade, synthetic cases", grade_hit,
                                  graded & synthetic_reads, reader_weights, case_weights),
        confusion_real=_confusion(reads.truth_condition, reads.diagnosis, ~synthetic),
        confusion_synthetic=_confusion(reads.truth_condition, reads.diagnosis, synthetic),
        quality=_difference("image quality (1-5)", reads.quality, ~synthetic_reads, synthetic_reads,
                            reader_weights, case_weights, test=True),
        confidence=_difference("confidence (1-5)", reads.confidence, ~synthetic_reads, synthetic_reads,
                               reader_weights, case_weights, test=True),
        quality_counts_real=tuple(int((reads.quality[~synthetic_reads] == k).sum()) for k in range(1, 6)),
        quality_counts_synthetic=tuple(int((reads.quality[synthetic_reads] == k).sum()) for k in range(1, 6)),
        n_boot=n_boot, seed=seed)


def _undefined_kappa(label: str, n_cases: int) -> FleissKappa:
    nan = math.nan
    return FleissKappa(label + " (one reader: undefined)", nan, nan, nan, nan, nan, nan, n_cases, 1)
