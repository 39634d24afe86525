"""`skewwatch broker` and EmbeddedBroker: start on a free port, topics created, clean stop."""
from __future__ import annotations

import asyncio
import re
import signal
import subprocess
import sys

import pytest

from stream.devkit.broker import EmbeddedBroker, _accepts
from stream.devkit.processes import free_port
from tests.integration.conftest import ROOT, wait_for

pytestmark = pytest.mark.integration


def partitions_of(bootstrap: str, topics: list[str]) -> dict[str, int]:
    from aiokafka import AIOKafkaProducer

    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap)
        await producer.start()
        try:
            return {t: len(await producer.partitions_for(t)) for t in topics}
        finally:
            await producer.stop()

    return asyncio.run(main())


def test_embedded_broker_creates_topics_and_frees_its_port():
    with EmbeddedBroker(topics={"a.topic": 3, "b.topic": 1}) as broker:
        assert broker.url == f"kafka://127.0.0.1:{broker.port}"
        assert partitions_of(broker.bootstrap, ["a.topic", "b.topic"]) == {"a.topic": 3, "b.topic": 1}
        broker.create_topics({"a.topic": 3})  # already there: fine
        port = broker.port
    assert not _accepts(port)
    with pytest.raises(OSError, match="in use"):
        with EmbeddedBroker(port=port) as first, EmbeddedBroker(port=first.port):
            pass


def test_skewwatch_broker_prints_its_url_and_stops_on_sigterm():
    # --port 0: a free port, which it prints
    proc = subprocess.Popen([sys.executable, "-m", "stream.commands.cli", "broker", "--port", "0", "--partitions", "2"],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        first = proc.stdout.readline()
        found = re.search(r"listening on kafka://127\.0\.0\.1:(\d+) ", first)
        assert found, first
        port = int(found.group(1))
        assert "--single-record-batches" in proc.stdout.readline()
        assert partitions_of(f"127.0.0.1:{port}", ["skewwatch.predictions", "skewwatch.alerts"]) == {
            "skewwatch.predictions": 2, "skewwatch.alerts": 2}
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
        assert "broker stopped" in proc.stdout.read()
        assert not _accepts(port)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_the_broker_does_not_outlive_a_killed_launcher():
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "stream.commands.cli", "broker", "--port", str(port)],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert "listening" in proc.stdout.readline()
    proc.kill()  # SIGKILL: no chance to stop its child
    proc.wait()
    wait_for(lambda: not _accepts(port), 10, "the orphaned broker to exit")


def test_skewwatch_broker_defaults_to_the_port_the_worker_expects():
    from stream.commands.cli import build_parser
    from stream.worker import config

    args = build_parser(["broker"]).parse_args(["broker"])
    assert f"127.0.0.1:{args.port}" in config.load({}).broker


def test_skewwatch_broker_on_a_port_in_use_exits_1_with_one_line():
    with EmbeddedBroker() as taken:
        proc = subprocess.run([sys.executable, "-m", "stream.commands.cli", "broker", "--port", str(taken.port)],
                              cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stderr.count("\n") == 1 and "already in use" in proc.stderr and "--port 0" in proc.stderr
