"""How the worker process behaves around its work: what it logs while its broker is gone, and
how it stops.

- `OutageLogFilter`: the Kafka client and Faust repeat their warnings and errors ~100 times a
  second while the broker is unreachable; at most one line per logger and message passes per
  interval, and the next one says how many like it were held back.
- `PrintableLogFilter`: the worker's own log lines quote model and feature names, file names and
  reject details, which come from producers and files; their control characters are escaped
  (`detectors.fmt.printable`), so a hostile name cannot rewrite the terminal or forge a log line.
- `Worker`: Faust's worker (`faust.App(Worker=...)`, used by `skewwatch worker` and by
  `faust -A stream.worker.app worker`) with those filters on the process's log handlers, and a
  watchdog: a shutdown started by SIGTERM or SIGINT that has not ended the process after
  `SHUTDOWN_GRACE_S` (Faust's own can hang for ever once the broker is gone) is cut short, and
  the process exits with status 128 + the signal's number, saying so.

The checkpoints are still written on a stop while the broker is there: the worker's shutdown
handler (stream.worker.agents.on_shutdown) runs first and needs well under a second then.
"""
from __future__ import annotations

import logging
import math
import os
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable

import faust

from detectors.fmt import printable

__all__ = ["LIMITED_LOGGERS", "OWN_LOGGERS", "OutageLogFilter", "PrintableLogFilter", "SHUTDOWN_GRACE_S", "Worker"]

log = logging.getLogger("skewwatch.worker")

#: seconds a shutdown started by a signal may take before the process exits regardless
SHUTDOWN_GRACE_S = 8.0
#: the loggers (and their children) whose warnings and errors `OutageLogFilter` rate-limits
LIMITED_LOGGERS = ("aiokafka", "faust", "mode")
#: the loggers (and their children) whose messages `PrintableLogFilter` escapes: skewwatch's own
#: (Faust's are left alone: they quote none of the events' names, and some are multi-line tables)
OWN_LOGGERS = ("skewwatch",)


class OutageLogFilter(logging.Filter):
    """Let at most one WARNING-or-above record per (logger, message template) through per
    `interval` seconds from `LIMITED_LOGGERS`; the next one let through carries the count held
    back since. Other records pass untouched.

    Parameters
    ----------
    interval : float
        Seconds between two records of the same logger and template.
    clock : callable
        Returns the current time in seconds (a fake one in tests).

    >>> now = [0.0]
    >>> limit = OutageLogFilter(interval=10.0, clock=lambda: now[0])
    >>> def record():
    ...     return logging.LogRecord("aiokafka.conn", logging.ERROR, "", 0, "Unable connect to %r", ("b",), None)
    >>> [limit.filter(record()) for _ in range(3)]
    [True, False, False]
    >>> now[0] = 10.0
    >>> let_through = record()
    >>> limit.filter(let_through), let_through.getMessage()
    (True, "Unable connect to 'b' [2 similar line(s) suppressed since the last one]")
    """

    def __init__(self, interval: float = 10.0, clock: Callable[[], float] = time.monotonic):
        super().__init__()
        self._interval = interval
        self._clock = clock
        self._last: dict[tuple[str, str], float] = {}
        self._held: Counter = Counter()
        self._lock = threading.Lock()  # Faust's consumer logs from a thread of its own

    def filter(self, record: logging.LogRecord) -> bool:
        """Whether `record` is written (see the class); a record let through after others were
        held back gets their count appended to its message."""
        if record.levelno < logging.WARNING or not record.name.startswith(LIMITED_LOGGERS):
            return True
        key = (record.name, str(record.msg))
        now = self._clock()
        with self._lock:
            if now - self._last.get(key, -math.inf) < self._interval:
                self._held[key] += 1
                return False
            self._last[key] = now
            held = self._held.pop(key, 0)
        if held:
            record.msg = f"{record.msg} [{held} similar line(s) suppressed since the last one]"
        return True


class PrintableLogFilter(logging.Filter):
    """Escape the control characters (newlines included) of every message of `OWN_LOGGERS`
    (`detectors.fmt.printable`); other records pass untouched. A traceback keeps its lines.

    >>> record = logging.LogRecord("skewwatch.worker", logging.INFO, "", 0, "loaded %s", ("m\\x1b[2J\\n",), None)
    >>> PrintableLogFilter().filter(record), record.getMessage()
    (True, 'loaded m\\\\x1b[2J\\\\x0a')
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Always True (the record is written); its message escaped if it is one of ours."""
        if record.name.startswith(OWN_LOGGERS):
            message = record.getMessage()
            escaped = printable(message)
            if escaped != message:  # args (), not None: mode's formatter would format None into it
                record.msg, record.args = escaped, ()
        return True


class Worker(faust.Worker):
    """Faust's worker with the log filters and a shutdown that cannot hang (see the module)."""

    def on_setup_root_logger(self, logger: logging.Logger, level: int) -> None:
        """Faust's set-up of the root logger, plus the outage and escaping filters on each of its handlers."""
        super().on_setup_root_logger(logger, level)
        limit, escape = OutageLogFilter(), PrintableLogFilter()
        for handler in logger.handlers:
            handler.addFilter(limit)
            handler.addFilter(escape)

    def _schedule_shutdown(self, signal: signal.Signals) -> None:
        # mode.Worker's one entry point for SIGINT and SIGTERM; the first signal arms the watchdog
        if not self._signal_stop_time:
            watchdog = threading.Timer(SHUTDOWN_GRACE_S, _exit_now, args=(signal,))
            watchdog.daemon = True
            watchdog.start()
        super()._schedule_shutdown(signal)


def _exit_now(signal: signal.Signals) -> None:
    log.error("the shutdown started by %s has not ended after %g s (the broker unreachable?): exiting without it",
              signal.name, SHUTDOWN_GRACE_S)
    for handler in logging.getLogger().handlers:
        handler.flush()
    sys.stderr.flush()
    os._exit(128 + signal.value)
