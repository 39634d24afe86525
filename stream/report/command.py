"""`skewwatch report`: a replay that also records what it takes to *see* a drift, written as one
self-contained HTML page (inline CSS and SVG: no script, no external request).

It reads the files with replay's own reader and processing (detectors.processing), so the page
shows exactly the alerts `skewwatch replay` prints. Along the way it records, per model and feature:

- every statistic of `ModelMonitor.snapshot()`, sampled every `--window` events (the test over time);
- a bounded sample of the production values (numeric: a reservoir; categorical: a Space-Saving
  top-K), for the whole file and from the feature's first alert on (the distribution plot).

Exit status as `skewwatch replay`: 1 when no event was monitored (the page is still written, its
banner says why), 2 when its own arguments are wrong, the output file among them (checked before
the replay, which can be long).

`--shadow production=candidate` (as for `skewwatch replay`) adds a section per shadow pair: its
agreement per window against the expected one, and its confidence difference.

Privacy: the page holds aggregates only (histograms, shares, summary statistics and the alerts' own
diagnosis); never an event, a request id or a single production value.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from detectors.events import Limits
from detectors.joins import JoinConfig, JoinMonitor
from detectors.model import MonitorConfig
from stream.commands.progress import status_line
from stream.commands.replay import (
    FORMATS,
    JoinFeed,
    UsageError,
    add_shadow_arguments,
    check_format,
    input_size,
    load_inputs,
    shadow_arguments,
    unmonitored_sentence,
)
from stream.commands.tables import TableError, add_table_arguments, table_columns
from stream.report.gather import Recorder
from stream.report.html import render_html

__all__ = ["configure", "run"]


def configure(p: argparse.ArgumentParser) -> None:
    """Add the command's arguments to `p`, its subparser (`stream.commands.cli`)."""
    p.add_argument("events", nargs="+", metavar="EVENTS",
                   help="JSONL file, msgpack stream or table (.csv, .tsv, .parquet) of events, as for "
                        "`skewwatch replay`; '-' reads JSONL from stdin")
    p.add_argument("--baseline", "-b", action="append", required=True, metavar="B",
                   help="a baseline file; repeat for several models")
    p.add_argument("-o", "--output", default="report.html", metavar="FILE",
                   help="the HTML page to write (default report.html)")
    p.add_argument("--window", type=int, default=MonitorConfig.window, metavar="N",
                   help=f"sample the statistics every N events of a model (default {MonitorConfig.window}, "
                        "the monitors' window)")
    p.add_argument("--format", choices=FORMATS, default="auto",
                   help="input format (default: by extension, else by the first byte)")
    p.add_argument("--max-message-bytes", type=int, default=Limits.max_message_bytes,
                   help=f"larger messages are rejected as 'oversized' (default {Limits.max_message_bytes})")
    add_shadow_arguments(p)
    add_table_arguments(p)


def run(args: argparse.Namespace) -> int:
    """Run the command with its parsed arguments; returns the exit status (see the module docstring)."""
    if args.window < 1 or args.max_message_bytes < 1:
        return _usage_error("--window and --max-message-bytes must be positive")
    try:
        shadow_pairs, shadow_settings = shadow_arguments(args)
        baselines = load_inputs(args.baseline, args.events)
        check_format(args.format, args.events)
        _check_writable(Path(args.output))
    except UsageError as e:
        return _usage_error(str(e))
    started = time.perf_counter()
    recorder = Recorder(baselines.values(), window=args.window, limits=Limits(max_message_bytes=args.max_message_bytes),
                        table=table_columns(args))
    replay = recorder.replay
    replay.progress = status_line("report", input_size(args.events))
    joins = None
    if shadow_pairs:
        joins = JoinMonitor(baselines.get, JoinConfig(**shadow_settings), parity=False, labels=False,
                            shadow=shadow_pairs)
        replay.joins = JoinFeed(joins, [], replay)
    try:
        for path in args.events:
            recorder.run_file(path, args.format)
        recorder.finish()
    except TableError as e:
        return _usage_error(str(e))
    finally:
        if replay.progress is not None:
            replay.progress.clear()
    replay.print_summary(time.perf_counter() - started, sys.stderr)
    unmonitored = (unmonitored_sentence(replay.unmonitored_models, replay.router.models)
                   if replay.unmonitored_models else "")
    page = render_html(recorder.traces, sources=["standard input" if p == "-" else Path(p).name for p in args.events],
                       rejected=replay.rejected, unmonitored=unmonitored,
                       shadow=joins.shadow.snapshot() if joins is not None else None)
    try:
        Path(args.output).write_text(page, encoding="utf-8")
    except OSError as e:  # e.g. the disk filled up during the replay
        return _usage_error(f"{args.output}: cannot write: {e.strerror}")
    print(f"report: wrote {args.output} ({len(page) // 1024} KiB)", file=sys.stderr)
    problem = replay.nothing_monitored()
    if problem is not None:
        print(f"skewwatch report: error: {problem}", file=sys.stderr)
        return 1
    return 0


def _check_writable(path: Path) -> None:
    """Raise `UsageError` unless `path` can be written (created in an existing, writable directory).

    >>> _check_writable(Path("/no/such/dir/report.html"))
    Traceback (most recent call last):
    ...
    stream.commands.replay.UsageError: /no/such/dir/report.html: cannot write: no directory /no/such/dir
    """
    directory = path.parent
    if path.is_dir():
        raise UsageError(f"{path}: cannot write: it is a directory")
    if not directory.is_dir():
        raise UsageError(f"{path}: cannot write: no directory {directory}")
    if not os.access(path if path.exists() else directory, os.W_OK):
        raise UsageError(f"{path}: cannot write: permission denied")


def _usage_error(msg: str) -> int:
    print(f"skewwatch report: error: {msg}", file=sys.stderr)
    return 2
