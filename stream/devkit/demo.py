"""`skewwatch demo`: the embedded broker, a worker and a credit-risk model whose traffic goes wrong.

It starts the embedded broker with the worker's topics, writes a baseline built from the
synthetic training set (`stream.devkit.synthetic.credit`), starts a worker process, produces production traffic
at a steady rate and prints every alert from the alert topic as it arrives. The traffic goes
through the phases of `credit.scenario`: normal, a population shift, missing values, a
confidence drop; each shows as alerts within seconds, all within ~30 s of the start.

Every process it starts (worker, broker) is stopped on exit, on Ctrl-C, on SIGTERM and on errors.
Its scratch files (the baseline, the worker's data) are removed then; the worker's log, named at the
start, is kept (a file in the temporary directory, named again at the end).
"""
from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from detectors.fmt import printable
from stream.commands.alerts import decode_alert, format_alert
from stream.devkit.processes import (
    embedded_worker_env,
    metric_value,
    start_worker,
    stop_worker,
    tail,
    wait_until_serving,
)
from stream.devkit.synthetic import credit

__all__ = ["configure", "run"]

APP_ID = "skewwatch-demo"
#: Seconds of each scenario phase before the last (normal, shift, missing); the last,
#: the confidence drop, lasts until the end.
PHASE_SECONDS = (4.0, 5.0, 5.0)
#: Producer tick: one message per tick, so events per message = rate x tick (capped below).
TICK_SECONDS = 0.05
MAX_EVENTS_PER_MESSAGE = 500
WORKER_START_TIMEOUT = 60.0
#: Seconds between two looks at the worker's progress on /metrics.
PROGRESS_SECONDS = 5.0


def configure(parser: argparse.ArgumentParser) -> None:
    """Add `skewwatch demo`'s arguments (--rate, --duration, --keep-running, --web-port, --seed) to `parser`."""
    parser.description = (
        "Start the embedded broker and a worker, build a baseline from synthetic credit-risk training "
        "data, then produce production traffic that develops a population shift, a missing-value "
        "problem and a confidence drop, and print the alerts as they arrive. Ctrl-C stops everything."
    )
    parser.add_argument(
        "--rate", type=float, default=2000.0, metavar="EVENTS_PER_S",
        help="events per second (default 2000). The producer sends lists of events per message "
        f"(rate x {TICK_SECONDS} s, at most {MAX_EVENTS_PER_MESSAGE}), as batching producers do; a "
        "worker takes single-event messages at tens of thousands a second too (bench/RESULTS.md).",
    )
    parser.add_argument("--duration", type=float, default=45.0, metavar="S",
                        help="seconds from start to the summary and exit (default 45)")
    parser.add_argument("--keep-running", action="store_true",
                        help="do not stop after --duration: keep producing the last phase until Ctrl-C")
    parser.add_argument("--web-port", type=int, default=None, metavar="N",
                        help="port of the worker's /metrics (default: a free one)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the synthetic data (default 0)")


@dataclass
class _Stats:
    start: float = field(default_factory=time.monotonic)
    produced: int = 0
    processed: int | None = None  # by the worker, from its /metrics
    messages: int = 0
    first_traffic: float | None = None
    phase_starts: dict[str, float] = field(default_factory=dict)
    alerts: list[tuple[float, dict]] = field(default_factory=list)

    def elapsed(self) -> float:
        return time.monotonic() - self.start


def run(args: argparse.Namespace) -> int:
    """Run the demo until --duration (or Ctrl-C) and print a summary; every process started is stopped."""
    from stream.devkit.broker import EmbeddedBroker
    from stream.devkit.processes import free_port
    from stream.worker import config

    if args.rate <= 0:
        print("--rate must be positive", file=sys.stderr)
        return 2
    stats = _Stats()
    # SIGTERM takes the same way out as Ctrl-C until the event loop installs its own handlers.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    workdir = tempfile.TemporaryDirectory(prefix="skewwatch-demo-")
    broker: EmbeddedBroker | None = None
    worker: subprocess.Popen | None = None
    log_path = _log_file()
    env = embedded_worker_env(Path(workdir.name), app_id=APP_ID, web_port=args.web_port or free_port())
    code = 1
    try:
        cfg = config.load(env)
        broker = EmbeddedBroker(topics=config.topics(cfg))
        broker.start()
        env["SKEWWATCH_BROKER"] = broker.url
        credit.baseline(args.seed).save(Path(cfg.baselines) / f"{credit.MODEL}.msgpack")
        worker = start_worker(env, log_path)
        metrics_url = f"http://127.0.0.1:{cfg.web_port}/metrics"
        _say(stats, f"embedded broker on {broker.url} (pid {broker.pid}); worker pid {worker.pid}, log {log_path}")
        problem = wait_until_serving(metrics_url, worker, WORKER_START_TIMEOUT)
        if problem:
            print(f"{problem}\n{tail(log_path)}", file=sys.stderr)
            return 1
        print(f"status page: http://127.0.0.1:{cfg.web_port}/ (alerted models and features, rejected events; "
              "refreshes itself)", flush=True)
        print(f"metrics: {metrics_url}", flush=True)
        print(f"alerts:  topic {cfg.alert_topic} (elsewhere: skewwatch alerts --broker {broker.url})", flush=True)
        code = asyncio.run(_scenario(args, cfg, broker.bootstrap, worker, metrics_url, stats))
        if code == 1:
            print(tail(log_path), file=sys.stderr)
    except KeyboardInterrupt:
        code = 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not cut the cleanup short
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if stats.first_traffic is not None:
            print(_summary(stats), flush=True)
        if worker is not None:
            stop_worker(worker)
        if broker is not None:
            broker.stop()
        workdir.cleanup()
        print(f"worker log kept: {log_path}", flush=True)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    return code


def _log_file() -> Path:
    """A new file for the worker's log that outlives the demo's scratch directory."""
    fd, path = tempfile.mkstemp(prefix="skewwatch-demo-worker-", suffix=".log")
    os.close(fd)
    return Path(path)


async def _scenario(args: argparse.Namespace, cfg, bootstrap: str, worker: subprocess.Popen, metrics_url: str,
                    stats: _Stats) -> int:
    """Produce the traffic and print the alerts until the duration ends, a signal, or the worker dies."""
    from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=5, max_request_size=4 * 1024 * 1024)
    consumer = AIOKafkaConsumer(cfg.alert_topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                                enable_auto_commit=False, fetch_max_wait_ms=100)
    await producer.start()
    try:
        await consumer.start()
        try:
            helpers = [asyncio.create_task(_print_alerts(consumer, stats)),
                       asyncio.create_task(_watch_progress(metrics_url, stats))]
            try:
                return await _produce(producer, cfg.input_topic, args, worker, stats, stop)
            finally:
                for task in helpers:
                    task.cancel()
                stats.processed = await asyncio.to_thread(_processed_events, metrics_url)
        finally:
            await consumer.stop()
    finally:
        await producer.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _produce(producer, topic: str, args: argparse.Namespace, worker: subprocess.Popen,
                   stats: _Stats, stop: asyncio.Event) -> int:
    import orjson

    per_message = max(1, min(MAX_EVENTS_PER_MESSAGE, round(args.rate * TICK_SECONDS)))
    interval = per_message / args.rate
    lengths = [round(args.rate * s) for s in PHASE_SECONDS]
    events = credit.traffic(seed=args.seed + 1, phases=credit.scenario(*lengths))
    _say(stats, f"traffic: model {credit.MODEL!r}, {args.rate:,.0f} events/s in messages of {per_message} events")
    stats.first_traffic = time.monotonic()
    current_phase = None
    key = credit.MODEL.encode()
    next_send = time.monotonic()
    while not stop.is_set():
        if not args.keep_running and stats.elapsed() >= args.duration:
            return 0
        if worker.poll() is not None:
            print(f"the worker exited with code {worker.returncode}", file=sys.stderr, flush=True)
            return 1
        batch = []
        now = time.time()
        for phase, event in itertools.islice(events, per_message):
            if phase is not current_phase:
                current_phase = phase
                stats.phase_starts[phase.name] = time.monotonic()
                _say(stats, f"phase {phase.name}: {phase.description}")
            event["ts"] = now
            batch.append(event)
        await producer.send(topic, orjson.dumps(batch), key=key)
        stats.produced += len(batch)
        stats.messages += 1
        next_send += interval
        delay = next_send - time.monotonic()
        if delay > 0:
            try:
                await asyncio.wait_for(stop.wait(), delay)
            except TimeoutError:
                pass
    return 130


async def _watch_progress(metrics_url: str, stats: _Stats) -> None:
    """Say so when the worker is alive but not processing (e.g. its agent crashed)."""
    warned = False
    while True:
        await asyncio.sleep(PROGRESS_SECONDS)
        stats.processed = await asyncio.to_thread(_processed_events, metrics_url)
        # The worker joins its consumer group a few seconds after /metrics answers: no early alarm.
        settled = stats.first_traffic is not None and time.monotonic() - stats.first_traffic > 15
        if settled and not warned and stats.processed is not None and stats.processed < 0.5 * stats.produced:
            warned = True
            _say(stats, f"warning: the worker has processed only {stats.processed:,} of {stats.produced:,} events "
                 "(its log is named at the top)")


def _processed_events(metrics_url: str) -> int | None:
    try:
        with urllib.request.urlopen(metrics_url, timeout=2.0) as response:
            text = response.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    return int(metric_value(text, "skewwatch_events_total", f'model="{credit.MODEL}"'))


async def _print_alerts(consumer, stats: _Stats) -> None:
    async for record in consumer:
        try:
            alert = decode_alert(record.value)
        except Exception as e:  # noqa: BLE001 (a foreign record on the topic must not end the demo)
            print(f"(undecodable record on the alert topic: {type(e).__name__})", flush=True)
            continue
        stats.alerts.append((time.monotonic(), alert))
        print(f"\n[+{stats.elapsed():.1f} s] alert #{len(stats.alerts)}\n{format_alert(alert)}\n", flush=True)


def _summary(stats: _Stats) -> str:
    traffic_seconds = time.monotonic() - (stats.first_traffic or stats.start)
    lines = [
        "",
        f"summary: {stats.produced:,} events in {stats.messages:,} messages over {traffic_seconds:.1f} s "
        f"({stats.produced / max(traffic_seconds, 1e-9):,.0f} events/s); {len(stats.alerts)} alerts",
    ]
    if stats.processed is not None:
        lines.append(f"  the worker had processed {stats.processed:,} of them")
    by_kind: dict[str, list[float]] = collections.defaultdict(list)
    for arrived, alert in stats.alerts:
        by_kind[printable(str(alert.get("kind")))].append(arrived - stats.start)
    if by_kind:
        lines.append(f"  {'kind':<16} {'alerts':>6}  first at (since start)")
        for kind, times in sorted(by_kind.items(), key=lambda kv: kv[1][0]):
            lines.append(f"  {kind:<16} {len(times):>6}  +{min(times):.1f} s")
    for name, began in stats.phase_starts.items():
        lines.append(f"  phase {name:<11} began at +{began - stats.start:.1f} s")
    return "\n".join(lines)


def _say(stats: _Stats, text: str) -> None:
    print(f"[+{stats.elapsed():.1f} s] {text}", flush=True)


