"""The skewwatch Faust app: the app object, its topics and the checkpoint table, laid out like
Faust's larger projects (one module builds the app; the modules that use it are found by
autodiscovery):

- `stream.worker.app` (this module): settings, metrics, the DetectionService, the app, the
  topics, the checkpoint table;
- `stream.worker.agents`: the agent, the timers, the partition-signal handlers, the outputs;
- `stream.worker.pages`: the web pages (/metrics, /status.json, /);
- `stream.worker.joins`: the request-id joins, only when turned on (SKEWWATCH_JOINS, or pairs in SKEWWATCH_SHADOW).

    faust -A stream.worker.app worker -l info          # or: skewwatch worker
    SKEWWATCH_BROKER=kafka://kafka:9092 SKEWWATCH_BASELINES=/baselines skewwatch worker

Both import the modules listed in `autodiscover` before the worker starts (`faust -A` through
its app loader, `skewwatch worker` through `app.main()`); this module imports none of them.
Settings come from the environment (stream/worker/config.py lists them).

Topics and formats:
- input (`skewwatch.predictions`): JSON or msgpack, one event or a list per message. Key
  messages by model: a model's monitor then lives on one partition, and so on one worker.
  A worker moves ~140-175k single-event messages/s on the embedded broker here, 0.74-0.96x a
  bare aiokafka consumer that only decodes them (bench/RESULTS.md; a busier machine halves it):
  the input topic's records skip Faust's per-message path (stream.worker.agents).
- alerts (`skewwatch.alerts`): key = model, value = the alert of docs/contracts.md as JSON.
- dead letters (`skewwatch.dead-letters`): key = the reason, value = JSON
  {"reason", "detail", "raw" (the original bytes as text, or null if not UTF-8), "raw_b64",
  "source": {"topic", "partition", "offset"}} (detectors.events.dead_letter_record).
- the `monitor-checkpoints` table's compacted changelog: the monitors' checkpoints, compressed
  msgpack in records of at most SKEWWATCH_MAX_CHECKPOINT_BYTES (stream/worker/checkpoint_codec.py;
  the guarantee they give is in stream/worker/agents.py); with the joins on, the `join-checkpoints`
  table's, the joins' the same way (stream/worker/joins.py).
"""
from __future__ import annotations

import asyncio
from typing import Any

import faust
from faust.web import drivers as web_drivers
from faust.web.drivers.aiohttp import Web as AiohttpWeb

from detectors.model import MonitorConfig
from stream.worker import config as _config
from stream.worker.faust_internals import set_fetch_max_wait
from stream.worker.metrics import Metrics
from stream.worker.service import DetectionService, parse_checkpoint_key

__all__ = ["DISCOVERED_MODULES", "CheckpointTable", "PagesOnlyWeb", "alerts_topic", "app", "checkpoints",
           "dead_letters_topic", "metrics", "predictions_topic", "service", "settings"]

settings = _config.load()
set_fetch_max_wait(settings.fetch_max_wait_ms)
metrics = Metrics(feature_metrics=settings.feature_metrics)
service = DetectionService(settings.baselines, metrics, limits=_config.decoder_limits(settings),
                           config=MonitorConfig(include_examples=settings.include_examples),
                           max_checkpoint_bytes=settings.max_checkpoint_bytes,
                           shadow_candidates=_config.shadow_candidates(settings), hold_events=settings.hold_events)


class PagesOnlyWeb(AiohttpWeb):
    """Faust's aiohttp web server serving the app's own pages only (stream.worker.pages).

    Faust's built-in views are off, whatever the environment says (its `web_tables_enabled`,
    `web_router_enabled`... settings and their APP_WEB_* variables): `/table/<name>/<key>/` served a
    whole checkpoint, i.e. the monitors' state, to anyone reaching the port; `/router/` the
    cluster's layout; `/graph`, `/assignment/` and `/performance/` the worker's internals. The
    settings alone cannot do it: with every flag off Faust still mounts a placeholder index at "/",
    which aiohttp refuses next to the status page.
    """

    #: the driver's name in Faust's `web` setting (a URL scheme)
    SCHEME = "skewwatch-pages"
    default_blueprints = debug_blueprints = optional_blueprints = production_blueprints = ()


web_drivers.DRIVERS.aliases[PagesOnlyWeb.SCHEME] = f"{__name__}:PagesOnlyWeb"

#: the modules that declare agents, timers and pages on `app`; the joins forward every served
#: event once more, so they load only when turned on (shadow pairs turn them on)
DISCOVERED_MODULES = ["stream.worker.agents", "stream.worker.pages"] + (
    ["stream.worker.joins"] if settings.joins or settings.shadow else [])

app = faust.App(
    settings.app_id,
    # A list, not True: True would scan the whole stream.worker package, joins included.
    autodiscover=DISCOVERED_MODULES,
    origin="stream.worker.app",  # what `faust -A` is given; a module, so scanning it imports nothing more
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
    web=f"{PagesOnlyWeb.SCHEME}://",
    # Faust's worker plus a rate-limited log while the broker is gone and a shutdown that cannot hang
    Worker="stream.worker.lifecycle.Worker",
    # Tansu answers ListOffsets(LATEST) with the newest batch's base offset + 1; one record per
    # batch makes that the true end offset (changelog recovery relies on it).
    **({"producer_max_batch_size": 1} if settings.single_record_batches else {}),
    **({"datadir": settings.data_dir} if settings.data_dir else {}),
)

# acks=False: its records never reach Faust's streams (stream.worker.agents takes them off the
# fetch), so Faust must not expect acks for them (it would log its partitions as stuck)
predictions_topic = app.topic(settings.input_topic, key_serializer="raw", value_serializer="raw",
                              partitions=settings.partitions, acks=False)
alerts_topic = app.topic(settings.alert_topic, key_serializer="raw", value_serializer="raw")
dead_letters_topic = app.topic(settings.dead_letter_topic, key_serializer="raw", value_serializer="raw")


class CheckpointTable(faust.Table):
    """Key "P/<model>" (and "P#<generation>.<index>/<model>", a chunk of a big checkpoint) is
    written to changelog partition P: the monitors fed by input partition P are checkpointed next
    to it, outside any stream iteration (by a timer), and a checkpoint's chunks stay in order with
    its head.

    A write is durable once the broker acknowledges its changelog record: `confirmed` waits for
    that. (`app.producer.flush()` does not: Faust's send buffer gives up after 0.1 s per record,
    and offsets committed over a checkpoint still in flight were lost by a kill -9.)"""

    def __post_init__(self) -> None:
        super().__post_init__()
        self._unconfirmed: list[asyncio.Future] = []

    def partition_for_key(self, key: Any) -> int:
        """Key "P/<model>" and its chunks "P#g.i/<model>" go to changelog partition P."""
        return parse_checkpoint_key(key)[0]

    def send_changelog(self, *args: Any, **kwargs: Any) -> Any:
        """Faust's changelog write, its future kept for `confirmed`."""
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
        except TimeoutError:
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
    help="checkpoints of the monitors (stream/worker/checkpoint_codec.py), key 'partition/model'",
))
