"""Unit tests of the detection building blocks: a shared contract run against every stateful
class (msgpack state round-trip mid-stream), exact detection indices on seeded streams,
and property tests of the sketches."""
from __future__ import annotations

import math
import tracemalloc

import msgpack
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from baselines.profile import QUANTILE_PROBS, NumericProfile
from detectors import thresholds as T
from detectors.cusum import BlockAccumulator, CusumBank
from detectors.episodes import EpisodeTracker
from detectors.extract import ABSENT_KEY, FeatureColumns
from detectors.pit import ProbabilityIntegralTransform, SegmentIndex
from detectors.recent import MIN_SUMMARY_EVENTS, RecentRing
from detectors.river_blocks import BlockChangeDetectors
from detectors.sketches import PendingValues, SpaceSaving
from detectors.stats import chi2_sf, kolmogorov_sf, ks_uniform_from_histogram
from detectors.timing import BlockHistory


def msgpack_round_trip(state):
    return msgpack.unpackb(msgpack.packb(state, use_bin_type=True), raw=False, strict_map_key=False)


# ---- the contract every stateful detector / sketch honours ------------------------------------
class Contract:
    """Subclasses say how to build the object, feed it a seeded chunk, and what it outputs."""

    def make(self):
        raise NotImplementedError

    def feed(self, obj, rng: np.random.Generator, chunk: int):
        """Feed one chunk of a seeded stream; return the outputs (alarms, values...) as plain data."""
        raise NotImplementedError

    def run(self, obj, seed: int, chunks: range):
        rng = np.random.default_rng(seed)
        out = []
        for c in range(chunks.stop):
            got = self.feed(obj, rng, c)
            if c in chunks:
                out.append(got)
        return out

    def test_state_round_trip_mid_stream_continues_exactly(self):
        straight = self.make()
        expected = self.run(straight, 7, range(0, 12))
        first = self.make()
        rng = np.random.default_rng(7)
        got = [self.feed(first, rng, c) for c in range(5)]
        resumed = self.make()
        resumed.load_state(msgpack_round_trip(first.state_dict()))
        got += [self.feed(resumed, rng, c) for c in range(5, 12)]
        assert got == expected


class TestCusumBankContract(Contract):
    def make(self):
        return CusumBank(np.array([4000, 9000, 20000], dtype=np.int64))

    def feed(self, obj, rng, chunk):
        inc = rng.integers(-900, 1000, size=(50, 3))
        ends = np.arange(chunk * 50, chunk * 50 + 50) * 8 + 7
        return obj.update(inc, ends)


class TestSpaceSavingContract(Contract):
    def make(self):
        return SpaceSaving(capacity=5)

    def feed(self, obj, rng, chunk):
        for v in rng.zipf(1.5, size=40).tolist():
            obj.update(f"v{v}")
        return obj.top()


class TestBlockChangeDetectorsContract(Contract):
    def make(self):
        return BlockChangeDetectors()

    def feed(self, obj, rng, chunk):
        shift = 0.03 if chunk >= 6 else 0.0
        return [obj.update(float(m), 256) for m in 0.5 + shift + rng.normal(0, 0.018, 10)]


class TestEpisodeTrackerContract(Contract):
    def make(self):
        return EpisodeTracker(quiet_events=100)

    def feed(self, obj, rng, chunk):
        return [obj.observe(("f", "distribution"), chunk * 1000 + int(i)) for i in np.sort(rng.integers(0, 1000, 4))]


class TestBlockHistoryContract(Contract):
    def make(self):
        return BlockHistory(n_features=2, per_size=2, max_blocks=6)

    def feed(self, obj, rng, chunk):
        ends = np.arange(chunk * 3, chunk * 3 + 3) * 256 + 255
        obj.append(ends, rng.integers(-500, 500, (3, 2)), rng.integers(0, 256, (3, 2)), 256)
        return [obj.ends.tolist(), obj.counts.tolist(), [m.tolist() for m in obj.feature(1)]]


# ---- exact behaviour on seeded streams -------------------------------------------------------
def test_block_history_keeps_recent_blocks_fine_and_merges_old_ones_exactly():
    h = BlockHistory(n_features=1, per_size=4, max_blocks=12)
    n_blocks = 200
    h.append(np.arange(n_blocks) * 256 + 255, np.ones((n_blocks, 1), np.int64) * 3, np.full((n_blocks, 1), 2), 256)
    ends, counts, means = h.feature(0)
    # finest at the present, at most 4 blocks of a length, the oldest dropped beyond 12 blocks
    assert counts.tolist() == [2048] + [1024] * 3 + [512] * 4 + [256] * 4
    assert ends[-1] == n_blocks * 256 - 1 and np.all(np.diff(ends) == counts[1:])  # contiguous
    assert means.tolist() == [1.5] * len(means)  # merged sums / merged valid counts


def test_blocks_are_batch_size_invariant():
    values = np.random.default_rng(0).integers(0, 9, size=(1000, 3))
    whole = BlockAccumulator(16, 3).add(values, 0)
    for size in (1, 7, 333):
        acc, sums, ends = BlockAccumulator(16, 3), [], []
        for i in range(0, 1000, size):
            s, e = acc.add(values[i:i + size], i)
            sums += s.tolist()
            ends += e.tolist()
        assert sums == whole[0].tolist() and ends == whole[1].tolist()


def test_cusum_bank_matches_the_plain_recursion_and_restarts_after_an_alarm():
    rng = np.random.default_rng(5)
    inc = rng.integers(-100, 110, size=(3000, 4))
    h = np.array([500, 800, 1200, 3000])
    ends = np.arange(3000)
    got = CusumBank(h).update(inc, ends)
    expected = []
    s = np.zeros(4, dtype=np.int64)
    last_zero = np.full(4, -1)
    for t in range(3000):
        s = np.maximum(0, s + inc[t])
        for c in range(4):
            if s[c] > h[c]:
                expected.append((t, c, int(s[c]), int(last_zero[c])))
                s[c] = 0
            if s[c] == 0:
                last_zero[c] = t
    assert sorted(got) == sorted(expected)
    assert len(got) > 4


def test_cusum_detects_a_location_shift_of_uniform_scores_at_the_expected_block():
    rng = np.random.default_rng(1)
    z = rng.uniform(-math.sqrt(3), math.sqrt(3), 4000)
    z[2000:] += 1.0
    inc = np.rint((z - T.CUSUM_K).reshape(-1, 8).sum(axis=1) * 1000).astype(np.int64)[:, None]
    alarms = CusumBank(np.array([int(T.CUSUM_H * 1000)])).update(inc, np.arange(7, 4000, 8))
    # first alarm 48 events after the shift; the chain last stood at 0 at the block before it
    assert [(a[0], a[3]) for a in alarms[:2]] == [(2047, 1999), (2127, 2047)]


def test_pit_is_uniform_on_training_data_including_point_masses():
    rng = np.random.default_rng(2)
    train = np.concatenate([np.zeros(6000), rng.poisson(3, 14000).astype(float)])
    values, counts = np.unique(train, return_counts=True)
    q = np.quantile(train, QUANTILE_PROBS)
    discrete = NumericProfile("n", len(train), 0, 0, train.mean(), train.std(), train.min(), train.max(), q,
                              np.array([1.0]), np.array([0.5, 0.5]), values, counts / counts.sum(), True)
    grid_only = NumericProfile("g", len(train), 0, 0, train.mean(), train.std(), train.min(), train.max(), q,
                               np.array([1.0]), np.array([0.5, 0.5]))
    prod = np.concatenate([np.zeros(30000), rng.poisson(3, 70000).astype(float)])
    rng.shuffle(prod)
    for profile in (discrete, grid_only):
        u = ProbabilityIntegralTransform(profile).transform(prod, np.arange(len(prod)))
        hist = np.histogram(u, bins=100, range=(0, 1))[0]
        assert ks_uniform_from_histogram(hist) < 0.02, profile.name
        assert abs(u.mean() - 0.5) < 0.01


def test_pit_draw_is_a_function_of_the_event_index_only():
    q = np.repeat(np.arange(11.0), 91)[:1001]
    p = NumericProfile("k", 100, 0, 0, 5.0, 3.0, 0.0, 10.0, q, np.array([5.0]), np.array([0.5, 0.5]))
    pit = ProbabilityIntegralTransform(p)
    x = np.full(10, 3.0)
    assert pit.transform(x[5:], np.arange(5, 10)).tolist() == pit.transform(x, np.arange(10)).tolist()[5:]


finite = st.floats(-1e12, 1e12, allow_nan=False, allow_infinity=False)


@settings(max_examples=200, deadline=None)
@given(grid=st.lists(finite, min_size=1, max_size=300, unique=True), cluster=st.lists(finite, max_size=40),
       probes=st.lists(st.one_of(finite, st.sampled_from([math.nan, math.inf, -math.inf])), max_size=200))
def test_segment_index_is_searchsorted(grid, cluster, probes):
    values = np.unique(np.array(grid + cluster + [g * (1 + 1e-15) for g in grid[:5]]))  # clusters, near-ties
    x = np.array(probes + list(values) + list(np.nextafter(values, np.inf)) + list(np.nextafter(values, -np.inf)))
    found, expected = SegmentIndex(values).find(x), np.searchsorted(values, x, side="left")
    ok = ~np.isnan(x)  # a NaN's segment is any: it scores NaN
    assert found[ok].tolist() == expected[ok].tolist()


@settings(max_examples=100, deadline=None)
@given(steps=st.lists(st.integers(0, 3), min_size=1001, max_size=1001),
       probes=st.lists(st.floats(-5, 400, allow_nan=False), min_size=1, max_size=100))
def test_pit_interpolates_between_grid_points_and_draws_within_a_point_mass(steps, probes):
    grid = np.cumsum(np.array(steps, dtype=float))  # repeated quantiles: point masses
    p = NumericProfile("f", 1000, 0, 0, 0.0, 1.0, grid[0], grid[-1], grid, np.array([1.0]), np.array([0.5, 0.5]))
    pit = ProbabilityIntegralTransform(p)
    x = np.array(probes + [math.nan, math.inf, -math.inf])
    u = pit.transform(x, np.arange(len(x)))
    values, first = np.unique(grid, return_index=True)
    last = len(grid) - 1 - np.unique(grid[::-1], return_index=True)[1]
    lower, upper = QUANTILE_PROBS[first], QUANTILE_PROBS[last]
    for xi, ui in zip(x.tolist(), u.tolist()):
        if math.isnan(xi):
            assert math.isnan(ui)
            continue
        j = int(np.searchsorted(values, xi))
        if j < len(values) and values[j] == xi:
            assert lower[j] - 1e-12 <= ui <= upper[j] + 1e-12
        elif j == 0 or j == len(values):
            assert ui == (0.0 if j == 0 else 1.0)
        else:
            t = (xi - values[j - 1]) / (values[j] - values[j - 1])
            assert ui == pytest.approx(upper[j - 1] + t * (lower[j] - upper[j - 1]), abs=1e-12)


def test_numeric_extraction_classifies_every_kind_of_value():
    cols = FeatureColumns(["a", "b"], [], [])
    feats = [{"a": 1, "b": 2.5}, {"a": None, "b": "3"}, {"b": True}, {"a": float("inf"), "b": [1]},
             {"a": float("nan"), "b": 10**400}]
    values, _, _ = cols.extract(feats)
    x, missing, invalid, absent = values.x, values.missing, values.invalid, values.status == ABSENT_KEY
    assert x[0, 0] == 1.0 and x[1, 0] == 2.5
    # the monitors' encoding: NaN missing, +inf invalid
    assert np.isnan(x[0, 1]) and np.isnan(x[0, 2]) and np.isinf(x[1, 1]) and np.isinf(x[0, 4])
    assert missing.tolist() == [[False, True, True, False, False], [False, False, False, False, False]]
    assert invalid.tolist() == [[False, False, False, True, True], [False, True, True, True, True]]
    assert absent.tolist()[0] == [False, False, True, False, False]
    clean, _, _ = cols.extract([{"a": 1.0, "b": True}, {"a": 0.0, "b": 2}])
    assert clean.invalid.tolist() == [[False, False], [True, False]]  # a bool among numbers is invalid


def test_categorical_extraction_codes_known_unseen_missing_invalid():
    cols = FeatureColumns([], ["c"], [["US", "3", "true"]])
    _, (codes, absent, others), _ = cols.extract([{"c": "US"}, {"c": 3.0}, {"c": True}, {"c": "FR"}, {"c": None}, {},
                                          {"c": {"x": 1}}])
    assert codes.tolist() == [[0, 1, 2, 3, -1, -1, -2]]
    assert absent.tolist() == [[False] * 5 + [True, False]]
    assert others == [[(3, "FR")]]


def test_boolean_categories_are_coded_alike_whole_or_mixed_with_numbers():
    cols = FeatureColumns([], ["b"], [["false", "true", "1"]])
    _, (whole, _, _), _ = cols.extract([{"b": v} for v in (True, False, True)])
    assert whole.tolist() == [[1, 0, 1]]
    # 1 == True as a dict key: a 1 among bools is the category "1", not "true"
    _, (mixed, _, others), _ = cols.extract([{"b": v} for v in (True, 1, False, 2)])
    assert mixed.tolist() == [[1, 2, 0, 3]] and others == [[(3, "2")]]


def test_river_detectors_state_is_plain_data():
    det = BlockChangeDetectors()
    for m in np.random.default_rng(0).normal(0.5, 0.018, 50):
        det.update(float(m), 256)
    state = det.state_dict()
    assert isinstance(state["adwin"], bytes)
    msgpack.packb(state)  # no numpy scalars, no objects


# ---- tails of the tests ------------------------------------------------------------------------
def test_kolmogorov_and_chi2_tails_match_known_quantiles():
    assert kolmogorov_sf(1.628) == pytest.approx(0.01, abs=5e-4)
    assert chi2_sf(6.635, 1) == pytest.approx(0.01, abs=2e-4)
    assert chi2_sf(37.566, 20) == pytest.approx(0.01, abs=2e-4)
    assert chi2_sf(100.0, 5) < 1e-18


# ---- properties of the sketches -------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, 30), max_size=300), st.integers(1, 10))
def test_space_saving_bounds_hold(values, capacity):
    sketch = SpaceSaving(capacity)
    for v in values:
        sketch.update(v)
    truth = {str(k): values.count(k) for k in set(values)}
    top = sketch.top()
    assert len(top) <= capacity
    assert sketch.total == len(values)
    for label, count, error in top:
        assert count - error <= truth[label] <= count
    # any value with more than total / capacity occurrences is held
    held = {label for label, _, _ in top}
    assert all(k in held for k, c in truth.items() if c > len(values) / capacity)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(-50, 50), min_size=1, max_size=200), st.integers(1, 40))
def test_cusum_bank_is_split_invariant(values, cut):
    inc = np.array(values, dtype=np.int64)[:, None]
    ends = np.arange(len(values))
    whole = CusumBank(np.array([120])).update(inc, ends)
    split = CusumBank(np.array([120]))
    cut = min(cut, len(values))
    parts = split.update(inc[:cut], ends[:cut]) + split.update(inc[cut:], ends[cut:])
    assert parts == whole


@settings(max_examples=40, deadline=None)
@given(st.lists(st.integers(0, 40), min_size=1, max_size=100))
def test_ks_from_histogram_never_exceeds_the_exact_statistic(counts):
    hist = np.array(counts)
    if hist.sum() == 0:
        return
    bins = len(hist)
    # put each value at its bin's upper edge: the ECDF jumps there, the exact sup is >= the edge value
    u = np.repeat((np.arange(bins) + 1) / bins, hist)
    ecdf_hi = np.arange(1, len(u) + 1) / len(u)
    exact = max(np.max(ecdf_hi - u), np.max(u - (ecdf_hi - 1 / len(u))))
    assert ks_uniform_from_histogram(hist) <= exact + 1e-12


# ---- the recent ring ---------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(st.lists(st.integers(0, 12), min_size=1, max_size=12), st.integers(1, 6), st.data())
def test_recent_ring_holds_the_last_events_whatever_the_batches(sizes, length, data):
    """Batches of any sizes, once the ring is full written in place around the circle: the rows,
    inside a held batch or not, and the state are those of the last `length` values of every batch
    in order (the state also after a msgpack round trip into a fresh ring)."""
    ring = RecentRing(n_features=2, length=length, fill=-1, dtype=np.int16)
    seen = np.empty((2, 0), dtype=np.int16)
    start = 0
    for n in sizes:
        batch = np.arange(start, start + n, dtype=np.int64)[None, :] * np.array([[1], [-1]])
        ring.hold_batch(batch, start)
        if n:
            e = data.draw(st.integers(start, start + n - 1))
            upto = np.concatenate([seen, batch[:, :e - start + 1]], axis=1)
            assert ring.rows(1, event_index=e).tolist() == upto[1, -length:].tolist()
            since = data.draw(st.integers(0, e))
            have = min(length, upto.shape[1], max(e - since + 1, MIN_SUMMARY_EVENTS))
            assert ring.rows(0, event_index=e, since=since).tolist() == upto[0, upto.shape[1] - have:].tolist()
        ring.commit()
        seen = np.concatenate([seen, batch], axis=1).astype(np.int16)
        start += n
        last = seen[:, -length:] if seen.shape[1] else seen
        assert ring.rows(0).tolist() == last[0].tolist() and ring.ring_and_batch(1).tolist() == last[1].tolist()
        expected = np.concatenate([np.full((2, length - last.shape[1]), -1, np.int16), last], axis=1)
        state = ring.state_dict()
        assert state == {"recent": expected.tobytes(), "recent_filled": last.shape[1]}
        restored = RecentRing(n_features=2, length=length, fill=-1, dtype=np.int16)
        restored.load_state(msgpack_round_trip(state))
        assert restored.state_dict() == state


def test_a_batch_without_values_leaves_a_sketch_unallocated():
    """A sketch allocates its arrays at its first value (most features never see an unseen one):
    committing a batch that held none allocates nothing (before, ~7 us and the arrays every batch)."""
    sketch, pending = SpaceSaving(capacity=1000), PendingValues()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        pending.hold([])
        pending.commit(sketch)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1000 and sketch.top() == []
    pending.hold([(0, "a")])
    pending.commit(sketch)
    assert sketch.top() == [("a", 1, 0)]
