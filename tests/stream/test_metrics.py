"""The worker's metrics drop the series of a forgotten model or of partitions consumed elsewhere,
and only those (through prometheus_client's public collect() and remove())."""
from prometheus_client import CollectorRegistry

from stream.worker.metrics import Metrics


def test_forget_model_drops_only_that_models_series():
    metrics = Metrics(CollectorRegistry())
    for model in ("credit", "fraud"):
        metrics.drift_statistic.labels(model, "amount", "psi").set(0.3)
        metrics.missing_ratio.labels(model, "amount").set(0.1)
        metrics.confidence_mean.labels(model).set(0.8)
    metrics.forget_model("credit")
    value = metrics.registry.get_sample_value
    for model, expected in (("credit", None), ("fraud", 0.3)):
        assert value("skewwatch_drift_statistic", {"model": model, "feature": "amount", "statistic": "psi"}) == expected
    assert value("skewwatch_missing_ratio", {"model": "credit", "feature": "amount"}) is None
    assert value("skewwatch_confidence_mean", {"model": "credit"}) is None
    assert value("skewwatch_missing_ratio", {"model": "fraud", "feature": "amount"}) == 0.1
    assert value("skewwatch_confidence_mean", {"model": "fraud"}) == 0.8


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
