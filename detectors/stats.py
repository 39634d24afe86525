"""Distances between a window and the training distribution, and the tail probabilities of the tests.

Numeric windows are summarised as a histogram of probability-integral-transform (PIT) scores on
equal-width bins of [0, 1]: under "production looks like training" every bin has the same share,
so PSI, Jensen-Shannon and KS need no per-feature bin edges and are exact against the training CDF
up to the bin width.
"""
from __future__ import annotations

import math

import numpy as np

from detectors import _kernels

__all__ = ["MIN_EXPECTED", "binned_auc", "binned_correlation", "chi2_sf", "jensen_shannon", "jensen_shannon_rows",
           "kolmogorov_sf", "kolmogorov_sf_rows", "ks_uniform_from_histogram", "ks_uniform_rows", "psi", "psi_rows",
           "wasserstein_from_histogram", "wasserstein_rows"]

#: a chi-square cell needs this many expected values; smaller ones are pooled (and a category's share
#: in fewer values than this many times its inverse is not worth quoting)
MIN_EXPECTED = 5.0
#: floor on a bin share inside logarithms (PSI, JS): an empty bin must not give an infinite distance
_EPS = 1e-6


def psi(observed: np.ndarray, expected: np.ndarray) -> float:
    """Population stability index between observed counts and expected shares (`psi_rows` of one row).

    >>> round(psi(np.array([50, 50]), np.array([0.5, 0.5])), 6)
    0.0
    >>> round(psi(np.array([90, 10]), np.array([0.5, 0.5])), 3)
    0.879
    """
    return float(psi_rows(np.asarray(observed)[None, :], expected)[0])


def psi_rows(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """`psi` of each row of observed counts (f, bins) against expected shares (bins,) or (f, bins)."""
    p = np.maximum(observed / np.maximum(observed.sum(axis=1, keepdims=True), 1), _EPS)
    q = np.maximum(expected, _EPS)
    return np.sum((p - q) * np.log(p / q), axis=1)


def jensen_shannon(observed: np.ndarray, expected: np.ndarray) -> float:
    """Jensen-Shannon divergence in bits (0 = identical, 1 = disjoint; `jensen_shannon_rows` of one row).

    >>> jensen_shannon(np.array([10, 0]), np.array([0.0, 1.0]))
    1.0
    """
    return float(jensen_shannon_rows(np.asarray(observed)[None, :], expected)[0])


def jensen_shannon_rows(observed: np.ndarray, expected: np.ndarray) -> np.ndarray:
    """`jensen_shannon` of each row of observed counts (f, bins) against expected shares (bins,) or (f, bins)."""
    p = observed / np.maximum(observed.sum(axis=1, keepdims=True), 1)
    q = expected / np.maximum(np.sum(expected, axis=-1, keepdims=True), 1e-300)
    m = (p + q) / 2
    with np.errstate(divide="ignore", invalid="ignore"):
        kl_p = np.where(p > 0, p * np.log2(p / m), 0.0)
        kl_q = np.where(q > 0, q * np.log2(q / m), 0.0)
    return np.maximum(0.0, (kl_p.sum(axis=1) + kl_q.sum(axis=1)) / 2)


def ks_uniform_from_histogram(counts: np.ndarray) -> float:
    """sup |ECDF(u) - u| of PIT scores given their counts on equal-width bins of [0, 1]; 0 when
    there are none (`ks_uniform_rows` of one row).

    Evaluated at the bin edges, so it is exact for scores that sit on the edges and never
    above the exact statistic (the test stays conservative).

    >>> [ks_uniform_from_histogram(np.array(h)) for h in ([25, 25, 25, 25], [100, 0, 0, 0], [0, 0, 0, 0])]
    [0.0, 0.75, 0.0]
    """
    return float(ks_uniform_rows(np.asarray(counts)[None, :])[0][0])


def ks_uniform_rows(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(KS distance to uniform, total) of each row of PIT-score counts (f, bins), as
    `ks_uniform_from_histogram`. Compiled (`_kernels.ks_uniform`, which the window test shares)."""
    counts = np.ascontiguousarray(counts, dtype=np.int64)
    ks, totals = np.empty(len(counts)), np.empty(len(counts), dtype=np.int64)
    _kernels.ks_uniform(counts, totals, ks)
    return ks, totals


#: where the Wasserstein distance compares the two quantile functions
_W1_PROBS = (np.arange(256) + 0.5) / 256


def wasserstein_from_histogram(counts: np.ndarray, quantile_probs: np.ndarray, quantiles: np.ndarray) -> float:
    """Wasserstein-1 distance in the feature's own units between the window and training
    (`wasserstein_rows` of one row).

    The window's quantile function is its PIT quantile function mapped through the training
    quantile function; W1 is the mean absolute difference of the two quantile functions.
    """
    return float(wasserstein_rows(np.asarray(counts)[None, :], quantile_probs, np.asarray(quantiles)[None, :])[0])


def wasserstein_rows(counts: np.ndarray, quantile_probs: np.ndarray, quantiles: np.ndarray) -> np.ndarray:
    """`wasserstein_from_histogram` of each row of PIT-score counts (f, bins), row j against training
    quantiles[j] (f, len(quantile_probs)); 0 for an empty row."""
    counts = np.asarray(counts)
    f, bins = counts.shape
    m = len(_W1_PROBS)
    n = counts.sum(axis=1)
    cdf = np.concatenate((np.zeros((f, 1)), np.cumsum(counts, axis=1) / np.maximum(n, 1)[:, None]), axis=1)
    # inverse of the piecewise-linear window CDF over PIT scores, each row on its own knots: where a
    # knot falls among the (shared, sorted) probabilities counts the knots at or below each of them
    first_at_or_above = np.searchsorted(_W1_PROBS, cdf, side="left") + (np.arange(f) * (m + 1))[:, None]
    knots_at_or_below = np.cumsum(np.bincount(first_at_or_above.ravel(), minlength=f * (m + 1)).reshape(f, m + 1)
                                  [:, :-1], axis=1)
    u_of_p = _interp_rows(_W1_PROBS, knots_at_or_below - 1, cdf, np.linspace(0.0, 1.0, bins + 1))
    window_q = _interp_rows(u_of_p, np.searchsorted(quantile_probs, u_of_p, side="right") - 1,
                            quantile_probs, quantiles)
    train_q = _interp_rows(_W1_PROBS, np.searchsorted(quantile_probs, _W1_PROBS, side="right") - 1,
                           quantile_probs, quantiles)
    return np.where(n > 0, np.mean(np.abs(window_q - train_q), axis=1), 0.0)


def _interp_rows(x: np.ndarray, j: np.ndarray, xp: np.ndarray, fp: np.ndarray) -> np.ndarray:
    """np.interp(x[r], xp[r], fp[r]) for each row r, in its operations (the same floats), given j: per
    x the last index with xp <= x (-1 below the first). Each of x, j, xp, fp: rows (f, ...), or one
    row that every row shares (not all four)."""
    f, last = next(a.shape[0] for a in (x, j, xp, fp) if a.ndim == 2), xp.shape[-1] - 1
    lo, hi = np.clip(j, 0, last), np.clip(j + 1, 0, last)
    x_lo, x_hi = _rows_at(xp, lo, f), _rows_at(xp, hi, f)
    y_lo, y_hi = _rows_at(fp, lo, f), _rows_at(fp, hi, f)
    with np.errstate(divide="ignore", invalid="ignore"):
        inside = (y_hi - y_lo) / (x_hi - x_lo) * (x - x_lo) + y_lo
    return np.where((j < 0) | (j >= last) | (x_lo == x), y_lo, inside)


def _rows_at(values: np.ndarray, index: np.ndarray, f: int) -> np.ndarray:
    """values[r, index[r]] for f rows; values or index may be one row all rows share."""
    if values.ndim == 1:
        return values[index]
    if index.ndim == 1:
        return values[:, index]
    return values[np.arange(f)[:, None], index]


def kolmogorov_sf(x: float) -> float:
    """P(sqrt(n) D > x) for the Kolmogorov distribution (large n; `kolmogorov_sf_rows` of one value).

    >>> round(kolmogorov_sf(1.358), 3)
    0.05
    """
    return float(kolmogorov_sf_rows(np.array([x], dtype=np.float64))[0])


def kolmogorov_sf_rows(x: np.ndarray) -> np.ndarray:
    """`kolmogorov_sf` of each value of x: the alternating series summed term by term in order (a
    cumulative sum: the same floats), each value's up to its first term below 1e-300."""
    x = np.asarray(x, dtype=np.float64)
    k = np.arange(1, 101)
    terms = np.exp((-2.0 * k * k)[None, :] * x[:, None] * x[:, None])
    tiny = terms < 1e-300
    terms[(np.cumsum(tiny, axis=1) - tiny) > 0] = 0.0  # after the first tiny term
    terms[:, 1::2] *= -1.0
    total = np.cumsum(terms, axis=1)[:, -1] if len(x) else np.zeros(0)
    return np.where(x > 0.2, np.minimum(1.0, np.maximum(0.0, 2.0 * total)), 1.0)


def chi2_sf(x: float, dof: int) -> float:
    """Upper tail of the chi-square distribution (regularised upper incomplete gamma Q(dof/2, x/2)).

    >>> round(chi2_sf(3.841, 1), 3)
    0.05
    >>> round(chi2_sf(18.307, 10), 3)
    0.05
    """
    if x <= 0 or dof <= 0:
        return 1.0
    a, z = dof / 2.0, x / 2.0
    log_prefix = a * math.log(z) - z - math.lgamma(a)
    if z < a + 1:  # series for P, then Q = 1 - P
        term = total = 1.0 / a
        ap = a
        for _ in range(1000):
            ap += 1
            term *= z / ap
            total += term
            if term < total * 1e-15:
                break
        return float(max(0.0, 1.0 - total * math.exp(log_prefix)))
    # continued fraction for Q (Lentz)
    tiny = 1e-300
    b = z + 1 - a
    c = 1 / tiny
    d = 1 / b
    h = d
    for i in range(1, 1000):
        an = -i * (i - a)
        b += 2
        d = an * d + b
        d = tiny if abs(d) < tiny else d
        c = b + an / c
        c = tiny if abs(c) < tiny else c
        d = 1 / d
        delta = d * c
        h *= delta
        if abs(delta - 1) < 1e-15:
            break
    return float(min(1.0, math.exp(log_prefix) * h))


def binned_auc(scores: np.ndarray, positives: np.ndarray, negatives: np.ndarray) -> tuple[float, float]:
    """AUC of a score that is constant within bins, and DeLong's standard error, from the bins' counts.

    Every row of bin b scores `scores[b]`; `positives[b]` / `negatives[b]` rows of it are of the
    positive / negative class. Ties (within a bin, or bins of equal score) count one half. DeLong's
    variance is exact here: every row's placement value is its bin's, so it needs no row.

    >>> [round(v, 4) for v in binned_auc(np.array([0.1, 0.9]), np.array([10, 90]), np.array([90, 10]))]
    [0.9, 0.0213]
    >>> binned_auc(np.array([0.5]), np.array([5]), np.array([0]))  # one class: no AUC
    (0.5, inf)
    """
    unique, group = np.unique(np.asarray(scores, float), return_inverse=True)
    pos = np.bincount(group, weights=positives, minlength=len(unique))
    neg = np.bincount(group, weights=negatives, minlength=len(unique))
    m, n = float(pos.sum()), float(neg.sum())
    if m < 2 or n < 2:
        return 0.5, math.inf
    # a positive's placement: the share of negatives it outranks; a negative's: of positives outranking it
    v10 = (np.cumsum(neg) - neg + 0.5 * neg) / n
    v01 = (m - np.cumsum(pos) + 0.5 * pos) / m
    auc = float((pos * v10).sum() / m)
    s10 = float((pos * (v10 - auc) ** 2).sum() / (m - 1))
    s01 = float((neg * (v01 - auc) ** 2).sum() / (n - 1))
    return auc, math.sqrt(s10 / m + s01 / n)


def binned_correlation(scores: np.ndarray, counts: np.ndarray, sums: np.ndarray, sums_sq: np.ndarray) -> float:
    """Pearson correlation between a score constant within bins and a numeric label, from the bins'
    count, label sum and label sum of squares (0 when either side has no variance).

    >>> round(binned_correlation(np.array([0.0, 1.0]), np.array([2, 2]), np.array([0.0, 2.0]), np.array([0.0, 2.0])), 3)
    1.0
    """
    scores, counts = np.asarray(scores, float), np.asarray(counts, float)
    total = counts.sum()
    if total < 2:
        return 0.0
    mean_x = float((counts * scores).sum() / total)
    mean_y = float(np.sum(sums) / total)
    var_x = float((counts * scores * scores).sum() / total) - mean_x * mean_x
    var_y = float(np.sum(sums_sq) / total) - mean_y * mean_y
    if var_x <= 1e-300 or var_y <= 1e-300:
        return 0.0
    cov = float((scores * np.asarray(sums, float)).sum() / total) - mean_x * mean_y
    return float(np.clip(cov / math.sqrt(var_x * var_y), -1.0, 1.0))
