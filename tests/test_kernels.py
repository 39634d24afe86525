"""The compiled per-value loops (detectors._kernels) against plain-Python references: event dicts ->
columns (any key order, missing and unknown keys, any value type), refusal of wrong buffers instead
of a crash, batch-size invariance of the block sums, and the CUSUM chains."""
from __future__ import annotations

import math
import random
import subprocess
import sys
from functools import cache

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines.profile import NumericProfile, category_key
from detectors import _kernels
from detectors.cusum import CusumBank
from detectors.diagnosis import on_grid
from detectors.episodes import Alarm
from detectors.extract import ABSENT, ABSENT_KEY, INVALID, MISSING, VALID, FeatureColumns, classify_numbers
from detectors.model import ModelMonitor
from detectors.numeric import NumericBank
from detectors.sketches import SpaceSaving
from stream.devkit.synthetic import scenarios as streams

# ---- read_columns: FeatureColumns.extract against the old pure-Python semantics -------------------
NUMERIC = ("amount", "count", "latency")
CATEGORICAL = ("country", "device")
#: labels that differ only before their last character, in the three str kinds (1, 2 and 4 bytes)
CATEGORIES = (["FR", "US", "3", "true", "2.5", "GR", "ÉR", "€R", "😀R"], ["phone", "false", "nan", "inf"])
KNOWN = frozenset(NUMERIC + CATEGORICAL)
#: known names, unknown names and non-str keys; each event takes some of them, in its own order
KEY_POOL = NUMERIC + CATEGORICAL + ("extra_1", "zz", 7, 2.5, ("amount",))


class MyFloat(float):
    pass


class Label(str):
    pass


class MyInt(int):
    pass


class MyStr(str):
    pass


def fresh(name: str) -> str:
    """An equal string that is another object: the kernel recognises keys by identity first."""
    return "".join(list(name))


NAN, INF = math.nan, math.inf
values = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([NAN, INF, -INF, 1e308, -1.7e308, 5e-324, 0.0, -0.0, 2.5, 3.0, 1.0, -1.0]),
    st.integers(-(10**20), 10**20),
    st.sampled_from([10**400, -(10**400), 2**1024 - 1, 2**1023, True, False, 0, 1, 3, -1, 2**63]),
    st.none(),
    st.none(),
    st.text(max_size=4),
    st.sampled_from(["FR", "US", "3", "true", "false", "phone", "nan", "inf", "2.5", "", "GR", "ÉR", "€R", "😀R", "ER",
                     "€S", "R"]),
    st.builds(MyStr, st.sampled_from(["FR", "phone", "new"])),
    st.lists(st.integers(), max_size=2),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
    st.tuples(st.integers()),
    st.builds(MyFloat, st.floats()),
    st.builds(MyInt, st.integers(-5, 5)),
    st.just(MyInt(10**400)),
    st.builds(np.float64, st.floats()),
    st.builds(np.int64, st.integers(-5, 5)),
)


@st.composite
def feature_maps(draw):
    keys = draw(st.lists(st.sampled_from(KEY_POOL), unique=True, max_size=len(KEY_POOL)))
    d = {}
    for k in keys:
        if isinstance(k, str) and draw(st.booleans()):
            k = fresh(k)
        d[k] = draw(values)
    return d


def reference_number(v) -> tuple[float, int]:
    if v is None:
        return NAN, MISSING
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        try:
            f = float(v)
        except OverflowError:
            return INF, INVALID
        if math.isfinite(f):
            return f, VALID
    return INF, INVALID


def reference_code(v, cats: list[str]) -> tuple[int, str | None]:
    if v is None:
        return -1, None
    if isinstance(v, (dict, list, tuple)):
        return -2, None
    key = category_key(v)
    return (cats.index(key), None) if key in cats else (len(cats), key)


def reference_extract(features: list[dict]):
    n, f, m = len(features), len(NUMERIC), len(CATEGORICAL)
    x = np.full((f, n), NAN)
    status = np.full((f, n), ABSENT_KEY, dtype=np.uint8)
    codes = np.full((m, n), -1, dtype=np.int64)
    absent = np.zeros((m, n), dtype=bool)
    others = [[] for _ in range(m)]
    extra = np.zeros(n, dtype=bool)
    for i, d in enumerate(features):
        for j, name in enumerate(NUMERIC):
            if name in d:
                x[j, i], status[j, i] = reference_number(d[name])
        for j, name in enumerate(CATEGORICAL):
            if name not in d:
                absent[j, i] = True
                continue
            codes[j, i], key = reference_code(d[name], CATEGORIES[j])
            if key is not None:
                others[j].append((i, key))
        extra[i] = any(k not in KNOWN for k in d)
    return x, status, codes, absent, others, extra


def assert_extract_matches(features: list[dict]) -> None:
    numbers, (codes, absent, others), extra = FeatureColumns(NUMERIC, CATEGORICAL, CATEGORIES,
                                                             count_extra=True).extract(features)
    x, status, ref_codes, ref_absent, ref_others, ref_extra = reference_extract(features)
    np.testing.assert_array_equal(numbers.x, x)
    np.testing.assert_array_equal(np.signbit(numbers.x), np.signbit(x))  # -0.0 stays -0.0
    np.testing.assert_array_equal(numbers.status, status)
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(absent, ref_absent)
    assert others == ref_others
    assert [[type(k) for _, k in o] for o in others] == [[type(k) for _, k in o] for o in ref_others]
    np.testing.assert_array_equal(extra, ref_extra)


@settings(max_examples=300, deadline=None)
@given(features=st.lists(feature_maps(), max_size=12))
def test_extract_matches_reference(features):
    assert_extract_matches(features)


@settings(max_examples=60, deadline=None)
@given(order=st.permutations(list(KEY_POOL)), first=st.integers(0, len(KEY_POOL)), v=values,
       drop=st.sampled_from(KEY_POOL))
def test_extract_same_keys_reordered_or_dropped_between_events(order, first, v, drop):
    """Consecutive events with the very same key objects, shifted, reordered and with one key dropped:
    the key cache by position must look each key up again where the order changes."""
    one = {k: v for k in order}
    rotated = {k: v for k in order[first:] + order[:first]}
    fewer = {k: v for k in order if k is not drop}
    back = dict(reversed(list(one.items())))
    assert_extract_matches([one, rotated, fewer, one, back, {}, fewer, one])


def test_extract_past_the_key_cache():
    """Events with more keys than the kernel remembers positions for (256), known ones at the end."""
    unknown = [f"u{i}" for i in range(300)]
    wide = {**{k: i for i, k in enumerate(unknown)}, "amount": 1.5, "country": "US", "count": "x"}
    reordered = {"country": None, **{k: 0 for k in unknown[::-1]}, "amount": 2, "device": [1]}
    assert_extract_matches([wide, wide, reordered, {"amount": 3.0}, wide, {**wide, "latency": 10**400}])


def test_extract_without_count_extra_and_non_dict_events_hold_nothing():
    numbers, (codes, absent, _), extra = FeatureColumns(NUMERIC, CATEGORICAL, CATEGORIES).extract(
        [{"amount": 1.0, "zz": 1}, {}])
    assert extra.shape == (0,)
    assert numbers.status.tolist() == [[VALID, ABSENT_KEY], [ABSENT_KEY] * 2, [ABSENT_KEY] * 2]
    assert codes.tolist() == [[-1, -1], [-1, -1]] and absent.all()


@settings(max_examples=100, deadline=None)
@given(column=st.lists(st.one_of(values, st.just(ABSENT)), max_size=20))
def test_classify_numbers_matches_reference(column):
    got = classify_numbers(column)
    ref = [(NAN, ABSENT_KEY) if v is ABSENT else reference_number(v) for v in column]
    np.testing.assert_array_equal(got.x[0], np.array([r[0] for r in ref], dtype=np.float64))
    assert got.status[0].tolist() == [r[1] for r in ref]


# ---- wrong buffers raise, they do not crash ---------------------------------------------------------
def z(k, dtype=np.int64):
    return np.zeros(k, dtype=dtype)


def read_columns_args():
    features = [{"amount": 1.0, "country": "FR"}, {"zz": 1}]
    return dict(features=features, columns={"amount": 0, "country": 1}, f=1, tables=({"FR": 0},),
                bool_codes=np.full((1, 2), -3, dtype=np.int64), x=np.empty((1, 2)), status=z((1, 2), np.uint8),
                codes=z((1, 2)), absent=z((1, 2), np.uint8), extra=z(2, np.uint8), top=None)


def numeric_blocks_args():
    # f = 2 features, n = 10 events from start 5 in blocks of 8: blocks 0 and 1, two window segments
    rng = np.random.default_rng(0)
    return dict(x=rng.normal(size=(2, 10)), u=rng.random((2, 10)), start=5, block=8, u_bits=20, mins=z(2, float),
                maxs=np.ones(2), cuts=np.array([0, 4, 10]), sums=z((2, 12)), hist=z((2, 2, 100)),
                counts=z((2, 2, 4)))


def categorical_blocks_args():
    # m = 2 features with 3 and 1 known categories: cells 0..3 and 4..5
    codes = np.array([[0, 1, 2, 3, -1, -2, 0, 0, 1, 3], [0, 1, -1, -2, 0, 1, 1, 0, 0, 0]], dtype=np.int64)
    return dict(codes=codes, start=5, block=8, n_known=np.array([3, 1]), offsets=np.array([0, 4]), n_cells=6,
                cuts=np.array([0, 3, 10]), sums=z((2, 6)), counts=z((2, 6)))


def cusum_sums_args():
    # f = 1 score, r = 2 counts, 3 blocks: sums (3, 3 f + r), chains 4 f + r
    return dict(sums=np.arange(15, dtype=np.int64).reshape(3, 5), ends=np.array([7, 15, 23]), f=1, k_fixed=z(1),
                half=0, hit=np.ones(2, dtype=np.int64), miss=z(2), block=8, h=np.full(6, 5, dtype=np.int64),
                s=z(6), last_zero=np.full(6, -1, dtype=np.int64))


def pit_transform_args():
    # feature 0 tabulated on 4 cells, feature 1 integers 0..2
    return dict(x=np.array([[0.1, 0.5, 2.0], [0.0, 1.0, 1.5]]), u=z((2, 3), float), start=0, kinds=np.array([0, 1]),
                offsets=z(2), sizes=np.array([0, 3]), params=np.array([[0, 4, -1, 0, 1, 2], [0, 0, 0, 0, 0, 0]], float),
                salts=z(2, np.uint64), table=np.linspace(0, 1, 5), int_lower=np.array([0, 0.3, 0.7]),
                int_span=np.array([0.3, 0.4, 0.3]), cells=4, p1=0.001)


def block_sums_args():
    # 10 events from 5 in blocks of 4, 2 columns: blocks 1, 2, 3 touched, the last incomplete
    return dict(values=np.arange(20, dtype=np.int64).reshape(10, 2), start=5, size=4,
                partial=np.ones(2, dtype=np.int64), out=z((3, 2)))


def test_block_sums_against_a_loop():
    rng = np.random.default_rng(3)
    for _ in range(200):
        c, size = int(rng.integers(1, 4)), int(rng.integers(1, 9))
        start, n = int(rng.integers(0, 30)), int(rng.integers(0, 30))
        values = rng.integers(-5, 6, size=(n, c))
        partial = rng.integers(-5, 6, size=c)
        blocks: dict[int, np.ndarray] = {}
        for i in range(n):
            b = (start + i) // size
            blocks[b] = blocks.get(b, partial.copy() if b == start // size else np.zeros(c, dtype=np.int64)) + values[i]
        keys = sorted(blocks)
        out = z((len(keys), c))
        p = partial.copy()
        complete = _kernels.block_sums(values, start, size, p, out)
        assert out.tolist() == [blocks[b].tolist() for b in keys]
        last_open = n > 0 and (start + n) % size != 0
        assert complete == len(keys) - last_open
        assert p.tolist() == (blocks[keys[-1]].tolist() if last_open else partial.tolist() if n == 0 else [0] * c)


def point_mass_blocks_args():
    return dict(x=np.array([[0.0, 1, 1, 0], [2, 2, np.nan, 2]]), start=3, size=2, rows=np.array([0, 0, 1]),
                values=np.array([0.0, np.nan, np.nan]), last=np.array([np.nan, 2.0]), out=z((3, 3)))


def point_mass_hits(x, start, size, rows, values, last):
    """The plain loop point_mass_blocks compiles: per block, each chain's hits."""
    nb = (start + x.shape[1] - 1) // size - start // size + 1
    out = np.zeros((nb, len(rows)), dtype=np.int64)
    for c, (r, v) in enumerate(zip(rows, values)):
        prev = last[r]
        for i, xi in enumerate(x[r]):
            hit = (np.isfinite(xi) and xi == prev) if np.isnan(v) else xi == v
            out[(start + i) // size - start // size, c] += hit
            prev = xi
    return out


def test_point_mass_blocks_match_a_plain_loop():
    rng = np.random.default_rng(8)
    for _ in range(300):
        r, n, size, start = int(rng.integers(1, 4)), int(rng.integers(1, 40)), int(rng.integers(1, 16)), \
            int(rng.integers(0, 50))
        x = rng.integers(-2, 3, size=(r, n)).astype(float)
        x[rng.random((r, n)) < 0.1] = np.nan
        x[rng.random((r, n)) < 0.05] = np.inf
        x[rng.random((r, n)) < 0.1] = -0.0  # equal to 0.0: hits of a chain watching 0
        chains = [(j, v) for j in range(r) for v in rng.permutation([-2.0, -1.0, 0.0, 1.0, 2.0, np.nan])
                  [:int(rng.integers(0, 6))]]
        rows = np.array([j for j, _ in chains], dtype=np.int64)
        values = np.array([v for _, v in chains], dtype=np.float64)
        last = np.where(rng.random(r) < 0.5, rng.integers(-2, 3, r).astype(float), np.nan)
        expected = point_mass_hits(x, start, size, rows, values, last)
        out = z(expected.shape)
        kept = last.copy()
        _kernels.point_mass_blocks(x, start, size, rows, values, kept, out)
        assert out.tolist() == expected.tolist()
        assert np.array_equal(kept, x[:, -1], equal_nan=True)


def grid_blocks_args():
    return dict(x=np.array([[10.0, 15, 20, np.nan], [1.5, 2, 3, 4]]), start=3, size=2, rows=np.array([0, 1]),
                steps=np.array([10.0, 1.0]), off=np.array([0, 1]), out=z((3, 2)))


def test_grid_blocks_are_the_numpy_formula_per_block():
    """The grid chains' hits were numpy passes (detectors.diagnosis.on_grid, reduceat): the kernel
    gives the same counts, NaN and infinities never hitting, on values of every scale."""
    rng = np.random.default_rng(9)
    for _ in range(300):
        r, n, size, start = int(rng.integers(1, 4)), int(rng.integers(1, 60)), int(rng.integers(1, 16)), \
            int(rng.integers(0, 50))
        x = np.round(rng.normal(0, 50, (r, n)), int(rng.integers(0, 3))) * rng.choice([1.0, 1.609344, 1e-7, 1e12])
        x[rng.random((r, n)) < 0.1] = np.nan
        x[rng.random((r, n)) < 0.05] = rng.choice([np.inf, -np.inf])
        g = int(rng.integers(0, 5))
        rows = rng.integers(0, r, g).astype(np.int64)
        steps = rng.choice([0.1, 1.0, 5.0, 10.0, 1e-300], g).astype(np.float64)
        off = rng.integers(0, 2, g).astype(np.int64)
        with np.errstate(over="ignore"):  # 1e12 / 1e-300: an infinite ratio, on no grid
            hits = on_grid(x[rows], steps[:, None])
        hits[off == 1] = ~hits[off == 1] & np.isfinite(x[rows][off == 1])
        cuts = np.r_[0, np.arange(size - start % size, n, size)]
        expected = np.add.reduceat(hits, cuts, axis=1, dtype=np.int64).T if g else np.zeros((len(cuts), 0))
        out = z(expected.shape)
        _kernels.grid_blocks(x, start, size, rows, steps, off, out)
        assert out.tolist() == expected.tolist()


def ks_uniform_args():
    return dict(hist=np.arange(12, dtype=np.int64).reshape(3, 4), counts=z(3), ks=z(3, float))


def test_ks_uniform_is_the_numpy_formula_bit_for_bit():
    rng = np.random.default_rng(4)
    for bins in (1, 4, 100):
        hist = rng.integers(0, 50, size=(30, bins)) * (rng.random((30, 1)) < 0.9)  # some empty rows
        counts, ks = z(30), z(30, float)
        _kernels.ks_uniform(hist, counts, ks)
        n = hist.sum(axis=1)
        ecdf = np.cumsum(hist, axis=1) / np.maximum(n, 1)[:, None]
        ref = np.where(n > 0, np.max(np.abs(ecdf - np.arange(1, bins + 1) / bins), axis=1), 0.0)
        assert counts.tolist() == n.tolist() and ks.tobytes() == ref.tobytes()


def test_ks_alarms_are_the_numpy_window_test():
    rng = np.random.default_rng(6)
    hist = rng.integers(0, 30, size=(40, 100)) + np.where(rng.random((40, 1)) < 0.2, np.arange(100) // 10, 0)
    hist[3] = 0
    allowance = rng.random(40) * 0.02
    counts, ks = z(40), z(40, float)
    _kernels.ks_uniform(hist, counts, ks)
    excess = np.sqrt(counts) * np.maximum(ks - allowance, 0.0)
    for min_values, critical in ((0, 0.5), (1500, 1.0), (10**9, 0.0)):
        want = np.flatnonzero((counts >= min_values) & (excess > critical))
        got = _kernels.ks_alarms(hist, allowance, min_values, critical)
        assert [g[0] for g in got] == want.tolist() and (len(want) or min_values == 10**9)
        assert [(n, k, e) for _, n, k, e in got] == [(counts[j], ks[j], excess[j]) for j in want]


def chi2_screen_args():
    # features of 2 and 1 known categories: cells 0..2 and 3..4; cell 4 (other) expected 0
    return dict(counts=np.array([50, 30, 20, 7, 3]), offsets=np.array([0, 3]), n_known=np.array([2, 1]),
                expected=np.array([0.5, 0.4, 0.1, 1.0, 0.0]), profile_counts=np.array([1000.0, 10.0]),
                values=z(2), unpooled=z(2, float))


def test_chi2_screen_is_the_unpooled_chi_square():
    a = chi2_screen_args()
    _kernels.chi2_screen(*a.values())
    assert a["values"].tolist() == [100, 10]
    e = 100 * np.array([0.5, 0.4, 0.1])
    first = np.sum((np.array([50, 30, 20]) - e) ** 2 / e) / (1 + 100 / 1000)
    assert a["unpooled"].tolist() == pytest.approx([first, 0.0])  # feature 1: one known cell, all of its n=7


KERNELS = {
    "read_columns": (read_columns_args, _kernels.read_columns),
    "numeric_blocks": (numeric_blocks_args, _kernels.numeric_blocks),
    "categorical_blocks": (categorical_blocks_args, _kernels.categorical_blocks),
    "cusum_sums": (cusum_sums_args, _kernels.cusum_sums),
    "pit_transform": (pit_transform_args, _kernels.pit_transform),
    "block_sums": (block_sums_args, _kernels.block_sums),
    "ks_uniform": (ks_uniform_args, _kernels.ks_uniform),
    "chi2_screen": (chi2_screen_args, _kernels.chi2_screen),
    "point_mass_blocks": (point_mass_blocks_args, _kernels.point_mass_blocks),
    "grid_blocks": (grid_blocks_args, _kernels.grid_blocks),
}


def put(a, at, value):
    a = a.copy()
    a[at] = value
    return a


def read_only(a):
    a = a.copy()
    a.flags.writeable = False
    return a


WRONG = [
    # read_columns
    ("read_columns", "x", lambda a: np.empty(1)),  # one element short
    ("read_columns", "x", lambda a: np.empty((1, 2), dtype=np.float32)),
    ("read_columns", "x", lambda a: read_only(a)),
    ("read_columns", "x", lambda a: np.empty((2, 2))[:, 0]),  # not contiguous
    ("read_columns", "status", lambda a: z((1, 2))),  # 8-byte items
    ("read_columns", "codes", lambda a: z(1)),
    ("read_columns", "absent", lambda a: z((1, 2), np.uint16)),
    ("read_columns", "extra", lambda a: z(1, np.uint8)),  # neither one per event nor none
    ("read_columns", "bool_codes", lambda a: z(4)),
    ("read_columns", "columns", lambda a: {"amount": 0, "country": 2}),
    ("read_columns", "columns", lambda a: {"amount": 0, "country": 0}),
    ("read_columns", "columns", lambda a: {"amount": 0, "country": "1"}),
    ("read_columns", "columns", lambda a: {"amount": 0}),
    ("read_columns", "f", lambda a: 2),
    ("read_columns", "f", lambda a: -1),
    ("read_columns", "tables", lambda a: (["FR"],)),
    ("read_columns", "tables", lambda a: ({"FR": "zero"},)),  # a code that is not an int
    ("read_columns", "features", lambda a: tuple(a)),
    ("read_columns", "x", lambda a: a.tolist()),
    ("read_columns", "top", lambda a: ("1",)),  # not (expected_version, confidence)
    ("read_columns", "top", lambda a: (None, z(3, float))),  # neither one confidence per item nor none
    ("read_columns", "top", lambda a: (b"1", z(0, float))),
    # numeric_blocks
    ("numeric_blocks", "cuts", lambda a: np.array([0, 6, 4, 10])),  # not rising
    ("numeric_blocks", "cuts", lambda a: np.array([1, 10])),
    ("numeric_blocks", "cuts", lambda a: np.array([0])),
    ("numeric_blocks", "cuts", lambda a: np.array([0, 4, 10], dtype=np.int32)),
    ("numeric_blocks", "cuts", lambda a: np.array([0, 4, 11])),  # more events than x holds
    ("numeric_blocks", "x", lambda a: a[:, :-1].copy()),
    ("numeric_blocks", "u", lambda a: a.astype(np.float32)),
    ("numeric_blocks", "maxs", lambda a: a[:1].copy()),
    ("numeric_blocks", "mins", lambda a: a.astype(np.int8)),
    ("numeric_blocks", "sums", lambda a: a[:1].copy()),  # one block short
    ("numeric_blocks", "hist", lambda a: a[:1].copy()),
    ("numeric_blocks", "counts", lambda a: a[:, :, :3].copy()),
    ("numeric_blocks", "sums", lambda a: read_only(a)),
    ("numeric_blocks", "block", lambda a: 0),
    ("numeric_blocks", "start", lambda a: -1),
    ("numeric_blocks", "u_bits", lambda a: 41),
    ("numeric_blocks", "u_bits", lambda a: 0),
    # categorical_blocks
    ("categorical_blocks", "codes", lambda a: put(a, (0, 7), 4)),  # above feature 0's other (3)
    ("categorical_blocks", "codes", lambda a: put(a, (1, 5), 2)),  # above feature 1's other (1)
    ("categorical_blocks", "codes", lambda a: a.astype(np.int32)),
    ("categorical_blocks", "codes", lambda a: a[:, :-1].copy()),
    ("categorical_blocks", "offsets", lambda a: np.array([0, 5])),  # feature 1's cells past n_cells
    ("categorical_blocks", "offsets", lambda a: np.array([-1, 4])),
    ("categorical_blocks", "offsets", lambda a: a[:1].copy()),
    ("categorical_blocks", "n_cells", lambda a: 5),
    ("categorical_blocks", "n_cells", lambda a: -1),
    ("categorical_blocks", "cuts", lambda a: np.array([0, 7, 3, 10])),
    ("categorical_blocks", "sums", lambda a: a[:1].copy()),
    ("categorical_blocks", "counts", lambda a: a[:, :5].copy()),
    ("categorical_blocks", "block", lambda a: 0),
    # cusum_sums
    ("cusum_sums", "ends", lambda a: a[:2].copy()),  # 3 blocks of sums, 2 ends
    ("cusum_sums", "sums", lambda a: a[:, :4].copy()),
    ("cusum_sums", "h", lambda a: a[:5].copy()),
    ("cusum_sums", "s", lambda a: z(7)),
    ("cusum_sums", "s", lambda a: read_only(a)),
    ("cusum_sums", "last_zero", lambda a: a.astype(np.int32)),
    ("cusum_sums", "miss", lambda a: a[:1].copy()),
    ("cusum_sums", "k_fixed", lambda a: z(2)),
    ("cusum_sums", "f", lambda a: -1),
    ("cusum_sums", "f", lambda a: 2),
    # pit_transform
    ("pit_transform", "x", lambda a: a.ravel()[:5].copy()),  # 5 values for 2 features
    ("pit_transform", "u", lambda a: a[:, :2].copy()),
    ("pit_transform", "params", lambda a: a[:1].copy()),
    ("pit_transform", "salts", lambda a: a.astype(np.uint32)),
    ("pit_transform", "offsets", lambda a: np.array([1, 0])),  # table offset + cells past the table
    ("pit_transform", "cells", lambda a: 5),
    ("pit_transform", "sizes", lambda a: np.array([0, 4])),  # integer table past int_lower
    ("pit_transform", "sizes", lambda a: np.array([0, 0])),
    ("pit_transform", "int_span", lambda a: a[:2].copy()),
    # block_sums
    ("block_sums", "values", lambda a: a.ravel()[:9].copy()),  # not whole rows of len(partial)
    ("block_sums", "values", lambda a: a.astype(np.int32)),
    ("block_sums", "out", lambda a: a[:2].copy()),  # one block short
    ("block_sums", "out", lambda a: read_only(a)),
    ("block_sums", "partial", lambda a: read_only(a)),
    ("block_sums", "partial", lambda a: z(0)),
    ("block_sums", "size", lambda a: 0),
    ("block_sums", "start", lambda a: -1),
    # point_mass_blocks
    ("point_mass_blocks", "x", lambda a: a.ravel()[:7].copy()),  # not whole rows of len(last)
    ("point_mass_blocks", "out", lambda a: a[:2].copy()),  # one block short
    ("point_mass_blocks", "out", lambda a: read_only(a)),
    ("point_mass_blocks", "last", lambda a: read_only(a)),
    ("point_mass_blocks", "rows", lambda a: np.array([0, 0, 2])),  # a row past x
    ("point_mass_blocks", "rows", lambda a: np.array([1, 0, 0])),  # not grouped by row
    ("point_mass_blocks", "values", lambda a: np.array([0.0, 0.0, np.nan])),  # a value watched twice
    ("point_mass_blocks", "values", lambda a: np.array([np.nan, np.nan, np.nan])),  # two repeat chains in a row
    ("point_mass_blocks", "values", lambda a: np.array([np.inf, np.nan, np.nan])),
    ("point_mass_blocks", "values", lambda a: a[:2].copy()),
    ("point_mass_blocks", "size", lambda a: 16),  # 4 bits a chain
    ("point_mass_blocks", "start", lambda a: -1),
    # grid_blocks
    ("grid_blocks", "rows", lambda a: np.array([0, 2])),  # a row past x
    ("grid_blocks", "rows", lambda a: np.array([0, -1])),
    ("grid_blocks", "steps", lambda a: np.array([10.0, 0.0])),
    ("grid_blocks", "steps", lambda a: np.array([10.0, np.inf])),
    ("grid_blocks", "steps", lambda a: a[:1].copy()),
    ("grid_blocks", "off", lambda a: a.astype(np.int32)),
    ("grid_blocks", "x", lambda a: a.ravel()[:7].copy()),  # not whole rows
    ("grid_blocks", "out", lambda a: z((2, 2))),  # 3 blocks touched
    ("grid_blocks", "out", lambda a: read_only(a)),
    ("grid_blocks", "size", lambda a: 0),
    ("grid_blocks", "start", lambda a: -1),
    # ks_uniform
    ("ks_uniform", "hist", lambda a: a.ravel()[:11].copy()),  # not whole rows of len(counts)
    ("ks_uniform", "hist", lambda a: a.astype(np.int32)),
    ("ks_uniform", "ks", lambda a: a[:2].copy()),
    ("ks_uniform", "ks", lambda a: read_only(a)),
    ("ks_uniform", "counts", lambda a: z(0)),
    # chi2_screen
    ("chi2_screen", "n_known", lambda a: np.array([2, 2])),  # feature 1's cells past the counts
    ("chi2_screen", "offsets", lambda a: np.array([0, -1])),
    ("chi2_screen", "expected", lambda a: a[:4].copy()),
    ("chi2_screen", "values", lambda a: read_only(a)),
    ("chi2_screen", "unpooled", lambda a: z(1, float)),
    ("chi2_screen", "profile_counts", lambda a: a.astype(np.float32)),
]


@pytest.mark.parametrize("kernel", sorted(KERNELS))
def test_kernel_accepts_its_reference_arguments(kernel):
    """The arguments the wrong-input cases start from are right: only the change makes them fail."""
    make, fn = KERNELS[kernel]
    fn(*make().values())


@pytest.mark.parametrize("kernel, name, change", WRONG, ids=[f"{k}-{n}-{i}" for i, (k, n, _) in enumerate(WRONG)])
def test_kernel_refuses_wrong_arguments(kernel, name, change):
    make, fn = KERNELS[kernel]
    args = make()
    args[name] = change(args[name])
    with pytest.raises((ValueError, TypeError)):
        fn(*args.values())


#: sizes whose byte count overflows 64 bits wrap around to the length of an empty buffer
OVERFLOW = {
    "numeric_blocks": "K.numeric_blocks(z(0, float), z(0, float), 0, 2**62, 16, z(1, float), z(1, float), "
                      "np.array([0, 2**62]), z(6), z(100), z(4))",
    "categorical_blocks": "K.categorical_blocks(z(0), 0, 2**62, np.array([2**61 - 1]), z(1), 2**61, "
                          "np.array([0, 2**61]), z(3), z(0))",
    "cusum_sums": "K.cusum_sums(z(1), z(1), 2**61, z(0), 0, z(1), z(1), 8, z(1), z(1), z(1))",
    "pit_transform": "K.pit_transform(np.array([1e17]), z(1, float), 0, z(1), z(1), z(1), "
                     "np.array([0.0, 1, 0, 0, 1, 1]), z(1, np.uint64), z(4, float), z(0, float), z(0, float), "
                     "2**63 - 1, 0.001)",
}


@pytest.mark.parametrize("kernel", sorted(OVERFLOW))
def test_kernel_refuses_sizes_that_overflow(kernel):
    """A size so large that items x itemsize wraps past 2**64 must not pass the length checks
    (run in a child process: a failure here is a segfault)."""
    code = ("import numpy as np\nfrom detectors import _kernels as K\n"
            "z = lambda k, dtype=np.int64: np.zeros(k, dtype=dtype)\n"
            f"try:\n    {OVERFLOW[kernel]}\nexcept (ValueError, TypeError, OverflowError, MemoryError):\n"
            "    print('refused')\nelse:\n    print('accepted')\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stdout.strip()) == (0, "refused"), done.stderr[-500:]


# ---- extract_events: the top-level fields of events against a reference ---------------------------------
def reference_event_fields(events: list[dict], expected: str | None):
    confidence = []
    for ev in events:
        v, status = reference_number(ev.get("confidence"))
        confidence.append(v if status != VALID or 0.0 <= v <= 1.0 else INF)
    versions = [ev.get("model_version") for ev in events]
    if all(v is None for v in versions):
        seen = _kernels.VERSIONS_NONE
    elif expected is not None and all(type(v) is str and v == expected for v in versions):
        seen = _kernels.VERSIONS_EXPECTED
    else:
        seen = _kernels.VERSIONS_OTHER
    return [ev["features"] for ev in events], confidence, seen


top_level = st.fixed_dictionaries({"features": st.dictionaries(st.sampled_from(NUMERIC), values, max_size=2)},
                                  optional={"confidence": st.one_of(values, st.floats(-0.5, 1.5)),
                                            "model_version": st.sampled_from(["1", "2", fresh("1"), MyStr("1"), 1,
                                                                              None, ["1"], ""])})


@settings(max_examples=200, deadline=None)
@given(events=st.lists(top_level, max_size=8), expected=st.sampled_from(["1", None, ""]))
def test_extract_events_matches_reference(events, expected):
    """The events' top-level fields, and their feature maps read as `extract` reads them."""
    columns = FeatureColumns(NUMERIC, CATEGORICAL, CATEGORIES, count_extra=True)
    conf = np.full(len(events), -7.0)
    numbers, (codes, absent, others), extra, seen = columns.extract_events(events, expected, conf)
    ref_features, ref_conf, ref_seen = reference_event_fields(events, expected)
    want, (want_codes, want_absent, want_others), want_extra = columns.extract(ref_features)
    np.testing.assert_array_equal(numbers.x, want.x)
    np.testing.assert_array_equal(numbers.status, want.status)
    np.testing.assert_array_equal(codes, want_codes)
    np.testing.assert_array_equal(absent, want_absent)
    np.testing.assert_array_equal(extra, want_extra)
    assert others == want_others and numbers.invalid_count == want.invalid_count
    assert [numbers.features[i] for i in range(len(events))] == ref_features
    np.testing.assert_array_equal(conf, ref_conf)
    assert seen == ref_seen
    assert columns.extract_events(events, expected, z(0, float))[3] == seen  # no confidence column: same versions


@pytest.mark.parametrize("events, expected, conf, error", [
    ([{"model": "m"}], None, z(1, float), KeyError),  # no features
    ([[("features", {})]], None, z(1, float), TypeError),  # not a dict
    ([{"features": {}}], 1, z(1, float), TypeError),  # expected version not a str
    ([{"features": {}}], None, z(2, float), ValueError),  # neither one confidence per event nor none
    ([{"features": {}}], None, z(1, np.float32), ValueError),
    ([{"features": {}}], None, read_only(z(1, float)), (ValueError, TypeError)),
])
def test_extract_events_refuses_wrong_arguments(events, expected, conf, error):
    with pytest.raises(error):
        FeatureColumns(NUMERIC, CATEGORICAL, CATEGORIES).extract_events(events, expected, conf)


# ---- block sums do not depend on the batching --------------------------------------------------------
@cache
def drifting():
    s = streams.mean_shift(6000, at=2000, n_features=6, seed=1, n_train=5000)
    return s.baseline(), s.events


BAD = (None, "x", True, False, NAN, INF, -INF, 10**400, [1], {"a": 1}, "04-c0", 3.5, "new-label")


@cache
def spoiled(seed: int) -> tuple[dict, ...]:
    """The drifting stream with bad values in random events, a dense run of them (so data-quality
    alarms fire), removed keys and unexpected ones."""
    baseline, events = drifting()
    names = list(baseline.features)
    rng = random.Random(seed)
    out = [{**e, "features": dict(e["features"])} for e in events]
    for i in rng.sample(range(len(out)), 400):
        out[i]["features"][rng.choice(names)] = rng.choice(BAD)
    name, at = rng.choice(names), rng.randrange(2500, 4500)
    for i in range(at, at + 600):
        if rng.random() < 0.4:
            out[i]["features"][name] = rng.choice(BAD)
    for i in rng.sample(range(len(out)), 100):
        out[i]["features"].pop(rng.choice(names), None)
    for i in range(4000, 4400, 2):
        out[i]["features"]["surprise"] = 1
    return tuple(out)


def run_monitor(events, sizes) -> tuple[list[dict], bytes]:
    m = ModelMonitor(drifting()[0])
    alerts, i = [], 0
    for size in sizes:
        alerts += m.update_batch(list(events[i:i + size]))
        i += size
    alerts += m.update_batch(list(events[i:]))
    return [a.to_dict() for a in alerts], msgpack.packb(m.state_dict())


@cache
def one_batch(seed: int) -> tuple[list[dict], bytes]:
    return run_monitor(spoiled(seed), [])


@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 2), sizes=st.lists(st.integers(1, 900), min_size=1, max_size=25))
def test_monitor_alerts_and_state_do_not_depend_on_batching(seed, sizes):
    alerts, state = one_batch(seed)
    assert {a["detector"] for a in alerts} >= {"cusum", "invalid_type"}  # the stream does alarm
    got_alerts, got_state = run_monitor(spoiled(seed), sizes)
    assert got_alerts == alerts
    assert got_state == state


def candidates(cs) -> str:
    """All of a candidate, in the order the monitor sorts them (a bank lists a batch's by test)."""
    cs = [c.candidate() if isinstance(c, Alarm) else c for c in cs]
    return repr([(c.event_index, c.rank, c.feature, c.kind, c.family, c.detector, c.statistic, c.threshold,
                  c.p_value, c.evidence, c.onset) for c in sorted(cs)])


def numeric_bank() -> NumericBank:
    profiles = [p for p in drifting()[0].features.values() if isinstance(p, NumericProfile)]
    return NumericBank(profiles, window=1000, min_window_values=200, recent=64)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), cuts=st.lists(st.integers(1, 2999), max_size=12, unique=True))
def test_numeric_bank_does_not_depend_on_batching(seed, cuts):
    """x straight into NumericBank: shifted values, NaN, +-inf, huge and out-of-range values at random."""
    events = drifting()[1]
    bank = numeric_bank()
    rng = np.random.default_rng(seed)
    x = FeatureColumns(bank.names, [], []).extract([e["features"] for e in events[:3000]])[0].x
    x[0, rng.integers(0, 3000):] += rng.normal(0, 0.3)
    bad = rng.random(x.shape) < rng.uniform(0, 0.2)
    x[bad] = rng.choice([np.nan, np.inf, -np.inf, 1e300, -1e300, 1e6], size=int(bad.sum()))
    x[x == -np.inf] = np.inf  # as read_columns encodes invalid values
    start = int(rng.choice([0, 8, 1000, int(rng.integers(0, 2000))]))  # any block / window alignment
    whole = numeric_bank()
    expected = whole.update(x, start)
    expected_repr = candidates(expected)
    whole.end_batch()
    got = []
    bounds = [0, *sorted(cuts), 3000]
    for a, b in zip(bounds, bounds[1:]):
        got += bank.update(x[:, a:b].copy(), start + a)
        bank.end_batch()
    assert candidates(got) == expected_repr
    assert msgpack.packb(bank.state_dict()) == msgpack.packb(whole.state_dict())


def reference_blocks(start, n, block):
    """Per event of the batch: which of the touched blocks it is in."""
    return [(start + i) // block - start // block for i in range(n)]


def segment_of(cuts, n):
    """Per event: its window segment (cuts may repeat: empty segments)."""
    return [max(s for s in range(len(cuts) - 1) if cuts[s] <= i < cuts[s + 1]) for i in range(n)]


@st.composite
def batches(draw):
    """(seed, f, n, start, block, cuts): a batch's shape, window cuts possibly with empty segments."""
    n = draw(st.integers(0, 40))
    inner = draw(st.lists(st.integers(0, n), max_size=4))
    return (draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 3)), n, draw(st.integers(0, 50)),
            draw(st.integers(1, 10)), [0, *sorted(inner), n])


@settings(max_examples=200, deadline=None)
@given(batch=batches(), u_bits=st.integers(1, 40))
def test_numeric_blocks_match_a_plain_loop(batch, u_bits):
    seed, f, n, start, block, cuts = batch
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(f, n))
    x[rng.random((f, n)) < 0.2] = np.nan
    x[rng.random((f, n)) < 0.2] = np.inf
    u = rng.choice([0.0, 1.0, 0.5, np.nextafter(1.0, 0.0), np.nan, *rng.random(4)], size=(f, n))
    mins, maxs = -rng.random(f), rng.random(f)
    segments = len(cuts) - 1
    nb = n and (start + n - 1) // block - start // block + 1
    sums, hist, counts = z((nb, 6 * f)), z((segments, f, 100)), z((segments, f, 4))
    _kernels.numeric_blocks(x, u, start, block, u_bits, mins, maxs, np.array(cuts), sums, hist, counts)

    one, half = 2**u_bits, 2 ** (u_bits - 1)
    ref_sums, ref_hist, ref_counts = np.zeros_like(sums), np.zeros_like(hist), np.zeros_like(counts)
    for j in range(f):
        for i, k, s in zip(range(n), reference_blocks(start, n, block), segment_of(cuts, n)):
            v = x[j, i]
            if math.isfinite(v):
                uf = math.floor((0.5 if math.isnan(u[j, i]) else u[j, i]) * one)
                out = v < mins[j] or v > maxs[j]
                ref_sums[k, [j, f + j, 2 * f + j, 5 * f + j]] += (uf - half, abs(2 * uf - one), 1, out)
                ref_hist[s, j, min(uf * 100 // one, 99)] += 1
                ref_counts[s, j, [0, 3]] += (1, out)
            else:
                ref_sums[k, (3 if math.isnan(v) else 4) * f + j] += 1
                ref_counts[s, j, 1 if math.isnan(v) else 2] += 1
    np.testing.assert_array_equal(sums, ref_sums)
    np.testing.assert_array_equal(hist, ref_hist)
    np.testing.assert_array_equal(counts, ref_counts)


@settings(max_examples=200, deadline=None)
@given(batch=batches())
def test_categorical_blocks_match_a_plain_loop(batch):
    seed, m, n, start, block, cuts = batch
    rng = np.random.default_rng(seed)
    n_known = rng.integers(0, 4, size=m)
    offsets = np.concatenate(([0], np.cumsum(n_known + 1)))[:-1].astype(np.int64)
    n_cells = int((n_known + 1).sum())
    codes = np.array([rng.integers(-2, k + 1, size=n) for k in n_known], dtype=np.int64).reshape(m, n)
    segments = len(cuts) - 1
    nb = n and (start + n - 1) // block - start // block + 1
    sums, counts = z((nb, 3 * m)), z((segments, n_cells))
    _kernels.categorical_blocks(codes, start, block, n_known, offsets, n_cells, np.array(cuts), sums, counts)

    ref_sums, ref_counts = np.zeros_like(sums), np.zeros_like(counts)
    for j in range(m):
        for i, k, s in zip(range(n), reference_blocks(start, n, block), segment_of(cuts, n)):
            c = codes[j, i]
            if c >= 0:
                ref_counts[s, offsets[j] + c] += 1
            ref_sums[k, [j, m + j, 2 * m + j]] += (c == n_known[j], c == -1, c == -2)
    np.testing.assert_array_equal(sums, ref_sums)
    np.testing.assert_array_equal(counts, ref_counts)


# ---- CUSUM chains against a plain loop --------------------------------------------------------------
def reference_cusum(h, s, last_zero, increments, ends):
    """S = max(0, S + x); S > h: alarm (end, chain, S, last event at 0 before, -1 never), restart at 0."""
    alarms = []
    for row, end in zip(increments, ends):
        for c, x in enumerate(row):
            v = max(0, s[c] + x)
            if v > h[c]:
                alarms.append((end, c, v, last_zero[c]))
                v = 0
            if v == 0:
                last_zero[c] = end
            s[c] = v
    return alarms


@settings(max_examples=150, deadline=None)
@given(data=st.data(), chains=st.integers(1, 6), blocks=st.integers(0, 60))
def test_cusum_bank_matches_a_plain_loop(data, chains, blocks):
    h = data.draw(st.lists(st.integers(0, 60), min_size=chains, max_size=chains))
    inc = data.draw(st.lists(st.lists(st.integers(-25, 30), min_size=chains, max_size=chains),
                             min_size=blocks, max_size=blocks))
    split = data.draw(st.integers(0, blocks))
    ends = [8 * t + 7 for t in range(blocks)]
    s, last_zero = [0] * chains, [-1] * chains
    expected = reference_cusum(h, s, last_zero, inc, ends)

    bank = CusumBank(np.array(h))
    as_array = lambda rows: np.array(rows, dtype=np.int64).reshape(-1, chains)  # noqa: E731
    got = bank.update(as_array(inc[:split]), np.array(ends[:split], dtype=np.int64))
    got += bank.update(as_array(inc[split:]), np.array(ends[split:], dtype=np.int64))
    assert got == expected
    assert all(type(v) is int for a in got for v in a)
    assert bank.statistics.tolist() == s
    assert bank.state_dict()["last_zero"] == last_zero


@settings(max_examples=100, deadline=None)
@given(data=st.data(), f=st.integers(0, 3), r=st.integers(0, 3), blocks=st.integers(0, 30))
def test_cusum_update_from_sums_matches_a_plain_loop(data, f, r, blocks):
    """The increments the kernel makes from block sums: +-loc - k, +-(spread - half valid) - k with
    k = valid * k_fixed, then c * hit + (block - c) * miss per count."""
    block, half = 8, 3
    ints = st.integers(-40, 40)
    sums = [data.draw(st.lists(ints, min_size=3 * f + r, max_size=3 * f + r)) for _ in range(blocks)]
    for row in sums:
        row[2 * f:3 * f] = [abs(v) % (block + 1) for v in row[2 * f:3 * f]]  # valid counts
        row[3 * f:] = [abs(v) % (block + 1) for v in row[3 * f:]]
    k_fixed = data.draw(st.lists(st.integers(0, 5), min_size=f, max_size=f))
    hit = data.draw(st.lists(st.integers(-5, 20), min_size=r, max_size=r))
    miss = data.draw(st.lists(st.integers(-5, 5), min_size=r, max_size=r))
    h = data.draw(st.lists(st.integers(0, 80), min_size=4 * f + r, max_size=4 * f + r))
    split = data.draw(st.integers(0, blocks))
    ends = [block * t + block - 1 for t in range(blocks)]

    inc = []
    for row in sums:
        loc, spread, valid, counts = row[:f], row[f:2 * f], row[2 * f:3 * f], row[3 * f:]
        k = [v * kf for v, kf in zip(valid, k_fixed)]
        scale = [sp - half * v for sp, v in zip(spread, valid)]
        inc.append([lo - kk for lo, kk in zip(loc, k)] + [-lo - kk for lo, kk in zip(loc, k)]
                   + [sc - kk for sc, kk in zip(scale, k)] + [-sc - kk for sc, kk in zip(scale, k)]
                   + [c * hi + (block - c) * mi for c, hi, mi in zip(counts, hit, miss)])
    s, last_zero = [0] * (4 * f + r), [-1] * (4 * f + r)
    expected = reference_cusum(h, s, last_zero, inc, ends)

    bank = CusumBank(np.array(h, dtype=np.int64))
    arr = np.array(sums, dtype=np.int64).reshape(blocks, 3 * f + r)
    args = (np.array(hit, dtype=np.int64), np.array(miss, dtype=np.int64), block, np.array(k_fixed, dtype=np.int64))
    got = bank.update_from_sums(np.ascontiguousarray(arr[:split]), np.array(ends[:split]), *args, half)
    got += bank.update_from_sums(np.ascontiguousarray(arr[split:]), np.array(ends[split:]), *args, half)
    assert got == expected
    assert bank.statistics.tolist() == s
    assert bank.state_dict()["last_zero"] == last_zero


# ---- SpaceSaving (compiled) against a plain Space-Saving, value by value ------------------------------
#: labels that collide after the cut to MAX_LABEL, non-str values, and a str subclass
SKETCH_VALUES = st.one_of(st.sampled_from(["a", "b", "c", "x" * 70, "x" * 64 + "y", 7, 2.5, None]),
                          st.integers(0, 12).map(str), st.text(max_size=3).map(Label))


class PlainSpaceSaving:
    """The reference: a new label at capacity replaces the held one of the smallest (count, first held)."""

    def __init__(self, capacity):
        self.capacity, self.held, self.total, self.position = capacity, {}, 0, 0  # label -> [count, error, pos]

    def update(self, value, count=1):
        label = str(value)[:64]
        self.total += count
        if label in self.held:
            self.held[label][0] += count
            return
        floor = 0
        if len(self.held) >= self.capacity:
            victim = min(self.held, key=lambda k: (self.held[k][0], self.held[k][2]))
            floor = self.held.pop(victim)[0]
        self.held[label] = [floor + count, floor, self.position]
        self.position += 1

    def state(self):
        ranked = sorted(self.held.items(), key=lambda kv: kv[1][2])
        return {"items": [[k, c, e] for k, (c, e, _) in ranked], "total": self.total}


@settings(max_examples=150, deadline=None)
@given(st.lists(SKETCH_VALUES, max_size=200), st.integers(1, 6), st.lists(st.integers(1, 30), max_size=8),
       st.lists(st.tuples(st.integers(0, 200), st.integers(1, 5)), max_size=5))
def test_space_saving_matches_a_plain_space_saving(values, capacity, cuts, bumps):
    """The compiled sketch is Space-Saving with its tie rule: the same labels, counts, errors and held
    order, whatever the batching of `update_each`, with `update(value, count)` calls in between, and
    after a round trip through its state."""
    reference, sketch = PlainSpaceSaving(capacity), SpaceSaving(capacity)
    bumped = {at: (values[at] if at < len(values) else "a", count) for at, count in bumps}
    at = 0
    for cut in cuts + [len(values)]:
        chunk = values[at:at + cut]
        for k, v in enumerate(chunk):
            reference.update(v)
            if at + k in bumped:
                reference.update(*bumped[at + k])
        # the same values: runs between the bumps through update_each, the bumps through update
        run = []
        for k, v in enumerate(chunk):
            run.append(v)
            if at + k in bumped:
                sketch.update_each(iter(run))
                run = []
                sketch.update(*bumped[at + k])
        sketch.update_each(iter(run))
        at += cut
        assert sketch.state_dict() == reference.state(), at
        sketch = SpaceSaving.from_state(sketch.state_dict(), capacity)  # and carries on from its state
    assert sketch.total == reference.total
    assert sketch.top() == sorted(((k, c, e) for k, c, e in reference.state()["items"]), key=lambda t: (-t[1], t[0]))


def test_space_saving_update_each_keeps_what_it_counted_before_an_exception():
    class Unprintable:
        def __str__(self):
            raise RuntimeError("no")

    sketch = SpaceSaving(2)
    with pytest.raises(RuntimeError):
        sketch.update_each(["a", "b", "c", Unprintable(), "d"])
    assert sketch.total == 3
    assert sketch.top() == [("c", 2, 1), ("b", 1, 0)]
    sketch.update_each(["d", "x"], exclude={"x"})
    assert sketch.top() == [("c", 2, 1), ("d", 2, 1)]


@pytest.mark.parametrize("broken", ["_table", "_heap", "_where", "_labels", "_capacity"])
def test_space_saving_refuses_arrays_of_the_wrong_size(broken):
    sketch = SpaceSaving(4)
    sketch.update("z")  # its arrays allocated
    setattr(sketch, broken, {"_table": np.zeros((3, 3), dtype=np.int64), "_heap": np.zeros(2, dtype=np.int64),
                             "_where": np.zeros(5, dtype=np.int32), "_labels": [None], "_capacity": 8}[broken])
    with pytest.raises((ValueError, TypeError)):
        sketch.update_each(["a"])
