"""The drift statistics against SciPy's own functions, on the same data."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import special, stats
from scipy.spatial.distance import jensenshannon

from conveyor.monitoring.stats import chi2_homogeneity, compare_categorical, compare_numeric, ecdf_gaps, js_distance

TOL = 1e-9


@pytest.mark.parametrize("seed", range(6))
def test_ks_and_wasserstein_match_scipy_with_and_without_ties(seed) -> None:
    rng = np.random.default_rng(seed)
    n, m = int(rng.integers(5, 3000)), int(rng.integers(5, 3000))
    a = rng.normal(size=n)
    b = rng.normal(0.2, 1.3, size=m)
    if seed % 2:                                  # discrete data: many ties within and across samples
        a, b = np.round(a, 1), np.round(b, 1)
    a, b = np.sort(a), np.sort(b)
    r = compare_numeric(a, b)
    ks = stats.ks_2samp(a, b)
    assert abs(r.ks_statistic - ks.statistic) < TOL
    assert abs(r.ks_pvalue - ks.pvalue) < TOL
    assert abs(r.wasserstein - stats.wasserstein_distance(a, b)) < TOL


def test_tiny_and_degenerate_samples() -> None:
    for a, b in [([0.0], [0.0]), ([1.0], [2.0]), ([1.0, 1.0, 1.0], [1.0, 2.0]), ([3.0, 3.0], [3.0, 3.0, 3.0])]:
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
    assert abs(r.ks_pvalue - special.kolmogorov(np.sqrt(en) * r.ks_statistic)) < TOL
    assert abs(r.ks_pvalue - ks.pvalue) < 0.02 * ks.pvalue   # SciPy refines it for finite n: about 1% here
    finite = compare_numeric(a, b, finite_n=True)
    assert abs(finite.ks_pvalue - ks.pvalue) < TOL


@pytest.mark.parametrize("ref, cur", [([100, 50, 0, 30], [90, 70, 5, 0]), ([10, 20], [15, 12]),
                                      ([500, 400, 3, 97], [480, 450, 1, 69])])
def test_chi_square_homogeneity_matches_chi2_contingency(ref, cur) -> None:
    ref, cur = np.array(ref), np.array(cur)
    keep = (ref + cur) > 0
    expected = stats.chi2_contingency(np.vstack([ref, cur])[:, keep])
    stat, p, dof = chi2_homogeneity(ref, cur)
    assert abs(stat - expected.statistic) < TOL and abs(p - expected.pvalue) < TOL and dof == expected.dof


def test_jensen_shannon_matches_scipy() -> None:
    ref, cur = np.array([5, 0, 3, 9]), np.array([1, 4, 3, 0])
    assert abs(js_distance(ref, cur) - jensenshannon(ref / ref.sum(), cur / cur.sum(), base=2)) < TOL
    assert js_distance(ref, ref) == 0.0


def test_psi_is_zero_for_the_same_distribution_and_grows_with_shift() -> None:
    same = compare_categorical(np.array([30, 30, 40]), np.array([300, 300, 400]))
    moved = compare_categorical(np.array([30, 30, 40]), np.array([600, 200, 200]))
    assert same.psi == pytest.approx(0.0, abs=1e-12) and moved.psi > 0.1
