"""Unlabelled sites: the number of clusters chosen by consensus (PAC), clusters named by outcome."""

from __future__ import annotations

import numpy as np
import pytest

from model.derive import consensus_pac, derive_endotypes

ANALYTES = ("il6", "ferritin", "crp", "cxcl9")


def _three_groups(seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = np.log(
        [[5.0, 100.0, 5.0, 200.0], [80.0, 600.0, 60.0, 800.0], [900.0, 5000.0, 200.0, 20000.0]]
    )
    group = rng.integers(0, 3, 600)
    features = np.exp(centres[group] + rng.normal(0, 0.25, (600, 4)))
    outcome = (rng.random(600) < np.array([0.05, 0.2, 0.6])[group]).astype(float)
    return features, group, outcome


@pytest.mark.slow
def test_consensus_finds_three_well_separated_groups():
    features, _, outcome = _three_groups()
    derivation = derive_endotypes(features, ANALYTES, outcome)
    assert derivation.n_clusters == 3
    assert derivation.pac_by_k[3] == min(derivation.pac_by_k.values())
    assert derivation.pac_by_k[3] < derivation.pac_by_k[4]


def test_pac_is_zero_for_one_perfectly_stable_partition():
    rng = np.random.default_rng(1)
    blobs = np.vstack([rng.normal(-10, 0.1, (60, 2)), rng.normal(10, 0.1, (60, 2))])
    assert consensus_pac(blobs, (2,))[2] == 0.0


@pytest.mark.slow
def test_cluster_with_worst_outcomes_becomes_the_high_risk_endotype():
    features, group, outcome = _three_groups()
    labels = derive_endotypes(features, ANALYTES, outcome).labels
    assert np.mean(labels[group == 2] == "hyperinflammatory-il6-ifng") > 0.95
    assert np.mean(labels[group == 0] == "quiescent") > 0.95
    assert np.mean(labels[group == 1] == "intermediate") > 0.95


@pytest.mark.slow
def test_rarely_observed_analyte_is_left_out_of_clustering():
    features, _, outcome = _three_groups()
    features[: int(0.6 * len(features)), 3] = np.nan
    derivation = derive_endotypes(features, ANALYTES, outcome)
    assert derivation.clustering_analytes == ("il6", "ferritin", "crp")


@pytest.mark.slow
def test_derivation_is_reproducible_for_a_seed():
    features, _, outcome = _three_groups()
    first = derive_endotypes(features, ANALYTES, outcome, random_state=3)
    second = derive_endotypes(features, ANALYTES, outcome, random_state=3)
    assert np.array_equal(first.labels, second.labels)
    assert first.describe() == second.describe()
