"""Worst windows: production against the most extreme windows a time-ordered training showed on its own.

A baseline built in time order (`baseline build --time-ordered`) raises the CUSUM thresholds by the
measured serial dependence (`baselines.serial`), which costs the large pipeline bugs: missing values
that come in storms make a missing-rate chain's threshold ~26 times higher, and a value that stops
moving reads as a calm spell; the point-mass chains are off for such features. The same training in
time order also says how far W consecutive rows can go on their own (`WorstWindows`): the most missing
values, the most repeats of the previous value and the most rows of one value in a window of 128 to
1,024 rows, and the longest run of one value. This bank alarms when production goes clearly beyond
that:

- *window*: over the last k blocks of `WINDOW_BLOCK` events (`WINDOW_SPANS`), the count of missing
  values, of events repeating the previous event's value, or of one watched value (the values the
  point-mass chains watch: top values, placeholders 0, -1, 999... inside the training range) exceeds
  `window_limit` of training's worst window of that span (for a value: the most rows any one value
  held); tested at each block's end, so alarms do not depend on how events are batched;
- *run*: one value repeated for more than `run_limit` of training's longest run (stuck).

No distribution is assumed: the margin only covers a production period longer or a little wilder
than the training's (`window_limit`: its worst window plus 3 Poisson standard deviations and 3
events, or 1.5 times it; a window's missing values at least a storm of `storm_limit` and the rest of
the window at training's missing rate; `run_limit`: twice its longest run plus MIN_CHANGE_VALUES).
After a window alarm the series' window empties, so it alarms again only if the excess persists over
new blocks. A window alarm's change point is the block from which its counts exceed the limit's rate
most.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np

from baselines.profile import FeatureProfile
from baselines.serial import WINDOW_BLOCK, WINDOW_BLOCKS, WINDOW_SPANS, run_lengths, window_sums
from detectors.cusum import BlockAccumulator
from detectors.diagnosis import MIN_CHANGE_VALUES
from detectors.episodes import Alarm, AlarmSource, Candidate

__all__ = ["MISSING", "REPEAT", "RUN", "STORM_TAIL", "VALUE", "WINDOW_RATIO", "WINDOW_SD", "WindowChain",
           "WorstWindowBank", "run_limit", "storm_limit", "window_limit", "window_limits", "worst_window_alarms"]

#: the tests of a chain (its alarm evidence's `test`)
MISSING, REPEAT, VALUE, RUN = "worst_window_missing", "worst_window_repeat", "worst_window_value", "longest_run"
#: Poisson standard deviations of the worst count a window may exceed it by without alarm
WINDOW_SD = 3.0
_SLACK = 3
#: ... or this many times it, if more
WINDOW_RATIO = 1.5
#: a storm of missing values may be as long as the longest of this many times as many as training's
STORM_TAIL = 1000
#: window alarms whose span a bank remembers for their Candidates at most
MAX_SPANS_KEPT = 4096


def window_limit(worst: np.ndarray) -> np.ndarray:
    """The count a window may hold without alarm: training's worst plus WINDOW_SD sqrt(worst) plus 3, or
    WINDOW_RATIO times its worst if more (storms of missing values are heavy-tailed: a flights half's
    worst 1,024 rows held 146 missing tail numbers, the other half's 188).

    >>> window_limit(np.array([0, 20, 59, 146])).tolist()
    [3, 36, 88, 219]
    """
    worst = np.asarray(worst, dtype=np.float64)
    return np.floor(np.maximum(worst + WINDOW_SD * np.sqrt(worst) + _SLACK, WINDOW_RATIO * worst)).astype(np.int64)


def window_limits(worst: Sequence[int], storm: int = 0, rate: float = 0.0) -> tuple[int, ...]:
    """`window_limit` per span of `WINDOW_SPANS`, at least a storm of `storm` missing values (`storm_limit`)
    and the rest of the span at `rate` (training's missing rate; plus WINDOW_SD binomial standard deviations).

    >>> window_limits((128, 164, 189, 310), 300, 0.05)
    (192, 256, 320, 465)
    """
    limits = window_limit(np.asarray(worst)).tolist()
    for k, span in enumerate(WINDOW_SPANS):
        rest = max(span - storm, 0) * rate
        limits[k] = max(limits[k], min(span, math.floor(storm + rest + WINDOW_SD * math.sqrt(rest))))
    return tuple(limits)


def storm_limit(longest: int, mean: float) -> int:
    """The longest storm of missing values production may hold: training's longest plus its mean storm
    times ln STORM_TAIL (the longest of STORM_TAIL times as many storms, for lengths of an exponential tail:
    storms of 60 rows on average, 17 in training, held 161 rows at most, and 350 in twice as many).

    >>> storm_limit(161, 60.0)
    576
    """
    return longest + math.ceil(mean * math.log(STORM_TAIL)) if longest else 0


def run_limit(longest: int) -> int:
    """The longest run of one value production may hold without alarm: twice training's longest plus
    MIN_CHANGE_VALUES (a stuck value then leaves that many values for the diagnosis).

    >>> run_limit(7)
    30
    """
    return 2 * longest + MIN_CHANGE_VALUES


class WindowChain(NamedTuple):
    """One series: its feature row, test (MISSING, REPEAT, VALUE, RUN), the value watched (VALUE) and its
    limits (RUN: one; else one per span of `WINDOW_SPANS`)."""

    j: int
    test: str
    value: float | None
    limits: tuple[int, ...]


class WorstWindowBank:
    """Window and run tests over the rows of an encoded (features, events) float matrix (NaN missing, any
    other non-finite value neither missing nor a value).

    Parameters
    ----------
    profiles
        The features' profiles, in row order: the rows with `worst_windows` get chains.
    watched
        Per row, the values whose share it watches (`detectors.pointmass.watched_values`).

    >>> from baselines.serial import WorstWindows
    >>> from baselines.profile import CategoricalProfile
    >>> p = CategoricalProfile("c", count=10, n_missing=0, n_invalid=0, categories={}, other_freq=0.0,
    ...                        n_distinct=2, worst_windows=WorstWindows((0,) * 4, (9,) * 4, (20,) * 4, 3))
    >>> bank = WorstWindowBank([p], [[]])
    >>> [(e, bank.chains[c].test) for e, c, _, _ in bank.update(np.ones((1, 192)), 0)]  # stuck from event 0
    [(22, 'longest_run'), (63, 'worst_window_repeat'), (127, 'worst_window_repeat'), (191, 'worst_window_repeat')]
    """

    def __init__(self, profiles: Sequence[FeatureProfile], watched: Sequence[Sequence[float]]):
        window, runs = [], []
        for j, (p, values) in enumerate(zip(profiles, watched)):
            w = p.worst_windows
            if w is None:
                continue
            one = window_limits(w.one_value)
            storm = storm_limit(w.longest_missing_run, p.n_missing / max(w.missing_runs, 1))
            missing = window_limits(w.missing, storm, p.n_missing / max(p.total, 1))
            window += [WindowChain(j, MISSING, None, missing),
                       WindowChain(j, REPEAT, None, window_limits(w.repeats))]
            window += [WindowChain(j, VALUE, float(v), one) for v in values]
            runs.append(WindowChain(j, RUN, None, (run_limit(w.longest_run),)))
        #: the window chains, then the run chains (an alarm's chain indexes this list)
        self.chains = window + runs
        self._n_window = len(window)
        self._series_rows = np.array([c.j for c in window], dtype=np.int64)
        self._values = np.array([np.nan if c.value is None else c.value for c in window], dtype=np.float64)
        self._is_missing = np.array([c.test == MISSING for c in window], dtype=bool)
        self._is_repeat = np.array([c.test == REPEAT for c in window], dtype=bool)
        #: each window series' run row (`_run_rows` holds one per feature, in row order)
        self._run_row_of = np.searchsorted(np.array([c.j for c in runs], dtype=np.int64), self._series_rows)
        self._limits = np.array([c.limits for c in window], dtype=np.int64).reshape(len(window), len(WINDOW_SPANS))
        self._run_rows = np.array([c.j for c in runs], dtype=np.int64)
        self._run_limits = np.array([c.limits[0] for c in runs], dtype=np.int64)
        self._blocks = BlockAccumulator(WINDOW_BLOCK, len(window))
        self._history = np.zeros((len(window), WINDOW_BLOCKS[-1] - 1), dtype=np.int64)
        #: each run row's last value and the length of its run (the repeat indicator's memory too)
        self._last = np.full(len(runs), np.nan)
        self._run = np.zeros(len(runs), dtype=np.int64)
        #: (event, chain) -> the span of recent window alarms (their Candidates are built within the batch)
        self._spans: dict[tuple[int, int], int] = {}

    def __len__(self) -> int:
        return len(self.chains)

    def update(self, x: np.ndarray, start: int) -> list[tuple[int, int, int, int]]:
        """Feed events start..start+n-1 (x: (rows, n)); return (event, chain, count, last event before the
        window or run) per alarm, in event order."""
        n = x.shape[1]
        if len(self._spans) > MAX_SPANS_KEPT:  # only a batch's alarms are ever asked for
            self._spans.clear()
        if not len(self.chains) or n == 0:
            return []
        rows = x[self._run_rows]  # one row per feature with chains, in chain order
        runs = run_lengths(rows, self._last, self._run)
        self._last, self._run = rows[:, -1].copy(), runs[:, -1].copy()
        alarms = [(int(e) + start, self._n_window + int(r), int(self._run_limits[r]) + 1,
                   int(e) + start - int(self._run_limits[r]) - 1)
                  for r, e in zip(*np.nonzero(runs == self._run_limits[:, None] + 1))]
        # each window series' indicator per event: missing, a repeat, the watched value
        values = x[self._series_rows]
        hits = values == self._values[:, None]
        hits[self._is_missing] = np.isnan(values[self._is_missing])
        hits[self._is_repeat] = runs[self._run_row_of[self._is_repeat]] >= 2
        cuts = np.r_[0, np.arange(WINDOW_BLOCK - start % WINDOW_BLOCK, n, WINDOW_BLOCK)]
        raw = np.add.reduceat(hits, cuts, axis=1, dtype=np.int64).T
        blocks, ends = self._blocks.add_sums(np.ascontiguousarray(raw), start, n)
        if len(blocks):
            alarms += self._window_alarms(blocks.T.copy(), ends)
        return sorted(alarms)

    def _window_alarms(self, blocks: np.ndarray, ends: np.ndarray) -> list[tuple[int, int, int, int]]:
        """The window alarms of new complete blocks (series, nb); after one, the series' window restarts."""
        out = []
        history = self._history
        while True:
            sums = window_sums(history, blocks)  # (spans, series, nb)
            over = sums > self._limits.T[:, :, None]
            hit = over.any(axis=0)
            series = np.flatnonzero(hit.any(axis=1))
            if not len(series):
                break
            for s in series.tolist():
                b = int(np.argmax(hit[s]))
                k = int(np.argmax(over[:, s, b]))  # the shortest span over its limit
                event = int(ends[b])
                # the change point: the window's block from which the counts exceed the limit's rate most
                window = np.concatenate([history[s], blocks[s, :b + 1]])[-WINDOW_BLOCKS[k]:]
                excess = np.cumsum((window - self._limits[s, k] / WINDOW_BLOCKS[k])[::-1])
                after = int(np.argmax(excess)) + 1  # blocks since it
                out.append((event, s, int(sums[k, s, b]), event - after * WINDOW_BLOCK))
                self._spans[event, s] = WINDOW_SPANS[k]
                history[s] = 0
                blocks[s, :b + 1] = 0
        self._history = np.concatenate([history, blocks], axis=1)[:, -(WINDOW_BLOCKS[-1] - 1):]
        return out

    def candidate(self, event: int, chain: int, count: int, onset: int) -> Candidate:
        """The Candidate of chain's alarm at `event` (of the last batch fed), its run or window's change
        point `onset`: the count (statistic) against the limit (threshold) of the run or of the window
        whose span the alarm's is (`expected_rate`: the rate the limit allows)."""
        c = self.chains[chain]
        if c.test == RUN:
            limit, evidence = c.limits[0], {"test": c.test}
        else:
            span = self._spans.get((event, chain)) or next(s for s in WINDOW_SPANS if s >= event - onset + 1)
            limit = c.limits[WINDOW_SPANS.index(span)]
            evidence = {"test": c.test, **({} if c.value is None else {"value": c.value}), "window": span,
                        "expected_rate": round(limit / span, 6)}
        evidence.update(count=count, limit=limit, change_start_event=onset)
        kind = "data_quality" if c.test == MISSING else "drift"
        return Candidate(event_index=event, rank=(AlarmSource.NUMERIC_CUSUM, 0, c.j), feature=None, kind=kind,
                         family="", detector="", statistic=float(count), threshold=float(limit), p_value=None,
                         evidence=evidence, onset=onset)

    def state_dict(self, last_values: bool = True) -> dict[str, Any]:
        """The incomplete block, the last blocks' counts and the runs, as plain data. Without the last
        values (a production value: examples off), a restored bank starts its runs afresh."""
        # a block's count is at most WINDOW_BLOCK (64): one byte each
        return {"blocks": self._blocks.state_dict(), "history": self._history.astype(np.uint8).tobytes(),
                "last": self._last.tobytes() if last_values else None,
                "run": self._run.tolist() if last_values else None}

    def load_state(self, state: dict[str, Any] | None) -> None:
        """Continue from a `state_dict` (None, or one of other chains: start afresh)."""
        if state is None or len(state["history"]) != self._history.size or len(state["blocks"]["partial"]) != \
                self._n_window:
            return
        self._blocks.load_state(state["blocks"])
        self._history = np.frombuffer(state["history"], dtype=np.uint8).astype(np.int64).reshape(self._history.shape)
        if state["last"] is not None:
            self._last = np.frombuffer(state["last"], dtype=np.float64).copy()
            self._run = np.asarray(state["run"], dtype=np.int64)


def worst_window_alarms(bank: WorstWindowBank, x: np.ndarray, start: int, run_gap: int, rank: tuple[int, int],
                        names: Sequence[str], runs: Callable) -> list[Alarm]:
    """A monitor's alarms of the bank for events start.. (x its encoded rows): a missing-values window as
    a `missing_rate` alarm, the others as `point_mass` alarms; rank: (source, test order) of its bank, a
    chain's alarms each within `run_gap` of the one before one Alarm (runs: the bank's `_runs`)."""
    out = []
    for chain, run in runs(bank.update(x, start), run_gap):
        c = bank.chains[chain]
        family, detector = ("missing", "missing_rate") if c.test == MISSING else ("distribution", "point_mass")
        out.append(Alarm(run[0][0], (*rank, c.j), names[c.j], family, detector, run[0][3], bank.candidate,
                         run[0], tuple(run[1:])))
    return out
