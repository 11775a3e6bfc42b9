"""Our drift statistics against independent computations: SciPy's own functions, or NumPy by hand.

Each statistic we compute ourselves (KS statistic, Wasserstein-1, chi-square, Jensen–Shannon, PSI)
is compared with a computation that shares no code with ours. Where ours delegates to SciPy (the
exact KS p-value of small samples, the chi-square tail), the test checks what can go wrong on our
side: which statistic, which sample sizes and which branch reach SciPy.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from conveyor.monitoring.stats import (binned_counts, chi2_homogeneity, compare_categorical, compare_numeric,
                                       ecdf_gaps, js_distance, psi_edges, psi_from_counts)

TOL = 1e-9


def _samples(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(5, 3000)), int(rng.integers(5, 3000))
    a, b = rng.normal(size=n), rng.normal(0.2, 1.3, size=m)
    if seed % 2:                                  # discrete data: many ties within and across samples
        a, b = np.round(a, 1), np.round(b, 1)
    return np.sort(a), np.sort(b)


@pytest.mark.parametrize("seed", range(6))
def test_ks_statistic_and_wasserstein_match_scipy_with_and_without_ties(seed) -> None:
    a, b = _samples(seed)
    d, w = ecdf_gaps(a, b)                        # ours: merged ECDFs by binary search, no SciPy
    assert abs(d - stats.ks_2samp(a, b).statistic) < TOL
    assert abs(w - stats.wasserstein_distance(a, b)) < TOL
    assert d > 0.02 and w > 0.05                  # the samples differ: a zero from a bug would not pass


@pytest.mark.parametrize("seed", range(6))
def test_the_exact_ks_pvalue_is_the_one_for_our_statistic_and_sizes(seed) -> None:
    a, b = _samples(seed)
    r = compare_numeric(a, b)
    exact = stats.ks_2samp(a, b, method="exact")
    assert abs(r.ks_statistic - exact.statistic) < TOL
    assert abs(r.ks_pvalue - exact.pvalue) < TOL
    # the asymptotic value differs here, so a wrong branch (or sizes swapped for a sketch) shows
    en = len(a) * len(b) / (len(a) + len(b))
    assert abs(r.ks_pvalue - special.kolmogorov(np.sqrt(en) * r.ks_statistic)) > 1e-6 or r.ks_pvalue < 1e-12


def test_tiny_and_degenerate_samples() -> None:
    for a, b in [([0.0], [0.0]), ([1.0], [2.0]), ([1.0, 1.0, 1.0], [1.0, 2.0]), ([3.0, 3.0], [3.0, 3.0, 3.0]),
                 ([0.0, 1.0], [0.5, 0.5, 2.0])]:
        a, b = np.array(a), np.array(b)
        d, w = ecdf_gaps(a, b)
        assert abs(d - stats.ks_2samp(a, b).statistic) < TOL
        assert abs(w - stats.wasserstein_distance(a, b)) < TOL


def test_large_samples_use_the_asymptotic_kolmogorov_pvalue() -> None:
    rng = np.random.default_rng(7)
    a, b = np.sort(rng.normal(size=40_000)), np.sort(rng.normal(0.02, 1, size=30_000))
    r = compare_numeric(a, b)
    ks = stats.ks_2samp(a, b)
    assert abs(r.ks_statistic - ks.statistic) < TOL
    en = 40_000 * 30_000 / 70_000
    # SciPy's limiting distribution of sqrt(en)·D (kstwobign), evaluated at SciPy's statistic
    assert abs(r.ks_pvalue - stats.kstwobign.sf(np.sqrt(en) * ks.statistic)) < TOL
    assert abs(r.ks_pvalue - ks.pvalue) < 0.02 * ks.pvalue   # SciPy refines it for finite n: about 1% here
    finite = compare_numeric(a, b, finite_n=True)
    assert abs(finite.ks_pvalue - ks.pvalue) < TOL             # the option reaches SciPy's finite-n refinement
    assert abs(finite.ks_pvalue - r.ks_pvalue) > 1e-4 * r.ks_pvalue


@pytest.mark.parametrize("ref, cur", [([100, 50, 0, 30], [90, 70, 5, 0]), ([10, 20], [15, 12]),
                                      ([500, 400, 3, 97], [480, 450, 1, 69]), ([7, 0, 0, 9], [2, 0, 11, 4])])
def test_chi_square_homogeneity_matches_chi2_contingency_and_chisquare(ref, cur) -> None:
    ref, cur = np.array(ref), np.array(cur)
    keep = (ref + cur) > 0
    table = np.vstack([ref, cur])[:, keep]
    expected = stats.chi2_contingency(table)
    stat, p, dof = chi2_homogeneity(ref, cur)
    assert abs(stat - expected.statistic) < TOL and abs(p - expected.pvalue) < TOL and dof == expected.dof
    if dof > 1:          # without Yates' correction it is Pearson's statistic over all cells
        goodness = stats.chisquare(table.ravel(), expected.expected_freq.ravel(), ddof=table.size - 1 - dof)
        assert abs(stat - goodness.statistic) < TOL and abs(p - goodness.pvalue) < TOL


@pytest.mark.parametrize("seed", range(5))
def test_jensen_shannon_matches_scipy(seed) -> None:
    rng = np.random.default_rng(seed)
    ref, cur = rng.integers(0, 50, size=8), rng.integers(0, 50, size=8)
    ref[seed % 8] = 0                              # a category one side never saw
    expected = jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2)
    assert abs(js_distance(ref, cur) - expected) < TOL
    assert expected > 0.01
    assert js_distance(ref, ref * 3) == pytest.approx(0.0, abs=1e-12)


def _psi_by_hand(ref: np.ndarray, cur: np.ndarray, edges: np.ndarray, eps: float = 1e-4) -> float:
    """PSI from NumPy's histogram over the same bins, right-closed like ours: (-inf, e1], (e1, e2], …
    np.histogram's bins are closed on the left, so the values are negated to close them on the right."""
    bins = np.concatenate([[-np.inf], -edges[::-1], [np.inf]])
    p = np.histogram(-ref, bins=bins)[0][::-1] / len(ref)
    q = np.histogram(-cur, bins=bins)[0][::-1] / len(cur)
    p, q = np.maximum(p, eps), np.maximum(q, eps)
    total = 0.0
    for pi, qi in zip(p, q, strict=True):
        total += (qi - pi) * np.log(qi / pi)
    return total


@pytest.mark.parametrize("seed", range(6))
def test_numeric_psi_matches_a_hand_computation_on_the_same_bins(seed) -> None:
    rng = np.random.default_rng(seed)
    a = np.sort(rng.normal(size=int(rng.integers(200, 5000))))
    b = np.sort(rng.normal(0.3 * (seed % 3), 1 + 0.2 * seed, size=int(rng.integers(200, 5000))))
    if seed % 2:                                   # ties, many of them on the bin edges themselves
        a, b = np.round(a, 1), np.round(b, 1)
    edges = psi_edges(a)
    # the edges are the reference's deciles: each bin holds about a tenth of the reference
    shares = binned_counts(a, edges) / len(a)
    assert len(edges) >= 5 and shares.max() < 0.25
    psi = compare_numeric(a, b).psi
    assert abs(psi - _psi_by_hand(a, b, edges)) < TOL
    if seed % 3:
        assert psi > 0.05                          # a shifted current sample
    else:
        assert psi < 0.1 + 0.2 * seed


def test_psi_of_known_counts() -> None:
    # p = (0.5, 0.3, 0.2), q = (0.2, 0.3, 0.5): PSI = 0.3·ln(0.4) ·(-1) + 0 + 0.3·ln(2.5)
    expected = (0.2 - 0.5) * np.log(0.2 / 0.5) + (0.5 - 0.2) * np.log(0.5 / 0.2)
    assert psi_from_counts(np.array([50, 30, 20]), np.array([20, 30, 50])) == pytest.approx(expected, abs=1e-12)
    # an empty bin counts as the floor share 1e-4, not as log(0)
    floored = (1e-4 - 0.5) * np.log(1e-4 / 0.5) + (1.0 - 0.5) * np.log(1.0 / 0.5)
    assert psi_from_counts(np.array([5, 5]), np.array([0, 10])) == pytest.approx(floored, abs=1e-12)


def test_categorical_psi_is_zero_for_the_same_distribution_and_matches_by_hand() -> None:
    same = compare_categorical(np.array([30, 30, 40]), np.array([300, 300, 400]))
    moved = compare_categorical(np.array([30, 30, 40]), np.array([600, 200, 200]))
    p, q = np.array([0.3, 0.3, 0.4]), np.array([0.6, 0.2, 0.2])
    assert same.psi == pytest.approx(0.0, abs=1e-12)
    assert moved.psi == pytest.approx(float(np.sum((q - p) * np.log(q / p))), abs=1e-12)
