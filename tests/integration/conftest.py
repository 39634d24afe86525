"""A real broker (the embedded Tansu) for the session, and real worker processes per test,
each with its own app id, topics, web port and data directory so tests cannot interfere."""
from __future__ import annotations

import asyncio
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from stream.devkit.broker import EmbeddedBroker
from stream.devkit.processes import free_port
from stream.worker import config

ROOT = Path(__file__).resolve().parents[2]
_ids = itertools.count()


@pytest.fixture(scope="session")
def broker():
    with EmbeddedBroker() as b:
        yield b


def wait_for(condition, timeout: float, what: str, interval: float = 0.2):
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Worker:
    """`skewwatch worker` as a child process (python -m stream.commands.cli worker ...)."""

    def __init__(self, env: dict[str, str], log_path: Path):
        self.env = env
        self.log_path = log_path
        self.web_port = free_port()
        self.proc: subprocess.Popen | None = None

    def start(self) -> Worker:
        log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "stream.commands.cli", "worker", "--web-port", str(self.web_port),
             "--log-level", "info"],
            env=self.env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        log.close()
        return self

    def get(self, path: str) -> str | None:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{self.web_port}{path}", timeout=2) as r:
                return r.read().decode()
        except OSError:
            return None

    def status(self) -> dict:
        return json.loads(self.get("/status.json") or "{}")

    def last_offsets(self) -> list[int]:
        """The last offset processed on each partition that has had messages."""
        return sorted(p["last_offset"] for p in self.status().get("partitions", {}).values() if p["last_offset"] >= 0)

    def metrics(self) -> dict[str, float]:
        text = self.get("/metrics") or ""
        out = {}
        for line in text.splitlines():
            m = re.match(r"^([a-z_]+(?:\{[^}]*\})?) (\S+)$", line)
            if m:
                out[m.group(1)] = float(m.group(2))
        return out

    def metric(self, name: str) -> float:
        return self.metrics().get(name, 0.0)

    def wait_ready(self, timeout: float = 60) -> Worker:
        """Ready: /metrics answers and the group gave this worker its partitions."""
        def ready():
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited with {self.proc.returncode}:\n{self.log_tail()}")
            return self.metric("skewwatch_broker_connected") == 1.0
        wait_for(ready, timeout, f"worker on port {self.web_port} to be assigned partitions")
        return self

    def partitions(self, topic: str) -> set[int]:
        return {int(m.group(1)) for key in self.metrics()
                if (m := re.match(r'skewwatch_consumer_lag_messages\{partition="(\d+)",topic="'
                                  + re.escape(topic) + '"', key))}

    def kill(self, sig: int = signal.SIGKILL, timeout: float = 30) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:  # a worker past its shutdown watchdog (8 s) is a bug: never wait forever
            self.proc.kill()
            self.proc.wait()

    def log_tail(self, n: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])


class Deployment:
    """One app id with its topics and baselines directory; workers join its group."""

    def __init__(self, broker: EmbeddedBroker, tmp_path: Path, partitions: int = 4):
        n = next(_ids)
        self.app_id = f"itest{os.getpid()}-{n}"
        self.baselines = tmp_path / "baselines"
        self.baselines.mkdir()
        self.tmp_path = tmp_path
        self.env = dict(
            os.environ,
            SKEWWATCH_BROKER=broker.url,
            SKEWWATCH_APP_ID=self.app_id,
            SKEWWATCH_BASELINES=str(self.baselines),
            SKEWWATCH_INPUT_TOPIC=f"{self.app_id}.predictions",
            SKEWWATCH_ALERT_TOPIC=f"{self.app_id}.alerts",
            SKEWWATCH_DEAD_LETTER_TOPIC=f"{self.app_id}.dead-letters",
            SKEWWATCH_PARTITIONS=str(partitions),
            SKEWWATCH_SINGLE_RECORD_BATCHES="true",
            SKEWWATCH_CHECKPOINT_INTERVAL="1",
            SKEWWATCH_BASELINE_SCAN_INTERVAL="0.5",
            SKEWWATCH_DATA_DIR=str(tmp_path / "data"),
        )
        self.cfg = config.load(self.env)
        broker.create_topics(config.topics(self.cfg))
        self.bootstrap = broker.bootstrap
        self.workers: list[Worker] = []

    def worker(self) -> Worker:
        w = Worker(self.env, self.tmp_path / f"worker{len(self.workers)}.log")
        self.workers.append(w)
        return w.start()

    def stop(self) -> None:
        for w in self.workers:
            w.kill(signal.SIGTERM, timeout=15)


@pytest.fixture
def deployment(broker, tmp_path):
    d = Deployment(broker, tmp_path)
    yield d
    d.stop()


# ---- Kafka clients ---------------------------------------------------------------------------
def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]], partition: int | None = None,
            compression: str | None = None) -> None:
    from aiokafka import AIOKafkaProducer

    async def main():
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, compression_type=compression)
        await producer.start()
        try:
            futures = [await producer.send(topic, value, key=key, partition=partition) for key, value in messages]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(main())


class Follower:
    """Reads a topic from the beginning in the test's thread: `poll()` returns what arrived."""

    def __init__(self, bootstrap: str, topic: str):
        from aiokafka import AIOKafkaConsumer

        async def start():
            consumer = AIOKafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                        enable_auto_commit=False)
            await consumer.start()
            return consumer

        self.loop = asyncio.new_event_loop()
        self.consumer = self.loop.run_until_complete(start())
        self.records: list = []

    def poll(self, timeout_ms: int = 300) -> list:
        batches = self.loop.run_until_complete(self.consumer.getmany(timeout_ms=timeout_ms))
        new = [m for msgs in batches.values() for m in msgs]
        self.records.extend(new)
        return new

    def wait(self, condition, timeout: float, what: str):
        """Poll until `condition(all records so far)` is true."""
        def check():
            self.poll()
            return condition(self.records)
        return wait_for(check, timeout, what, interval=0)

    def close(self) -> None:
        self.loop.run_until_complete(self.consumer.stop())
        self.loop.close()


@pytest.fixture
def follow(deployment):
    followers = []

    def make(topic: str) -> Follower:
        f = Follower(deployment.bootstrap, topic)
        followers.append(f)
        return f

    yield make
    for f in followers:
        f.close()
