"""The worker's life cycle on a real broker: a restart with a backlog waiting, a start without
baselines, and stopping it (SIGTERM) in every state, the broker gone included."""
from __future__ import annotations

import dataclasses
import signal
import subprocess
import time

import pytest

from stream.devkit.broker import EmbeddedBroker
from tests.integration.conftest import Deployment, produce, wait_for
from tests.integration.test_reliability import counted
from tests.integration.test_worker import messages
from tests.stream.helpers import events, training_baseline

pytestmark = pytest.mark.integration

MODELS = ("credit", "fraud", "churn")


def _produce_for_every_model(deployment, n: int, seed: int) -> int:
    """`n` events of each model, 5 per message (many messages: more than one micro-batch);
    returns the number of messages sent."""
    sent = []
    for i, model in enumerate(MODELS):
        sent += messages(events(model, n, seed=seed + i), per_message=5, model=model.encode())
    produce(deployment.bootstrap, deployment.cfg.input_topic, sent)
    return len(sent)


def _counts(worker) -> dict[str, int]:
    """Events seen per model, summed over the worker's partitions (restored state included)."""
    out = dict.fromkeys(MODELS, 0)
    for p in worker.status().get("partitions", {}).values():
        for model, n in p["models"].items():
            out[model] = out.get(model, 0) + n
    return out


def _log(worker) -> str:
    return worker.log_path.read_text(errors="replace")


#: the longest SIGTERM may take to end a worker, in any state
STOP_WITHIN_S = 10.0


def _sigterm(worker) -> float:
    """SIGTERM the worker; the seconds it took to exit (a failure past STOP_WITHIN_S)."""
    sent = time.monotonic()
    worker.proc.send_signal(signal.SIGTERM)
    try:
        worker.proc.wait(STOP_WITHIN_S)
    except subprocess.TimeoutExpired:
        worker.proc.kill()
        worker.proc.wait()
        raise AssertionError(f"SIGTERM did not end the worker within {STOP_WITHIN_S} s:\n{worker.log_tail()}") from None
    return time.monotonic() - sent


def _messages_processed(worker) -> int:
    return sum(offset + 1 for offset in worker.last_offsets())


@pytest.mark.parametrize("batching", [{}, {"SKEWWATCH_BATCH_WITHIN": "0.01", "SKEWWATCH_BATCH_SIZE": "50"}],
                         ids=["default-batches", "small-batches"])
def test_a_restart_with_a_backlog_counts_every_event_once(deployment, batching):
    """kill -9, then a backlog of several batches for three models, then a restart: the restored
    monitors count every event exactly once and no valid event is dead-lettered (the agent
    consumes nothing before the baselines are loaded and the checkpoints restored)."""
    deployment.env.update(batching)
    for i, model in enumerate(MODELS):
        training_baseline(model, seed=i).save(deployment.baselines / f"{model}.msgpack")
    worker = deployment.worker().wait_ready()
    # read before they are counted: the checkpoint round that feeds a model's last waiting events
    # (docs/architecture.md, "Where events wait") writes them, and may be the last to change anything
    checkpoints = worker.metric("skewwatch_checkpoints_total")
    total = _produce_for_every_model(deployment, 1000, seed=100)
    wait_for(lambda: _counts(worker) == dict.fromkeys(MODELS, 1000), 30, "the first events counted")
    wait_for(lambda: worker.metric("skewwatch_checkpoints_total") > checkpoints, 10, "a checkpoint of them")
    worker.kill(signal.SIGKILL)

    total += _produce_for_every_model(deployment, 4000, seed=200)  # 2,400 messages queued
    restarted = deployment.worker().wait_ready(timeout=90)
    wait_for(lambda: _messages_processed(restarted) >= total, 60, f"the restarted worker to process all {total}")
    assert _counts(restarted) == dict.fromkeys(MODELS, 5000), restarted.log_tail()
    _, rejected = counted(restarted)
    assert sum(rejected.values()) == 0, (rejected, restarted.log_tail())



def test_many_models_get_monitors_only_where_their_events_arrive_and_a_restart_restores_each_once(deployment):
    """30 models keyed by model: each model's monitor lives on the one partition its key sends its
    events to (a worker held every model on every partition), before and after a kill -9; every
    checkpoint is restored, every event counted once, none dead-lettered."""
    models = [f"model-{i:02d}" for i in range(30)]
    baseline = training_baseline("credit", seed=0)
    for model in models:
        dataclasses.replace(baseline, model=model).save(deployment.baselines / f"{model}.msgpack")
    worker = deployment.worker().wait_ready()

    def produce_all(n: int, seed: int) -> None:
        sent = []
        for i, model in enumerate(models):
            sent += messages([dict(e, model=model) for e in events("credit", n, seed=seed + i)], per_message=10,
                             model=model.encode())
        produce(deployment.bootstrap, deployment.cfg.input_topic, sent)

    def homes(w) -> dict[str, list[int]]:
        out: dict[str, list[int]] = {}
        for partition, status in sorted(w.status().get("partitions", {}).items()):
            for model in status["models"]:
                out.setdefault(model, []).append(int(partition))
        return out

    def counts(w) -> dict[str, int]:
        out = dict.fromkeys(models, 0)
        for status in w.status().get("partitions", {}).values():
            for model, n in status["models"].items():
                out[model] += n
        return out

    checkpoints = worker.metric("skewwatch_checkpoints_total")  # before they are counted, as above
    produce_all(100, seed=10)
    wait_for(lambda: counts(worker) == dict.fromkeys(models, 100), 60, "the first events counted")
    before = homes(worker)
    assert sorted(before) == models and all(len(p) == 1 for p in before.values()), before
    wait_for(lambda: worker.metric("skewwatch_checkpoints_total") >= checkpoints + len(models), 15,
             "a checkpoint of every model")
    worker.kill(signal.SIGKILL)

    produce_all(50, seed=20)
    restarted = deployment.worker().wait_ready(timeout=90)
    try:
        wait_for(lambda: counts(restarted) == dict.fromkeys(models, 150), 90, "every event counted after the restart")
    except AssertionError as e:  # which models are off, and by how much
        raise AssertionError(f"{e}: {({m: n for m, n in counts(restarted).items() if n != 150})}") from None
    assert homes(restarted) == before
    assert _log(restarted).count("restored 'model-") == len(models), restarted.log_tail()
    _, rejected = counted(restarted)
    assert sum(rejected.values()) == 0, (rejected, restarted.log_tail())


def test_without_a_usable_baseline_the_worker_waits_consuming_nothing(deployment):
    """An empty baselines directory: the worker says so and processes nothing (the topic is not
    dead-lettered), then starts on its own once a baseline appears; SIGTERM ends it."""
    worker = deployment.worker()
    total = _produce_for_every_model(deployment, 100, seed=300)
    wait_for(lambda: "no usable baseline in" in _log(worker), 60, "the worker saying why it waits")
    worker.wait_ready()
    assert counted(worker) == (0.0, {}) and worker.last_offsets() == []
    for i, model in enumerate(MODELS):
        training_baseline(model, seed=i).save(deployment.baselines / f"{model}.msgpack")
    wait_for(lambda: _messages_processed(worker) >= total, 30, "the waiting worker to process the topic")
    assert _counts(worker) == dict.fromkeys(MODELS, 100)
    assert sum(counted(worker)[1].values()) == 0
    assert "baselines loaded (churn, credit, fraud): processing" in worker.log_path.read_text(errors="replace")
    print(f"\nrunning: SIGTERM ended the worker in {_sigterm(worker):.1f} s")


@pytest.mark.parametrize("state", ["starting", "waiting for a baseline"])
def test_sigterm_ends_the_worker_within_10_s_before_it_runs(deployment, state):
    if state == "starting":
        training_baseline("credit").save(deployment.baselines / "credit.msgpack")
        worker = deployment.worker()
        wait_for(lambda: "Starting..." in _log(worker), 30, "the worker starting")
    else:
        worker = deployment.worker()
        wait_for(lambda: "no usable baseline in" in _log(worker), 60, "the worker waiting for a baseline")
    print(f"\n{state}: SIGTERM ended the worker in {_sigterm(worker):.1f} s")


def test_a_worker_whose_broker_is_gone_logs_a_bounded_amount_and_stops_on_sigterm(tmp_path):
    """The broker dies under a running worker: its clients' errors are rate-limited (one line per
    kind per interval, with the count held back), and SIGTERM still ends it within 10 s."""
    broker = EmbeddedBroker().start()  # its own broker: this test stops it
    deployment = Deployment(broker, tmp_path)
    try:
        training_baseline("credit").save(deployment.baselines / "credit.msgpack")
        worker = deployment.worker().wait_ready()
        produce(deployment.bootstrap, deployment.cfg.input_topic, messages(events("credit", 100, seed=400)))
        wait_for(lambda: worker.metric('skewwatch_events_total{model="credit"}') == 100, 30, "the events counted")
        broker.stop()
        down = time.monotonic()
        before = len(_log(worker).splitlines())
        # a suppressed count is reported once the first interval of the outage is over
        wait_for(lambda: "similar line(s) suppressed" in _log(worker), 30, "the outage's log lines rate-limited")
        lines = len(_log(worker).splitlines()) - before
        outage = time.monotonic() - down
        assert lines <= 10 * (1 + outage), f"{lines} log lines in {outage:.0f} s of outage:\n{worker.log_tail()}"
        took = _sigterm(worker)
        print(f"\nbroker gone: {lines} log lines in {outage:.1f} s; SIGTERM ended the worker in {took:.1f} s")
    finally:
        deployment.stop()
        broker.stop()
