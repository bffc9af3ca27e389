"""Nearest-neighbour memorization audit: is a synthetic scan a near-copy of a training scan?

For every synthetic scan we find its nearest training scan in one or two spaces and compare that distance
with the distances between *independent* real scans, which bound how close two different patients get.

**Pixel space** (always). A scan is aligned before comparison (:func:`align_scan`): registered along the
body axis to the top of its body extent (head, from the row profile of counts), at a physical scale taken
from the pixel spacing (a fixed 2000 x 600 mm window, so matrices and sites compare, and a copy that is
shifted along the table or cropped at the feet still lines up), centred across on the body's lateral
centre of mass, resampled (area-weighted) to a small grid (default 2 x 128 x 32), normalised to a mean
pixel of 1 and square-rooted (the variance-stabilising transform of Poisson counts, Anscombe 1948).
Distance = 1 - normalised cross-correlation (NCC) of the two images, maximised over small residual
translations (default +-2 grid rows, +-1 grid column, about +-30 and +-19 mm) of the nearest candidates.
The generator's canonical grid (synthscan/preprocess.py) keeps the whole field of view without
registration; the audit registers instead, so that a copy moved on the table is still found.

**Feature space** (optional): any function ``features(scans) -> (n, d) array`` (the generator's own encoder,
synthscan/membership.py:encoder_features, or the fidelity judge passed in by the caller: synthscan does not
import evaluation/). Distance = 1 - cosine similarity of features centred on the training mean.

**Near-copy rules.** Two criteria per space: the nearest-neighbour distance d1, and the memorization
ratio d1 / d2 of the nearest to the second-nearest training scan of *another patient* (Yoon et al. 2023,
"Diffusion probabilistic models generalize when they fail to memorize", ICML workshop; Gu et al. 2023,
arXiv:2310.02664, call a sample memorized when d1/d2 < 1/3; excluding the nearest patient's other studies
keeps repeat studies of one patient from hiding a copy). The ratio also catches a *blurred* copy (a generator
that reproduces a training scan through a lossy autoencoder): in the tests, copies blurred to 24 mm FWHM
have d1 above the distance threshold but d1/d2 near 0.3. Each rule's threshold is calibrated on real-vs-real
values (held-out real scans to the training set, or, without a held-out set, each training scan to the
training scans of *other* patients): the k-th smallest of n reference values, k = max(1, floor(q (n + 1))),
with q the false-positive rate split evenly across rules. A scan is flagged when any rule fires. If
synthetic scans are exchangeable with real ones (no memorization), a rule flags a scan with probability
k / (n + 1) (a conformal p-value argument: Vovk, Gammerman & Shafer 2005, "Algorithmic Learning in a Random
World") and the number it flags among m follows BetaBinomial(m, k, n + 1 - k); exact and Poisson-resampled
copies sit at the noise floor, far below every real-vs-real distance.

The extraction attack this guards against: Carlini et al. 2023, "Extracting training data from diffusion
models", USENIX Security.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from synthscan.errors import BadInputError
from synthscan.scan import Scan

DEFAULT_GRID = (128, 32)
DEFAULT_SHIFTS = tuple((dr, dc) for dr in range(-2, 3) for dc in range(-1, 2))
DEFAULT_FALSE_POSITIVE_RATE = 0.01
WINDOW_MM = (2000.0, 600.0)  # compared field: body axis from just above the head, and across the body
HEAD_MARGIN_MM = 20.0
BODY_FRACTION = 0.05  # a row belongs to the body when its smoothed counts exceed this share of the 95th pct
CANDIDATES = 16  # nearest candidates per query re-ranked with translations
PIXEL, FEATURES = "pixel", "features"
CRITERIA = ("distance", "ratio")
INDEX_FORMAT = "synthscan-audit-index/1"

Features = Callable[[Sequence[Scan]], np.ndarray]


# ------------------------------------------------------------------------------------------- alignment

def body_extent(counts: np.ndarray, fraction: float = BODY_FRACTION) -> tuple[float, float]:
    """First and one-past-last row of the body along the body axis (the whole field if none is found)."""
    profile = counts.sum(axis=(0, 2), dtype=np.float64)
    rows = len(profile)
    width = max(3, rows // 64)
    smooth = np.convolve(profile, np.ones(width) / width, mode="same")
    level = fraction * np.percentile(smooth, 95)
    body = np.flatnonzero(smooth > level)
    if level <= 0 or body.size == 0 or body[-1] + 1 - body[0] < 0.1 * rows:
        return 0.0, float(rows)
    return float(body[0]), float(body[-1] + 1)


def area_matrix(n_in: int, n_out: int, start: float, stop: float) -> np.ndarray:
    """``(n_out, n_in)`` weights averaging the input pixels over ``n_out`` equal bins of ``[start, stop)``.

    Pixel i covers ``[i, i + 1)``; parts of a bin outside ``[0, n_in)`` count as zeros.
    """
    edges = start + (stop - start) * np.arange(n_out + 1) / n_out
    pixels = np.arange(n_in)
    overlap = np.minimum(edges[1:, None], pixels[None] + 1) - np.maximum(edges[:-1, None], pixels[None])
    return np.clip(overlap, 0, None) / ((stop - start) / n_out)


def align_scan(scan: Scan, grid: tuple[int, int] = DEFAULT_GRID, window_mm: tuple[float, float] = WINDOW_MM) -> np.ndarray:
    """The scan registered to the top of its body on ``grid``: sqrt of counts normalised to a mean pixel of 1.

    The window spans ``window_mm`` (body axis, across): from ``HEAD_MARGIN_MM`` above the top of the body
    down, and centred on the body's lateral centre of mass; parts outside the field are zeros. Returns
    float32 ``(V, rows, cols)``.
    """
    counts = scan.counts
    total = float(counts.sum(dtype=np.float64))
    if total <= 0:
        raise BadInputError("a scan has no counts: it cannot be aligned")
    height, width = scan.shape
    row_mm, col_mm = scan.pixel_spacing_mm
    top = body_extent(counts)[0] - HEAD_MARGIN_MM / row_mm
    columns = counts.sum(axis=(0, 1), dtype=np.float64)
    centre = float((columns * (np.arange(width) + 0.5)).sum() / total)
    half_width = window_mm[1] / col_mm / 2
    row_weights = area_matrix(height, grid[0], top, top + window_mm[0] / row_mm).astype(np.float32)
    col_weights = area_matrix(width, grid[1], centre - half_width, centre + half_width).astype(np.float32)
    # One 2-D product per side (a stacked 3-D matmul misses the fast BLAS path).
    narrowed = (counts.reshape(-1, width) @ np.ascontiguousarray(col_weights.T)).reshape(len(counts), height, -1)
    image = np.clip(row_weights @ narrowed, 0, None)
    image *= image.size / max(float(image.sum(dtype=np.float64)), 1e-12)
    return np.sqrt(image, dtype=np.float32)


def shift_images(images: np.ndarray, shifts: Sequence[tuple[int, int]]) -> np.ndarray:
    """``(n, V, r, c)`` -> ``(n, S, V, r, c)``: each image translated by each (rows, cols) shift, zero-filled."""
    n, views, rows, cols = images.shape
    out = np.zeros((n, len(shifts), views, rows, cols), images.dtype)
    for index, (dr, dc) in enumerate(shifts):
        target = out[:, index, :, max(dr, 0): rows + min(dr, 0), max(dc, 0): cols + min(dc, 0)]
        target[...] = images[:, :, max(-dr, 0): rows + min(-dr, 0), max(-dc, 0): cols + min(-dc, 0)]
    return out


def unit_vectors(values: np.ndarray, centre: np.ndarray | None = None) -> np.ndarray:
    """Flattened rows, centred (on ``centre``, else each on its own mean) and scaled to unit length."""
    flat = values.reshape(len(values), -1).astype(np.float32)
    flat = flat - (flat.mean(axis=1, keepdims=True) if centre is None else centre.reshape(1, -1))
    norms = np.linalg.norm(flat, axis=1, keepdims=True)
    return flat / np.maximum(norms, 1e-12)


def best_translation(query: np.ndarray, target: np.ndarray, shifts=DEFAULT_SHIFTS) -> tuple[np.ndarray, float]:
    """The translation of ``query`` (V, r, c) closest to ``target``: (translated image, distance)."""
    moved = shift_images(query[None], shifts)[0]
    similarity = unit_vectors(moved) @ unit_vectors(target[None])[0]
    best = int(np.argmax(similarity))
    return moved[best], float(np.clip(1 - similarity[best], 0, 2))


# ------------------------------------------------------------------------------------------- search

@dataclass(frozen=True)
class Neighbours:
    """Nearest and second-nearest (another patient's) index entries of each query, with distances."""

    index: np.ndarray
    distance: np.ndarray
    second_index: np.ndarray
    second_distance: np.ndarray

    @property
    def ratio(self) -> np.ndarray:
        """Memorization ratio d1 / d2 (NaN where there is no second patient)."""
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(self.second_distance > 0, self.distance / self.second_distance,
                            np.where(self.distance > 0, np.inf, 0.0))


class NeighbourIndex:
    """Nearest-neighbour search by 1 - cosine similarity of unit vectors, in chunked matrix products.

    Two stages: a coarse search (on ``coarse`` vectors when given, e.g. images pooled 2x2: 4x fewer numbers
    to multiply) keeps the ``candidates`` nearest entries of each query; these are re-ranked exactly with the
    full vectors, taking the best similarity over translations of the query image when ``shifts`` are given
    (queries then come with their images). Returned distances are always full-vector distances. The nearest
    entry is exact whenever it is among the coarse candidates (always, in the tests); the second patient's
    entry is the nearest among the candidates, so d2 can be slightly overestimated.
    """

    def __init__(self, vectors: np.ndarray, groups: Sequence, shifts: Sequence[tuple[int, int]] = (),
                 coarse: np.ndarray | None = None, candidates: int = CANDIDATES, chunk: int = 128):
        self.vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        self.coarse = self.vectors if coarse is None else np.ascontiguousarray(coarse, dtype=np.float32)
        self.groups = np.asarray([str(g) for g in groups])
        if len(self.groups) != len(self.vectors) or len(self.coarse) != len(self.vectors):
            raise ValueError("one group and one coarse vector per indexed vector")
        self._codes = {group: code for code, group in enumerate(dict.fromkeys(self.groups))}
        self.group_codes = np.array([self._codes[g] for g in self.groups], dtype=np.int64)
        self.shifts = tuple(shifts)
        self.two_stage = coarse is not None or bool(self.shifts)
        self.candidates = candidates
        self.chunk = chunk

    def __len__(self):
        return len(self.vectors)

    def query(self, vectors: np.ndarray, images: np.ndarray | None = None, groups: Sequence | None = None,
              coarse: np.ndarray | None = None, progress=None) -> Neighbours:
        """Neighbours of each query; entries sharing a query's group (patient) are skipped when groups given."""
        if self.shifts and images is None:
            raise ValueError("a translation-refined index needs the query images")
        if (coarse is None) != (self.coarse is self.vectors):
            raise ValueError("give coarse query vectors exactly when the index has coarse vectors")
        coarse = vectors if coarse is None else coarse
        n, size = len(vectors), len(self)
        k = min(self.candidates, size)
        result = {name: np.full(n, np.nan) for name in ("distance", "second_distance")}
        result.update(index=np.full(n, -1), second_index=np.full(n, -1))
        codes = None if groups is None else np.array([self._codes.get(str(g), -1) for g in groups], np.int64)
        for start in range(0, n, self.chunk):
            stop = min(start + self.chunk, n)
            similarity = coarse[start:stop] @ self.coarse.T
            if codes is not None:
                similarity[codes[start:stop, None] == self.group_codes[None, :]] = -np.inf
            candidates = np.argpartition(-similarity, k - 1, axis=1)[:, :k] if k < size else \
                np.broadcast_to(np.arange(size), (stop - start, size)).copy()
            scores = np.take_along_axis(similarity, candidates, axis=1)
            if self.two_stage:
                scores = np.where(np.isfinite(scores), self._refine(vectors[start:stop], images, start, stop,
                                                                    candidates), -np.inf)
            self._keep_best(result, slice(start, stop), candidates, scores)
            if progress is not None:
                progress.update(stop - start)
        return Neighbours(**result)

    def _refine(self, vectors, images, start, stop, candidates) -> np.ndarray:
        targets = self.vectors[candidates]  # (q, k, d)
        if not self.shifts:
            return np.matmul(targets, vectors[:, :, None])[..., 0]
        count = stop - start
        moved = unit_vectors(shift_images(images[start:stop], self.shifts).reshape(count * len(self.shifts), -1))
        return np.matmul(moved.reshape(count, len(self.shifts), -1), targets.transpose(0, 2, 1)).max(axis=1)

    def _keep_best(self, result, rows, candidates, scores) -> None:
        order = np.argsort(-scores, axis=1, kind="stable")
        candidates = np.take_along_axis(candidates, order, axis=1)
        scores = np.take_along_axis(scores, order, axis=1)
        found = np.isfinite(scores[:, 0])
        codes = self.group_codes[candidates]
        other = (codes != codes[:, :1]) & np.isfinite(scores)
        has_second = other.any(axis=1) & found
        second = other.argmax(axis=1)
        pick = np.arange(len(scores))
        result["index"][rows] = np.where(found, candidates[:, 0], -1)
        result["distance"][rows] = np.where(found, np.clip(1 - scores[:, 0], 0, 2), np.nan)
        result["second_index"][rows] = np.where(has_second, candidates[pick, second], -1)
        result["second_distance"][rows] = np.where(has_second, np.clip(1 - scores[pick, second], 0, 2), np.nan)


def pooled_vectors(images: np.ndarray) -> np.ndarray | None:
    """Unit vectors of images pooled 2x2 (the coarse search stage), or None for an odd grid."""
    n, views, rows, cols = images.shape
    if rows % 2 or cols % 2:
        return None
    return unit_vectors(images.reshape(n, views, rows // 2, 2, cols // 2, 2).mean(axis=(3, 5)))


# ------------------------------------------------------------------------------------------- embedding

@dataclass(frozen=True)
class Embedding:
    """What the audit keeps of a set of scans: aligned images and (optionally) learned features."""

    pixel: np.ndarray  # (n, V, rows, cols) float32
    features: np.ndarray | None = None  # (n, d)

    def __len__(self):
        return len(self.pixel)

    @staticmethod
    def concat(parts: Sequence["Embedding"]) -> "Embedding":
        if not parts:
            raise BadInputError("no scans to embed")
        features = None if parts[0].features is None else np.concatenate([p.features for p in parts])
        return Embedding(np.concatenate([p.pixel for p in parts]), features)


def _batches(items: Iterable, size: int):
    batch = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


# ------------------------------------------------------------------------------------------- rules

def criterion_values(found: Neighbours, criterion: str) -> np.ndarray:
    """The nearest-neighbour distance d1 (``"distance"``) or the memorization ratio d1/d2 (``"ratio"``)."""
    return found.distance if criterion == "distance" else found.ratio


@dataclass(frozen=True)
class Rule:
    """One calibrated near-copy criterion: flag a scan whose ``criterion`` value is below ``threshold``.

    ``threshold`` is the ``k``-th smallest of ``n_reference`` real-vs-real values, so an exchangeable
    (non-memorized) scan is flagged with probability ``expected_rate`` = k / (n_reference + 1).
    """

    space: str
    criterion: str
    threshold: float
    k: int
    n_reference: int

    @property
    def name(self) -> str:
        return f"{self.space} {self.criterion}"

    @property
    def expected_rate(self) -> float:
        return self.k / (self.n_reference + 1)

    def flags(self, found: Neighbours) -> np.ndarray:
        return np.nan_to_num(criterion_values(found, self.criterion), nan=np.inf) < self.threshold


# ------------------------------------------------------------------------------------------- auditor

class MemorizationAuditor:
    """Flags synthetic scans that are near-copies of training scans (see the module docstring).

    ``features`` is an optional learned feature function ``features(scans) -> (n, d)``. Usage::

        auditor = MemorizationAuditor(features).fit(train_scans, train_patient_ids, heldout_scans)
        auditor.is_near_copy(scan)          # one scan -> bool (for rejection sampling)
        auditor.near_copies(scans)          # many -> bool array

    Fitted attributes: ``rules_`` (one calibrated :class:`Rule` per space and criterion),
    ``reference_neighbours_`` (real-vs-real :class:`Neighbours` per space), ``calibration_`` (which real
    scans calibrated), ``train_`` (the training :class:`Embedding`), ``train_groups_``, ``indexes_``,
    ``feature_centre_``, ``views_``.
    """

    def __init__(self, features: Features | None = None, grid: tuple[int, int] = DEFAULT_GRID,
                 false_positive_rate: float = DEFAULT_FALSE_POSITIVE_RATE,
                 shifts: Sequence[tuple[int, int]] = DEFAULT_SHIFTS, batch_size: int = 64):
        if not 0 < false_positive_rate < 1:
            raise BadInputError(f"false-positive rate must be in (0, 1), got {false_positive_rate}")
        if len(grid) != 2 or min(grid) < 4:
            raise BadInputError(f"audit grid must be at least 4x4, got {grid}")
        self.features = features
        self.grid = (int(grid[0]), int(grid[1]))
        self.false_positive_rate = float(false_positive_rate)
        self.shifts = tuple((int(r), int(c)) for r, c in shifts) or ((0, 0),)
        self.batch_size = int(batch_size)

    @property
    def spaces(self) -> tuple[str, ...]:
        return (PIXEL,) if self.features is None else (PIXEL, FEATURES)

    # -- embedding

    def embed(self, scans: Iterable[Scan]) -> Embedding:
        """Align (and featurise) scans batch by batch, so that only the small aligned images stay in memory."""
        parts = []
        for batch in _batches(scans, self.batch_size):
            views = {scan.views for scan in batch}
            expected = getattr(self, "views_", None) or batch[0].views
            if views != {expected}:
                raise BadInputError(f"all scans of an audit must have the same views; found "
                                    f"{sorted('+'.join(v) for v in views | {expected})}")
            self.views_ = expected
            with threadpool_limits(1, user_api="blas"):  # small products: threads only contend (2-core hosts)
                pixel = np.stack([align_scan(scan, self.grid) for scan in batch])
            features = None
            if self.features is not None:
                features = np.asarray(self.features(batch), dtype=np.float32).reshape(len(batch), -1)
                if not np.isfinite(features).all():
                    raise BadInputError("the feature function returned NaN or infinite values")
            parts.append(Embedding(pixel, features))
        return Embedding.concat(parts)

    def _vectors(self, embedding: Embedding, space: str) -> np.ndarray:
        if space == PIXEL:
            return unit_vectors(embedding.pixel)
        return unit_vectors(embedding.features, self.feature_centre_)

    # -- fitting

    def fit(self, train_scans: Iterable[Scan], train_groups: Sequence | None = None,
            reference_scans: Iterable[Scan] | None = None, reference_groups: Sequence | None = None):
        """Index the training scans and calibrate thresholds on held-out scans (else leave-one-patient-out).

        ``*_groups`` are patient ids (default: every scan its own patient).
        """
        train = self.embed(train_scans)
        reference = None if reference_scans is None else self.embed(reference_scans)
        return self.fit_embedded(train, train_groups, reference, reference_groups)

    def fit_embedded(self, train: Embedding, train_groups: Sequence | None = None,
                     reference: Embedding | None = None, reference_groups: Sequence | None = None):
        """:meth:`fit` on embeddings already made with :meth:`embed`."""
        n = len(train)
        groups = np.arange(n).astype(str) if train_groups is None else np.asarray([str(g) for g in train_groups])
        if len(groups) != n:
            raise ValueError("one patient id per training scan")
        if n < 3 or len(set(groups)) < 2:
            raise BadInputError(f"the audit needs at least 3 training scans of 2 patients ({n} scans, "
                                f"{len(set(groups))} patients)")
        self._index(train, groups, None if train.features is None else train.features.mean(axis=0))
        if reference is not None:
            ref_groups = np.char.add("ref-", np.arange(len(reference)).astype(str)) if reference_groups is None \
                else np.asarray([str(g) for g in reference_groups])
            shared = sorted(set(ref_groups) & set(groups))
            if shared:
                raise BadInputError(f"held-out and training scans share patient(s) {shared[:5]}: a held-out "
                                    "set must hold other patients")
            self.reference_neighbours_ = self.neighbours(reference)
            self.calibration_ = "held-out real scans to the training scans"
        else:
            self.reference_neighbours_ = self.neighbours(train, groups)
            self.calibration_ = "training scans to the training scans of other patients (leave one patient out)"
        rate = self.false_positive_rate / (len(self.spaces) * len(CRITERIA))
        self.rules_ = []
        for space, found in self.reference_neighbours_.items():
            for criterion in CRITERIA:
                values = np.sort(criterion_values(found, criterion))
                values = values[np.isfinite(values)]
                if values.size == 0:
                    raise BadInputError("no real-vs-real distances to calibrate the audit (too few patients)")
                k = max(1, int(np.floor(rate * (values.size + 1))))
                self.rules_.append(Rule(space, criterion, float(values[k - 1]), k, int(values.size)))
        return self

    def _index(self, train: Embedding, groups: np.ndarray, feature_centre: np.ndarray | None) -> None:
        self.train_, self.train_groups_, self.feature_centre_ = train, groups, feature_centre
        self.indexes_ = {PIXEL: NeighbourIndex(self._vectors(train, PIXEL), groups, self.shifts,
                                               coarse=pooled_vectors(train.pixel))}
        if FEATURES in self.spaces:
            self.indexes_[FEATURES] = NeighbourIndex(self._vectors(train, FEATURES), groups)

    # -- saving (``synthscan audit --save-index`` -> ``synthscan sample --audit``)

    def save(self, folder, model_hash: str | None = None) -> Path:
        """Save what :meth:`is_near_copy` needs: aligned training images (and features), rules, settings.

        Patients become opaque numbers (only "same patient or not" matters for the d1/d2 ratio), so the index
        carries no identifier of the training manifest. ``model_hash`` names the generator whose encoder made
        the features (the index then refuses other generators).
        """
        from safetensors.numpy import save_file

        from synthscan.io.atomic import atomic_dir

        tensors = {"pixel": np.ascontiguousarray(self.train_.pixel, np.float32),
                   "groups": np.unique(self.train_groups_, return_inverse=True)[1].astype(np.int64)}
        if self.train_.features is not None:
            tensors["features"] = np.ascontiguousarray(self.train_.features, np.float32)
            tensors["feature_centre"] = np.ascontiguousarray(self.feature_centre_, np.float32)
        info = {"format": INDEX_FORMAT, "grid": list(self.grid), "shifts": [list(s) for s in self.shifts],
                "false_positive_rate": self.false_positive_rate, "views": list(self.views_),
                "calibration": self.calibration_, "spaces": list(self.spaces),
                "feature_model": model_hash if self.features is not None else None,
                "rules": [{"space": r.space, "criterion": r.criterion, "threshold": r.threshold, "k": r.k,
                           "n_reference": r.n_reference} for r in self.rules_]}
        folder = Path(folder)
        with atomic_dir(folder) as tmp:
            save_file(tensors, str(Path(tmp) / "index.safetensors"))
            (Path(tmp) / "index.json").write_text(json.dumps(info, indent=2) + "\n")
        return folder

    @classmethod
    def load(cls, folder, features: Features | None = None) -> "MemorizationAuditor":
        """An auditor saved by :meth:`save`; ``features`` must be given when the index has a feature space."""
        from safetensors.numpy import load_file

        folder = Path(folder)
        try:
            info = json.loads((folder / "index.json").read_text())
            tensors = load_file(str(folder / "index.safetensors"))
        except (OSError, ValueError) as error:
            raise BadInputError(f"not a synthscan audit index ({type(error).__name__}); make one with "
                                "synthscan audit --save-index", folder) from None
        if info.get("format") != INDEX_FORMAT:
            raise BadInputError(f"not a synthscan audit index (format {info.get('format')!r})", folder)
        if (FEATURES in info["spaces"]) != (features is not None):
            raise BadInputError("the index was built with a learned feature space; its generator is needed"
                                if features is None else "the index has no learned feature space", folder)
        auditor = cls(features, tuple(info["grid"]), info["false_positive_rate"],
                      tuple(tuple(s) for s in info["shifts"]))
        auditor.views_ = tuple(info["views"])
        auditor.calibration_ = info["calibration"]
        auditor._index(Embedding(tensors["pixel"], tensors.get("features")), tensors["groups"].astype(str),
                       tensors.get("feature_centre"))
        auditor.rules_ = [Rule(r["space"], r["criterion"], r["threshold"], r["k"], r["n_reference"])
                          for r in info["rules"]]
        auditor.feature_model_ = info.get("feature_model")
        return auditor

    # -- querying

    def neighbours(self, embedding: Embedding, groups: Sequence | None = None, progress=None) -> dict[str, Neighbours]:
        """Nearest training scans per space (skipping training scans of the same patient when groups given)."""
        found = {PIXEL: self.indexes_[PIXEL].query(self._vectors(embedding, PIXEL), embedding.pixel, groups,
                                                   pooled_vectors(embedding.pixel), progress)}
        if FEATURES in self.spaces:
            found[FEATURES] = self.indexes_[FEATURES].query(self._vectors(embedding, FEATURES), groups=groups)
        return found

    def distances_to(self, queries: Embedding, references: Embedding) -> dict[str, np.ndarray]:
        """Per space, the distance from each query to its nearest scan in ``references`` (any patient).

        Used by the membership attack that scores real scans by their distance to the synthetic set.
        """
        found = {PIXEL: NeighbourIndex(self._vectors(references, PIXEL), np.arange(len(references)), self.shifts,
                                       coarse=pooled_vectors(references.pixel)).query(
            self._vectors(queries, PIXEL), queries.pixel, coarse=pooled_vectors(queries.pixel))}
        if FEATURES in self.spaces:
            found[FEATURES] = NeighbourIndex(self._vectors(references, FEATURES), np.arange(len(references))).query(
                self._vectors(queries, FEATURES))
        return {space: result.distance for space, result in found.items()}

    def flags(self, neighbours: dict[str, Neighbours]) -> dict[str, np.ndarray]:
        """Near-copy flags per rule (``"pixel distance"``, ``"pixel ratio"``, ...): value below its threshold."""
        return {rule.name: rule.flags(neighbours[rule.space]) for rule in self.rules_}

    def near_copies(self, scans: Iterable[Scan]) -> np.ndarray:
        """Boolean array: which scans are near-copies of a training scan by any rule."""
        return np.logical_or.reduce(list(self.flags(self.neighbours(self.embed(scans))).values()))

    def is_near_copy(self, scan: Scan) -> bool:
        """True if ``scan`` is a near-copy of a training scan (for ``synthscan sample --audit``)."""
        return bool(self.near_copies([scan])[0])
