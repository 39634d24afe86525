"""What the Faust agent does with a micro-batch, without Faust: process it (detectors.processing,
the path replay takes too), collect the alerts and dead letters, and checkpoint/restore the
monitors (so it is unit-testable).

State is kept per input partition, the way Kafka Streams keeps it per task: the monitors fed by
partition P are checkpointed to partition P of the changelog (co-partitioned) under the key
"P/<model>" (and "P#<generation>.<index>/<model>" for the chunks of a big one), so a rebalance
that moves P to another worker moves its monitors with it.
Producers key messages by model, so each model's events, and its monitor, live on one
partition; events of a model spread over several partitions get one monitor per partition.

Checkpoints are msgpack (never pickle), compressed and split into records of at most
SKEWWATCH_MAX_CHECKPOINT_BYTES by stream.worker.checkpoint_codec, with {"offset": O,
"committed_floor": F, "baseline": fingerprint} beside the state, where O is the last offset of P
the state includes. A checkpoint applies to the baseline of the same `Baseline.fingerprint` (the same profile, rebuilt
or not), as in `ModelRouter.set_baseline` and the alert ids. After a crash
the consumer resumes from the last committed offset (<= O + 1: the worker commits O + 1 right
after the checkpoint is on the broker), and events at offsets <= O are skipped for that model,
so the restored state counts no event twice. F is an offset the group had committed (< F never
comes again from a healthy log): a record below it means the log was recreated, and then nothing
is skipped.
"""
from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import msgpack

from baselines.profile import Baseline
from detectors.alerts import Alert
from detectors.events import Limits, Reject, dead_letter_record
from detectors.model import ModelMonitor

# MONITOR_ERROR: re-exported for the worker's code
from detectors.processing import HOLD_TOTAL, MONITOR_ERROR, Hold, Processed, process_messages
from detectors.routing import ModelRouter
from stream.worker import checkpoint_codec
from stream.worker import config as worker_config
from stream.worker.baseline_dir import BaselineChange, BaselineDirectory
from stream.worker.metrics import REFRESH_BUDGET, Metrics

log = logging.getLogger("skewwatch.worker")

__all__ = ["CHECKPOINT_VERSION", "KEPT_ALERTS", "MONITOR_ERROR", "DetectionService", "PartitionMonitors", "Record",
           "RejectLog", "RejectTally", "checkpoint_key", "parse_checkpoint_key", "position_key"]

#: 3: compressed, split past the record limit (checkpoint_codec); 2: the baseline named by its fingerprint
CHECKPOINT_VERSION = checkpoint_codec.FORMAT
#: alerts kept per model for the status page: the newest of each kind per feature (or per model-wide
#: test: schema, serving), at most this many (the oldest forgotten first; the alert topic has them all)
KEPT_ALERTS = 50


@dataclass(frozen=True)
class Record:
    """One consumed message and where it came from. Wherever a Record is read, anything with its
    four attributes does: the worker passes aiokafka's ConsumerRecords as they were fetched."""

    value: bytes
    partition: int
    offset: int
    topic: str = ""


class PartitionMonitors:
    """The monitors fed by one input partition, and the offsets their checkpoints include."""

    def __init__(self, partition: int, baselines: Iterable[Baseline], config: Any = None,
                 max_record_bytes: int = worker_config.DEFAULT_MAX_CHECKPOINT_BYTES,
                 shadow_candidates: Iterable[str] = (), hold_events: int = 0):
        """`hold_events`: a model's events are held until it has this many (`detectors.processing.Hold`;
        0: fed as they come); `flush` feeds them, and must before every checkpoint."""
        self.partition = partition
        self.router = ModelRouter(baselines, config, shadow_candidates)
        #: the events of models with too few yet to feed, if any (their offsets not yet processed)
        self.hold = Hold(hold_events, HOLD_TOTAL) if hold_events > 0 else None
        self.topic = ""  # the input topic, as the records name it (a held event's dead letter names it)
        self.max_record_bytes = max_record_bytes
        #: model -> (generation, chunks) of its newest checkpoint: the next one writes the other generation
        self._written: dict[str, tuple[int, int]] = {}
        self.last_offset = -1  # the newest offset the monitors' state includes
        self._processed_upto = -1  # the newest offset processed by this instance
        self._skip_upto: dict[str, int] = {}  # model -> offset its restored state includes
        self._dirty: set[str] = set()
        #: offsets below it are committed: a healthy log never delivers them to the group again
        self.committed_floor = -1
        self._checkpointed_upto = -1  # last_offset at the newest checkpoint
        self._marked_upto = -1  # last_offset at the newest position marker
        #: where the consumer resumes at the latest after a restore (the restored position + 1)
        self._resume_at: int | None = None
        #: (offset the partition was sought back to, newest offset dropped since): the records
        #: Faust still hands over from before the seek are dropped until the re-read starts
        self._rewind: tuple[int, int] | None = None
        self._rewound_to: int | None = None  # the last offset sought back to (a gap seen twice is a hole)
        self._seek_to: int | None = None  # a seek back the agent has yet to make

    def unseen(self, records: list[Record]) -> list[Record]:
        """The records to process: offsets strictly increasing and none processed before (after
        a seek back the consumer can deliver a partition's messages again, even within one batch),
        and none past a gap.

        A gap (a record after offset O that is not O + 1, or a first record after a restore past
        the restored position + 1) means records the consumer fetched but never delivered: Faust
        drops a record it fetches while its flow is suspended (recovery, a rebalance) yet moves
        its read offset past it. The records from the gap on are dropped and `take_seek` returns
        the offset to seek back to; the records Faust still delivers from before that seek are
        dropped until the re-read starts. A gap found again at the same offset after the seek is a
        hole in the log (compaction, transaction markers): logged, and processing goes on.

        A record below the committed floor means the log was recreated (or the group's offsets
        were reset): count from there."""
        # Only monitors rebuilt from the checkpoints (nothing processed yet) take it so: once running,
        # Faust itself hands over records below the committed offset again (its seek to an older
        # committed offset after a restart), and those are duplicates; a recreated log is then
        # caught by its end offset going back (observe_end_offsets).
        if records and records[0].offset < self.committed_floor and self._processed_upto < 0 and self._rewind is None:
            log.warning("partition %d: offset %d is below the committed offset %d: the topic's log was recreated "
                        "(the broker lost its records?) or the group's offsets were reset; counting every record "
                        "from here, skipping nothing", self.partition, records[0].offset, self.committed_floor)
            self.forget_offsets()
        newest = self._processed_upto
        expected = newest + 1 if newest >= 0 else self._resume_at  # None: nothing known to compare with
        fresh: list[Record] = []
        for i, r in enumerate(records):
            if self._rewind is not None:
                target, dropped_upto = self._rewind
                if r.offset > dropped_upto:  # still what was fetched before the seek
                    self._rewind = (target, r.offset)
                    continue
                self._rewind = None  # the re-read from `target` has started
            if r.offset <= newest:
                continue  # processed already
            if expected is not None and r.offset > expected:
                if self._rewound_to == expected:
                    log.warning("partition %d: offsets %d..%d are not in the log (read twice: compaction or "
                                "transaction markers?); going on from %d", self.partition, expected, r.offset - 1,
                                r.offset)
                else:
                    log.warning("partition %d: offsets %d..%d were fetched but never delivered to the worker "
                                "(Faust drops records fetched while its flow is suspended); reading them again "
                                "from %d", self.partition, expected, r.offset - 1, expected)
                    self._rewound_to = expected
                    self._seek_to = expected
                    self._rewind = (expected, max(x.offset for x in records[i:]))
                    break
            fresh.append(r)
            newest = r.offset
            expected = newest + 1
        if len(fresh) < len(records):
            log.debug("partition %d: dropped %d re-delivered or out-of-order message(s)", self.partition,
                      len(records) - len(fresh))
        return fresh

    def take_seek(self) -> int | None:
        """The offset the consumer must seek this partition back to (once), or None."""
        offset, self._seek_to = self._seek_to, None
        return offset

    def process(self, records: list[Record], limits: Limits = Limits()) -> Processed:
        """Process one partition's records, in increasing offset order, not seen before
        (`unseen` makes them so)."""
        keep = None
        if self._skip_upto and records:
            skip = self._skip_upto
            keep = lambda i, ev: records[i].offset > skip.get(ev["model"], -1)  # noqa: E731
            log.info("partition %d: re-delivered from offset %d; skipping what the checkpoints hold (%s)",
                     self.partition, records[0].offset, ", ".join(f"{m} up to {o}" for m, o in sorted(skip.items())))
        result = process_messages(self.router, [r.value for r in records], limits, keep,
                                  origins=[r.offset for r in records], hold=self.hold)
        if records:
            newest = records[-1].offset
            self.topic = records[-1].topic
            self._processed_upto = newest
            if self._skip_upto:  # offsets only grow: a mark behind this batch has done its job
                self._skip_upto = {m: o for m, o in self._skip_upto.items() if o > newest}
        self._fed(result)
        return result

    def waiting(self, older_than: float | None = None) -> list[str]:
        """The models with held events (`Hold.waiting`)."""
        return [] if self.hold is None else self.hold.waiting(older_than)

    def flush(self, older_than: float | None = None, models: Collection[str] | None = None) -> Processed:
        """Feed the held events (or those of the models whose oldest held event came more than
        `older_than` seconds ago, or of `models`); the rejects carry their records' offsets."""
        if self.hold is None or not len(self.hold):
            return Processed([], [], Counter())
        result = self.hold.flush(self.router, older_than, models)
        self._fed(result)
        return result

    def _fed(self, result: Processed) -> None:
        """After events were fed: their models are to checkpoint, and `last_offset` moves up to the
        record before the oldest held event (a held event's offset is not processed until fed)."""
        self._dirty.update(result.events_by_model)
        held = self.hold.first_origin() if self.hold is not None else None
        # min: after a recreated log, the held events' offsets are the old log's
        covered = self._processed_upto if held is None else min(self._processed_upto, held - 1)
        self.last_offset = max(self.last_offset, covered)

    def forget_offsets(self) -> None:
        """The partition's log was recreated (its offsets start again): keep the monitors'
        state, but skip nothing as already counted."""
        self._skip_upto.clear()
        self._processed_upto = -1
        self.last_offset = -1
        self.committed_floor = -1
        self._checkpointed_upto = -1
        self._marked_upto = -1
        self._resume_at = None
        self._rewind = self._rewound_to = self._seek_to = None

    def committable(self) -> int | None:
        """The offset to commit once the newest checkpoint (and its position marker) is on the
        broker: the next one after what it includes; None if it moves nothing."""
        offset = self._checkpointed_upto + 1
        return offset if offset > max(self.committed_floor, 0) else None

    def offsets_committed(self) -> None:
        """The worker committed `committable()` right after the newest checkpoint: every offset
        that checkpoint includes is committed."""
        self.committed_floor = max(self.committed_floor, self._checkpointed_upto + 1)

    def checkpoints(self, everything: bool = False) -> dict[str, bytes | None]:
        """{table key: record, or None to delete it} of the monitors that saw events since the last
        call, in the order to write them: each model's chunks, its head, then its previous
        checkpoint's chunks deleted (checkpoint_codec)."""
        return dict(self.checkpointing(everything))

    def checkpointing(self, everything: bool = False) -> Iterator[tuple[str, bytes | None]]:
        """`checkpoints`, a record at a time; no event may reach the monitors until it is exhausted
        (the worker holds its processing lock)."""
        if self.hold is not None and len(self.hold):  # a model's offset would cover what another holds
            raise RuntimeError(f"partition {self.partition}: {len(self.hold)} held events must be fed (flush) "
                               "before a checkpoint")
        models = self.router.monitored if everything else sorted(self._dirty & set(self.router.monitored))
        self._dirty.clear()
        self._checkpointed_upto = self.last_offset
        for m in models:
            meta = {"offset": self.last_offset, "committed_floor": self.committed_floor,
                    "baseline": self.router.baseline(m).fingerprint}
            previous, stale = self._written.get(m, (1, 0))
            *chunks, head = checkpoint_codec.encode(meta, self.router.state_dict(m), self.max_record_bytes,
                                                    generation=1 - previous)
            for i, chunk in enumerate(chunks):
                yield checkpoint_key(self.partition, m, (1 - previous, i)), chunk
            yield checkpoint_key(self.partition, m), head
            for i in range(stale):
                yield checkpoint_key(self.partition, m, (previous, i)), None
            self._written[m] = (1 - previous, len(chunks))

    def position(self, everything: bool = False) -> bytes | None:
        """The partition's position marker, if it moved since the last (or `everything`): the
        offset every monitor's state includes once the checkpoints written before it are on the
        broker. Written only after they are confirmed, so a restored model's state, rewritten or
        not since (an idle model's is not), includes everything up to it."""
        if not everything and self.last_offset == self._marked_upto:
            return None
        self._marked_upto = self.last_offset
        return msgpack.packb({"v": CHECKPOINT_VERSION, "offset": self.last_offset,
                              "committed_floor": self.committed_floor}, use_bin_type=True)

    def restore_position(self, blob: bytes) -> None:
        """Continue from a position marker (after the models' `restore`): the restored monitors
        include every event up to its offset, and the consumer resumes after it at the latest."""
        try:
            data = msgpack.unpackb(blob, raw=False)
            if data.get("v") != CHECKPOINT_VERSION:
                raise ValueError(f"format {data.get('v')!r}")
            offset, floor = int(data["offset"]), int(data.get("committed_floor", -1))
        except Exception as e:  # noqa: BLE001 (without it the models' own offsets apply)
            log.warning("partition %d: unreadable position marker (%s: %s); using the checkpoints' own offsets",
                        self.partition, type(e).__name__, e)
            return
        self._skip_upto = {m: max(o, offset) for m, o in self._skip_upto.items()}
        self.last_offset = self._marked_upto = max(self.last_offset, offset)
        self.committed_floor = max(self.committed_floor, floor)
        self._resume_at = min(self._skip_upto.values(), default=offset) + 1

    def restore(self, model: str, head: bytes,
                chunk: Callable[[tuple[int, int]], bytes | None] = lambda _: None) -> bool:
        """Continue `model`'s monitor from its checkpoint: the `head` record, its chunks looked up
        by (generation, index) with `chunk`. False (fresh monitor kept) when it does not apply:
        unreadable, another format, a chunk missing or of another checkpoint, or taken against
        another baseline (another fingerprint: the same profile rebuilt is the same baseline)."""
        if model not in self.router.models:
            return False
        try:
            found = checkpoint_codec.read_head(head)
            # its chunks, restored or not, are the ones the next checkpoint of the model deletes
            self._written[model] = (found.generation, len(found.chunks))
            data = found.meta
            if data.get("baseline") != self.router.baseline(model).fingerprint:
                log.info("partition %d: checkpoint of %r was taken against another baseline; starting fresh",
                         self.partition, model)
                return False
            self.router.restore(model, checkpoint_codec.decode(found, chunk))
        except Exception as e:  # noqa: BLE001 (a bad checkpoint must not stop the worker: start the monitor fresh)
            log.warning("partition %d: cannot restore %r from its checkpoint (%s: %s); starting fresh",
                        self.partition, model, type(e).__name__, e)
            return False
        offset = int(data["offset"])
        log.info("partition %d: restored %r at offset %d (%d events seen)", self.partition, model, offset,
                 self.router.monitor(model).events_seen)
        self._skip_upto[model] = offset
        self.last_offset = max(self.last_offset, offset)
        self.committed_floor = max(self.committed_floor, int(data.get("committed_floor", -1)))
        # without a position marker, the oldest restored checkpoint says where the consumer resumes
        self._resume_at = min(self._skip_upto.values()) + 1
        return True

    def apply(self, change: BaselineChange) -> None:
        """Follow a change of the baselines directory: a (re)loaded model gets its new baseline,
        a failed or removed one is disabled with the reason."""
        if change.kind == "loaded":
            self.router.set_baseline(change.baseline)
        else:
            self.router.disable_model(change.model, change.detail)
            self._skip_upto.pop(change.model, None)
            self._dirty.discard(change.model)


def _busiest_monitors(partitions: dict[int, PartitionMonitors]) -> dict[str, ModelMonitor]:
    """Per model, its monitor with the most events among the partitions' (its home partition's):
    chosen by count, so that only that one is read."""
    best: dict[str, ModelMonitor] = {}
    for monitors in partitions.values():
        for model, monitor in monitors.router.monitors().items():
            if model not in best or monitor.events_seen > best[model].events_seen:
                best[model] = monitor
    return best


def _subject(alert: dict) -> tuple[str, ...]:
    """What an alert is about on the status page: its feature, else (a model-wide alert) its kind and test."""
    feature = alert.get("feature")
    return ("feature", feature) if feature is not None else ("model", alert.get("kind"), alert.get("detector"))


def checkpoint_key(partition: int, model: str, chunk: tuple[int, int] | None = None) -> str:
    """The checkpoint table's key of `model`'s monitor fed by input `partition`: of its head, or
    of its chunk (generation, index).

    >>> checkpoint_key(2, "credit"), parse_checkpoint_key("2/credit")
    ('2/credit', (2, 'credit', None))
    >>> checkpoint_key(2, "a/b", (1, 0)), parse_checkpoint_key("2#1.0/a/b")
    ('2#1.0/a/b', (2, 'a/b', (1, 0)))
    """
    return f"{partition}/{model}" if chunk is None else f"{partition}#{chunk[0]}.{chunk[1]}/{model}"


def position_key(partition: int) -> str:
    """The checkpoint table's key of input `partition`'s position marker: no model.

    >>> position_key(2), parse_checkpoint_key(position_key(2))
    ('2/', (2, '', None))
    """
    return checkpoint_key(partition, "")


def parse_checkpoint_key(key: str) -> tuple[int, str, tuple[int, int] | None]:
    """(partition, model, chunk or None) of a checkpoint table key (the inverse of `checkpoint_key`;
    model "" for a `position_key`)."""
    where, _, model = key.partition("/")
    partition, _, chunk = where.partition("#")
    if not chunk:
        return int(partition), model, None
    generation, _, index = chunk.partition(".")
    return int(partition), model, (int(generation), int(index))


class RejectLog:
    """At most one log line per reason per `interval` seconds, with the count since the last.

    The rejects held back in between are reported by the next `add` or `flush` after the
    interval (the worker flushes on its baseline rescan timer), so the logged counts add up.
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        self._interval = interval
        self._clock = clock
        self._pending: Counter = Counter()
        self._example: dict[str, str] = {}  # reason -> detail of its newest reject not yet logged
        self._last: dict[str, float] = {}

    def add(self, reject: Reject) -> None:
        """Count a reject; log its reason's count if the reason's interval is over."""
        self._pending[reject.reason] += 1
        self._example[reject.reason] = reject.detail
        self._report_if_due(reject.reason)

    def flush(self) -> None:
        """Log the held-back counts whose interval is over (a burst's tail is otherwise
        reported only by the next reject of the same reason, if one ever comes)."""
        for reason in list(self._pending):
            self._report_if_due(reason)

    def _report_if_due(self, reason: str) -> None:
        now = self._clock()
        if now - self._last.get(reason, -math.inf) >= self._interval:
            log.warning("rejected %d message(s)/event(s) as %s (dead-lettered), e.g. %s",
                        self._pending.pop(reason), reason, self._example.pop(reason))
            self._last[reason] = now


class RejectTally:
    """Rejected messages and events since the start, by reason, each reason with its most frequent
    details ("no baseline for model 'fraud'"): what the status page shows. At most `details`
    distinct details are counted per reason, so a stream of ever-different garbage cannot grow it.

    >>> tally = RejectTally()
    >>> for model in ("fraud", "fraud", "churn"):
    ...     tally.add(Reject("unknown_model", f"no baseline for model {model!r}", b""))
    >>> tally.by_reason, tally.details("unknown_model")
    (Counter({'unknown_model': 3}), [("no baseline for model 'fraud'", 2), ("no baseline for model 'churn'", 1)])
    """

    #: characters of a detail kept (an error message can quote a long input)
    DETAIL_CHARS = 200

    def __init__(self, details: int = 10):
        self.by_reason: Counter = Counter()
        self._details: dict[str, Counter] = {}
        self._max_details = details

    def add(self, reject: Reject) -> None:
        """Count one reject."""
        self.by_reason[reject.reason] += 1
        seen = self._details.setdefault(reject.reason, Counter())
        detail = reject.detail[:self.DETAIL_CHARS]
        if detail in seen or len(seen) < self._max_details:
            seen[detail] += 1

    def details(self, reason: str, n: int = 3) -> list[tuple[str, int]]:
        """The `n` most frequent details of `reason`, with their counts."""
        return self._details.get(reason, Counter()).most_common(n)


class DetectionService:
    """Everything the worker keeps: baselines, per-partition monitors, metrics."""

    def __init__(self, baselines_dir: str, metrics: Metrics, limits: Limits | None = None, config: Any = None,
                 max_checkpoint_bytes: int = worker_config.DEFAULT_MAX_CHECKPOINT_BYTES,
                 shadow_candidates: Iterable[str] = (), hold_events: int = 0):
        """`limits`: the decoder's caps; None takes them from the worker's settings
        (SKEWWATCH_MAX_MESSAGE_BYTES, ... in the environment: stream.worker.config).
        `max_checkpoint_bytes`: the largest checkpoint record (SKEWWATCH_MAX_CHECKPOINT_BYTES).
        `shadow_candidates`: the candidates of the shadow pairs (SKEWWATCH_SHADOW), whose events
        without a baseline go to the joins only, not to the dead letters.
        `hold_events`: each partition holds a model's events until it has this many
        (SKEWWATCH_HOLD_EVENTS; 0: none held): see `flush`."""
        self.directory = BaselineDirectory(baselines_dir)
        self.metrics = metrics
        self.limits = limits if limits is not None else worker_config.decoder_limits(worker_config.load())
        self.max_checkpoint_bytes = max_checkpoint_bytes
        self._config = config
        self._shadow_candidates = frozenset(shadow_candidates)
        self.hold_events = hold_events
        self._baselines: dict[str, Baseline] = {}
        self._unavailable: dict[str, str] = {}
        #: served models a file of the directory declares without serving (`BaselineDirectory.problems`)
        self._file_problems: dict[str, str] = {}
        self.partitions: dict[int, PartitionMonitors] = {}
        self._restoring: dict[int, PartitionMonitors] = {}  # partitions whose `restoring` is under way
        self.last_alerts: dict[str, dict] = {}  # model -> last alert emitted (status page)
        #: model -> (subject (`_subject`), kind) -> (wall time it was sent, the alert), newest last
        self._alerts: dict[str, dict[tuple[tuple[str, ...], str], tuple[float, dict]]] = {}
        self.alert_counts: dict[str, Counter] = {}  # model -> kind -> alerts sent since the start
        self.last_event_at: dict[str, float] = {}  # model -> wall time of the last batch with its events
        self.rejects = RejectTally()
        self._reject_log = RejectLog()
        self._directory_problem: str | None = None
        self._rescans = asyncio.Lock()  # one `rescan_off_loop` at a time: changes applied in the order found
        self._end_offsets: dict[int, int] = {}  # input partition -> the highest end offset seen
        #: partitions whose log was recreated, until their monitors checkpoint offsets of the new one
        #: partition -> the how-manieth recreation of a log noticed (`observe_end_offsets`), until its
        #: records and then its marker are written again
        self._recreated: dict[int, int] = {}
        self._recreations = 0
        #: recreated partitions whose every checkpoint record was rewritten since it was noticed:
        #: only their next position marker ends the recreation (a round begun before it wrote the
        #: old log's offsets)
        self._rewritten: set[int] = set()
        #: committed floors of the partitions whose monitors were dropped (a rebalance): the
        #: checkpoints carry them one commit late; rebuilt monitors take the newer of the two.
        #: Kept instead of writing every checkpoint again after each commit: a longer changelog
        #: to recover is a longer window in which Faust already fetches (and can lose a record).
        self._floors: dict[int, int] = {}
        self._rewrite_all = False  # a checkpoint may not have reached the broker
        self._rewrite_positions = False

    # ---- baselines -----------------------------------------------------------------------
    def rescan(self) -> list[BaselineChange]:
        """Scan the baselines directory and apply what changed to every partition's monitors
        (the files are read on the caller's thread: the worker's timer uses `rescan_off_loop`)."""
        return self._apply_changes(self.directory.scan())

    async def rescan_off_loop(self) -> list[BaselineChange]:
        """`rescan`, with the files read and parsed in a thread; only applying what changed runs
        on the event loop (a large baseline file takes seconds to parse)."""
        async with self._rescans:
            return self._apply_changes(await asyncio.to_thread(self.directory.scan))

    def _apply_changes(self, changes: list[BaselineChange]) -> list[BaselineChange]:
        if self.directory.problem != self._directory_problem:
            self._directory_problem = self.directory.problem
            if self.directory.problem:
                log.warning("%s (keeping the baselines already loaded)", self.directory.problem)
        for change in changes:
            if change.kind in ("kept", "conflict"):  # what is served stays as it is
                log.warning("baselines directory: %s", change.detail)
                continue
            old = self._baselines.get(change.model)
            if change.kind != "loaded" or old is None or old.fingerprint != change.baseline.fingerprint:
                self._alerts.pop(change.model, None)  # alerts against a baseline no longer compared with
            if change.kind == "loaded":
                self._baselines[change.model] = change.baseline
                self._unavailable.pop(change.model, None)
                self.metrics.baseline_loaded.labels(change.model).set(1)
                log.info("baseline of model %r loaded from %s (%d features)%s", change.model, change.path,
                         len(change.baseline.features), f": {change.detail}" if change.detail else "")
            else:
                self._baselines.pop(change.model, None)
                self._unavailable[change.model] = change.detail
                self.metrics.baseline_loaded.labels(change.model).set(0)
                self.metrics.forget_model(change.model)
                log.warning("model %r disabled: %s", change.model, change.detail)
            for monitors in [*self.partitions.values(), *self._restoring.values()]:
                monitors.apply(change)
        problems = self.directory.problems()
        for model in self._file_problems.keys() - problems.keys():
            self.metrics.baseline_file_problem.remove(model)
        for model in problems.keys() - self._file_problems.keys():
            self.metrics.baseline_file_problem.labels(model).set(1)
        self._file_problems = problems
        return changes

    @property
    def models(self) -> list[str]:
        return sorted(self._baselines)

    @property
    def unavailable(self) -> dict[str, str]:
        return dict(self._unavailable)

    @property
    def baseline_file_problems(self) -> dict[str, str]:
        """Served models with a file to fix (unusable, or a second file declaring them), {model: why}."""
        return dict(self._file_problems)

    # ---- partitions ----------------------------------------------------------------------
    def monitors_for(self, partition: int, checkpoints: Callable[[], Iterable[tuple[str, bytes]]]) -> PartitionMonitors:
        """The partition's monitors, built on first use and restored from `checkpoints()`
        (the (key, blob) pairs of the checkpoint table; by first use it is recovered)."""
        for _ in self.restoring(partition, checkpoints):
            pass
        return self.partitions[partition]

    def restoring(self, partition: int, checkpoints: Callable[[], Iterable[tuple[str, bytes]]]) -> Iterator[None]:
        """`monitors_for` one step at a time: a step per restored checkpoint, so that the worker
        lets its event loop run between them (a partition's hundreds of checkpoints, restored at
        once, stalled it for seconds). The partition is in `partitions` once all are restored,
        before its first record is processed; a model without a checkpoint gets its monitor at
        its first event (`ModelRouter.monitor`)."""
        if partition in self.partitions:
            return
        monitors = PartitionMonitors(partition, self._baselines.values(), self._config, self.max_checkpoint_bytes,
                                     self._shadow_candidates, self.hold_events)
        for model, detail in self._unavailable.items():
            monitors.router.disable_model(model, detail)
        mine: dict[tuple[str, tuple[int, int] | None], bytes] = {}
        self._restoring[partition] = monitors  # a rescan meanwhile applies its changes here too
        try:
            for key, blob in checkpoints():
                p, model, chunk = parse_checkpoint_key(key)
                if p == partition:
                    mine[model, chunk] = blob
            for (model, chunk), blob in mine.items():
                if model and chunk is None:
                    monitors.restore(model, blob, lambda c, m=model: mine.get((m, c)))
                    yield
        finally:
            del self._restoring[partition]
        position = mine.get(("", None))
        if position is not None:  # after the models: it raises what their checkpoints include
            monitors.restore_position(position)
        monitors.committed_floor = max(monitors.committed_floor, self._floors.pop(partition, -1))
        if partition in self._recreated:  # the checkpoints' offsets are those of the lost log
            monitors.forget_offsets()
        self.partitions[partition] = monitors

    def creating(self, monitors: PartitionMonitors, models: Iterable[str]) -> Iterator[None]:
        """Create the monitors of `models` that the partition routes but has none of yet, a step
        per monitor (see `restoring`). The worker passes a batch's message keys (producers key
        by model) before processing it: the monitors a batch needs are then not all created at
        once inside it; a model named by no key still gets its monitor at its first event."""
        for model in monitors.router.unmonitored(models):
            monitors.router.monitor(model)
            yield

    def observe_end_offsets(self, ends: dict[int, int]) -> list[int]:
        """Record the input partitions' end offsets; those that went backwards (the partitions
        whose log was recreated: a broker that lost its data, an unclean leader election)
        no longer skip anything as already counted, and are returned."""
        recreated = sorted(p for p, end in ends.items() if end < self._end_offsets.get(p, 0))
        for p, end in ends.items():
            self._end_offsets[p] = end if p in recreated else max(end, self._end_offsets.get(p, 0))
        for p in recreated:
            log.warning("partition %d: its end offset went back to %d: the topic's log was recreated (the broker "
                        "lost its records?); counting every record from its start, skipping nothing", p, ends[p])
            self._recreations += 1
            self._recreated[p] = self._recreations
            self._rewritten.discard(p)
            if p in self.partitions:
                self.partitions[p].forget_offsets()
        return recreated

    def committable(self) -> dict[int, int]:
        """{partition: offset to commit} once the newest checkpoints are on the broker: each
        partition's next offset after what its checkpoint includes, where that moved."""
        offsets = {p: monitors.committable() for p, monitors in self.partitions.items()}
        return {p: offset for p, offset in offsets.items() if offset is not None}

    def offsets_committed(self) -> None:
        """The `committable` offsets were committed right after the newest checkpoints."""
        for monitors in self.partitions.values():
            monitors.offsets_committed()

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the monitors of partitions no longer assigned here, keeping their committed floors."""
        for p in partitions:
            monitors = self.partitions.pop(p, None)
            if monitors is not None:
                self._floors[p] = monitors.committed_floor

    def rewrite_checkpoints(self) -> None:
        """A checkpoint written earlier did not reach the broker: the next call of `checkpoints`
        writes every monitor's, changed or not."""
        self._rewrite_all = True

    def checkpoints(self, partitions: Iterable[int] | None = None) -> dict[str, bytes | None]:
        """{table key: record, or None to delete it}, in the order to write them, for the monitors
        changed since their last checkpoint (all of them after `rewrite_checkpoints`). Once the
        broker has them, `positions` are written."""
        return dict(self.checkpointing(partitions))

    def checkpointing(self, partitions: Iterable[int] | None = None) -> Iterator[tuple[str, bytes | None]]:
        """`checkpoints`, a record at a time (the worker lets its event loop run between them:
        hundreds of models' checkpoints at once stalled it for seconds); no event may reach the
        monitors until it is exhausted."""
        everything, self._rewrite_all = self._rewrite_all, False
        self._rewrite_positions = everything
        for p in sorted(self.partitions if partitions is None else partitions):
            monitors = self.partitions.get(p)
            if monitors is not None:
                # after a recreated log, every checkpoint of p holds the old log's offsets: rewrite all
                # (and its position marker: `positions` forgets p once that is written too)
                noticed = self._recreated.get(p)
                yield from monitors.checkpointing(everything or noticed is not None)
                if noticed is not None and self._recreated.get(p) == noticed:  # not noticed again meanwhile
                    self._rewritten.add(p)

    def positions(self, partitions: Iterable[int] | None = None) -> dict[str, bytes]:
        """{table key: blob}: the position markers of the partitions that moved since their last,
        to write once the broker confirmed the `checkpoints` written before (see
        `PartitionMonitors.position`)."""
        everything, self._rewrite_positions = self._rewrite_positions, False
        out = {}
        for p in sorted(self.partitions if partitions is None else partitions):
            monitors = self.partitions.get(p)
            # a recreated log's marker is written even where its offset did not move (-1 before the
            # new log's first record): the old log's marker would otherwise skip the new log's records
            blob = monitors.position(everything or p in self._recreated) if monitors is not None else None
            if p in self._rewritten:
                del self._recreated[p]
                self._rewritten.discard(p)
            if blob is not None:
                out[position_key(p)] = blob
        return out

    # ---- processing ----------------------------------------------------------------------
    def process(self, monitors: PartitionMonitors, records: list[Record]) -> tuple[list[Alert], list[dict]]:
        """Alerts and dead-letter records (JSON-ready) for a batch of one partition's records.
        The rejects are counted and logged (`dead_letter`); the alerts are the caller's to emit."""
        records = monitors.unseen(records)
        return self._outputs(monitors, monitors.process(records, self.limits))

    def flush(self, partitions: Iterable[int] | None = None, older_than: float | None = None
              ) -> tuple[list[Alert], list[dict]]:
        """Alerts and dead-letter records of feeding the partitions' held events (all of them, or
        those of the models whose oldest held event came more than `older_than` seconds ago): the
        worker flushes everything before each checkpoint, and on a timer so that no event waits
        longer than SKEWWATCH_HOLD_SECONDS."""
        alerts: list[Alert] = []
        dead_letters: list[dict] = []
        for found, letters in self.flushing(partitions, older_than):
            alerts += found
            dead_letters += letters
        return alerts, dead_letters

    def flushing(self, partitions: Iterable[int] | None = None, older_than: float | None = None
                 ) -> Iterator[tuple[list[Alert], list[dict]]]:
        """`flush`, a model at a time: the worker lets its event loop run between them (a timer's
        flush of 500 models' held events at once held it for the models' monitor calls in a row)."""
        for p in sorted(self.partitions if partitions is None else partitions):
            monitors = self.partitions.get(p)
            for model in [] if monitors is None else monitors.waiting(older_than):
                yield self._outputs(monitors, monitors.flush(models=[model]))

    def held(self) -> int:
        """Events held (not yet fed) over every partition."""
        return sum(len(m.hold) for m in self.partitions.values() if m.hold is not None)

    def _outputs(self, monitors: PartitionMonitors, result: Processed) -> tuple[list[Alert], list[dict]]:
        """The alerts and dead-letter records of what `monitors` fed; the events counted."""
        now = time.time()
        for model, n in result.events_by_model.items():
            self.metrics.events.labels(model).inc(n)
            self.last_event_at[model] = now
        dead_letters = []
        for offset, reject in result.rejects:
            source = {"topic": monitors.topic, "partition": monitors.partition, "offset": offset}
            dead_letters.append(self.dead_letter(reject, source))
        return result.alerts, dead_letters

    def alert_sent(self, record: dict) -> None:
        """Keep an alert sent to the alert topic (`Alert.to_dict()`) for the status pages: as its
        model's last alert and as the newest of its kind about its subject (`alerted`)."""
        model = record["model"]
        self.last_alerts[model] = record
        if not record.get("update"):  # an update record re-diagnoses an alert already counted (as in metrics)
            self.alert_counts.setdefault(model, Counter())[record["kind"]] += 1
        kept = self._alerts.setdefault(model, {})
        key = (_subject(record), record["kind"])
        kept.pop(key, None)  # re-inserted last: the dict stays in the order alerts were sent
        kept[key] = (time.time(), record)
        if len(kept) > KEPT_ALERTS:
            del kept[next(iter(kept))]

    def alerted(self, model: str) -> list[list[tuple[float | None, dict]]]:
        """The model's alerted subjects (a feature, or a model-wide test), the newest alert first:
        per subject, its alerts (the newest of each kind) as (wall time sent, alert), newest first.
        First the alerts sent since the start, in full; then the features whose last alert only the
        monitors' restored checkpoints know, in brief (alert_id, kind, detector, events_seen,
        severity, feature; time None). Costs the alerted features, not all features."""
        kept = self._alerts.get(model, {})
        subjects: dict[tuple[str, ...], list[tuple[float | None, dict]]] = {}
        for key in reversed(kept):
            subjects.setdefault(key[0], []).append(kept[key])
        restored: dict[str, dict] = {}
        for monitors in self.partitions.values():
            monitor = monitors.router.monitors().get(model)
            briefs = monitor.last_alerts() if monitor is not None else {}
            for feature, brief in briefs.items():
                newer = brief["events_seen"] > restored.get(feature, {}).get("events_seen", -1)
                if newer and ("feature", feature) not in subjects:
                    restored[feature] = {**brief, "model": model, "feature": feature}
        return [*subjects.values(),
                *([(None, b)] for b in sorted(restored.values(), key=lambda b: -b["events_seen"]))]

    def events_seen(self, model: str) -> int:
        """The model's events counted by its monitors (restored ones included), over all partitions here."""
        total = 0
        for monitors in self.partitions.values():
            monitor = monitors.router.monitors().get(model)
            total += monitor.events_seen if monitor is not None else 0
        return total

    def snapshots(self) -> dict[str, dict]:
        """Per model, the snapshot of its busiest monitor (its home partition's)."""
        return {model: monitor.snapshot() for model, monitor in _busiest_monitors(self.partitions).items()}

    def update_gauges(self, budget: float = REFRESH_BUDGET) -> int:
        """Refresh the per-model gauges (before a /metrics scrape): from each model's busiest monitor,
        only those with events since their last refresh, for `budget` seconds (`Metrics.refresh`:
        at least one model); returns how many models were refreshed."""
        return self.metrics.refresh(_busiest_monitors(self.partitions).values(), budget)

    def dead_letter(self, reject: Reject, source: dict[str, Any]) -> dict:
        """Count a rejected message or event, log it (at most a line per reason per 10 s), and
        return its dead-letter record.

        Parameters
        ----------
        reject : Reject
            The reason, a detail and the original bytes.
        source : dict
            {"topic", "partition", "offset"} of the message it came from.

        Returns
        -------
        dict
            The JSON-ready record (detectors.events.dead_letter_record) for the dead-letter topic.
        """
        self.metrics.rejected.labels(reject.reason).inc()
        self.rejects.add(reject)
        self._reject_log.add(reject)
        return dead_letter_record(reject, source)

    def report_rejects(self) -> None:
        """Log the reject counts held back by the rate limit once their interval is over."""
        self._reject_log.flush()

    def baseline(self, model: str) -> Baseline | None:
        """The loaded baseline of `model`; None when it has none (unknown, broken or deleted)."""
        return self._baselines.get(model)
