"""Endotypes for a site without reference labels, derived the way the study did it.

The onset marker profiles (log, median-imputed, standardised; analytes observed in at least half
of the patients) are clustered with a Gaussian mixture. The number of clusters is the one with
the lowest Bayesian information criterion (BIC) among 2–5. Clusters are then ranked by their
rate of complicated course (death or ≥ 2 organ dysfunctions on day 7): the worst becomes the
hyperinflammatory (high-risk) endotype, the best the quiescent one, and any others intermediate.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from sklearn.mixture import GaussianMixture

from model.assessment import Endotype

CLUSTER_COUNTS: tuple[int, ...] = (2, 3, 4, 5)
MIN_OBSERVED_SHARE = 0.5
CRITERION = (
    "Gaussian mixture (diagonal covariance) on log, median-imputed, standardised onset profiles; "
    "number of clusters = lowest BIC among 2-5; the cluster with the highest complicated-course "
    "rate is the high-risk (hyperinflammatory) endotype, the lowest quiescent, others intermediate"
)


@dataclass(frozen=True)
class Derivation:
    """Derived labels and the record of how they were derived."""

    labels: np.ndarray  # endotype value per patient
    n_clusters: int
    bic_by_k: dict[int, float]
    cluster_endotypes: dict[int, str]
    cluster_outcome_rates: dict[int, float]
    cluster_sizes: dict[int, int]
    clustering_analytes: tuple[str, ...]

    def describe(self) -> dict[str, Any]:
        """JSON-ready record for the model metadata."""
        return {
            "method": CRITERION,
            "n_clusters": self.n_clusters,
            "bic_by_k": {str(k): round(v, 2) for k, v in self.bic_by_k.items()},
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
    fits = {k: _fit_mixture(profiles, k, random_state) for k in CLUSTER_COUNTS}
    bic_by_k = {k: float(model.bic(profiles)) for k, model in fits.items()}
    best_k = min(bic_by_k, key=lambda k: (bic_by_k[k], k))
    clusters = fits[best_k].predict(profiles)
    rates = {int(c): float(np.mean(outcome[clusters == c])) for c in np.unique(clusters)}
    names = _name_clusters(rates)
    return Derivation(
        labels=np.array([names[int(c)] for c in clusters], dtype=object),
        n_clusters=best_k,
        bic_by_k=bic_by_k,
        cluster_endotypes=names,
        cluster_outcome_rates=rates,
        cluster_sizes={c: int(np.sum(clusters == c)) for c in rates},
        clustering_analytes=tuple(analytes[i] for i in columns),
    )


def _clustering_columns(features: np.ndarray) -> list[int]:
    observed = np.mean(np.isfinite(features), axis=0)
    return [i for i, share in enumerate(observed) if share >= MIN_OBSERVED_SHARE]


def _standardised(block: np.ndarray) -> np.ndarray:
    logged = np.log1p(block)
    medians = np.nanmedian(logged, axis=0)
    filled = np.where(np.isfinite(logged), logged, medians)
    spread = filled.std(axis=0)
    return (filled - filled.mean(axis=0)) / np.where(spread > 0, spread, 1.0)


def _fit_mixture(profiles: np.ndarray, k: int, random_state: int) -> GaussianMixture:
    model = GaussianMixture(
        n_components=k, covariance_type="diag", n_init=3, random_state=random_state
    )
    return model.fit(profiles)


def _name_clusters(rates: dict[int, float]) -> dict[int, str]:
    ranked = sorted(rates, key=lambda c: (rates[c], c))
    names = {c: Endotype.INTERMEDIATE.value for c in ranked}
    names[ranked[0]] = Endotype.QUIESCENT.value
    names[ranked[-1]] = Endotype.HYPERINFLAMMATORY.value
    return names
