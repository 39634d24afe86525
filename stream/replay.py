"""`skewwatch replay`: the monitors over a file of events, alerts as JSON lines on stdout.

Same code path as the worker (decode_message -> ModelRouter.process), so the same events
give the same alerts. Input problems never crash it: rejected messages are counted by
reason (and written to --dead-letter FILE), bad values inside accepted events are counted
per feature in the summary. Exit status 2 only when its own arguments are wrong.
"""
from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import IO, Iterator

import msgpack
import orjson

from baselines.profile import Baseline, BaselineError
from detectors.events import Limits, Reject, dead_letter_record, decode_message, events_from_value
from detectors.routing import ModelRouter

_MSGPACK_SUFFIXES = (".msgpack", ".mpk", ".mp")
_READ_BLOCK = 1 << 20


def configure(p: argparse.ArgumentParser) -> None:
    p.add_argument("events", nargs="+", metavar="EVENTS",
                   help="JSONL file (one message per line: an event or a list of events) or a msgpack "
                        "stream (.msgpack: concatenated msgpack messages); '-' reads JSONL from stdin")
    p.add_argument("--baseline", "-b", action="append", required=True, metavar="B",
                   help="a baseline file; repeat for several models (events are routed by their 'model')")
    p.add_argument("--dead-letter", metavar="FILE",
                   help="write every rejected message as a JSON line with its reason and original bytes")
    p.add_argument("--format", choices=("auto", "jsonl", "msgpack"), default="auto",
                   help="input format (default: by extension, else by the first byte)")
    p.add_argument("--batch-size", type=int, default=1000,
                   help="events per monitor batch; alerts do not depend on it (default 1000)")
    p.add_argument("--max-message-bytes", type=int, default=Limits.max_message_bytes,
                   help=f"larger messages are rejected as 'oversized' (default {Limits.max_message_bytes})")


def run(args: argparse.Namespace) -> int:
    if args.batch_size < 1 or args.max_message_bytes < 1:
        return _usage_error("--batch-size and --max-message-bytes must be positive")
    baselines: dict[str, Baseline] = {}
    for path in args.baseline:
        try:
            b = Baseline.load(path)
        except BaselineError as e:
            return _usage_error(str(e))
        if b.model in baselines:
            return _usage_error(f"{path}: a second baseline for model {b.model!r}")
        baselines[b.model] = b
    for path in args.events:
        if path != "-" and not Path(path).is_file():
            return _usage_error(f"{path}: no such file")

    limits = Limits(max_message_bytes=args.max_message_bytes)
    replay = _Replay(ModelRouter(baselines.values()), limits, args.batch_size, sys.stdout.buffer,
                     open(args.dead_letter, "wb") if args.dead_letter else None)
    started = time.perf_counter()
    try:
        for path in args.events:
            replay.run_file(path, args.format)
        replay.flush()
    finally:
        if replay.dead_letters is not None:
            replay.dead_letters.close()
    replay.print_summary(time.perf_counter() - started, sys.stderr)
    return 0


def _usage_error(msg: str) -> int:
    print(f"skewwatch replay: error: {msg}", file=sys.stderr)
    return 2


class _Replay:
    def __init__(self, router: ModelRouter, limits: Limits, batch_size: int, out: IO[bytes], dead_letters: IO[bytes] | None):
        self.router = router
        self.limits = limits
        self.batch_size = batch_size
        self.out = out
        self.dead_letters = dead_letters
        self.pending: list[dict] = []
        self.events = 0
        self.rejected: Counter[str] = Counter()
        self.alerts: Counter[str] = Counter()
        self.source: dict = {}

    def run_file(self, path: str, fmt: str) -> None:
        f = sys.stdin.buffer if path == "-" else open(path, "rb")
        try:
            if fmt == "auto":
                fmt = "msgpack" if path.endswith(_MSGPACK_SUFFIXES) else _sniff(f)
            if fmt == "msgpack":
                self._run_msgpack(path, f)
            else:
                self._run_jsonl(path, f)
        finally:
            if f is not sys.stdin.buffer:
                f.close()

    def _run_jsonl(self, path: str, f: IO[bytes]) -> None:
        for lineno, line in _bounded_lines(f, self.limits.max_message_bytes):
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

    def _run_msgpack(self, path: str, f: IO[bytes]) -> None:
        unpacker = msgpack.Unpacker(f, raw=False, strict_map_key=False, max_buffer_size=self.limits.max_message_bytes)
        index = 0
        while True:
            try:
                obj = unpacker.unpack()
            except msgpack.OutOfData:
                return
            except Exception as e:  # a corrupt stream cannot be resynchronised: count it and stop this file
                self._reject([Reject("not_decodable", f"corrupt msgpack stream after message {index}: {type(e).__name__}", b"")],
                             {"file": path, "message": index})
                return
            events, rejects = events_from_value(obj, None, self.limits)
            if rejects:
                self._reject(rejects, {"file": path, "message": index})
            self._add(events)
            index += 1

    def _add(self, events: list[dict]) -> None:
        self.pending.extend(events)
        if len(self.pending) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        batch, self.pending = self.pending, []
        alerts, rejects = self.router.process(batch)
        self.events += len(batch) - len(rejects)
        if rejects:
            self._reject(rejects, {"batch_end_event": self.events})
        for a in alerts:
            self.alerts[a.kind] += 1
            self.out.write(orjson.dumps(a.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY) + b"\n")
        self.out.flush()

    def _reject(self, rejects: list[Reject], source: dict) -> None:
        for r in rejects:
            self.rejected[r.reason] += 1
            if self.dead_letters is not None:
                self.dead_letters.write(orjson.dumps(dead_letter_record(r, source)) + b"\n")

    def print_summary(self, seconds: float, err: IO[str]) -> None:
        rate = self.events / seconds if seconds > 0 else 0.0
        print(f"replay: {self.events} events in {seconds:.2f} s ({rate:,.0f} events/s)", file=err)
        print(f"replay: rejected {sum(self.rejected.values())}" + _counts(self.rejected), file=err)
        print(f"replay: alerts {sum(self.alerts.values())}" + _counts(self.alerts), file=err)
        for model in self.router.models:
            snap = self.router.monitor(model).snapshot()
            bad = []
            for feature, fs in snap["features"].items():
                counts = {k: v for k, v in (fs.get("counts") or {}).items() if v and k != "valid"}
                if counts:
                    bad.append(f"{feature} (" + ", ".join(f"{k} {v}" for k, v in sorted(counts.items())) + ")")
            if bad:
                print(f"replay: {model}: bad values: " + "; ".join(bad), file=err)


def _counts(c: Counter) -> str:
    return (": " + ", ".join(f"{k} {v}" for k, v in c.most_common())) if c else ""


def _sniff(f: IO[bytes]) -> str:
    head = f.peek(64)[:64] if hasattr(f, "peek") else b""
    stripped = head.lstrip()
    return "jsonl" if not stripped or stripped[:1] in (b"{", b"[") else "msgpack"


def _bounded_lines(f: IO[bytes], limit: int) -> Iterator[tuple[int, bytes | None]]:
    """Lines of a binary file without ever holding more than ~`limit` bytes of one line:
    a longer line is yielded as None (rejected as oversized) and skipped."""
    buf = b""
    lineno = 0
    skipping = False
    while True:
        block = f.read(_READ_BLOCK)
        if not block:
            break
        buf += block
        start = 0
        while True:
            nl = buf.find(b"\n", start)
            if nl < 0:
                break
            lineno += 1
            if skipping:
                skipping = False
                yield lineno, None
            elif nl - start > limit:
                yield lineno, None
            else:
                yield lineno, buf[start:nl]
            start = nl + 1
        buf = buf[start:]
        if len(buf) > limit:
            skipping = True
            buf = b""
    if skipping:
        yield lineno + 1, None
    elif buf:
        yield lineno + 1, buf
