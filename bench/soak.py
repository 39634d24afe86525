"""Soak: one worker on the embedded broker at a steady rate near its capacity, for a long time.

    .venv/bin/python bench/soak.py [--minutes 30] [--load 0.8] [--rate EVENTS_PER_S] [--write-results]

First a capacity probe (`--probe-messages` messages of 100 events, produced as fast as
possible; events/s from the first produce to the last event processed), then a steady feed at
`--load` x that capacity (or `--rate`), 100 events per message, for `--minutes`. Traffic is the
demo's credit model (15 features), stationary, with `--unseen-share` of the events carrying a
never-seen category value, every one distinct (what must not grow the monitor's state).

Every `--sample-seconds` (default 60): the worker's RSS (/proc/<pid>/status VmRSS), the
metric series it exposes (a label leak would grow them), the events it monitored, its consumer
lag (skewwatch_consumer_lag_messages, summed over partitions), the backlog counted here
(messages sent minus events monitored / 100) and the broker's RSS. It prints a table, and with
`--write-results` writes it into its part of the "Reliability" section of bench/RESULTS.md.
Loopback only; it stops by itself (or on Ctrl-C) and stops every process it started.

Broker memory. The embedded broker (Tansu 0.6, memory://) keeps every record batch for its whole
life, as the producer sent it: it has no retention (topic `retention.ms`/`retention.bytes` are
accepted and ignored) and its DeleteRecords is unimplemented (`todo!()` in its storage: the call
panics the connection and frees nothing). So its RSS grows with the events fed, and what bounds it
is the bytes per stored event. Measured (aiokafka 0.14, 100 events per message, the broker alone,
experiments of 4,000-20,000 messages; a 3-minute soak at 80% of capacity confirmed 42 B (zstd) and
409 B (none) per event fed):

| producer | broker RSS per event | producer CPU per event | consumer CPU per event |
|---|---|---|---|
| no compression, 16 KB batches (one message each; before) | 516 B | 4.0 us | 1.0 us |
| no compression, 1 MiB batches | 410 B | 1.6 us | 0.8 us |
| gzip, one message per batch | 92 B | 13.4 us | 1.3 us |
| zstd, one message per batch | 98 B | 4.8 us | 0.7 us |
| **zstd, 1 MiB batches, linger 50 ms (used here)** | **42 B** | 3.1 us | 0.4 us |
| gzip, 1 MiB batches | 37 B | 12.3 us | 0.8 us |

(producer CPU includes stamping the unseen values and JSON encoding.) zstd needs PyPI `cramjam`
(aiokafka's `zstd` extra) in the producer's and the worker's environment. At 0.8 x ~55k events/s
for 30 min that is ~80M events, ~3.5 GB of broker RSS (uncompressed: 32-41 GB). The run stops early
if the broker's RSS passes `--broker-budget-mb`.

The worker's lag metric reads the end offsets from the broker, whose ListOffsets answers the
newest batch's base offset + 1 (docs/broker.md): with batches of ~20 messages it can
read up to one batch low. The backlog column does not depend on the broker.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import re
import signal
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import orjson

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.results import write_block  # noqa: E402
from stream.devkit.broker import EmbeddedBroker  # noqa: E402
from stream.devkit.processes import (  # noqa: E402
    embedded_worker_env,
    free_port,
    metric_value,
    start_worker,
    stop_worker,
    tail,
    wait_until_serving,
)
from stream.devkit.synthetic import credit  # noqa: E402
from stream.worker import config  # noqa: E402

SECTION = "## Reliability (bench/soak.py, tests/integration/test_reliability.py)"
EVENTS_PER_MESSAGE = 100
#: distinct pre-encoded messages cycled through (each event's unseen value is still unique:
#: they are stamped per message)
POOL_MESSAGES = 200
TICK = 0.1


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--load", type=float, default=0.8, help="share of the measured capacity to feed")
    p.add_argument("--rate", type=float, default=None, help="events/s to feed (skips the probe)")
    p.add_argument("--probe-messages", type=int, default=1500)
    p.add_argument("--sample-seconds", type=float, default=60.0)
    p.add_argument("--unseen-share", type=float, default=0.01)
    p.add_argument("--compression", choices=("zstd", "gzip", "none"), default="zstd",
                   help="producer compression; the embedded broker keeps the batches as sent (zstd: ~42 "
                        "bytes per event, none: ~410)")
    p.add_argument("--broker-budget-mb", type=float, default=8000.0,
                   help="the embedded broker keeps every record in memory: stop early if its RSS passes this")
    p.add_argument("--write-results", action="store_true")
    args = p.parse_args()
    with tempfile.TemporaryDirectory(prefix="skewwatch-soak-") as tmp:
        return asyncio.run(soak(Path(tmp), args))


def _rss_mb(pid: int) -> float:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return float("nan")
    return int(re.search(r"VmRSS:\s+(\d+)", text).group(1)) / 1024


def _scrape(url: str) -> str:
    try:
        with urllib.request.urlopen(url, timeout=5) as r:
            return r.read().decode()
    except OSError:
        return ""


class Sample(dict):
    """minute, worker RSS MB, broker RSS MB, metric series, events, lag, backlog (messages), alerts."""


def _sample(t: float, worker_pid: int, broker_pid: int, metrics_url: str, sent_messages: int) -> Sample:
    text = _scrape(metrics_url)
    series = [line for line in text.splitlines() if line and not line.startswith("#")]
    lag = sum(float(m.group(1)) for m in re.finditer(r"^skewwatch_consumer_lag_messages\{[^}]*\} (\S+)$", text, re.M))
    events = metric_value(text, "skewwatch_events_total", f'model="{credit.MODEL}"')
    return Sample(minute=t / 60, worker_rss=_rss_mb(worker_pid), broker_rss=_rss_mb(broker_pid), series=len(series),
                  events=events, lag=lag, backlog=sent_messages - events / EVENTS_PER_MESSAGE,
                  alerts=sum(float(m.group(1))
                             for m in re.finditer(r"^skewwatch_alerts_total\{[^}]*\} (\S+)$", text, re.M)))


class _Traffic:
    """The messages fed: a pool of stationary credit-model messages cycled through, the first
    `unseen_share` of each message's events given a `purpose` value no other event has."""

    def __init__(self, unseen_share: float):
        events = [e for _, e in itertools.islice(credit.traffic(seed=7), POOL_MESSAGES * EVENTS_PER_MESSAGE)]
        self._pool = [events[i:i + EVENTS_PER_MESSAGE] for i in range(0, len(events), EVENTS_PER_MESSAGE)]
        self._unseen = int(EVENTS_PER_MESSAGE * unseen_share)
        self._sent = 0

    @property
    def sent(self) -> int:
        """Messages handed out so far (what the backlog is counted against)."""
        return self._sent

    def next_message(self) -> bytes:
        n, self._sent = self._sent, self._sent + 1
        stamped = [dict(e, features=dict(e["features"], purpose=f"unseen-{n}-{i}")) if i < self._unseen else e
                   for i, e in enumerate(self._pool[n % len(self._pool)])]
        return orjson.dumps(stamped)


async def soak(workdir: Path, args: argparse.Namespace) -> int:
    from aiokafka import AIOKafkaProducer
    from aiokafka.codec import has_zstd

    if args.compression == "zstd" and not has_zstd():
        print("--compression zstd needs the PyPI package cramjam (aiokafka[zstd]); or use --compression gzip",
              file=sys.stderr)
        return 2
    env = embedded_worker_env(workdir, app_id="skewwatch-soak", web_port=free_port())
    cfg = config.load(env)
    credit.baseline().save(Path(cfg.baselines) / f"{credit.MODEL}.msgpack")
    metrics_url = f"http://127.0.0.1:{cfg.web_port}/metrics"
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    with EmbeddedBroker(topics=config.topics(cfg)) as broker:
        env["SKEWWATCH_BROKER"] = broker.url
        log = workdir / "worker.log"
        worker = start_worker(env, log)
        try:
            problem = wait_until_serving(metrics_url, worker, 60)
            if problem:
                print(f"{problem}\n{tail(log)}", file=sys.stderr)
                return 1
            # Batches of ~20 messages compress ~2x better than one message each (zstd finds the
            # events' shared structure across messages); the broker stores what it is sent.
            producer = AIOKafkaProducer(
                bootstrap_servers=broker.bootstrap, linger_ms=50, max_batch_size=2**20, max_request_size=4 * 2**20,
                compression_type=None if args.compression == "none" else args.compression)
            await producer.start()
            try:
                traffic = _Traffic(args.unseen_share)
                capacity = None if args.rate else await _capacity(producer, cfg.input_topic, metrics_url,
                                                                  traffic.next_message, args.probe_messages, worker)
                rate = args.rate or args.load * capacity
                print(f"feeding {rate:,.0f} events/s ({EVENTS_PER_MESSAGE} per message) for {args.minutes} min",
                      flush=True)
                samples = await _feed(producer, cfg.input_topic, rate, args, traffic, worker.pid, broker.pid,
                                      metrics_url, stop)
            finally:
                await producer.stop()
            if worker.poll() is not None:
                print(f"the worker died:\n{tail(log)}", file=sys.stderr)
                return 1
        finally:
            stop_worker(worker)
    table = _table(samples, rate, capacity)
    print(table)
    if args.write_results:
        _write_results(table, samples, rate, args)
    return 0


async def _capacity(producer, topic: str, metrics_url: str, next_message, n: int, worker) -> float:
    """Events/s of the worker on a burst of `n` messages (after a warm-up of 100)."""
    async def burst(count: int) -> float:
        start_events = metric_value(await asyncio.to_thread(_scrape, metrics_url), "skewwatch_events_total",
                                    f'model="{credit.MODEL}"')
        target = start_events + count * EVENTS_PER_MESSAGE
        t0 = time.monotonic()
        for _ in range(count):
            await producer.send(topic, next_message(), key=credit.MODEL.encode())
        await producer.flush()
        while True:
            text = await asyncio.to_thread(_scrape, metrics_url)
            if metric_value(text, "skewwatch_events_total", f'model="{credit.MODEL}"') >= target:
                return count * EVENTS_PER_MESSAGE / (time.monotonic() - t0)
            if worker.poll() is not None:
                raise RuntimeError("the worker died during the capacity probe")
            await asyncio.sleep(0.1)

    await burst(100)
    capacity = await burst(n)
    print(f"capacity probe: {capacity:,.0f} events/s ({n} messages of {EVENTS_PER_MESSAGE})", flush=True)
    return capacity


async def _feed(producer, topic: str, rate: float, args, traffic: _Traffic, worker_pid: int, broker_pid: int,
                metrics_url: str, stop: asyncio.Event) -> list[Sample]:
    """Send at `rate` events/s (whole messages, paced every TICK) and sample periodically."""
    start = time.monotonic()
    end = start + args.minutes * 60
    samples = [await asyncio.to_thread(_sample, 0.0, worker_pid, broker_pid, metrics_url, traffic.sent)]
    print(_row(samples[-1]), flush=True)
    next_sample = start + args.sample_seconds
    owed = 0.0
    while not stop.is_set() and time.monotonic() < end:
        owed += rate * TICK / EVENTS_PER_MESSAGE
        for _ in range(int(owed)):
            await producer.send(topic, traffic.next_message(), key=credit.MODEL.encode())
        owed -= int(owed)
        now = time.monotonic()
        if now >= next_sample:
            samples.append(await asyncio.to_thread(_sample, now - start, worker_pid, broker_pid, metrics_url,
                                                  traffic.sent))
            print(_row(samples[-1]), flush=True)
            next_sample += args.sample_seconds
            if samples[-1]["broker_rss"] > args.broker_budget_mb:
                print(f"stopping early: the embedded broker's RSS passed --broker-budget-mb {args.broker_budget_mb:g}",
                      flush=True)
                break
        try:
            await asyncio.wait_for(stop.wait(), max(0.0, start + TICK * (1 + (now - start) // TICK) - time.monotonic()))
        except TimeoutError:
            pass
    await producer.flush()
    await asyncio.sleep(2)  # let the worker drain the last messages before the final sample
    samples.append(await asyncio.to_thread(_sample, time.monotonic() - start, worker_pid, broker_pid,
                                              metrics_url, traffic.sent))
    print(_row(samples[-1]), flush=True)
    return samples


HEADER = ("| minute | worker RSS MB | broker RSS MB | metric series | events monitored | consumer lag (messages) "
          "| backlog (messages) | alerts |\n|---|---|---|---|---|---|---|---|")


def _row(s: Sample) -> str:
    return (f"| {s['minute']:.1f} | {s['worker_rss']:.0f} | {s['broker_rss']:.0f} | {s['series']} | "
            f"{s['events']:,.0f} | {s['lag']:.0f} | {s['backlog']:.0f} | {s['alerts']:.0f} |")


def _table(samples: list[Sample], rate: float, capacity: float | None) -> str:
    first, last = samples[0], samples[-1]
    steady = samples[1:] or samples
    lags = [s["lag"] for s in steady]
    stored = (last["broker_rss"] - first["broker_rss"]) * 2**20 / max(1.0, last["events"] - first["events"])
    summary = (f"\nworker RSS {first['worker_rss']:.0f} MB at start, {steady[0]['worker_rss']:.0f} MB after the first "
               f"sample, {last['worker_rss']:.0f} MB at the end; "
               f"lag max {max(lags):.0f}, last {lags[-1]:.0f} messages; "
               f"{last['events']:,.0f} events monitored at {rate:,.0f} events/s offered"
               + (f" ({rate / capacity:.0%} of the {capacity:,.0f} events/s probed)" if capacity else "") + "; "
               f"metric series {first['series']} -> {last['series']}; "
               f"backlog max {max(s['backlog'] for s in steady):.0f} messages; "
               f"broker RSS {first['broker_rss']:.0f} -> {last['broker_rss']:.0f} MB "
               f"({stored:.0f} bytes per event fed)")
    return "\n".join([HEADER, *(_row(s) for s in samples)]) + "\n" + summary


def _write_results(table: str, samples: list[Sample], rate: float, args: argparse.Namespace) -> None:
    """Replace this benchmark's block (between its markers) at the end of RESULTS.md, under the
    Reliability section heading; the other sections are left as they are."""
    command = (f".venv/bin/python bench/soak.py --minutes {args.minutes:g} --load {args.load:g} "
               f"--compression {args.compression} --broker-budget-mb {args.broker_budget_mb:g}") + (
        f" --rate {args.rate:g}" if args.rate else "") + " --write-results"
    block = (f"### Soak (`bench/soak.py`)\n\nCommand: `{command}`  \nDate: {time.strftime('%Y-%m-%d %H:%M')}  \n"
             f"Machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f} at the end of the run; "
             "the embedded broker, the "
             f"producer and one worker on the same machine. {EVENTS_PER_MESSAGE} credit-model events (15 features) "
             f"per message, {args.unseen_share:.0%} of events with a distinct never-seen `purpose` value.\n\n{table}")
    write_block("soak.py", block, heading=SECTION)


if __name__ == "__main__":
    sys.exit(main())
