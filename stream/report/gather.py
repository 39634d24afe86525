"""What `skewwatch report` records along a replay, per model and feature: the monitors' statistics
sampled every `--window` events, bounded samples of the production values (a reservoir for numbers, a
Space-Saving top-K for categories), the model's versions, time span and alerts."""
from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np

from baselines.profile import Baseline, CategoricalProfile, NumericProfile
from detectors.alerts import Alert
from detectors.events import Limits
from detectors.extract import TrainedSpelling, classify_numbers
from detectors.model import ModelMonitor, MonitorConfig
from detectors.routing import ModelRouter
from detectors.sketches import SpaceSaving
from stream.commands.replay import Replay
from stream.commands.tables import TableColumns

__all__ = ["MAX_SAMPLES", "MAX_VERSIONS", "SAMPLE_SIZE", "TOP_CATEGORIES", "FeatureTrace", "ModelTrace", "Recorder",
           "Values", "gather", "is_number"]

#: production values kept per feature (and again from its first alert on) for the distribution plot
SAMPLE_SIZE = 20_000
#: categories counted per feature (Space-Saving: any category above 1/capacity of the values is held)
TOP_CATEGORIES = 64
#: time-series samples kept per model; beyond it every other one is dropped and the step doubles
MAX_SAMPLES = 1_500
#: most model versions counted for the header (the rest are "other")
MAX_VERSIONS = 16


class _Reservoir:
    """A uniform sample of at most `capacity` values of a stream (Vitter's algorithm R, vectorised)."""

    def __init__(self, capacity: int, rng: np.random.Generator):
        self._values = np.empty(capacity)
        self._rng = rng
        self._seen = 0

    @property
    def seen(self) -> int:
        return self._seen

    @property
    def values(self) -> np.ndarray:
        return self._values[: min(self._seen, len(self._values))]

    def add(self, x: np.ndarray) -> None:
        cap = len(self._values)
        fill = min(max(cap - self._seen, 0), len(x))
        self._values[self._seen:self._seen + fill] = x[:fill]
        rest = x[fill:]
        if len(rest):
            slots = self._rng.integers(0, self._seen + fill + np.arange(1, len(rest) + 1))
            keep = slots < cap
            self._values[slots[keep]] = rest[keep]
        self._seen += len(x)


class Values:
    """Production values of one feature: a bounded sample plus the missing / invalid counts.

    Parameters
    ----------
    numeric
        A numeric feature keeps a uniform sample of `SAMPLE_SIZE` values (`sample`); a categorical
        one counts its `TOP_CATEGORIES` most frequent categories (`categories`, Space-Saving).
    rng
        Draws the sample's slots.
    """

    def __init__(self, numeric: bool, rng: np.random.Generator):
        self.sample = _Reservoir(SAMPLE_SIZE, rng) if numeric else None
        self.categories = None if numeric else SpaceSaving(TOP_CATEGORIES)
        self.valid = 0
        self.missing = 0
        self.invalid = 0

    @property
    def total(self) -> int:
        return self.valid + self.missing + self.invalid

    @property
    def missing_rate(self) -> float:
        return self.missing / self.total if self.total else 0.0

    def add_numbers(self, x: np.ndarray, missing: np.ndarray, invalid: np.ndarray) -> None:
        """Add a numeric feature's values (`detectors.extract.classify_numbers`): the valid ones to the
        sample, the others to the counts.

        Parameters
        ----------
        x
            The values, (n,).
        missing, invalid
            Which of them are missing, invalid: (n,) bool.
        """
        ok = ~(missing | invalid)
        self.sample.add(x[ok])
        self.valid += int(ok.sum())
        self.missing += int(missing.sum())
        self.invalid += int(invalid.sum())

    def add_labels(self, labels: Sequence[str | None | bool]) -> None:
        """Add a categorical feature's values.

        Parameters
        ----------
        labels
            Category keys as the monitors code them, None for a missing value, False for an invalid one.
        """
        for label, n in Counter(labels).items():
            if label is None:
                self.missing += n
            elif label is False:
                self.invalid += n
            else:
                self.valid += n
                self.categories.update(label, n)


class FeatureTrace:
    """What the report knows about one feature (or the confidence) of one model.

    Parameters
    ----------
    name
        The feature, or "confidence" for the model's confidence.
    profile
        Its training profile (the baseline's).
    rng
        Shared with the model's other features (their samples' slots).
    """

    def __init__(self, name: str, profile: NumericProfile | CategoricalProfile, rng: np.random.Generator):
        self.name = name
        self.profile = profile
        self.numeric = isinstance(profile, NumericProfile)
        self._rng = rng
        self.overall = Values(self.numeric, rng)
        #: values from the feature's first alert on (None until it alerts)
        self.since_alert: Values | None = None
        self.alert_at: int | None = None
        #: one dict of snapshot statistics per sample of the model
        self.samples: list[dict[str, float]] = []
        #: how the monitors spell this feature's values among its training categories (categorical only)
        self.spelling = None if self.numeric else TrainedSpelling(profile.categories)

    def start_since_alert(self, event_index: int) -> None:
        """Keep the values from `event_index` (the model's event count at the feature's first alert) on
        apart too, in `since_alert`."""
        self.alert_at = event_index
        self.since_alert = Values(self.numeric, self._rng)

    def series(self, key: str) -> list[float | None]:
        """One statistic of the snapshots over the samples (None where a sample lacks it)."""
        return [s.get(key) for s in self.samples]


class ModelTrace:
    """Everything recorded for one model along the replay.

    Parameters
    ----------
    baseline
        The model's baseline: its features are traced, and its confidence if it has one.
    every
        Take a sample of the monitor's statistics every this many events (doubled whenever
        `MAX_SAMPLES` is reached).
    seed
        Of the values' samples: the same replay draws the same page.
    """

    def __init__(self, baseline: Baseline, every: int, seed: int):
        rng = np.random.default_rng(seed)
        self.baseline = baseline
        self.features: dict[str, FeatureTrace] = {
            name: FeatureTrace(name, p, rng) for name, p in baseline.features.items()}
        self.has_confidence = baseline.confidence is not None and "confidence" not in self.features
        if self.has_confidence:
            self.features["confidence"] = FeatureTrace("confidence", baseline.confidence, rng)
        self.every = every
        self.next_sample = every
        self.sample_x: list[int] = []
        self.alerts: list[dict] = []
        self.events = 0
        self.ts_min: float | None = None
        self.ts_max: float | None = None
        self.versions: Counter[str] = Counter()

    def record(self, events: list[dict], start: int, alerts: list[dict]) -> None:
        """Record one batch of this model's events and its alerts.

        Parameters
        ----------
        events
            The events the monitor took, its events `start` to `start + len(events) - 1`.
        start
            The monitor's event count before them.
        alerts
            The batch's alerts of this model, as dicts (`Alert.to_dict`).
        """
        self.events += len(events)
        self.alerts.extend(alerts)
        for a in alerts:
            f = self.features.get(a.get("feature") or "")
            if f is not None and f.since_alert is None:
                f.start_since_alert(int(a["events_seen"]))
        self._record_meta(events)
        feats = [e["features"] for e in events]
        for name, f in self.features.items():
            if f.numeric:
                if name == "confidence" and self.has_confidence:
                    v = classify_numbers([e.get("confidence") for e in events])
                    x, missing, invalid = v.x[0], v.missing[0], v.invalid[0]
                    outside = (x < 0.0) | (x > 1.0)  # the monitor counts these as invalid too
                    invalid = invalid | outside
                else:
                    v = classify_numbers([d.get(name) for d in feats])
                    x, missing, invalid = v.x[0], v.missing[0], v.invalid[0]
                f.overall.add_numbers(x, missing, invalid)
                if f.since_alert is not None:
                    k = max(0, f.alert_at - start)
                    f.since_alert.add_numbers(x[k:], missing[k:], invalid[k:])
            else:
                labels = [_label(d.get(name), f.spelling) for d in feats]
                f.overall.add_labels(labels)
                if f.since_alert is not None:
                    f.since_alert.add_labels(labels[max(0, f.alert_at - start):])

    def _record_meta(self, events: list[dict]) -> None:
        ts = [t for t in (e.get("ts") for e in events) if isinstance(t, (int, float)) and not isinstance(t, bool)
              and math.isfinite(t)]
        if ts:
            lo, hi = min(ts), max(ts)
            self.ts_min = lo if self.ts_min is None else min(self.ts_min, lo)
            self.ts_max = hi if self.ts_max is None else max(self.ts_max, hi)
        for version, n in Counter(e.get("model_version") for e in events).items():
            key = "(none)" if version is None else str(version)[:32]
            if key in self.versions or len(self.versions) < MAX_VERSIONS:
                self.versions[key] += n
            else:
                self.versions["other"] += n

    def maybe_sample(self, monitor: ModelMonitor, final: bool = False) -> None:
        """Sample the monitor's statistics (`ModelMonitor.snapshot`) if `every` events went by since the
        last sample, or if `final` and its last events were not sampled yet."""
        seen = monitor.events_seen
        if seen < self.next_sample and not (final and seen and (not self.sample_x or self.sample_x[-1] != seen)):
            return
        snap = monitor.snapshot()
        self.sample_x.append(seen)
        for name, fs in snap["features"].items():
            if name in self.features:
                stats = {k: float(v) for k, v in fs["statistics"].items() if is_number(v)}
                stats["missing_ratio"] = float(fs["missing_ratio"])
                self.features[name].samples.append(stats)
        if self.has_confidence:
            mean = snap.get("confidence_mean")
            self.features["confidence"].samples.append({} if mean is None else {"confidence_mean": float(mean)})
        while self.next_sample <= seen:
            self.next_sample += self.every
        if len(self.sample_x) > MAX_SAMPLES:
            self.sample_x = self.sample_x[1::2]
            for f in self.features.values():
                f.samples = f.samples[1::2]
            self.every *= 2
            self.next_sample = self.sample_x[-1] + self.every


def _label(v: Any, spell: TrainedSpelling) -> str | None | bool:
    """The category key of a value as the monitors see it; None if missing, False if invalid."""
    if v is None:
        return None
    if isinstance(v, (dict, list, tuple)):
        return False
    return spell(v)


def is_number(v: Any) -> bool:
    """Whether `v` is a finite int or float (a bool is not a number).

    >>> [is_number(v) for v in (3, 2.5, True, float("nan"), "3", None)]
    [True, True, False, False, False, False]
    """
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


class Recorder:
    """What the report shows, recorded from a replay: `replay` reads the files (replay's own reader
    and processing) in batches of exactly `window` events, so that every sample falls on a window
    edge of a single-model stream; alerts do not depend on the batching.

    Parameters
    ----------
    baselines
        One per model.
    window
        Sample the statistics every this many events of a model.
    limits
        What a message may hold, as for `skewwatch replay`.
    seed
        Of the values' samples.
    table
        How the rows of a table file (or `run_values`'s rows) become events.
    config
        The monitors' settings.
    """

    def __init__(self, baselines: Iterable[Baseline], window: int = MonitorConfig.window,
                 limits: Limits = Limits(), seed: int = 0, table: TableColumns | None = None,
                 config: MonitorConfig | None = None):
        self.router = ModelRouter(baselines, config)
        self.replay = Replay(self.router, limits, window, self._record, table=table)
        self.traces = [ModelTrace(self.router.baseline(m), window, seed) for m in self.router.models]
        self._by_model = {t.baseline.model: t for t in self.traces}

    def run_file(self, path: str, fmt: str) -> None:
        """Replay one file ('-': stdin) and record it; `fmt` as for `Replay.run_file`."""
        self.replay.run_file(path, fmt)

    def finish(self) -> None:
        """Process the events still pending (the last, partial batch) and take the last samples."""
        self.replay.flush()
        for t in self.traces:
            t.maybe_sample(self.router.monitor(t.baseline.model), final=True)

    def _record(self, alerts: list[Alert], events: Sequence[dict]) -> None:
        """replay's `AlertCallback`: one batch's alerts and the events the monitors took."""
        groups: dict[str, list[dict]] = {}
        for e in events:
            groups.setdefault(e["model"], []).append(e)
        for model, group in groups.items():
            trace = self._by_model[model]
            monitor = self.router.monitor(model)
            trace.record(group, monitor.events_seen - len(group), [a.to_dict() for a in alerts if a.model == model])
            trace.maybe_sample(monitor)


def gather(baselines: Iterable[Baseline], paths: Sequence[str], window: int = MonitorConfig.window,
           fmt: str = "auto") -> list[ModelTrace]:
    """Replay `paths` through the monitors and record what the report shows.

    Parameters
    ----------
    baselines
        One per model.
    paths
        Event files, as for `skewwatch replay`.
    window
        Sample the statistics every this many events of a model.
    fmt
        "jsonl", "msgpack" or "auto".

    Returns
    -------
    list of ModelTrace
        One per model, in the router's order.
    """
    recorder = Recorder(baselines, window=window)
    for path in paths:
        recorder.run_file(path, fmt)
    recorder.finish()
    return recorder.traces
