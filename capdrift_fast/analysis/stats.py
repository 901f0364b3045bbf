"""Paired statistics of the drift matrix: bootstrap CIs, paired tests, Benjamini–Hochberg.

Every function here works on a *batch of cells that share one item set*: arrays of shape ``(K, n)``
hold, for ``K`` cells (adapter x metric of one task), the per-item value of ``n`` items (the task's
prompts). The base model and the adapter answered the same prompts, so each cell is a paired sample:
``diff[k, i] = adapter[k, i] - base[k, i]`` with an item weight ``weight[k, i] >= 0`` (1 for a plain
mean, IFEval's ``n_instructions`` for instruction-level accuracy, 0 for an item absent from the cell).

The cell's statistic is the weighted mean difference ``delta_k = sum_i w_ki d_ki / sum_i w_ki`` — the
same number as ``score - base_score`` in the matrix, because the weights are the item's and do not
depend on the model.

Everything is vectorised over replicates (one matrix product per block of replicates) and over cells.
"""

from __future__ import annotations

import numpy as np

BLOCK_ELEMENTS = 4_000_000
"""Largest resampling matrix (replicates x items) built at once; bounds memory at ~32 MB per block."""


def _blocks(total: int, n: int) -> list[tuple[int, int]]:
    size = max(1, BLOCK_ELEMENTS // max(n, 1))
    return [(s, min(s + size, total)) for s in range(0, total, size)]


def weighted_mean(values: np.ndarray, weight: np.ndarray) -> np.ndarray:
    """``sum(w * v) / sum(w)`` along the last axis (NaN where the weights sum to 0).

    Shapes: ``values`` and ``weight`` ``(..., n)`` (broadcastable); returns ``(...)``.
    """
    num = (values * weight).sum(axis=-1)
    den = np.broadcast_to(weight, np.broadcast_shapes(values.shape, weight.shape)).sum(axis=-1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)


def bootstrap_replicates(diff: np.ndarray, weight: np.ndarray, n_boot: int, rng: np.random.Generator) -> np.ndarray:
    """Paired (item) bootstrap replicates of the weighted mean difference of each cell.

    Each replicate draws ``n`` items with replacement (Efron & Tibshirani 1993, ch. 6; the paired
    design resamples *items*, keeping each item's base and adapter values together) as a multinomial
    count vector ``c`` and computes ``sum_i c_i w_ki d_ki / sum_i c_i w_ki`` — for IFEval ILA the
    micro-average over the resampled prompts' instructions. All cells share the same resampled items.

    Args:
        diff: ``(K, n)`` adapter minus base per item (any finite value where ``weight`` is 0).
        weight: ``(K, n)`` or ``(n,)`` item weights, ``>= 0``.
        n_boot: number of replicates ``B``.
        rng: numpy generator (the caller seeds it).

    Returns:
        ``(B, K)`` replicate deltas (NaN in a replicate whose drawn items all have weight 0).
    """
    diff = np.atleast_2d(np.asarray(diff, dtype=np.float64))
    weight = np.broadcast_to(np.asarray(weight, dtype=np.float64), diff.shape)
    k, n = diff.shape
    if n == 0:
        return np.full((n_boot, k), np.nan)
    wd = (weight * diff).T  # (n, K)
    w = weight.T
    out = np.empty((n_boot, k))
    for lo, hi in _blocks(n_boot, n):
        counts = rng.multinomial(n, np.full(n, 1.0 / n), size=hi - lo).astype(np.float64)  # (b, n)
        num, den = counts @ wd, counts @ w
        with np.errstate(invalid="ignore", divide="ignore"):
            out[lo:hi] = np.where(den > 0, num / np.where(den > 0, den, 1.0), np.nan)
    return out


def _column_quantiles(values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Quantiles of each column of ``values`` ``(B, K)`` at per-column probabilities ``probs``
    ``(P, K)`` (linear interpolation, NaNs ignored; NaN where a column has no finite value)."""
    srt = np.sort(values, axis=0)  # NaNs sort last
    count = np.isfinite(values).sum(axis=0)
    pos = probs * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    frac = pos - lo
    v_lo = np.take_along_axis(srt, lo, axis=0)
    v_hi = np.take_along_axis(srt, hi, axis=0)
    out = v_lo + (v_hi - v_lo) * frac
    return np.where(count > 0, out, np.nan)


def percentile_ci(
    replicates: np.ndarray, level: float = 0.95, n: int | np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap percentile interval of each column (Efron & Tibshirani 1993, ch. 13).

    With ``n`` (the number of resampled items, per column or one for all) this is Hesterberg's
    *expanded* percentile interval (Hesterberg 2015, "What teachers should know about the bootstrap",
    The American Statistician 69(4), §4.3): the quantile levels become
    ``alpha' / 2 = Phi(sqrt(n / (n - 1)) * t_{alpha/2, n-1})``, which corrects the plain interval's
    narrowness at small ``n`` (the bootstrap's variance has the divisor ``n`` and ignores the t
    tails). In ``tests/analysis/test_stats.py`` it covers 93–96% where the plain one covered 92% at ``n = 24``.

    Args:
        replicates: ``(B, K)`` from :func:`bootstrap_replicates`; NaN replicates are ignored.
        level: coverage, e.g. 0.95.
        n: items per column (``(K,)`` or scalar, ``>= 2`` to expand); None = plain percentile.

    Returns:
        ``(low, high)``, each ``(K,)``.
    """
    from scipy.stats import norm, t

    replicates = np.atleast_2d(replicates)
    k = replicates.shape[1]
    a = np.full(k, (1.0 - level) / 2.0)
    if n is not None:
        nn = np.broadcast_to(np.asarray(n, dtype=np.float64), (k,))
        big = nn >= 2
        with np.errstate(invalid="ignore", divide="ignore"):
            expanded = norm.cdf(np.sqrt(nn / (nn - 1.0)) * t.ppf(a, nn - 1.0))
        a = np.where(big, expanded, a)
    q = _column_quantiles(replicates, np.stack([a, 1.0 - a]))
    return q[0], q[1]


def mcnemar_exact(adapter: np.ndarray, base: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Exact (binomial) two-sided McNemar test of paired binary outcomes, per cell.

    McNemar (1947), exact form as in ``statsmodels.stats.contingency_tables.mcnemar(exact=True)``:
    with ``b`` items right for the adapter only and ``c`` right for the base only,
    ``p = min(1, 2 * P[Binom(b + c, 1/2) <= min(b, c)])``, and ``p = 1`` when ``b + c = 0``.
    It tests ``P(adapter right, base wrong) = P(adapter wrong, base right)``, i.e. ``delta = 0``.

    Args:
        adapter, base: ``(K, n)`` 0/1 outcomes.
        mask: ``(K, n)`` or ``(n,)`` booleans, True where the item belongs to the cell (default all).

    Returns:
        ``(K,)`` p-values.
    """
    from scipy.stats import binom

    adapter = np.atleast_2d(adapter) > 0.5
    base = np.atleast_2d(base) > 0.5
    mask = np.ones(adapter.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), adapter.shape)
    b = (adapter & ~base & mask).sum(axis=1)
    c = (~adapter & base & mask).sum(axis=1)
    p = 2.0 * binom.cdf(np.minimum(b, c), b + c, 0.5)
    return np.where(b + c == 0, 1.0, np.minimum(1.0, p))


def sign_flip_test(diff: np.ndarray, weight: np.ndarray, n_perm: int, rng: np.random.Generator) -> np.ndarray:
    """Two-sided paired permutation (sign-flip) test of ``delta = 0``, per cell.

    Under the null that base and adapter are exchangeable within each item, each item's difference
    keeps its size and has a random sign (Fisher 1935; Good, *Permutation Tests*, 2005, §3.1). The
    statistic is ``T = sum_i w_i d_i`` (the weighted mean difference times the fixed ``sum w``);
    ``n_perm`` random sign vectors give ``p = (1 + #{|T*| >= |T|}) / (n_perm + 1)``, the Monte Carlo
    p-value that is valid at any ``n_perm`` (Phipson & Smyth 2010). All cells share the sign vectors.

    Args:
        diff: ``(K, n)`` adapter minus base per item.
        weight: ``(K, n)`` or ``(n,)`` item weights (0 = item not in the cell).
        n_perm: number of random sign vectors.
        rng: numpy generator.

    Returns:
        ``(K,)`` p-values in ``(0, 1]``.
    """
    diff = np.atleast_2d(np.asarray(diff, dtype=np.float64))
    wd = (np.broadcast_to(np.asarray(weight, dtype=np.float64), diff.shape) * diff)
    k, n = wd.shape
    observed = np.abs(wd.sum(axis=1))
    tol = 1e-9 * np.maximum(np.abs(wd).sum(axis=1), 1.0)  # floating-point ties count as ties
    exceed = np.zeros(k)
    for lo, hi in _blocks(n_perm, n):
        signs = rng.integers(0, 2, size=(hi - lo, n), dtype=np.int8).astype(np.float64) * 2.0 - 1.0
        exceed += (np.abs(signs @ wd.T) >= observed - tol).sum(axis=0)
    return (1.0 + exceed) / (n_perm + 1.0)


def benjamini_hochberg(p: np.ndarray) -> np.ndarray:
    """Benjamini–Hochberg adjusted p-values (q-values) over all finite entries of ``p``.

    Benjamini & Hochberg (1995): with the ``m`` p-values sorted, ``q_(i) = min_{j >= i} m p_(j) / j``,
    capped at 1; rejecting ``q <= alpha`` controls the false discovery rate at ``alpha`` for
    independent or positively dependent (PRDS) tests. Same values as
    ``scipy.stats.false_discovery_control(p, method="bh")``. NaN entries (no test) stay NaN and do
    not count in ``m``.

    Args:
        p: p-values, any shape.

    Returns:
        q-values, same shape as ``p``.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    vals = p[ok]
    m = vals.size
    if m == 0:
        return q
    order = np.argsort(vals)
    ranked = vals[order] * m / np.arange(1, m + 1)
    ranked = np.minimum.accumulate(ranked[::-1])[::-1]
    adj = np.empty(m)
    adj[order] = np.minimum(ranked, 1.0)
    q[ok] = adj
    return q


def flip_counts(adapter: np.ndarray, base: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """The paired 2x2 (McNemar) table of binary outcomes, per cell.

    Args:
        adapter, base: ``(K, n)`` 0/1 outcomes.
        mask: ``(K, n)`` or ``(n,)`` booleans, True where the item belongs to the cell (default all).

    Returns:
        ``(K, 4)`` integer counts: ``both`` right, ``adapter_only`` right (``b`` of :func:`mcnemar_exact`),
        ``base_only`` right (``c``), ``neither`` right.
    """
    adapter = np.atleast_2d(adapter) > 0.5
    base = np.atleast_2d(base) > 0.5
    mask = np.ones(adapter.shape, bool) if mask is None else np.broadcast_to(np.asarray(mask, bool), adapter.shape)
    return np.stack([(adapter & base & mask).sum(axis=1), (adapter & ~base & mask).sum(axis=1),
                     (~adapter & base & mask).sum(axis=1), (~adapter & ~base & mask).sum(axis=1)], axis=1)


def mde_mcnemar(n: np.ndarray, discordant: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> np.ndarray:
    """Minimum detectable effect of a paired binary comparison: the smallest ``|delta| = |p10 - p01|``
    that a two-sided McNemar test at level ``alpha`` detects with probability ``power`` with ``n`` items.

    Connor (1987), "Sample size for testing differences in proportions for the paired-sample design",
    Biometrics 43(1):207-211: with ``psi`` the discordant proportion ``p10 + p01``,
    ``n = (z_{1-alpha/2} sqrt(psi) + z_{power} sqrt(psi - delta^2))^2 / delta^2``, solved here for ``delta``.
    ``psi`` is the observed discordant share, raised to ``delta`` where it is smaller (an effect ``delta``
    needs at least that share of discordant items: ``|p10 - p01| <= p10 + p01``), so a cell with few flips
    reads as "this ``n`` detects only large effects", not as 0. The items needed fall as ``delta`` grows, so
    ``delta`` is found by bisection on ``(0, 1]``.

    Args:
        n: ``(K,)`` items per cell. discordant: ``(K,)`` discordant items ``b + c``.
        alpha: two-sided level (per cell, before BH). power: ``1 - beta``.

    Returns:
        ``(K,)`` MDE in accuracy units (NaN where ``n = 0`` or no ``delta <= 1`` is detectable).
    """
    from scipy.stats import norm

    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        psi_obs = np.clip(np.asarray(discordant, dtype=np.float64) / n, 0.0, 1.0)
    za, zb = norm.ppf(1 - alpha / 2), norm.ppf(power)

    def need(delta: np.ndarray) -> np.ndarray:  # items Connor's formula needs to detect delta
        psi = np.maximum(psi_obs, delta)
        return (za * np.sqrt(psi) + zb * np.sqrt(np.maximum(psi - delta ** 2, 0.0))) ** 2 / delta ** 2

    lo, hi = np.zeros_like(n), np.ones_like(n)
    with np.errstate(invalid="ignore", divide="ignore"):
        possible = need(hi) <= n
        for _ in range(60):
            mid = (lo + hi) / 2
            ok = need(mid) <= n  # mid is detectable with n items
            hi = np.where(ok, mid, hi)
            lo = np.where(ok, lo, mid)
    return np.where((n > 0) & possible, hi, np.nan)


def mde_paired(diff: np.ndarray, weight: np.ndarray, alpha: float = 0.05, power: float = 0.8) -> np.ndarray:
    """Minimum detectable effect of a paired mean difference (normal approximation):
    ``(z_{1-alpha/2} + z_{power}) * sd_d / sqrt(n_eff)`` (Cohen 1988, *Statistical Power Analysis*, ch. 2;
    the standard two-sided z power formula), with ``sd_d`` the weighted SD of the per-item differences
    and ``n_eff = (sum w)^2 / sum w^2`` (Kish's effective sample size) for weighted items (IFEval ILA).

    Args:
        diff: ``(K, n)`` adapter minus base per item. weight: ``(K, n)`` or ``(n,)`` (0 = not in the cell).

    Returns:
        ``(K,)`` MDE in the metric's units (NaN for fewer than 2 items).
    """
    from scipy.stats import norm

    diff = np.atleast_2d(np.asarray(diff, dtype=np.float64))
    w = np.broadcast_to(np.asarray(weight, dtype=np.float64), diff.shape)
    sw = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (w * diff).sum(axis=1) / sw
        var = (w * (diff - mean[:, None]) ** 2).sum(axis=1) / sw
        n_eff = sw ** 2 / (w ** 2).sum(axis=1)
        out = (norm.ppf(1 - alpha / 2) + norm.ppf(power)) * np.sqrt(var * n_eff / np.maximum(n_eff - 1, 1e-12)) / np.sqrt(n_eff)
    return np.where((w > 0).sum(axis=1) >= 2, out, np.nan)
