"""The drift statistics checked by simulation (vectorised over datasets) and against scipy.

Coverage: over many simulated paired datasets with a known population delta, the 95% paired
bootstrap CI must cover it 93–97% of the time. FDR: on null matrices (every cell's true delta is 0)
Benjamini–Hochberg keeps the false discovery rate at or under its level.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binomtest, false_discovery_control

from capdrift_fast.analysis.stats import (
    benjamini_hochberg,
    bootstrap_replicates,
    mcnemar_exact,
    percentile_ci,
    sign_flip_test,
    weighted_mean,
)

N_DATASETS = 4000
COVERAGE_BAND = (0.93, 0.97)


def _paired_binary(rng: np.random.Generator, k: int, n: int, p_base: float, p_adapter: float, rho: float):
    """``k`` datasets of ``n`` items: correlated base/adapter 0/1 outcomes with the given marginals.

    With probability ``rho`` an item's adapter outcome copies a shared latent draw used by the base
    (coupled items), else it is independent; marginals stay exactly ``p_base`` and ``p_adapter``
    because both use the same uniform ``u`` (a comonotone coupling)."""
    u = rng.random((k, n))
    base = (u < p_base).astype(float)
    coupled = rng.random((k, n)) < rho
    adapter = np.where(coupled, u < p_adapter, rng.random((k, n)) < p_adapter).astype(float)
    return adapter, base


@pytest.mark.parametrize(("n", "p_base", "p_adapter"), [(40, 0.5, 0.6), (100, 0.5, 0.6), (200, 0.3, 0.25), (150, 0.7, 0.7)])
def test_bootstrap_ci_covers_known_delta_binary(n, p_base, p_adapter):
    rng = np.random.default_rng(1234 + n)
    adapter, base = _paired_binary(rng, N_DATASETS, n, p_base, p_adapter, rho=0.6)
    reps = bootstrap_replicates(adapter - base, np.ones(n), n_boot=1000, rng=rng)
    low, high = percentile_ci(reps, 0.95, n=n)
    truth = p_adapter - p_base
    coverage = np.mean((low <= truth) & (truth <= high))
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], coverage
    # the interval is centred on the observed delta (a CI of something else could still cover)
    observed = (adapter - base).mean(axis=1)
    assert np.mean((low <= observed) & (observed <= high)) == 1.0


def test_bootstrap_ci_covers_known_delta_weighted_ratio():
    """IFEval ILA shape: prompts carry 1-4 instructions, each followed with p; the score is the
    micro-average over instructions (a ratio estimator) and the bootstrap resamples prompts."""
    rng = np.random.default_rng(7)
    k, n = N_DATASETS, 120
    n_inst = rng.integers(1, 5, size=n).astype(float)  # the task's fixed prompts
    p_base, p_adapter = 0.55, 0.45
    # prompt-level random effect makes instructions of one prompt correlated
    effect = rng.normal(0, 1.0, size=(k, n))
    pb = 1 / (1 + np.exp(-(np.log(p_base / (1 - p_base)) + effect)))
    pa = 1 / (1 + np.exp(-(np.log(p_adapter / (1 - p_adapter)) + effect)))
    base = rng.binomial(n_inst.astype(int), pb) / n_inst
    adapter = rng.binomial(n_inst.astype(int), pa) / n_inst
    # the known delta: expected ILA difference under this design, by a large independent simulation
    e = rng.normal(0, 1.0, size=(400, n))
    big_b = 1 / (1 + np.exp(-(np.log(p_base / (1 - p_base)) + e)))
    big_a = 1 / (1 + np.exp(-(np.log(p_adapter / (1 - p_adapter)) + e)))
    truth = float(weighted_mean(big_a - big_b, n_inst).mean())
    reps = bootstrap_replicates(adapter - base, n_inst, n_boot=1000, rng=rng)
    low, high = percentile_ci(reps, 0.95, n=n)
    coverage = np.mean((low <= truth) & (truth <= high))
    assert COVERAGE_BAND[0] <= coverage <= COVERAGE_BAND[1], coverage


def test_expanded_percentile_widens_small_samples_only():
    """Hesterberg's expansion: at n = 24 the quantile levels move out (1.7% instead of 2.5% per tail);
    at n = 10,000 the interval is the plain percentile one."""
    reps = np.random.default_rng(1).normal(size=(200_000, 1))
    lo, hi = percentile_ci(reps, 0.95)
    lo24, hi24 = percentile_ci(reps, 0.95, n=24)
    lo_big, _ = percentile_ci(reps, 0.95, n=10_000)
    assert lo[0] == pytest.approx(-1.96, abs=0.02) and hi[0] == pytest.approx(1.96, abs=0.02)
    from scipy.stats import t

    assert lo24[0] == pytest.approx(-np.sqrt(24 / 23) * t.ppf(0.975, 23), abs=0.02)
    assert hi24[0] - lo24[0] > hi[0] - lo[0]
    assert lo_big[0] == pytest.approx(lo[0], abs=0.01)


def test_bootstrap_replicates_follow_the_exact_item_bootstrap_distribution():
    """With 4 items there are 4**4 equally likely resamples; the replicates' distribution must match
    the weighted ratio ``sum(w d) / sum(w)`` over those resamples (not, e.g., an unweighted mean)."""
    import itertools

    diff = np.array([1.0, 0.0, -1.0, 0.5])
    w = np.array([3.0, 1.0, 2.0, 0.0])  # the last item is absent from the cell (weight 0)
    exact: dict[float, float] = {}
    for idx in itertools.product(range(4), repeat=4):
        i = list(idx)
        den = w[i].sum()
        val = round(float((w[i] * diff[i]).sum() / den), 9) if den > 0 else float("nan")
        exact[val] = exact.get(val, 0.0) + 4.0**-4
    reps = bootstrap_replicates(diff[None, :], w, n_boot=200_000, rng=np.random.default_rng(0))[:, 0]
    assert reps.shape == (200_000,)
    got = np.round(reps, 9)
    for val, prob in exact.items():
        freq = np.mean(np.isnan(got)) if np.isnan(val) else np.mean(got == val)
        assert abs(freq - prob) < 4 * np.sqrt(prob * (1 - prob) / got.size) + 1e-4, (val, freq, prob)
    assert weighted_mean(diff, w) == pytest.approx(1 / 6)


def test_mcnemar_exact_matches_scipy_binomtest():
    rng = np.random.default_rng(3)
    adapter = (rng.random((30, 40)) < rng.uniform(0.2, 0.8, size=(30, 1))).astype(float)
    base = (rng.random((30, 40)) < 0.5).astype(float)
    p = mcnemar_exact(adapter, base)
    for k in range(30):
        b = int(((adapter[k] == 1) & (base[k] == 0)).sum())
        c = int(((adapter[k] == 0) & (base[k] == 1)).sum())
        want = 1.0 if b + c == 0 else binomtest(b, b + c, 0.5).pvalue
        assert p[k] == pytest.approx(want, rel=1e-9)
    assert mcnemar_exact(np.ones((1, 5)), np.ones((1, 5)))[0] == 1.0


def test_sign_flip_test_is_exact_on_a_small_case():
    """Four nonzero differences of equal size: 2 of the 16 sign patterns reach |T| = 4 -> p = 1/8."""
    rng = np.random.default_rng(5)
    p = sign_flip_test(np.array([[1.0, 1.0, 1.0, 1.0, 0.0]]), np.ones(5), n_perm=200_000, rng=rng)
    assert p[0] == pytest.approx(2 / 16, abs=0.005)
    assert sign_flip_test(np.zeros((1, 6)), np.ones(6), 100, rng)[0] == 1.0


def test_benjamini_hochberg_matches_scipy():
    rng = np.random.default_rng(11)
    p = np.concatenate([rng.random(50), rng.random(10) * 1e-3])
    assert np.allclose(benjamini_hochberg(p), false_discovery_control(p, method="bh"))
    with_nan = np.array([0.01, np.nan, 0.04, 0.03])
    q = benjamini_hochberg(with_nan)
    assert np.isnan(q[1]) and np.allclose(q[[0, 2, 3]], false_discovery_control([0.01, 0.04, 0.03]))


def _matrix_pvalues(rng, n_mat: int, deltas: np.ndarray, n: int = 60) -> np.ndarray:
    """p-values of ``n_mat`` simulated matrices; cells alternate binary (McNemar) and graded
    (sign-flip test) metrics, with true deltas ``deltas`` (one per cell)."""
    cells = deltas.size
    binary = np.arange(cells) % 2 == 0
    p = np.empty((n_mat, cells))
    nb, nc = int(binary.sum()), int((~binary).sum())
    # binary cells: base 0.5, adapter 0.5 + delta
    pa = np.broadcast_to(0.5 + deltas[binary], (n_mat, nb)).reshape(-1, 1)
    u = rng.random((n_mat * nb, n))
    base = (u < 0.5).astype(float)
    adapter = np.where(rng.random(u.shape) < 0.5, u < pa, rng.random(u.shape) < pa).astype(float)
    p[:, binary] = mcnemar_exact(adapter, base).reshape(n_mat, nb)
    # graded cells: per-item score differences, normal noise around the true delta
    mu = np.broadcast_to(deltas[~binary], (n_mat, nc)).reshape(-1, 1)
    diff = rng.normal(0, 0.3, size=(n_mat * nc, n)) + mu
    w = rng.integers(1, 4, size=n).astype(float)
    p[:, ~binary] = sign_flip_test(diff, w, n_perm=999, rng=rng).reshape(n_mat, nc)
    return p


def _fdr(q: np.ndarray, null: np.ndarray, alpha: float) -> tuple[float, float]:
    reject = q <= alpha
    false = (reject & null).sum(axis=1)
    fdp = false / np.maximum(reject.sum(axis=1), 1)
    return float(fdp.mean()), float(fdp.std() / np.sqrt(len(fdp)))


def test_bh_controls_fdr_on_null_matrices():
    rng = np.random.default_rng(2024)
    alpha, n_mat, cells = 0.05, 3000, 24
    p = _matrix_pvalues(rng, n_mat, np.zeros(cells))
    null = np.ones_like(p, bool)
    # the per-cell tests are calibrated: about alpha of null cells reject before adjustment ...
    assert 0.02 <= np.mean(p <= alpha) <= alpha + 0.005
    # ... so without adjustment most null matrices hold a false discovery
    raw_fdr, _ = _fdr(p, null, alpha)
    assert raw_fdr > 0.4
    q = np.apply_along_axis(benjamini_hochberg, 1, p)
    fdr, se = _fdr(q, null, alpha)
    assert fdr <= alpha, (fdr, se)


def test_bh_controls_fdr_with_true_effects_and_finds_them():
    rng = np.random.default_rng(99)
    alpha, n_mat = 0.05, 2000
    deltas = np.array([0.0] * 16 + [0.3, 0.3, 0.25, 0.25, 0.3, 0.3, 0.25, 0.25])
    p = _matrix_pvalues(rng, n_mat, deltas)
    null = np.broadcast_to(deltas == 0, p.shape)
    q = np.apply_along_axis(benjamini_hochberg, 1, p)
    fdr, se = _fdr(q, null, alpha)
    assert fdr <= alpha * 16 / 24 + 2 * se, (fdr, se)  # BH: FDR <= alpha * m0 / m
    power = np.mean((q <= alpha)[:, deltas != 0])
    assert power > 0.8, power
