"""Property tests of the baseline profiles (hypothesis): whatever the data and the chunking."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines.build import build_baseline_from_columns
from baselines.profile import QUANTILE_PROBS, Baseline

finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
maybe_missing = st.one_of(finite, finite, finite, st.none())


def numeric_profile(values, **kwargs):
    return build_baseline_from_columns("m", {"x": np.array(values, dtype=float)}, **kwargs).features["x"]


@settings(max_examples=150, deadline=None)
@given(values=st.lists(maybe_missing, min_size=1, max_size=300),
       chunk_rows=st.integers(1, 64), reservoir_size=st.integers(2, 100))
def test_numeric_profile_invariants(values, chunk_rows, reservoir_size):
    x = np.array([np.nan if v is None else v for v in values])
    valid = x[np.isfinite(x)]
    if not len(valid):
        return  # an all-missing column has no numeric profile (test_baselines covers it)
    p = numeric_profile(x, chunk_rows=chunk_rows, reservoir_size=reservoir_size)

    assert (p.count, p.n_missing, p.n_invalid) == (len(valid), len(x) - len(valid), 0)
    assert (p.min, p.max) == (valid.min(), valid.max())
    assert p.mean == pytest.approx(valid.mean(), rel=1e-9, abs=1e-6)
    assert p.std == pytest.approx(valid.std(), rel=1e-6, abs=1e-6)
    q = p.quantiles
    assert len(q) == len(QUANTILE_PROBS) and np.all(np.diff(q) >= 0)
    assert (q[0], q[-1]) == (p.min, p.max)
    assert np.all(np.diff(p.bin_edges) > 0) and np.all((p.bin_edges >= p.min) & (p.bin_edges < p.max))
    assert len(p.bin_freqs) == len(p.bin_edges) + 1 and np.all(p.bin_freqs >= 0)
    assert p.bin_freqs.sum() == pytest.approx(1.0)
    if len(valid) <= reservoir_size or p.discrete_values is not None:  # exact regimes
        np.testing.assert_allclose(q, np.quantile(valid, QUANTILE_PROBS), rtol=1e-9, atol=1e-9)

    # the chunking changes nothing but float rounding in the moments
    whole = numeric_profile(x, chunk_rows=10_000, reservoir_size=reservoir_size)
    np.testing.assert_array_equal(p.quantiles, whole.quantiles)
    np.testing.assert_array_equal(p.bin_freqs, whole.bin_freqs)
    assert p.top_values == whole.top_values


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.integers(-5, 5), min_size=1, max_size=400), reservoir_size=st.integers(2, 50))
def test_few_valued_columns_are_exact(values, reservoir_size):
    x = np.array(values, dtype=float)
    p = numeric_profile(x, reservoir_size=reservoir_size, chunk_rows=37)
    uniques, counts = np.unique(x, return_counts=True)
    np.testing.assert_array_equal(p.discrete_values, uniques)
    np.testing.assert_allclose(p.discrete_freqs, counts / len(x))
    np.testing.assert_allclose(p.quantiles, np.quantile(x, QUANTILE_PROBS), atol=1e-9)
    exact = np.bincount(np.searchsorted(p.bin_edges, x, side="left"), minlength=len(p.bin_edges) + 1) / len(x)
    np.testing.assert_allclose(p.bin_freqs, exact)
    assert p.integer_valued


@settings(max_examples=100, deadline=None)
@given(values=st.lists(st.one_of(st.sampled_from("abcdefgh"), st.none()), min_size=1, max_size=200),
       top_k=st.integers(1, 10))
def test_categorical_shares_add_up(values, top_k):
    b = build_baseline_from_columns("m", {"c": values}, top_k=top_k, chunk_rows=16)
    p = b.features["c"]
    present = [v for v in values if v is not None]
    assert (p.count, p.n_missing) == (len(present), len(values) - len(present))
    assert p.n_distinct == len(set(present)) and len(p.categories) == min(top_k, len(set(present)))
    if present:
        assert sum(p.categories.values()) + p.other_freq == pytest.approx(1.0)
        for key, share in p.categories.items():
            assert share == present.count(key) / len(present)
    # what is stored is what is loaded
    assert Baseline.loads(_packed(b)).to_dict() == b.to_dict()


def _packed(b: Baseline) -> bytes:
    import msgpack

    return msgpack.packb(b.to_dict(), use_bin_type=True)
