"""The worker's metrics: statistics apart from settings, one comparable drift score per feature,
what is alerting now, alert counts by feature, series bounded by the baselines; forgetting a
model's or a partition's series (through prometheus_client's public collect() and remove()); and
the /metrics text, from each model's lines written when its gauges were set, being what
prometheus_client writes of the registry."""
import math
import subprocess

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from detectors import thresholds as T
from detectors.alerts import Alert
from detectors.model import ModelMonitor
from stream.worker.config import FEATURE_METRICS
from stream.worker.metrics import (
    DRIFT_STATISTICS,
    NOT_DRIFT_STATISTICS,
    Metrics,
    drift_score,
)
from tests.stream.helpers import events, training_baseline
from tests.test_deploy import PROMTOOL, needs_promtool


def drifted_monitor() -> ModelMonitor:
    """credit's amount moved far from training at event 1000 (drift, and values out of the training
    range); its other features did not."""
    monitor = ModelMonitor(training_baseline("credit"))
    stream = events("credit", 1000, seed=1) + events("credit", 2000, seed=2, amount_mean=160.0)
    alerts = [a for i in range(0, len(stream), 500) for a in monitor.update_batch(stream[i:i + 500])]
    assert {(a.kind, a.feature) for a in alerts} == {("drift", "amount"), ("data_quality", "amount")}
    return monitor


def series(metrics: Metrics, name: str) -> dict[tuple, float]:
    """{label values: value} of the samples called `name`."""
    return {tuple(s.labels.values()): s.value for family in metrics.registry.collect() for s in family.samples
            if s.name == name}


def test_every_snapshot_statistic_is_either_a_drift_statistic_or_left_out():
    # a statistic added to the snapshot must be classified, not exported by accident as a window size was
    snap = drifted_monitor().snapshot()
    reported = {name for f in snap["features"].values() for name in f["statistics"]}
    assert reported <= DRIFT_STATISTICS | NOT_DRIFT_STATISTICS, reported - DRIFT_STATISTICS - NOT_DRIFT_STATISTICS
    assert not DRIFT_STATISTICS & NOT_DRIFT_STATISTICS


def test_drift_statistic_holds_no_setting_count_or_p_value():
    metrics = Metrics(CollectorRegistry())
    metrics.observe_snapshot(drifted_monitor().snapshot())
    exported = {statistic for _, _, statistic in series(metrics, "skewwatch_drift_statistic")}
    assert exported == {"psi", "jensen_shannon", "ks", "wasserstein", "cusum_location", "cusum_scale",  # numeric
                        "chi2", "linf", "unseen_cusum"}  # categorical
    assert not exported & {"window_values", "cusum_threshold", "dof", "adwin_width_blocks", "ks_p_value", "p_value"}


def test_drift_score_is_one_where_each_test_reaches_its_threshold():
    assert drift_score({"cusum_location": T.CUSUM_H, "cusum_scale": 0.0, "cusum_threshold": T.CUSUM_H}) == 1.0
    assert drift_score({"unseen_cusum": T.RATE_H / 2, "cusum_threshold": T.RATE_H, "p_value": 1.0}) == 0.5
    assert drift_score({"ks_p_value": T.WINDOW_ALPHA}) == pytest.approx(1.0)
    assert str(drift_score({"ks_p_value": 1.0, "cusum_location": 0.0, "cusum_threshold": T.CUSUM_H})) == "0.0"
    assert math.isfinite(drift_score({"p_value": 0.0}))  # an underflowed p-value: large, not inf
    assert drift_score({"window_values": 1000}) is None  # no test, no score
    # a point-mass chain against its own threshold, not the CUSUMs'
    assert drift_score({"cusum_location": 0.0, "cusum_threshold": T.CUSUM_H,
                        "point_mass_cusum": 15.0, "point_mass_threshold": 20.0}) == 0.75


def test_the_top_drift_score_is_the_drifted_feature_past_its_threshold():
    metrics = Metrics(CollectorRegistry())
    metrics.observe_snapshot(drifted_monitor().snapshot())
    scores = series(metrics, "skewwatch_drift_score")
    assert set(scores) == {("credit", "amount"), ("credit", "age"), ("credit", "country")}
    (top, score), *rest = sorted(scores.items(), key=lambda kv: -kv[1])  # what Grafana's topk shows
    assert top == ("credit", "amount") and score >= 1
    assert all(s < 1 for _, s in rest), rest


def test_feature_alerting_has_a_series_per_open_episode_and_none_once_it_closed():
    metrics = Metrics(CollectorRegistry())
    snap = drifted_monitor().snapshot()
    metrics.observe_snapshot(snap)
    assert series(metrics, "skewwatch_feature_alerting") == {("credit", "amount", "drift"): 1,
                                                             ("credit", "amount", "data_quality"): 1}
    metrics.observe_snapshot({**snap, "alerting": {"amount": ["drift"]}})  # the out-of-range episode closed
    assert series(metrics, "skewwatch_feature_alerting") == {("credit", "amount", "drift"): 1}


def test_scores_detail_keeps_one_series_per_feature():
    metrics = Metrics(CollectorRegistry(), feature_metrics="scores")
    metrics.observe_snapshot(drifted_monitor().snapshot())
    assert len(series(metrics, "skewwatch_drift_score")) == 3
    assert series(metrics, "skewwatch_drift_statistic") == series(metrics, "skewwatch_missing_ratio") == {}
    assert len(series(metrics, "skewwatch_feature_alerting")) == 2
    with pytest.raises(ValueError, match="scores"):
        Metrics(CollectorRegistry(), feature_metrics="some")


def test_drifting_detail_keeps_the_scores_of_the_drifting_or_alerting_features_only():
    metrics = Metrics(CollectorRegistry(), feature_metrics="drifting")
    snap = drifted_monitor().snapshot()
    metrics.observe_snapshot(snap)
    assert set(series(metrics, "skewwatch_drift_score")) == {("credit", "amount")}
    assert series(metrics, "skewwatch_drift_statistic") == series(metrics, "skewwatch_missing_ratio") == {}
    calm = {name: {**info, "statistics": {**info["statistics"], "cusum_location": 0.0, "cusum_scale": 0.0,
                                          "ks_p_value": 1.0}}
            for name, info in snap["features"].items()}
    metrics.observe_snapshot({**snap, "features": calm})  # still alerting: its score stays shown
    assert set(series(metrics, "skewwatch_drift_score")) == {("credit", "amount")}
    metrics.observe_snapshot({**snap, "features": calm, "alerting": {}})
    assert series(metrics, "skewwatch_drift_score") == series(metrics, "skewwatch_feature_alerting") == {}


class CountingMonitor(ModelMonitor):
    """Counts the snapshots taken of it."""

    snapshots = 0

    def snapshot(self):
        self.snapshots += 1
        return super().snapshot()


def test_refresh_reads_only_the_monitors_with_new_events():
    metrics = Metrics(CollectorRegistry())
    busy, idle, fresh = (CountingMonitor(training_baseline(model)) for model in ("credit", "fraud", "new"))
    for monitor in (busy, idle):
        monitor.update_batch(events(monitor.baseline.model, 200, seed=3))
    assert metrics.refresh([busy, idle, fresh]) == 2  # a monitor without events has nothing to show
    busy.update_batch(events("credit", 10, seed=4))
    assert metrics.refresh([busy, idle, fresh]) == 1
    assert metrics.refresh([busy, idle, fresh]) == 0
    assert (busy.snapshots, idle.snapshots, fresh.snapshots) == (2, 1, 0)
    # the model's busiest monitor is another one now (a rebalance): read it even with as many events
    moved = CountingMonitor(training_baseline("fraud"))
    moved.update_batch(events("fraud", 200, seed=3))
    assert metrics.refresh([busy, moved]) == 1 and moved.snapshots == 1
    metrics.forget_model("credit")
    assert metrics.refresh([busy]) == 1  # its series were dropped: shown again


def test_refresh_stops_at_its_budget_and_starts_the_next_call_with_the_models_left():
    metrics = Metrics(CollectorRegistry())
    monitors = [CountingMonitor(training_baseline(f"m{i}")) for i in range(5)]
    for m in monitors:
        m.update_batch(events(m.baseline.model, 100, seed=5))
    ticks = iter(range(100))  # a clock that advances 1 s per reading
    assert metrics.refresh(monitors, budget=2.0, clock=lambda: next(ticks)) == 2
    for m in monitors:
        m.update_batch(events(m.baseline.model, 10, seed=6))  # all busy again
    assert metrics.refresh(monitors, budget=2.0, clock=lambda: next(ticks)) == 2
    # the three never shown came first, then the least recently refreshed
    assert [m.snapshots for m in monitors] == [1, 1, 1, 1, 0]
    assert metrics.refresh(monitors, budget=0.0, clock=lambda: next(ticks)) == 1  # always some progress
    assert [m.snapshots for m in monitors] == [1, 1, 1, 1, 1]


def test_alert_counts_name_the_baselines_features_only():
    baseline = training_baseline("credit")
    metrics = Metrics(CollectorRegistry())

    def alert(kind, feature):
        return Alert(alert_id="x", kind=kind, model="credit", model_version="1", feature=feature, detector="d",
                     statistic=1.0, threshold=1.0, p_value=None, baseline={}, current={}, events_seen=1, ts=None,
                     severity="warning", diagnosis="", evidence={})

    for kind, feature in [("drift", "amount"), ("drift", "amount"), ("confidence_drop", "confidence"),
                          ("serving", None), ("skew", "a_feature_log_name")]:
        metrics.count_alert(alert(kind, feature), baseline)
    metrics.count_alert(alert("drift", "amount"), None)  # the baseline was deleted meanwhile
    update = alert("drift", "amount")
    update.update = True
    metrics.count_alert(update, baseline)  # the same alert re-diagnosed: counted once already
    assert series(metrics, "skewwatch_alerts_total") == {
        ("credit", "drift", "amount"): 2, ("credit", "confidence_drop", "confidence"): 1,
        ("credit", "serving", ""): 1, ("credit", "skew", ""): 1, ("credit", "drift", ""): 1}


def test_forget_model_drops_only_that_models_series():
    metrics = Metrics(CollectorRegistry())
    snap = drifted_monitor().snapshot()
    for model in ("credit", "fraud"):
        metrics.observe_snapshot({**snap, "model": model})
    before = {name: len(series(metrics, name)) for name in ("skewwatch_drift_score", "skewwatch_feature_alerting",
                                                            "skewwatch_drift_statistic", "skewwatch_missing_ratio",
                                                            "skewwatch_confidence_mean")}
    metrics.forget_model("credit")
    for name, n in before.items():
        models = [labels[0] for labels in series(metrics, name)]
        assert models == ["fraud"] * (n // 2), name


def test_forget_lag_keeps_the_partitions_still_consumed_and_other_topics():
    metrics = Metrics(CollectorRegistry())
    for partition in range(4):
        metrics.consumer_lag.labels("predictions", str(partition)).set(partition)
    metrics.consumer_lag.labels("other", "1").set(7)
    metrics.forget_lag("predictions", keep={0, 2})
    lag = {(topic, p): metrics.registry.get_sample_value("skewwatch_consumer_lag_messages",
                                                          {"topic": topic, "partition": p})
           for topic, p in [("predictions", "0"), ("predictions", "1"), ("predictions", "2"), ("predictions", "3"),
                            ("other", "1")]}
    assert lag == {("predictions", "0"): 0, ("predictions", "1"): None, ("predictions", "2"): 2,
                   ("predictions", "3"): None, ("other", "1"): 7}


HOSTILE = 'a"b\\c\nd'  # the characters the text format escapes in a label value


def renamed(snap: dict, model: str, suffix: str) -> dict:
    """`snap` as model `model`'s, its features' names ending with `suffix`."""
    return {**snap, "model": model, "features": {name + suffix: info for name, info in snap["features"].items()},
            "alerting": {name + suffix: kinds for name, kinds in snap["alerting"].items()}}


def calmed(snap: dict) -> dict:
    """`snap` with every test back to no evidence and no episode open."""
    return {**snap, "alerting": {}, "confidence_mean": 0.5,
            "features": {name: {**info, "missing_ratio": 0.25,
                                "statistics": {**info["statistics"], "cusum_location": 0.0, "cusum_scale": 0.0,
                                               "ks_p_value": 1.0, "psi": 0.125}}
                         for name, info in snap["features"].items()}}


@pytest.mark.parametrize("level", FEATURE_METRICS)
def test_the_metrics_text_is_what_prometheus_client_writes_of_the_registry_after_every_change(level):
    """/metrics joins each model's lines as written when its gauges were last set; the registry
    collects the same values through prometheus_client. A change whose lines were not written
    again (a model's, or a forgotten one's) makes them differ."""
    metrics = Metrics(CollectorRegistry(), feature_metrics=level)
    drifted = drifted_monitor().snapshot()
    texts = []

    def same_text() -> None:
        text = metrics.exposition()
        assert text == generate_latest(metrics.registry)
        texts.append(text)

    same_text()  # no model yet: the families' headers
    metrics.observe_snapshot(drifted)
    metrics.events.labels("credit").inc(3000)
    same_text()
    metrics.observe_snapshot(renamed(drifted, HOSTILE, HOSTILE))
    same_text()
    metrics.observe_snapshot(calmed(drifted))  # every value of credit changes; its episodes close
    same_text()
    metrics.forget_model("credit")
    same_text()
    assert len(set(texts)) == len(texts)  # each step changed the text
    assert b'model="a\\"b\\\\c\\nd"' in texts[-1]


def test_every_series_is_once_in_the_metrics_text_at_every_level():
    drifted = drifted_monitor().snapshot()
    for level in FEATURE_METRICS:
        metrics = Metrics(CollectorRegistry(), feature_metrics=level)
        for snap in (drifted, calmed(drifted), drifted, renamed(drifted, HOSTILE, HOSTILE)):
            metrics.observe_snapshot(snap)
        samples = [line.rpartition(b" ")[0] for line in metrics.exposition().splitlines()
                   if not line.startswith(b"#")]
        assert len(samples) == len(set(samples)), level


@needs_promtool
def test_promtool_accepts_the_metrics_text():
    metrics = Metrics(CollectorRegistry())
    drifted = drifted_monitor().snapshot()
    metrics.observe_snapshot(drifted)
    metrics.observe_snapshot(renamed(drifted, HOSTILE, HOSTILE))
    metrics.events.labels(HOSTILE).inc()
    metrics.batch_seconds.observe(0.01)
    result = subprocess.run([PROMTOOL, "check", "metrics"], input=metrics.exposition(), capture_output=True)
    assert result.returncode == 0 and not result.stdout + result.stderr, result.stdout + result.stderr
