"""Endotypes for a site without reference labels, derived the way the study did it.

The onset marker profiles (log, median-imputed, standardised; analytes observed in at least half
of the patients) are grouped by consensus clustering (Monti et al., Mach Learn 2003): k-means on
repeated 80% subsamples of up to 1,000 patients, for k = 2–5. The number of clusters is the one
with the lowest proportion of ambiguous clustering (PAC: share of patient pairs clustered
together in between 10% and 90% of the subsamples that hold both). The final clusters are k-means
on every patient. Clusters are then ranked by their rate of complicated course (death or ≥ 2
organ dysfunctions on day 7): the worst becomes the hyperinflammatory (high-risk) endotype, the
best the quiescent one, and any others intermediate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.cluster import KMeans

from model.assessment import Endotype

CLUSTER_COUNTS: tuple[int, ...] = (2, 3, 4, 5)
MIN_OBSERVED_SHARE = 0.5
CONSENSUS_PATIENTS = 1000
CONSENSUS_RESAMPLES = 40
SUBSAMPLE_SHARE = 0.8
AMBIGUOUS = (0.1, 0.9)
CRITERION = (
    "consensus k-means clustering of log, median-imputed, standardised onset profiles "
    f"({CONSENSUS_RESAMPLES} subsamples of {SUBSAMPLE_SHARE:.0%} of up to {CONSENSUS_PATIENTS} "
    "patients); number of clusters = lowest PAC (proportion of ambiguous clustering, consensus "
    "between 0.1 and 0.9) among 2-5; the cluster with the highest complicated-course rate is the "
    "high-risk (hyperinflammatory) endotype, the lowest quiescent, others intermediate"
)


@dataclass(frozen=True)
class Derivation:
    """Derived labels and the record of how they were derived."""

    labels: np.ndarray  # endotype value per patient
    n_clusters: int
    pac_by_k: dict[int, float]
    cluster_endotypes: dict[int, str]
    cluster_outcome_rates: dict[int, float]
    cluster_sizes: dict[int, int]
    clustering_analytes: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        """JSON-ready record for the model metadata."""
        return {
            "method": CRITERION,
            "n_clusters": self.n_clusters,
            "pac_by_k": {str(k): round(v, 4) for k, v in self.pac_by_k.items()},
            "clusters": [
                {
                    "cluster": cluster,
                    "endotype": self.cluster_endotypes[cluster],
                    "size": self.cluster_sizes[cluster],
                    "complicated_course_rate": round(self.cluster_outcome_rates[cluster], 4),
                }
                for cluster in sorted(self.cluster_endotypes)
            ],
            "clustering_analytes": list(self.clustering_analytes),
        }


def derive_endotypes(
    features: np.ndarray,
    analytes: Sequence[str],
    outcome: np.ndarray,
    *,
    random_state: int = 0,
) -> Derivation:
    """Cluster onset profiles and name clusters by outcome; `outcome` is 0/1 per patient."""
    columns = _clustering_columns(features)
    if not columns:
        raise ValueError("no analyte is observed in at least half of the patients")
    profiles = _standardised(features[:, columns])
    pac_by_k = consensus_pac(profiles, CLUSTER_COUNTS, random_state=random_state)
    best_k = min(pac_by_k, key=lambda k: (pac_by_k[k], k))
    clusters = KMeans(best_k, n_init=10, random_state=random_state).fit_predict(profiles)
    rates = {int(c): float(np.mean(outcome[clusters == c])) for c in np.unique(clusters)}
    names = _name_clusters(rates)
    return Derivation(
        labels=np.array([names[int(c)] for c in clusters], dtype=object),
        n_clusters=best_k,
        pac_by_k=pac_by_k,
        cluster_endotypes=names,
        cluster_outcome_rates=rates,
        cluster_sizes={c: int(np.sum(clusters == c)) for c in rates},
        clustering_analytes=tuple(analytes[i] for i in columns),
    )


def consensus_pac(
    profiles: np.ndarray, cluster_counts: Sequence[int], *, random_state: int = 0
) -> dict[int, float]:
    """Proportion of ambiguous clustering for each number of clusters (lower is more stable)."""
    rng = np.random.default_rng(random_state)
    size = min(len(profiles), CONSENSUS_PATIENTS)
    sample = profiles[rng.choice(len(profiles), size, replace=False)]
    return {k: _pac(_consensus(sample, k, rng)) for k in cluster_counts}


def _consensus(sample: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(sample)
    together, both = np.zeros((n, n)), np.zeros((n, n))
    for resample in range(CONSENSUS_RESAMPLES):
        chosen = rng.choice(n, int(SUBSAMPLE_SHARE * n), replace=False)
        labels = KMeans(k, n_init=1, random_state=resample).fit_predict(sample[chosen])
        membership = np.zeros((n, k))
        membership[chosen, labels] = 1.0
        present = membership.sum(axis=1)
        together += membership @ membership.T
        both += np.outer(present, present)
    return together / np.maximum(both, 1.0)


def _pac(consensus: np.ndarray) -> float:
    upper = consensus[np.triu_indices(len(consensus), 1)]
    low, high = AMBIGUOUS
    return float(np.mean((upper > low) & (upper < high)))


def _clustering_columns(features: np.ndarray) -> list[int]:
    observed = np.mean(np.isfinite(features), axis=0)
    return [i for i, share in enumerate(observed) if share >= MIN_OBSERVED_SHARE]


def _standardised(block: np.ndarray) -> np.ndarray:
    logged = np.log1p(block)
    medians = np.nanmedian(logged, axis=0)
    filled = np.where(np.isfinite(logged), logged, medians)
    spread = filled.std(axis=0)
    return (filled - filled.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def _name_clusters(rates: dict[int, float]) -> dict[int, str]:
    ranked = sorted(rates, key=lambda c: (rates[c], c))
    names = {c: Endotype.INTERMEDIATE.value for c in ranked}
    names[ranked[0]] = Endotype.QUIESCENT.value
    names[ranked[-1]] = Endotype.HYPERINFLAMMATORY.value
    return names
