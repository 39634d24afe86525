"""The worker's Prometheus metrics (served at /metrics). The names are a contract: the
deploy/ dashboard and alert rules query them (docs/contracts.md, "Metrics", lists the series
per model).

`Metrics(registry)` creates them on any CollectorRegistry, so tests get a fresh set each.
The per-feature gauges follow each model's busiest monitor (`refresh`): only models that saw
events since their last refresh are read again, least recently refreshed first, within a time
budget, so a scrape of many models costs what changed, not the whole fleet.

The per-model families (`PER_MODEL_FAMILIES`: ~10 series per feature, nearly all of a fleet's)
are kept per model, not as prometheus_client children: each model's lines of the text format
are written when its gauges are set, so the /metrics text (`Metrics.exposition`) joins them
instead of formatting every series again (seconds for 500 models of 50 features through
`generate_latest`: bench/RESULTS.md, "Scrape"). The registry still yields every series
(`Metrics.collect`): `get_sample_value` and `generate_latest(registry)` see what /metrics shows,
in the same text.
"""
from __future__ import annotations

import functools
import math
import time
import weakref
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.utils import floatToGoString

from baselines.profile import Baseline
from detectors import thresholds as T
from detectors.alerts import Alert
from detectors.model import ModelMonitor
from stream.worker.config import FEATURE_METRICS

__all__ = ["BATCH_BUCKETS", "DRIFTING_SCORE", "DRIFT_STATISTICS", "NOT_DRIFT_STATISTICS", "PER_MODEL_FAMILIES",
           "REFRESH_BUDGET", "REFRESH_HOLD", "Metrics", "alert_feature_label", "drift_score"]

#: Batch processing times span a tiny batch (~1 ms) to a full one of many-event messages (~1 s).
BATCH_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

#: the snapshot's statistics exported as skewwatch_drift_statistic: distances of the last window to
#: training and the tests' statistics, each larger the further production is from training
DRIFT_STATISTICS = frozenset({"psi", "jensen_shannon", "ks", "wasserstein", "cusum_location", "cusum_scale",
                              "chi2", "linf", "unseen_cusum"})
#: the snapshot's other entries, not exported: p-values (smaller is further; skewwatch_drift_score has
#: them), settings and counts (alarm threshold, degrees of freedom, values in the window, ADWIN's width),
#: and the point-mass chains' highest statistic (in the drift score; not a series per feature more)
NOT_DRIFT_STATISTICS = frozenset({"ks_p_value", "p_value", "cusum_threshold", "dof", "window_values",
                                  "adwin_width_blocks", "point_mass_cusum", "point_mass_threshold"})
#: the CUSUMs among the statistics: they alarm above the snapshot's "cusum_threshold"
_CUSUMS = ("cusum_location", "cusum_scale", "unseen_cusum")
#: the window tests' p-values (KS, chi-square): they alarm below detectors.thresholds.WINDOW_ALPHA
_WINDOW_P_VALUES = ("ks_p_value", "p_value")
#: the name the monitor gives the model's confidence in its alerts
_CONFIDENCE = "confidence"
#: seconds a scrape may spend reading monitors (`refresh`; in stream/worker/pages.py REFRESH_HOLD at
#: a time, the loop free in between, until this long after the scrape started); the models left are
#: the first of the next scrape. A 50-feature model's read and lines take ~1 ms (~3 ms when a window
#: closed since its last read): ~50-100 busy models a scrape (bench/RESULTS.md, "Scrape"). At 0.2 s,
#: a 500-model worker's scrape took 248 / 498 ms (median / max) after a load, over the 250 ms asked
REFRESH_BUDGET = 0.1
#: seconds a scrape reads monitors in one go before it lets the loop run (`refresh`'s budget, at least
#: one model): what it holds processing for, plus one model's read. Several models a turn: a call
#: costs a pass over the fleet (~1 ms at 500 models) besides its reads
REFRESH_HOLD = 0.002
#: the drift score from which feature_metrics="drifting" exports a feature's: on stationary data a
#: feature's score is >= 0.5 in 0.06% of snapshots (3 seeds x 50 features x 30k events)
DRIFTING_SCORE = 0.5

#: the gauges set per model from its monitor (name, help, label names, "model" first), in this order
#: on /metrics after the other families; `Metrics.forget_model` drops a model's
PER_MODEL_FAMILIES = (
    ("skewwatch_drift_score", "A feature's highest test statistic over its alarm threshold (>= 1: past it)",
     ("model", "feature")),
    ("skewwatch_feature_alerting", "1 while an alert episode of this kind is open on the feature (no series after)",
     ("model", "feature", "kind")),
    ("skewwatch_drift_statistic", "A feature's distance to training or test statistic, larger when further",
     ("model", "feature", "statistic")),
    ("skewwatch_missing_ratio", "Share of recent events missing the feature", ("model", "feature")),
    ("skewwatch_confidence_mean", "Mean prediction confidence (recent events)", ("model",)),
)


def drift_score(statistics: dict[str, Any]) -> float | None:
    """A feature's highest test statistic over its alarm threshold, from its snapshot statistics:
    >= 1 when one of its tests is past its threshold (None when it reports no test).

    A CUSUM counts as statistic / threshold; a window test's p-value p as log(p) / log(alpha), the
    same ratio on the scale of the evidence (1 where p reaches WINDOW_ALPHA, 0 at p = 1).

    >>> drift_score({"cusum_location": 7.0, "cusum_scale": 1.0, "cusum_threshold": 35.0, "ks_p_value": 1.0})
    0.2
    >>> drift_score({"cusum_location": 0.0, "cusum_threshold": 35.0, "ks_p_value": 1e-9}) > 1
    True
    """
    scores = [statistics[name] / statistics["cusum_threshold"] for name in _CUSUMS if name in statistics]
    if "point_mass_cusum" in statistics:  # the chain nearest its own threshold (grid chains' are higher)
        scores.append(statistics["point_mass_cusum"] / statistics["point_mass_threshold"])
    # log(1 / p), not -log(p): a p-value of 1 scores 0.0, not -0.0
    scores += [math.log(1.0 / min(max(statistics[name], 1e-300), 1.0)) / math.log(1.0 / T.WINDOW_ALPHA)
               for name in _WINDOW_P_VALUES if name in statistics]
    return max(scores) if scores else None


def alert_feature_label(alert: Alert, baseline: Baseline | None) -> str:
    """The `feature` label of an alert's count: its feature when the model's baseline has it (or it
    is the confidence), else "" (model-wide alerts, and the join's feature-log names, which the
    baselines do not bound)."""
    feature = alert.feature
    if feature is None or baseline is None:
        return ""
    return feature if feature in baseline.features or feature == _CONFIDENCE else ""


class Metrics:
    """The worker's Prometheus series (README, "Metrics"), registered on one registry as a collector.

    Parameters
    ----------
    registry
        Where to register them (default: a new CollectorRegistry): its `collect()`, `get_sample_value`
        and `generate_latest` see every series, the per-model ones included.
    feature_metrics
        Which per-feature series the snapshots set: one of stream.worker.config.FEATURE_METRICS
        (SKEWWATCH_FEATURE_METRICS).
    """

    def __init__(self, registry: CollectorRegistry | None = None, feature_metrics: str = "all"):
        if feature_metrics not in FEATURE_METRICS:
            raise ValueError(f"feature metrics {feature_metrics!r} is not one of {', '.join(FEATURE_METRICS)}")
        self.feature_metrics = feature_metrics
        self.registry = registry if registry is not None else CollectorRegistry()
        #: the metrics prometheus_client keeps and writes; `registry` collects them, then the per-model ones
        self.client_registry = CollectorRegistry()
        r = self.client_registry
        self.events = Counter("skewwatch_events", "Events accepted by a model's monitor", ["model"], registry=r)
        self.rejected = Counter("skewwatch_rejected_events",
                                "Rejected messages or events (dead-lettered), by reason", ["reason"], registry=r)
        self.alerts = Counter("skewwatch_alerts", "Alerts emitted, by the feature they name (\"\" for model-wide ones)",
                              ["model", "kind", "feature"], registry=r)
        self.batch_seconds = Histogram("skewwatch_batch_seconds", "Time to decode, monitor and emit one micro-batch",
                                       buckets=BATCH_BUCKETS, registry=r)
        self.consumer_lag = Gauge("skewwatch_consumer_lag_messages",
                                  "Messages between the consumer position and the end of the partition",
                                  ["topic", "partition"], registry=r)
        self.baseline_loaded = Gauge("skewwatch_baseline_loaded",
                                     "1 while the model's baseline is loaded, 0 when it is broken or deleted",
                                     ["model"], registry=r)
        self.baseline_file_problem = Gauge(
            "skewwatch_baseline_file_problem",
            "1 while a file in the baselines directory declares the served model but cannot serve it "
            "(unusable, or a second file for the model): the model keeps its loaded baseline", ["model"], registry=r)
        self.broker_connected = Gauge("skewwatch_broker_connected",
                                      "1 once the worker has joined its consumer group and received an assignment",
                                      registry=r)
        self.checkpoints = Counter("skewwatch_checkpoints", "Monitor-state checkpoints written", registry=r)
        # shadow pairs (--shadow): labelled by production model and candidate, both from the settings
        self.shadow_agreement = Gauge("skewwatch_shadow_agreement",
                                      "Agreement of a shadow candidate with production over the last closed window",
                                      ["model", "candidate"], registry=r)
        self.shadow_expected_agreement = Gauge("skewwatch_shadow_expected_agreement",
                                               "The agreement below which a shadow window alerts",
                                               ["model", "candidate"], registry=r)
        self.shadow_confidence_diff = Gauge("skewwatch_shadow_confidence_diff",
                                            "Mean candidate - production confidence over the last closed window",
                                            ["model", "candidate"], registry=r)
        self.shadow_joined = Gauge("skewwatch_shadow_joined", "Requests both models of a shadow pair answered",
                                   ["model", "candidate"], registry=r)
        #: model -> its per-model series (PER_MODEL_FAMILIES), in the order they are written
        self._series: dict[str, _ModelSeries] = {}
        #: model -> (its monitor, that monitor's events seen) the gauges show; least recently refreshed first
        self._shown: dict[str, tuple[weakref.ref, int]] = {}
        self.registry.register(self)

    def count_alert(self, alert: Alert, baseline: Baseline | None) -> None:
        """Count an emitted alert, under its feature if `baseline` (its model's) bounds it
        (`alert_feature_label`). An update record re-diagnoses an alert already counted: not counted."""
        if not alert.update:
            self.alerts.labels(alert.model, alert.kind, alert_feature_label(alert, baseline)).inc()

    def refresh(self, monitors: Iterable[ModelMonitor], budget: float = REFRESH_BUDGET,
                clock: Callable[[], float] = time.perf_counter) -> int:
        """Set the per-model gauges from the monitors (one per model) that saw events since the
        gauges last showed them, least recently refreshed first, until `budget` seconds are spent
        (at least one model per call); the others keep their values until a later call.

        Returns
        -------
        int
            How many models were refreshed.
        """
        stale = [m for m in monitors if self._changed(m)]
        position = {model: i for i, model in enumerate(self._shown)}
        stale.sort(key=lambda m: position.get(m.baseline.model, -1))
        start = clock()
        for done, monitor in enumerate(stale):
            if done and clock() - start >= budget:
                return done
            model = monitor.baseline.model
            self.observe_snapshot(monitor.snapshot())
            self._shown.pop(model, None)
            self._shown[model] = (weakref.ref(monitor), monitor.events_seen)
        return len(stale)

    def _changed(self, monitor: ModelMonitor) -> bool:
        """Whether `monitor` has events its model's gauges do not show (another monitor, or more events)."""
        shown = self._shown.get(monitor.baseline.model)
        return monitor.events_seen > 0 and (shown is None or shown[0]() is not monitor
                                            or shown[1] != monitor.events_seen)

    def observe_snapshot(self, snapshot: dict[str, Any]) -> None:
        """Set the per-model gauges from a `ModelMonitor.snapshot()`. As prometheus_client's gauges
        did, a value the snapshot lacks keeps its last one."""
        model = snapshot["model"]
        series = self._series.get(model) or self._series.setdefault(model, _ModelSeries(model))
        scores, alerting, statistics_, missing_ratios, confidence_mean = series.values
        detail, only_drifting = self.feature_metrics == "all", self.feature_metrics == "drifting"
        confidence = snapshot.get("confidence_mean")
        if confidence is not None:
            confidence_mean[()] = float(confidence)
        for feature, info in snapshot.get("features", {}).items():
            statistics = info.get("statistics") or {}
            score = drift_score(statistics)
            if score is not None and not (only_drifting and score < DRIFTING_SCORE
                                          and feature not in snapshot.get("alerting", {})):
                scores[(feature,)] = float(score)
            elif only_drifting:
                scores.pop((feature,), None)
            if not detail:
                continue
            missing = info.get("missing_ratio")
            if missing is not None:
                missing_ratios[(feature,)] = float(missing)
            for statistic, value in statistics.items():
                if statistic in DRIFT_STATISTICS:
                    statistics_[(feature, statistic)] = float(value)
        # like Prometheus' own ALERTS: a series while alerting, none after (not thousands of zeros)
        open_now = sorted((subject, kind) for subject, kinds in snapshot.get("alerting", {}).items() for kind in kinds)
        alerting.clear()
        alerting.update(dict.fromkeys(open_now, 1.0))
        series.write()

    def observe_shadow(self, figures: Iterable[dict[str, Any]]) -> None:
        """Set the shadow gauges from `ShadowMonitor.figures()` (a figure not known yet: no series)."""
        for f in figures:
            labels = (f["production"], f["candidate"])
            self.shadow_joined.labels(*labels).set(f["joined"])
            for gauge, key in ((self.shadow_agreement, "agreement"), (self.shadow_expected_agreement, "expected"),
                               (self.shadow_confidence_diff, "confidence_diff")):
                if f[key] is not None:
                    gauge.labels(*labels).set(f[key])

    def forget_model(self, model: str) -> None:
        """Drop a model's per-feature series (its baseline was deleted or replaced)."""
        self._series.pop(model, None)
        self._shown.pop(model, None)

    def forget_lag(self, topic: str, keep: set[int]) -> None:
        """Drop the lag series of the topic's partitions this worker no longer consumes."""
        _remove_where(self.consumer_lag,
                      lambda labels: labels["topic"] == topic and int(labels["partition"]) not in keep)

    def collect(self) -> Iterator[Metric]:
        """Every family: prometheus_client's, then the per-model ones (their series model by model).
        The registry collects this, so `generate_latest(registry)` writes what `exposition` does."""
        yield from self.client_registry.collect()
        models = list(self._series.values())
        for i, (name, documentation, labelnames) in enumerate(PER_MODEL_FAMILIES):
            family = GaugeMetricFamily(name, documentation, labels=labelnames)
            for series in models:
                for labels, value in series.values[i].items():
                    family.add_metric([series.model, *labels], value)
            yield family

    def exposition(self) -> bytes:
        """The registry in Prometheus' text format (the /metrics page): prometheus_client's families,
        then each model's lines as written when its gauges were last set. Safe in a thread while the
        loop sets gauges: a model's lines are replaced whole."""
        lines = [series.lines for series in list(self._series.values())]
        parts = [generate_latest(self.client_registry)]
        for i, header in enumerate(_HEADERS):
            parts.append(header)
            parts.extend(model_lines[i] for model_lines in lines)
        return b"".join(parts)


class _ModelSeries:
    """One model's series of PER_MODEL_FAMILIES: per family {label values after "model": value},
    in the order set, and their lines of the text format (`write`)."""

    __slots__ = ("lines", "model", "values")

    def __init__(self, model: str):
        self.model = model
        self.values: tuple[dict[tuple[str, ...], float], ...] = tuple({} for _ in PER_MODEL_FAMILIES)
        self.lines: tuple[bytes, ...] = (b"",) * len(PER_MODEL_FAMILIES)

    def write(self) -> None:
        """Write the lines from the values, as generate_latest would (labels sorted by name)."""
        model = _label_value(self.model)
        self.lines = tuple("".join([f"{before(labels[:k])}{model}{after(labels[k:])}{floatToGoString(value)}\n"
                                    for labels, value in values.items()]).encode()
                           for (k, before, after), values in zip(_LINE_PARTS, self.values))


def _label_value(value: str) -> str:
    """A label value escaped as the text format wants (backslash, newline, double quote)."""
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _line_parts(name: str, labelnames: tuple[str, ...]) -> tuple[int, Callable, Callable]:
    """A family's sample line around the model's label value, as generate_latest writes it (labels
    sorted by name): (k, before, after), `before(labels[:k])` the text up to the model's value and
    `after(labels[k:])` the text from it up to the value, labels being the values after "model". Kept
    (bounded): every refresh writes the same feature, kind and statistic names again."""
    others = labelnames[1:]
    if list(others) != sorted(others):
        raise ValueError(f"{name}: the labels after model must be sorted by name")
    k = sum(label < "model" for label in others)

    @functools.lru_cache(maxsize=1 << 16)
    def before(values: tuple[str, ...]) -> str:
        pairs = "".join(f'{label}="{_label_value(v)}",' for label, v in zip(others[:k], values))
        return f'{name}{{{pairs}model="'

    @functools.lru_cache(maxsize=1 << 8)
    def after(values: tuple[str, ...]) -> str:
        pairs = "".join(f',{label}="{_label_value(v)}"' for label, v in zip(others[k:], values))
        return f'"{pairs}}} '

    return k, before, after


_LINE_PARTS = tuple(_line_parts(name, labelnames) for name, _, labelnames in PER_MODEL_FAMILIES)
_HEADERS = tuple(f"# HELP {name} {documentation}\n# TYPE {name} gauge\n".encode()
                 for name, documentation, _ in PER_MODEL_FAMILIES)


def _remove_where(metric: Gauge, predicate: Callable[[dict[str, str]], bool]) -> None:
    """Remove the series of a labelled gauge whose labels ({name: value}) satisfy `predicate`.

    prometheus_client lists a metric's series only through `collect()`: one sample per series of a
    gauge, its labels in the metric's label order, which is the order `remove()` takes them in.
    """
    for family in metric.collect():
        for sample in family.samples:
            if predicate(sample.labels):
                metric.remove(*sample.labels.values())
