"""`skewwatch replay`: the monitors over a file of events, alerts as JSON lines on stdout
(`--pretty`: as `skewwatch alerts` prints them, for a person). Events come as JSONL or msgpack, or
as a table of predictions (CSV, Parquet; one row each, read with `baseline build`'s column flags:
`stream.commands.tables`).

Same code path as the worker (detectors.processing: JSONL lines through `process_messages`, whose
columnar decoder reads plain JSON events into the monitors' columns without making their dicts, and
the rest through decode_message), so the same events give the same alerts. Input problems never
crash it: rejected messages are counted by reason (and written to --dead-letter FILE), missing and
invalid values inside accepted events are counted per feature in the summary, an event a monitor
raises on is dead-lettered as monitor_error.
The events of a model no baseline was loaded for are named in the summary, by model.

Exit status: 0 when events were monitored; 1 when none was (an empty input, every message
rejected, or every event for a model without a baseline: never a silent all-clear); 2 when its own
arguments are wrong (a table that cannot be read as events among them: a named column missing, no
model for its rows, not a table); 141 (128 + SIGPIPE, as a Unix tool killed by the signal) when the reader of
the alerts went away (`| head -1`): it stops there, quietly, and the run is not complete.

On a terminal, a status line on stderr shows the progress of a long run (events/s, and the share
read with the time left when the input is regular files); see `stream.commands.progress`.

`--feature-log FILE` and `--labels FILE` (JSONL, records as on the join topics) are joined with
the events by request_id (detectors.joins), in ts order: a record with a `ts` is fed just before
the first event at or after its time; a record without one waits for the end of the events (and so do the
records behind it in its file). The join counts (matched, duplicates, expired or still waiting
unmatched) are in the summary.

`--shadow production=candidate` (repeatable) joins a candidate model's prediction events with
production's in the same files by request_id (detectors.joins.shadow): `shadow` alerts, and the
pair's agreement (and, with `--labels`, both models' accuracy or MAE) in the summary. The candidate
needs no baseline (without one its events go to the shadow join only, neither monitored nor rejected).
"""
from __future__ import annotations

import argparse
import math
import os
import stat
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from itertools import islice
from pathlib import Path
from typing import IO

import msgpack
import orjson

from baselines.profile import Baseline, BaselineError
from detectors.alerts import Alert
from detectors.events import Limits, Reject, all_usable, dead_letter_record, decode_message, events_from_value, model_of
from detectors.fmt import number, percent, printable
from detectors.joins import JoinConfig, JoinMonitor, decode_join_records, parse_shadow_pairs, record_time
from detectors.model import MonitorConfig
from detectors.processing import MONITOR_CHUNK, MONITOR_ERROR, process_events, process_messages
from detectors.routing import ModelRouter
from stream.commands.progress import StatusLine, status_line
from stream.commands.stdout import reader_went_away
from stream.commands.tables import (
    TableColumns,
    TableError,
    add_table_arguments,
    events_from_frame,
    table_columns,
    table_format,
    table_frames,
)
from stream.gc_policy import relax_gc

__all__ = ["FORMATS", "MAX_MODELS_COUNTED", "MAX_MODELS_NAMED", "AlertCallback", "JoinFeed",
           "Replay", "UsageError", "add_shadow_arguments", "check_format", "configure", "input_size", "load_inputs",
           "run", "shadow_arguments", "shadow_summary", "unmonitored_sentence"]

_MSGPACK_SUFFIXES = (".msgpack", ".mpk", ".mp")
#: bytes read at a time; parsed at once, so small: 64 KiB of lines (~50 events) parsed and monitored soon after
#: ran replay ~20% faster than 1 MiB (their objects are still in cache when the batch reads them)
_READ_BLOCK = 1 << 16
#: decoded events per monitor batch, by default (--batch-size)
_EVENT_BATCH = 500
#: msgpack messages read at a time (the common chunk is decoded and checked at C level)
_MSGPACK_CHUNK = 64
#: models named when events are for models without a baseline (the most frequent; the rest are counted)
MAX_MODELS_NAMED = 5
#: distinct models counted at most (a stream of made-up names must not grow memory): the events of
#: the others are counted together, under None
MAX_MODELS_COUNTED = 1000
#: values of --format: "auto" by the file name (tables.table_format, .msgpack), else by the first byte
FORMATS = ("auto", "jsonl", "msgpack", "csv", "parquet")
#: the router's reasons for an event of a model it has no monitor for
_NO_MONITOR = frozenset({"unknown_model", "baseline_unavailable"})


def configure(p: argparse.ArgumentParser) -> None:
    """Add the command's arguments to `p`, its subparser (`stream.commands.cli`)."""
    p.add_argument("events", nargs="+", metavar="EVENTS",
                   help="JSONL file (one message per line: an event or a list of events), a msgpack "
                        "stream (.msgpack: concatenated msgpack messages), or a table of predictions "
                        "(.csv, .tsv, .parquet: one row each, see the table flags); '-' reads JSONL from stdin")
    p.add_argument("--baseline", "-b", action="append", required=True, metavar="B",
                   help="a baseline file; repeat for several models (events are routed by their 'model')")
    p.add_argument("--dead-letter", metavar="FILE",
                   help="write every rejected message as a JSON line with its reason and original bytes")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="input format (default: by extension, else by the first byte)")
    p.add_argument("--pretty", action="store_true",
                   help="print each alert for a person, as `skewwatch alerts` does, instead of a JSON line")
    # decoded events: 500, a batch's events are still in cache when the monitors read them and when
    # they are freed (replay of 300k 50-feature events: ~140k events/s at 500, ~115-130k at 1000);
    # JSONL lines read into columns: MONITOR_CHUNK (2000), no dicts to keep in cache, and the per-call
    # costs (the rollback copy of the monitors' state) spread over more events
    p.add_argument("--batch-size", type=int, default=None,
                   help="events per monitor batch (JSONL: lines); alerts do not depend on it (default 500 "
                        f"events, {MONITOR_CHUNK} JSONL lines)")
    p.add_argument("--max-message-bytes", type=int, default=Limits.max_message_bytes,
                   help=f"larger messages are rejected as 'oversized' (default {Limits.max_message_bytes})")
    p.add_argument("--include-examples", action="store_true",
                   help="quote individual values in alerts (invalid raw values, served vs offline values of "
                        "parity examples); off by default: production features may be personal data")
    p.add_argument("--feature-log", metavar="FILE",
                   help="JSONL of the offline pipeline's recomputed features {request_id, model, features}: "
                        "joined with the served events by request_id -> skew alerts")
    p.add_argument("--labels", metavar="FILE",
                   help="JSONL of delayed labels {request_id, label}: joined with the events' predictions "
                        "-> performance alerts against the baseline's validation metric")
    add_shadow_arguments(p)
    p.add_argument("--join-ttl", type=float, default=JoinConfig.ttl,
                   help=f"seconds of event time a record waits for its join partner (default {JoinConfig.ttl:g})")
    p.add_argument("--join-max-entries", type=int, default=JoinConfig.max_entries,
                   help=f"records waiting per join at most, oldest dropped first (default {JoinConfig.max_entries})")
    add_table_arguments(p)


def add_shadow_arguments(p: argparse.ArgumentParser) -> None:
    """The shadow flags of `replay` and `report`: --shadow, --shadow-window, --shadow-min-agreement."""
    p.add_argument("--shadow", action="append", metavar="PRODUCTION=CANDIDATE",
                   help="compare a candidate model's prediction events with production's on the same requests "
                        "(by request_id) -> shadow alerts and the pair's agreement in the summary; repeatable, "
                        "or comma-separated pairs")
    p.add_argument("--shadow-window", type=int, default=JoinConfig.shadow_window,
                   help=f"joined requests per shadow window (default {JoinConfig.shadow_window})")
    p.add_argument("--shadow-min-agreement", type=float, default=None, metavar="SHARE",
                   help="the agreement a candidate must keep, tested from the first window (default: the first "
                        "window's agreement less 2 points and its sampling error, tested from the second)")


def shadow_arguments(args: argparse.Namespace) -> tuple[tuple[tuple[str, str], ...], dict]:
    """The shadow pairs and their `JoinConfig` settings from the flags of `add_shadow_arguments`.

    Raises
    ------
    UsageError
        A pair is malformed, the window is not positive or the minimum agreement not in (0, 1).
    """
    if args.shadow_window < 1:
        raise UsageError("--shadow-window must be positive")
    if args.shadow_min_agreement is not None and not 0 < args.shadow_min_agreement < 1:
        raise UsageError("--shadow-min-agreement must be between 0 and 1 (exclusive)")
    try:
        pairs = parse_shadow_pairs(args.shadow or [])
    except ValueError as e:
        raise UsageError(f"--shadow: {e}") from None
    return pairs, {"shadow_window": args.shadow_window, "shadow_min_agreement": args.shadow_min_agreement}


def run(args: argparse.Namespace) -> int:
    """Run the command with its parsed arguments; returns the exit status (see the module docstring)."""
    if (args.batch_size is not None and args.batch_size < 1) or args.max_message_bytes < 1:
        return _usage_error("--batch-size and --max-message-bytes must be positive")
    if not args.join_ttl > 0 or args.join_max_entries < 1:
        return _usage_error("--join-ttl and --join-max-entries must be positive")
    try:
        shadow_pairs, shadow_settings = shadow_arguments(args)
        baselines = load_inputs(args.baseline, args.events)
        check_format(args.format, args.events)
    except UsageError as e:
        return _usage_error(str(e))
    relax_gc()
    join_files = [(kind, path) for kind, path in (("feature_log", args.feature_log), ("labels", args.labels)) if path]
    for _, path in join_files:
        if not Path(path).is_file():
            return _usage_error(f"{path}: no such file")

    try:
        dead_letters = open(args.dead_letter, "wb") if args.dead_letter else None
    except OSError as e:
        return _usage_error(f"{args.dead_letter}: cannot write: {e.strerror}")

    try:
        return _replay(args, baselines, join_files, dead_letters, shadow_pairs, shadow_settings)
    except BrokenPipeError:
        return reader_went_away()
    except TableError as e:
        return _usage_error(str(e))


def _replay(args: argparse.Namespace, baselines: dict[str, Baseline], join_files: list[tuple[str, str]],
            dead_letters: IO[bytes] | None, shadow_pairs: tuple[tuple[str, str], ...], shadow_settings: dict) -> int:
    """The command once its arguments are checked: the exit status."""
    limits = Limits(max_message_bytes=args.max_message_bytes)
    router = ModelRouter(baselines.values(), MonitorConfig(include_examples=args.include_examples),
                         [candidate for _, candidate in shadow_pairs])
    on_alerts = _pretty_alerts(sys.stdout) if args.pretty else _alert_lines(sys.stdout.buffer)
    replay = Replay(router, limits, args.batch_size or _EVENT_BATCH, on_alerts, dead_letters, table=table_columns(args))
    replay.columnar = not (join_files or shadow_pairs)  # the joins take the events' dicts
    replay.line_batch_size = args.batch_size or MONITOR_CHUNK
    replay.progress = status_line("replay", input_size(args.events))
    opened = []
    if join_files or shadow_pairs:
        opened = [open(path, "rb") for _, path in join_files]
        joins = JoinMonitor(baselines.get, JoinConfig(ttl=args.join_ttl, max_entries=args.join_max_entries,
                                                        include_examples=args.include_examples, **shadow_settings),
                            parity=bool(args.feature_log), labels=bool(args.labels), shadow=shadow_pairs)
        replay.joins = JoinFeed(joins, [(kind, path, f) for (kind, path), f in zip(join_files, opened)], replay)
    started = time.perf_counter()
    try:
        for path in args.events:
            replay.run_file(path, args.format)
        replay.flush()
        if replay.joins is not None:
            replay.emit(replay.joins.release(math.inf))
    finally:
        if replay.progress is not None:
            replay.progress.clear()
        for f in opened:
            f.close()
        if replay.dead_letters is not None:
            replay.dead_letters.close()
    replay.print_summary(time.perf_counter() - started, sys.stderr)
    problem = replay.nothing_monitored()
    if problem is not None:
        print(f"skewwatch replay: error: {problem}", file=sys.stderr)
        return 1
    return 0


class UsageError(ValueError):
    """The command's own arguments are wrong (exit status 2), as opposed to bad input data."""


def load_inputs(baseline_paths: list[str], event_paths: list[str]) -> dict[str, Baseline]:
    """The baselines by model, after checking the event files exist (shared with `report`).

    Parameters
    ----------
    baseline_paths
        The baseline files, at most one per model.
    event_paths
        The event files; '-' (stdin) is not checked.

    Returns
    -------
    dict
        The loaded `Baseline` of each model, by model name.

    Raises
    ------
    UsageError
        A baseline cannot be loaded, two are for the same model, or an event file does not exist.
    """
    baselines: dict[str, Baseline] = {}
    for path in baseline_paths:
        try:
            b = Baseline.load(path)
        except BaselineError as e:
            raise UsageError(str(e)) from None
        if b.model in baselines:
            raise UsageError(f"{path}: a second baseline for model {b.model!r}")
        baselines[b.model] = b
    for path in event_paths:
        if path != "-" and not Path(path).is_file():
            raise UsageError(f"{path}: no such file")
    return baselines


def check_format(fmt: str, event_paths: list[str]) -> None:
    """UsageError if a table format is asked of standard input (a table is read from a file)."""
    if fmt in ("csv", "parquet") and "-" in event_paths:
        raise UsageError(f"--format {fmt}: a table is read from a file, not from standard input")


def input_size(paths: Sequence[str]) -> int | None:
    """The bytes of the event files together, if all are regular files (else None: unknown).

    >>> input_size(["-"]) is None
    True
    """
    sizes = []
    for path in paths:
        try:
            st = os.stat(path) if path != "-" else None
        except OSError:
            return None
        if st is None or not stat.S_ISREG(st.st_mode):
            return None
        sizes.append(st.st_size)
    return sum(sizes)


def _usage_error(msg: str) -> int:
    print(f"skewwatch replay: error: {msg}", file=sys.stderr)
    return 2


#: what a `Replay` hands each batch's alerts to: on_alerts(alerts, events), where `events` are the
#: batch's events the monitors took (none for the joins' last alerts, released at the end)
AlertCallback = Callable[[list[Alert], Sequence[dict]], None]


def _alert_lines(out: IO[bytes]) -> AlertCallback:
    """The command's `AlertCallback`: each alert as a JSON line on `out`, flushed after every batch."""
    def write(alerts: list[Alert], events: Sequence[dict]) -> None:
        for a in alerts:
            out.write(orjson.dumps(a.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        out.flush()
    return write


def _pretty_alerts(out: IO[str]) -> AlertCallback:
    """The `--pretty` `AlertCallback`: each alert as `skewwatch alerts` prints it (`format_alert`),
    a blank line after each, flushed after every batch."""
    from stream.commands.alerts import format_alert

    def write(alerts: list[Alert], events: Sequence[dict]) -> None:
        for a in alerts:
            out.write(format_alert(a.to_dict()) + "\n\n")
        out.flush()
    return write


class Replay:
    """Reads event files, processes them in batches of `batch_size` events (detectors.processing),
    hands the alerts to `on_alerts` and writes the dead letters to `dead_letters`.

    Parameters
    ----------
    router
        The monitors, one per model with a baseline.
    limits
        What a message may hold (`--max-message-bytes`).
    batch_size
        Events per monitor batch; the alerts do not depend on it.
    on_alerts
        Called with each batch's alerts and the events the monitors took (`AlertCallback`).
    dead_letters
        Where each rejected message is written as a JSON line with its reason, if anywhere.
    table
        How the rows of a table file become events (`stream.commands.tables`).
    """

    def __init__(self, router: ModelRouter, limits: Limits, batch_size: int, on_alerts: AlertCallback,
                 dead_letters: IO[bytes] | None = None, table: TableColumns | None = None):
        self.router = router
        self.table = table or TableColumns()
        self.limits = limits
        self.batch_size = batch_size
        self.on_alerts = on_alerts
        self.dead_letters = dead_letters
        self.pending: list[dict] = []
        #: JSONL lines read into the monitors' columns (`detectors.processing.process_messages`, no
        #: event dicts) rather than decoded here; then `on_alerts` gets no events
        self.columnar = False
        #: lines per call of the columnar decoder
        self.line_batch_size = batch_size
        self._pending_lines: list[bytes] = []
        self._pending_numbers: list[int] = []  # their line numbers
        self._pending_path = ""  # and their file
        self.events = 0
        self.rejected: Counter[str] = Counter()
        #: events rejected because no baseline is loaded for their model, by model (see MAX_MODELS_COUNTED)
        self.unmonitored_models: Counter[str | None] = Counter()
        self.alerts: Counter[str] = Counter()
        self.joins: JoinFeed | None = None
        #: the status line on a terminal, or None
        self.progress: StatusLine | None = None
        self._file: IO[bytes] | None = None  # the file being read
        self._table_bytes: int | None = None  # or how far the table being read is read
        self._bytes_done = 0  # the bytes of the files read before it

    def run_file(self, path: str, fmt: str) -> None:
        """Read and monitor the events of one file ('-': stdin); the last partial batch stays pending
        (`flush`).

        Parameters
        ----------
        path
            A JSONL file, a msgpack stream or a table (CSV, Parquet).
        fmt
            One of `FORMATS`; "auto": by the file's extension, else by its first byte.
        """
        table = fmt if fmt in ("csv", "parquet") else table_format(path) if fmt == "auto" and path != "-" else None
        if table is not None:
            self._run_table(path, table)
            return
        f = sys.stdin.buffer if path == "-" else open(path, "rb")
        self._file = f
        try:
            if fmt == "auto":
                fmt = "msgpack" if path.endswith(_MSGPACK_SUFFIXES) else _sniff(f)
            if fmt == "msgpack":
                self._run_msgpack(path, f)
            elif self.columnar:
                self._run_jsonl_columnar(path, f)
            else:
                self._run_jsonl(path, f)
        finally:
            if f is not sys.stdin.buffer:
                self._bytes_done += os.fstat(f.fileno()).st_size
                f.close()
            self._file = None

    def _run_table(self, path: str, fmt: str) -> None:
        baselines = {m: self.router.baseline(m) for m in self.router.models}
        row = 1
        try:
            for frame, bytes_read in table_frames(path, fmt, baselines, self.table):
                self._table_bytes = bytes_read
                self.run_values(events_from_frame(frame, baselines, self.table, text=fmt == "csv"),
                                {"file": path}, "row", row)
                row += len(frame)
        finally:
            self._table_bytes = None
            self._bytes_done += os.stat(path).st_size

    def run_values(self, values: list, source: dict, unit: str = "message", first: int = 0) -> None:
        """Monitor already parsed messages (each an event or a list of events: a table's rows, a
        notebook's events), as a file's: the rejected ones counted and dead-lettered with `source`
        and their number; the last partial batch stays pending (`flush`).

        Parameters
        ----------
        values
            The messages.
        source
            Where they came from, in their dead letters (with `unit`: their number).
        unit, first
            What a value is called in its dead letter ("row", "message") and the number of the first.
        """
        if all_usable(values, self.limits):
            self._add(values)
            return
        for i, obj in enumerate(values, first):
            events, rejects = events_from_value(obj, None, self.limits)
            if rejects:
                self._reject(rejects, {**source, unit: i})
            self._add(events)

    def _run_jsonl(self, path: str, f: IO[bytes]) -> None:
        # a block of lines that are all single usable events (the common case) is decoded and
        # checked at C level; any other block is read line by line, for its rejects' reasons
        loads = orjson.loads
        for first, lines in _line_blocks(f, self.limits.max_message_bytes):
            try:
                events = list(map(loads, lines))
            except (orjson.JSONDecodeError, TypeError):  # a bad or blank line, or an oversized one (None)
                events = None
            if events is not None and all_usable(events, self.limits):
                self._add(events)
                continue
            for lineno, line in enumerate(lines, first):
                if line is None:
                    self._reject([Reject("oversized", f"line longer than {self.limits.max_message_bytes} bytes", b"")],
                                 {"file": path, "line": lineno})
                    continue
                if not line.strip():
                    continue
                events, rejects = decode_message(line, self.limits)
                if rejects:
                    self._reject(rejects, {"file": path, "line": lineno})
                self._add(events)

    def _run_jsonl_columnar(self, path: str, f: IO[bytes]) -> None:
        # the lines as they are, in batches of `line_batch_size` lines: decoded at C level into the
        # columns (the plain events) or by decode_message (the rest, for their rejects' reasons)
        if self.pending:
            self.flush()
        self._flush_lines()
        self._pending_path = path
        for first, lines in _line_blocks(f, self.limits.max_message_bytes):
            if None in lines or b"" in lines:  # blank lines are skipped, oversized ones rejected in order
                for lineno, line in enumerate(lines, first):
                    if line is None:
                        self._flush_lines()
                        self._reject([Reject("oversized", f"line longer than {self.limits.max_message_bytes} bytes",
                                             b"")], {"file": path, "line": lineno})
                    elif line:
                        self._pending_lines.append(line)
                        self._pending_numbers.append(lineno)
            else:
                self._pending_lines.extend(lines)
                self._pending_numbers.extend(range(first, first + len(lines)))
            if len(self._pending_lines) >= self.line_batch_size:
                self._flush_lines(full_only=True)
            progress = self.progress
            if progress is not None and progress.due():
                progress.update(self.events + len(self._pending_lines) + sum(self.rejected.values()),
                                self._bytes_read())
        self._flush_lines()

    def _flush_lines(self, full_only: bool = False) -> None:
        """Monitor the pending lines in batches of `line_batch_size`; with full_only, a last partial
        batch stays pending."""
        lines, numbers, size = self._pending_lines, self._pending_numbers, self.line_batch_size
        end = len(lines) - len(lines) % size if full_only else len(lines)
        self._pending_lines, self._pending_numbers = lines[end:], numbers[end:]
        for i in range(0, end, size):
            self._monitor_lines(lines[i:i + size], numbers[i:i + size])

    def _monitor_lines(self, lines: list[bytes], numbers: list[int]) -> None:
        alerts, rejects, by_model = process_messages(self.router, lines, self.limits)
        monitored = sum(by_model.values())
        for i, r in rejects:
            if r.reason in _NO_MONITOR or r.reason == MONITOR_ERROR:  # as `_monitor` has them
                if r.reason in _NO_MONITOR:
                    self._count_unmonitored([orjson.loads(r.raw)["model"]])
                self._reject([r], {"batch_end_event": self.events + monitored})
            elif r.reason != "not_decodable" or lines[i].strip():  # a line of only spaces is a blank one
                self._reject([r], {"file": self._pending_path, "line": numbers[i]})
        self.events += monitored
        self.emit(alerts)

    def _run_msgpack(self, path: str, f: IO[bytes]) -> None:
        unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False, max_buffer_size=self.limits.max_message_bytes)
        index = 0
        while True:
            chunk: list = []
            try:
                chunk.extend(islice(unpacker, _MSGPACK_CHUNK))  # keeps what it read before an error
                error = None
            except Exception as e:  # noqa: BLE001 - a corrupt stream raises many unrelated types
                error = e
            if all_usable(chunk, self.limits):
                self._add(chunk)
            else:
                for i, obj in enumerate(chunk, index):
                    events, rejects = events_from_value(obj, None, self.limits)
                    if rejects:
                        self._reject(rejects, {"file": path, "message": i})
                    self._add(events)
            index += len(chunk)
            if error is not None:  # a corrupt stream cannot be resynchronised: count it and stop this file
                why = f"corrupt msgpack stream after message {index}: {type(error).__name__}"
                self._reject([Reject("not_decodable", why, b"")], {"file": path, "message": index})
                return
            if len(chunk) < _MSGPACK_CHUNK:  # the end of the stream (a truncated last message is not one)
                return

    def _add(self, events: list[dict]) -> None:
        if self._pending_lines:
            self._flush_lines()
        self.pending.extend(events)
        if len(self.pending) >= self.batch_size:
            self.flush(full_only=True)
        progress = self.progress
        if progress is not None and progress.due():
            progress.update(self.events + len(self.pending) + sum(self.rejected.values()), self._bytes_read())

    def _bytes_read(self) -> int | None:
        """Bytes read of the input so far (None when reading stdin)."""
        f = self._file
        if f is None:
            return None if self._table_bytes is None else self._bytes_done + self._table_bytes
        if f is sys.stdin.buffer:
            return None
        return self._bytes_done + f.tell()

    def flush(self, full_only: bool = False) -> None:
        """Monitor the pending events in batches of `batch_size`; with full_only, a last partial
        batch stays pending."""
        if not full_only:
            self._flush_lines()
        pending, size = self.pending, self.batch_size
        end = len(pending) - len(pending) % size if full_only else len(pending)
        self.pending = pending[end:]
        for i in range(0, end, size):
            self._monitor(pending[i:i + size])

    def _monitor(self, batch: list[dict]) -> None:
        alerts, rejects, by_model = process_events(self.router, batch)
        monitored = batch
        if rejects:
            rejected = {i for i, _ in rejects}
            monitored = [ev for i, ev in enumerate(batch) if i not in rejected]
            self._count_unmonitored(model_of(batch[i]) for i, r in rejects if r.reason in _NO_MONITOR)
            self._reject([r for _, r in rejects], {"batch_end_event": self.events + len(monitored)})
        self.events += len(monitored)
        if self.joins is not None:
            alerts = alerts + self.joins.add_events(batch)
        self.emit(alerts, monitored)

    def _count_unmonitored(self, models: Iterable[str]) -> None:
        counts = self.unmonitored_models
        for model in models:
            counts[model if model in counts or len(counts) < MAX_MODELS_COUNTED else None] += 1

    def emit(self, alerts: list[Alert], events: Sequence[dict] = ()) -> None:
        """Count the alerts and hand them to `on_alerts` (`events`: the monitored events they came from)."""
        for a in alerts:
            self.alerts[a.kind] += 1
        self.on_alerts(alerts, events)

    def _reject(self, rejects: list[Reject], source: dict) -> None:
        for r in rejects:
            self.rejected[r.reason] += 1
            if self.dead_letters is not None:
                self.dead_letters.write(orjson.dumps(dead_letter_record(r, source)) + b"\n")

    def print_summary(self, seconds: float, err: IO[str]) -> None:
        """Print the run's counts on `err`: events and rate over `seconds`, rejects, events of models
        without a baseline, alerts, joins, and the missing or invalid values per model."""
        rate = self.events / seconds if seconds > 0 else 0.0
        print(f"replay: {self.events} events in {seconds:.2f} s ({rate:,.0f} events/s)", file=err)
        print(f"replay: rejected {sum(self.rejected.values())}" + _counts(self.rejected), file=err)
        if self.unmonitored_models:
            print(f"replay: {unmonitored_sentence(self.unmonitored_models, self.router.models)}", file=err)
        print(f"replay: alerts {sum(self.alerts.values())}" + _counts(self.alerts), file=err)
        if self.joins is not None:
            for name, counts in self.joins.joins.counts.items():
                print(f"replay: join {name}: " + ", ".join(f"{k} {v}" for k, v in counts.items()), file=err)
            shadow = self.joins.joins.shadow
            for line in shadow_summary(shadow.snapshot()) if shadow is not None else ():
                print(f"replay: {line}", file=err)
        for model, monitor in sorted(self.router.monitors().items()):
            counts = monitor.value_counts()
            bad = [f"{printable(name)} (" + ", ".join(f"{k} {v:,}" for k, v in sorted(c.items()) if v) + ")"
                   for name, c in counts.items()]
            if bad:
                print(f"replay: {printable(model)}: missing or invalid values: " + "; ".join(bad), file=err)

    def nothing_monitored(self) -> str | None:
        """Why no event was monitored, as one sentence (the command then exits 1), or None if some were."""
        if self.events:
            return None
        if self.unmonitored_models:
            why = unmonitored_sentence(self.unmonitored_models, self.router.models)
        elif self.rejected:
            why = f"all of the input was rejected ({_counts(self.rejected)[2:]})"
        else:
            why = "the input holds no events"
        return f"no event was monitored: {why}"


def unmonitored_sentence(models: Counter[str | None], loaded: Sequence[str]) -> str:
    """One sentence on the events of models without a baseline: their models, the most frequent
    `MAX_MODELS_NAMED` with their counts, against the models whose baselines are loaded.

    Parameters
    ----------
    models
        Events by model (None: the events of models beyond `MAX_MODELS_COUNTED`).
    loaded
        The models whose baselines are loaded.

    >>> unmonitored_sentence(Counter({"fraud": 60000, "churn": 12}), ["credit"])
    "60,012 events are for models without a baseline: 'fraud' (60,000), 'churn' (12); baselines loaded: 'credit'"
    """
    counted = Counter({model: n for model, n in models.items() if model is not None})
    named = counted.most_common(MAX_MODELS_NAMED)
    seen = ", ".join(f"{_quoted(model)} ({n:,})" for model, n in named)
    rest = len(counted) - len(named)
    if rest or None in models:
        more = f"{rest}+ more" if None in models and rest else "more" if None in models else f"{rest} more"
        seen += f" and {more} models ({sum(models.values()) - sum(n for _, n in named):,} events)"
    return (f"{sum(models.values()):,} events are for models without a baseline: {seen}; "
            f"baselines loaded: {', '.join(map(_quoted, loaded)) or 'none'}")


def shadow_summary(snapshot: dict) -> list[str]:
    """One line per shadow pair of a `ShadowMonitor.snapshot()`: joined requests, agreement over all
    closed windows and the last one, and the labelled comparison.

    >>> shadow_summary({"a=b": {"joined": 0}})
    ["shadow 'a=b': no request joined"]
    """
    lines = []
    for name, pair in snapshot.items():
        head = f"shadow {_quoted(name)}: "
        windows = pair.get("windows") or []
        if not pair.get("joined"):
            lines.append(head + "no request joined")
            continue
        text = f"{pair['joined']:,} requests joined"
        if windows:
            n = sum(w["n"] for w in windows)
            overall = sum(w["agreement"] * w["n"] for w in windows) / n
            last = windows[-1]
            text += (f", agreement {percent(overall)} over {len(windows)} windows (last: {percent(last['agreement'])}, "
                     f"95% CI {percent(last['ci_low'])}-{percent(last['ci_high'])})")
        reference = pair.get("reference")
        if reference:
            text += f", expected at least {percent(reference['expected'])}"
        labels = pair.get("labels")
        if labels:
            metric = labels["metric"]
            fmt = number if metric == "mae" else percent
            text += (f"; labelled {labels['n']:,}: {metric} {fmt(labels['candidate'][metric])} (candidate) vs "
                     f"{fmt(labels['production'][metric])} (production), "
                     f"{(labels['verdict'] or 'too few labels').replace('_', ' ')} (p={labels['p_value']:.2g})")
        lines.append(head + text)
    return lines


def _quoted(model: object) -> str:
    """A model name from an event, for a terminal: quoted, control characters escaped, bounded."""
    name = str(model)
    return f"'{printable(name[:64])}{'...' if len(name) > 64 else ''}'"


class JoinFeed:
    """The --feature-log / --labels files, read lazily and fed to the joins in ts order between
    the events (see the module docstring)."""

    def __init__(self, joins: JoinMonitor, files: list[tuple[str, str, IO[bytes]]], replay: Replay):
        self.joins = joins
        self._replay = replay
        self._add = {"feature_log": joins.add_feature_log, "labels": joins.add_labels}
        # per file: [time of the head record (inf: none), head record, kind, record iterator]
        self._heads = [[math.inf, None, kind, self._records(kind, path, f)] for kind, path, f in files]
        for head in self._heads:
            self._next(head)

    def _records(self, kind: str, path: str, f: IO[bytes]) -> Iterator[dict]:
        limits = self._replay.limits
        for lineno, line in _bounded_lines(f, limits.max_message_bytes):
            if line is None:
                self._replay._reject([Reject("oversized", f"line longer than {limits.max_message_bytes} bytes", b"")],
                                     {"file": path, "line": lineno})
                continue
            if not line.strip():
                continue
            records, rejects = decode_join_records(line, kind, limits)
            if rejects:
                self._replay._reject(rejects, {"file": path, "line": lineno})
            yield from records

    @staticmethod
    def _next(head: list) -> None:
        record = next(head[3], None)
        head[0] = math.inf if record is None else record_time(record, math.inf)
        head[1] = record

    def release(self, until: float) -> list[Alert]:
        """Feed the records due by event time `until` (math.inf: all that are left), oldest first."""
        alerts: list[Alert] = []
        while True:
            live = [h for h in self._heads if h[1] is not None]
            if not live:
                return alerts
            head = min(live, key=lambda h: h[0])
            if head[0] > until:
                return alerts
            alerts += self._add[head[2]]([head[1]])
            self._next(head)

    def add_events(self, events: list[dict]) -> list[Alert]:
        """The events of a batch, each after the records due by its time; the joins' alerts."""
        alerts: list[Alert] = []
        for ev in events:
            ts = record_time(ev, None)
            if ts is not None:
                alerts += self.release(ts)
            alerts += self.joins.add_predictions([ev])
        return alerts


def _counts(c: Counter) -> str:
    return (": " + ", ".join(f"{k} {v}" for k, v in c.most_common())) if c else ""


def _sniff(f: IO[bytes]) -> str:
    head = f.peek(64)[:64] if hasattr(f, "peek") else b""
    stripped = head.lstrip()
    return "jsonl" if not stripped or stripped[:1] in (b"{", b"[") else "msgpack"


def _line_blocks(f: IO[bytes], limit: int) -> Iterator[tuple[int, list[bytes | None]]]:
    """The lines of a binary file a block at a time, as (number of the block's first line, lines),
    without ever holding more than ~`limit` bytes of one line: a longer line is None (rejected as
    oversized) and skipped."""
    carry = b""
    lineno = 0
    skipping = False
    while True:
        block = f.read(_READ_BLOCK)
        if not block:
            break
        lines: list[bytes | None] = block.split(b"\n")
        if carry:  # the line the last block ended in (not carry + block: that copies the whole block)
            lines[0] = carry + lines[0]
        carry = lines.pop()
        if lines:
            if max(map(len, lines)) > limit:
                lines = [line if len(line) <= limit else None for line in lines]
            if skipping:  # the end of a line already too long
                lines[0] = None
                skipping = False
            yield lineno + 1, lines
            lineno += len(lines)
        if len(carry) > limit:
            skipping = True
            carry = b""
    if skipping:
        yield lineno + 1, [None]
    elif carry:
        yield lineno + 1, [carry]


def _bounded_lines(f: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """`_line_blocks` line by line: (line number, line or None)."""
    for first, lines in _line_blocks(f, limit):
        yield from enumerate(lines, first)
