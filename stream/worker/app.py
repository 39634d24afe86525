"""The skewwatch stream service, declared the way Faust's own examples declare an app:
module-level app, topics, a table, an agent, timers and web pages.

    faust -A stream.worker.app worker -l info          # or: skewwatch worker
    SKEWWATCH_BROKER=kafka://kafka:9092 SKEWWATCH_BASELINES=/baselines skewwatch worker

Settings come from the environment (stream/worker/config.py lists them). The agent stays thin:
`stream.worker.service` decodes, monitors and builds the dead letters; this module moves bytes
between Kafka and it.

Topics and formats:
- input (`skewwatch.predictions`): JSON or msgpack, one event or a list per message. Key
  messages by model: a model's monitor then lives on one partition, and so on one worker.
  A worker moves ~6.5k messages/s; producers that put many events in one message go far higher.
- alerts (`skewwatch.alerts`): key = model, value = the alert of docs/contracts.md as JSON.
- dead letters (`skewwatch.dead-letters`): key = the reason, value = JSON
  {"reason", "detail", "raw" (the original bytes as text, or null if not UTF-8), "raw_b64",
  "source": {"topic", "partition", "offset"}} (detectors.events.dead_letter_record).

Guarantee: at-least-once. The monitors are checkpointed every `checkpoint_interval` to a
compacted changelog (the `monitor-checkpoints` table), and offsets are committed right after
each checkpoint, so after `kill -9` the restored state counts every event once (re-delivered
messages the state already includes are skipped by offset); the alerts of the events since the
last checkpoint can be emitted a second time, with the same `alert_id`. A rebalance checkpoints
the revoked partitions first, so their monitors continue on the new owner.
"""
from __future__ import annotations

import asyncio
import html
import logging
from typing import Any, Iterable

import faust
import orjson
from prometheus_client import CONTENT_TYPE_LATEST

from detectors.model import MonitorConfig
from stream.worker import config as _config
from stream.worker.fetch_wait import set_fetch_max_wait
from stream.gc_policy import relax_gc
from stream.worker.metrics import Metrics
from stream.worker.service import DetectionService, Record, parse_checkpoint_key

log = logging.getLogger("skewwatch.worker")

settings = _config.load()


set_fetch_max_wait(settings.fetch_max_wait_ms)
metrics = Metrics()
service = DetectionService(settings.baselines, metrics, limits=_config.decoder_limits(settings),
                           config=MonitorConfig(include_examples=settings.include_examples))
#: seconds the lag timer waits for the broker's end offsets before it reports the broker lost
BROKER_PROBE_TIMEOUT = 2.0
#: seconds the checkpoint timer waits for the broker to acknowledge a checkpoint before it gives
#: up committing this round (processing waits meanwhile)
CHECKPOINT_CONFIRM_TIMEOUT = 10.0

app = faust.App(
    settings.app_id,
    broker=settings.broker,
    broker_credentials=_config.broker_credentials(settings),
    store="memory://",  # the table is rebuilt from its changelog on start: a few small records
    topic_partitions=settings.partitions,
    # A dead member must be noticed within seconds, not Faust's default minute.
    broker_session_timeout=10.0,
    broker_heartbeat_interval=1.0,
    # Offsets are committed only by the checkpoint timer, right after a checkpoint. Faust's own
    # periodic commit would commit what was processed since the last checkpoint, which a kill -9
    # then loses: it is pushed out of the worker's lifetime (a year), as is its count-based one.
    broker_commit_interval=365 * 24 * 3600.0,
    broker_commit_every=2**62,
    table_standby_replicas=0,
    web_bind=settings.web_host,
    web_host=settings.web_host,
    web_port=settings.web_port,
    # Tansu answers ListOffsets(LATEST) with the newest batch's base offset + 1; one record per
    # batch makes that the true end offset (changelog recovery relies on it).
    **({"producer_max_batch_size": 1} if settings.single_record_batches else {}),
    **({"datadir": settings.data_dir} if settings.data_dir else {}),
)

predictions_topic = app.topic(settings.input_topic, key_serializer="raw", value_serializer="raw",
                              partitions=settings.partitions)
alerts_topic = app.topic(settings.alert_topic, key_serializer="raw", value_serializer="raw")
dead_letters_topic = app.topic(settings.dead_letter_topic, key_serializer="raw", value_serializer="raw")


class CheckpointTable(faust.Table):
    """Key "P/<model>" is written to changelog partition P: the monitors fed by input
    partition P are checkpointed next to it, outside any stream iteration (by a timer).

    A write is durable once the broker acknowledges its changelog record: `confirmed` waits for
    that. (`app.producer.flush()` does not: Faust's send buffer gives up after 0.1 s per record,
    and offsets committed over a checkpoint still in flight were lost by a kill -9.)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._unconfirmed: list[asyncio.Future] = []

    def partition_for_key(self, key: Any) -> int:
        return parse_checkpoint_key(key)[0]

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        sent = super().send_changelog(*args, **kwargs)
        self._unconfirmed.append(sent)
        return sent

    async def confirmed(self, timeout: float) -> bool | None:
        """True once the broker acknowledged every record written so far (within `timeout` s);
        False if some are still in flight; None if a send failed (that record is lost)."""
        pending, self._unconfirmed = self._unconfirmed, []
        try:
            await asyncio.wait_for(asyncio.shield(asyncio.gather(*pending)), timeout)
            return True
        except asyncio.TimeoutError:
            failed = any(f.done() and f.exception() for f in pending)
        except Exception:  # noqa: BLE001 (the send failed: the record is not on the broker)
            failed = True
        self._unconfirmed = [f for f in pending if not f.done()] + self._unconfirmed
        return None if failed else False


checkpoints = app.tables.add(CheckpointTable(
    app,
    name=_config.CHECKPOINT_TABLE,
    beacon=app.tables.beacon,
    partitions=settings.partitions,
    # key_type str -> JSON keys; value_type bytes -> Faust's "raw" codec: the msgpack made by
    # stream.worker.service is stored as it is, never pickled
    key_type=str, value_type=bytes,
    help="msgpack checkpoints of the monitors, key 'partition/model'",
))


def _table_items() -> Iterable[tuple[str, bytes]]:
    return list(checkpoints.items())


#: held by the agent while it processes a batch and by the checkpoint timer from checkpoint to
#: commit: a batch processed while the checkpoint is being flushed would otherwise be acked and
#: committed without being in the checkpoint, and lost by a crash before the next one
processing = asyncio.Lock()


@app.agent(predictions_topic)
async def monitor_predictions(stream: faust.StreamT) -> None:
    async for batch in stream.take_events(settings.batch_size, within=settings.batch_within):
        async with processing:
            await _process(batch)


async def _process(batch: list[faust.EventT]) -> None:
    with metrics.batch_seconds.time():
        by_partition: dict[int, list[Record]] = {}
        for event in batch:
            m = event.message
            by_partition.setdefault(m.partition, []).append(Record(m.value, m.partition, m.offset, m.topic))
        for partition, records in by_partition.items():
            alerts, dead_letters = service.process(service.monitors_for(partition, _table_items), records)
            for alert in alerts:
                await alerts_topic.send(key=alert.model.encode(), value=orjson.dumps(alert.to_dict()))
            for letter in dead_letters:
                await dead_letters_topic.send(key=letter["reason"].encode(), value=orjson.dumps(letter))


async def write_checkpoints(partitions: Iterable[int] | None = None) -> bool:
    """Write the changed monitors' state; whether the broker has all checkpoints written so far."""
    written = service.checkpoints(partitions)
    for key, blob in written.items():
        checkpoints[key] = blob
    confirmed = await checkpoints.confirmed(CHECKPOINT_CONFIRM_TIMEOUT)
    if not confirmed:
        if confirmed is None:  # a lost record is written again, with every other monitor's, next time
            service.rewrite_checkpoints()
        log.warning("the broker has not confirmed the checkpoints (%s): offsets stay uncommitted until it does",
                    "a send failed" if confirmed is None else f"{CHECKPOINT_CONFIRM_TIMEOUT:.0f} s")
        return False
    metrics.checkpoints.inc(len(written))
    return True


@app.timer(interval=settings.checkpoint_interval)
async def checkpoint_and_commit() -> None:
    async with processing:
        # Only once the checkpoints are durable may the consumer's offsets move on to what they cover.
        if await write_checkpoints() and await app.consumer.commit():
            service.offsets_committed()


@app.task
async def load_baselines() -> None:
    service.rescan()
    relax_gc()  # set up: from here on, mostly events in flight (stream/gc_policy.py)


@app.timer(interval=settings.baseline_scan_interval)
async def rescan_baselines() -> None:
    service.rescan()


_broker_reachable: bool | None = None


def _set_broker_reachable(reachable: bool, why: str = "") -> None:
    """The skewwatch_broker_connected gauge, and one log line per change (not one per probe)."""
    global _broker_reachable
    if reachable != _broker_reachable:
        if reachable:
            log.info("broker reachable")
        else:
            log.warning("lost the broker (%s); reconnecting", why)
    _broker_reachable = reachable
    metrics.broker_connected.set(1 if reachable else 0)


@app.timer(interval=2.0)
async def measure_lag() -> None:
    consumer = app.consumer
    mine = [tp for tp in consumer.assignment() if tp.topic == settings.input_topic]
    if not mine:
        return
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*mine), BROKER_PROBE_TIMEOUT)
    except Exception as e:  # noqa: BLE001 (a timeout or any Kafka error: the broker is out of reach)
        _set_broker_reachable(False, type(e).__name__)
        return
    _set_broker_reachable(True)
    service.observe_end_offsets({tp.partition: ends[tp] for tp in mine if ends.get(tp) is not None})
    for tp in mine:
        monitors = service.partitions.get(tp.partition)
        position = monitors.last_offset + 1 if monitors else await consumer.position(tp)
        if ends.get(tp) is not None and position is not None:
            metrics.consumer_lag.labels(tp.topic, str(tp.partition)).set(max(0, ends[tp] - position))


@app.on_partitions_revoked.connect
async def on_revoked(app: faust.App, revoked: set, **kwargs: Any) -> None:
    # Faust committed what was processed; checkpoint everything processed so the next owner
    # of these partitions resumes from the same point.
    mine = {tp.partition for tp in revoked if tp.topic == settings.input_topic}
    await write_checkpoints(mine)
    service.drop_partitions(mine)


@app.on_partitions_assigned.connect
async def on_assigned(app: faust.App, assigned: set, **kwargs: Any) -> None:
    mine = {tp.partition for tp in assigned if tp.topic == settings.input_topic}
    # Monitors of partitions no longer ours are rebuilt from the changelog if they come back.
    service.drop_partitions(set(service.partitions) - mine)
    # Before any record is processed: a log recreated since (its end offset went back) must not
    # have its first records skipped as already counted. The lag timer checks it every 2 s too.
    tps = [tp for tp in assigned if tp.topic == settings.input_topic]
    try:
        ends = await asyncio.wait_for(app.consumer.highwaters(*tps), BROKER_PROBE_TIMEOUT) if tps else {}
        service.observe_end_offsets({tp.partition: end for tp, end in ends.items() if end is not None})
    except Exception as e:  # noqa: BLE001 (the broker is slow or away: the lag timer checks again)
        log.info("could not read the end offsets of the assigned partitions (%s)", type(e).__name__)
    metrics.forget_lag(settings.input_topic, mine)
    _set_broker_reachable(True)


@app.on_before_shutdown.connect
async def on_shutdown(app: faust.App, **kwargs: Any) -> None:
    await write_checkpoints()


@app.page("/metrics")
async def metrics_page(web: Any, request: Any) -> Any:
    service.update_gauges()
    return web.bytes(metrics.exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})


@app.page("/status.json")
async def status_json(web: Any, request: Any) -> Any:
    """Where each monitor lives: per assigned partition, each model's events seen."""
    return web.json({
        "app_id": settings.app_id,
        "partitions": {str(p): {"last_offset": m.last_offset,
                                "models": {name: m.router.monitor(name).events_seen for name in m.router.models}}
                       for p, m in sorted(service.partitions.items())},
        "models": service.models,
        "unavailable": service.unavailable,
        "last_alerts": service.last_alerts,
    })


@app.page("/")
async def status_page(web: Any, request: Any) -> Any:
    return web.html(render_status())


def render_status() -> str:
    """A small HTML page: each model's features, their current statistics, the last alert."""
    esc = html.escape
    parts = ["<!doctype html><meta charset=utf-8><title>skewwatch</title>",
             "<style>body{font-family:sans-serif}table{border-collapse:collapse}"
             "td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}</style>",
             f"<h1>skewwatch worker <small>{esc(settings.app_id)}</small></h1>",
             f"<p>input <code>{esc(settings.input_topic)}</code>, partitions here: "
             f"{sorted(service.partitions) or 'none yet'} &middot; <a href=/metrics>/metrics</a> &middot; "
             "<a href=/status.json>/status.json</a></p>"]
    for model, why in service.unavailable.items():
        parts.append(f"<h2>{esc(model)}</h2><p><b>disabled:</b> {esc(why)}</p>")
    snapshots = service.snapshots()
    for model in service.models:
        snap = snapshots.get(model)
        parts.append(f"<h2>{esc(model)}</h2>")
        if snap is None:
            parts.append("<p>no events yet</p>")
            continue
        parts.append(f"<p>version {esc(str(snap.get('model_version')))}, events seen {snap.get('events_seen')}, "
                     f"confidence mean {_fmt(snap.get('confidence_mean'))}</p>")
        features = snap.get("features", {})
        names = sorted({s for f in features.values() for s in (f.get("statistics") or {})})
        parts.append("<table><tr><th>feature</th><th>kind</th><th>missing</th>"
                     + "".join(f"<th>{esc(n)}</th>" for n in names) + "<th>last alert</th></tr>")
        for name, f in features.items():
            stats = f.get("statistics") or {}
            last = f.get("last_alert")
            parts.append(f"<tr><td>{esc(name)}</td><td>{esc(str(f.get('kind')))}</td><td>{_fmt(f.get('missing_ratio'))}</td>"
                         + "".join(f"<td>{_fmt(stats.get(n))}</td>" for n in names)
                         + f"<td>{esc(_alert_line(last)) if last else ''}</td></tr>")
        parts.append("</table>")
        last = service.last_alerts.get(model)
        if last:
            parts.append(f"<p>last alert: {esc(_alert_line(last))}</p>")
    return "\n".join(parts)


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return "" if value is None else html.escape(str(value))


def _alert_line(alert: dict) -> str:
    return (f"{alert.get('kind')} {alert.get('feature') or ''} by {alert.get('detector')}: "
            f"{alert.get('statistic')} > {alert.get('threshold')} ({alert.get('severity')}) {alert.get('diagnosis') or ''}")


# The request-id joins (feature parity, delayed labels) register their topics, agents and page on
# `app`; imported last because they use the names above, and only when turned on (SKEWWATCH_JOINS):
# they forward every served event once more.
if settings.joins:
    import stream.worker.joins  # noqa: E402,F401
