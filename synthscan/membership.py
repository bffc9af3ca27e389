"""Membership inference against a generator, and the statistics of a memorization audit.

Membership inference asks whether training scans can be told from held-out scans of the same population
better than chance: if they can, the generator leaks who was in its training set. An attack gives every
real scan a score (higher = "more likely a member"); its power is the ROC AUC of members vs non-members.

Attacks (all deterministic):
- ``nn-distance``: minus the distance of a real scan to its nearest synthetic scan (a black-box attack on
  released samples: Hayes et al. 2019, "LOGAN: membership inference attacks against generative models";
  Chen et al. 2020, "GAN-Leaks").
- ``denoising-loss``: minus the generator's EDM-weighted denoising loss of a scan's latent at fixed noise
  levels and fixed noise draws (the white-box loss attack on diffusion models of Carlini et al. 2023,
  "Extracting training data from diffusion models", USENIX Security, sec. 6; Matsumoto et al. 2023).
- ``reconstruction``: minus the autoencoder's reconstruction error (members of an overfit autoencoder
  reconstruct better).

Statistics: the AUC (scikit-learn), a 95% percentile bootstrap CI resampling members and non-members
separately (Efron & Tibshirani 1993, ch. 13), and the one-sided Mann-Whitney p-value of AUC > 0.5 (the AUC
is the Mann-Whitney U statistic over n1 n0: Hanley & McNeil 1982, Radiology 143:29). The near-copy rate has
an exact Clopper-Pearson CI and a p-value from its exact null distribution (synthscan/privacy.py).

The model probes here import torch lazily and use the generator's own preprocessing
(synthscan/preprocess.py), so that they see scans exactly as the generator was trained on them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from synthscan.errors import BadInputError
from synthscan.scan import Scan

DEFAULT_BOOTSTRAP = 2000
# Noise levels of the loss attack, in units of the standardised latent (sigma_data = 0.5): low and moderate
# noise, where Carlini et al. found the loss most revealing; high noise erases the sample.
LOSS_SIGMAS = (0.05, 0.2, 0.5)
LOSS_DRAWS = 4


def _p_text(p: float) -> str:
    return "p < 0.0001" if p < 1e-4 else f"p = {p:.4f}"


@dataclass(frozen=True)
class MembershipResult:
    """AUC of a membership-inference attack with its bootstrap CI and the p-value of AUC > 0.5."""

    attack: str
    estimate: float
    ci_low: float
    ci_high: float
    p_value: float
    n_members: int
    n_nonmembers: int

    def summary(self) -> str:
        return (f"{self.attack}: AUC {self.estimate:.3f} (95% CI {self.ci_low:.3f}-{self.ci_high:.3f}), "
                f"{_p_text(self.p_value)} vs 0.5; {self.n_members} training vs {self.n_nonmembers} held-out scans")

    def to_dict(self) -> dict:
        return asdict(self)


def _auc_sorted(members: np.ndarray, nonmembers_sorted: np.ndarray) -> float:
    """P(member score > non-member score) + P(tie) / 2."""
    below = np.searchsorted(nonmembers_sorted, members, side="left")
    at_or_below = np.searchsorted(nonmembers_sorted, members, side="right")
    return float((below + 0.5 * (at_or_below - below)).sum() / (len(members) * len(nonmembers_sorted)))


def membership_auc(member_scores, nonmember_scores, attack: str = "attack", n_bootstrap: int = DEFAULT_BOOTSTRAP,
                   seed: int = 0, confidence: float = 0.95) -> MembershipResult:
    """AUC of scores separating members (training scans) from non-members (held-out), with CI and p-value."""
    from scipy.stats import mannwhitneyu
    from sklearn.metrics import roc_auc_score

    members = np.asarray(member_scores, dtype=np.float64)
    nonmembers = np.asarray(nonmember_scores, dtype=np.float64)
    if len(members) < 2 or len(nonmembers) < 2:
        raise BadInputError(f"membership inference needs at least 2 training and 2 held-out scans "
                            f"({len(members)} and {len(nonmembers)})")
    if not (np.isfinite(members).all() and np.isfinite(nonmembers).all()):
        raise ValueError(f"{attack}: membership scores must be finite")
    labels = np.r_[np.ones(len(members)), np.zeros(len(nonmembers))]
    estimate = float(roc_auc_score(labels, np.r_[members, nonmembers]))
    p_value = float(mannwhitneyu(members, nonmembers, alternative="greater").pvalue)
    rng = np.random.default_rng(seed)
    replicates = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        resampled = np.sort(nonmembers[rng.integers(0, len(nonmembers), len(nonmembers))])
        replicates[b] = _auc_sorted(members[rng.integers(0, len(members), len(members))], resampled)
    low, high = np.quantile(replicates, [(1 - confidence) / 2, (1 + confidence) / 2])
    return MembershipResult(attack, estimate, float(low), float(high), p_value, len(members), len(nonmembers))


@dataclass(frozen=True)
class NearCopyRate:
    """How many synthetic scans were flagged, against the rate expected without memorization.

    ``p_value``: probability of at least ``flagged`` flags among ``n`` if synthetic scans were exchangeable
    with the ``n_reference`` real reference scans (BetaBinomial(n, k, n_reference + 1 - k) for a threshold
    at the k-th smallest reference distance).
    """

    rule: str
    flagged: int
    n: int
    rate: float
    ci_low: float
    ci_high: float
    expected_rate: float
    p_value: float

    def summary(self) -> str:
        return (f"{self.rule}: {self.flagged}/{self.n} flagged ({100 * self.rate:.1f}%, 95% CI "
                f"{100 * self.ci_low:.1f}-{100 * self.ci_high:.1f}%); {100 * self.expected_rate:.1f}% expected "
                f"without memorization, {_p_text(self.p_value)}")

    def to_dict(self) -> dict:
        return asdict(self)


def near_copy_rate(rule: str, flagged: int, n: int, k: int, n_reference: int,
                   confidence: float = 0.95) -> NearCopyRate:
    """The flagged share with its exact (Clopper-Pearson) CI and its exact p-value under no memorization."""
    from scipy.stats import betabinom, binomtest

    if n < 1:
        raise BadInputError("no synthetic scans to audit")
    interval = binomtest(int(flagged), int(n)).proportion_ci(confidence, method="exact")
    p_value = float(betabinom.sf(int(flagged) - 1, int(n), k, n_reference + 1 - k))
    return NearCopyRate(rule, int(flagged), int(n), flagged / n, float(interval.low), float(interval.high),
                        k / (n_reference + 1), min(1.0, p_value))


# ------------------------------------------------------------------------------------------- model probes

@contextlib.contextmanager
def _one_thread():
    """Run small per-scan network passes on one thread: on a shared 2-core host, more threads only spin
    (measured: the tiny model's loss attack 0.1 s on one thread, 2-6 s on two under load)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _network_input(model, scans: Sequence[Scan]):
    from synthscan.preprocess import canonical_counts, to_network

    rows, cols = model.info["grid"]
    for scan in scans:
        if tuple(scan.views) != tuple(model.views):
            raise BadInputError(f"the model was trained on {'+'.join(model.views)} scans, not "
                                f"{'+'.join(scan.views)}")
    return to_network(np.stack([canonical_counts(scan, rows, cols) for scan in scans]))


def encoder_features(model):
    """The generator's encoder as a feature function for the audit: scans -> flattened standardised latents."""
    import torch

    def features(scans: Sequence[Scan]) -> np.ndarray:
        with torch.no_grad(), _one_thread():
            return model.encode(_network_input(model, scans)).flatten(1).cpu().numpy()

    return features


def denoising_losses(model, scans: Sequence[Scan], class_ids: Sequence[int], sigmas=LOSS_SIGMAS,
                     draws: int = LOSS_DRAWS, seed: int = 0):
    """Per-scan EDM-weighted denoising loss of the generator (mean over noise levels and draws).

    The same noise draws (from ``seed``) are used for every scan, so scores are comparable across scans and
    independent of batching.
    """
    with _one_thread():
        return _denoising_losses(model, _network_input(model, scans), class_ids, sigmas, draws, seed)


def _denoising_losses(model, y, class_ids, sigmas, draws, seed):
    import torch

    latents = model.encode(y)
    generator = torch.Generator().manual_seed(int(seed))
    noise = torch.randn((draws, *latents.shape[1:]), generator=generator)
    labels = torch.as_tensor(list(class_ids), dtype=torch.long)
    sigma_data = model.denoiser.sigma_data
    losses = torch.zeros(len(latents))
    with torch.no_grad():
        for sigma in sigmas:
            weight = (sigma ** 2 + sigma_data ** 2) / (sigma * sigma_data) ** 2
            level = torch.full((len(latents),), float(sigma))
            for draw in noise:
                denoised = model.denoiser(latents + sigma * draw, level, labels)
                losses += weight * ((denoised - latents) ** 2).flatten(1).mean(dim=1)
    return (losses / (len(sigmas) * draws)).numpy()


def reconstruction_errors(model, scans: Sequence[Scan]) -> np.ndarray:
    """Per-scan mean squared error of the generator's autoencoder on its network intensities."""
    import torch

    y = _network_input(model, scans)
    with torch.no_grad(), _one_thread():
        return ((model.autoencoder(y) - y) ** 2).flatten(1).mean(dim=1).numpy()
