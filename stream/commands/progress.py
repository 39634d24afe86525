"""A status line for long runs (`skewwatch replay`, `skewwatch report`) on a terminal's stderr.

Redrawn in place (carriage return, erase to the end of the line) at most a few times a second, and
erased at the end, so the summary that follows starts on a clean line. Nothing at all when stderr
is not a terminal: logs and pipes get the summary only.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import IO

__all__ = ["DELAY", "INTERVAL", "StatusLine", "status_line"]

#: seconds between redraws at least (a few a second: readable, and costs nothing)
INTERVAL = 0.25
#: seconds before the first draw: a short run finishes without a status line flickering by
DELAY = 1.0
_ERASE = "\r\x1b[K"


class StatusLine:
    """`label: N events read, R events/s[, P%, ETA m:ss]`, on `out`.

    Parameters
    ----------
    label
        The command, at the start of the line.
    total_bytes
        The input's size when known (regular files): then the line shows the share read and the
        time left at the rate so far.
    out
        A terminal (see `status_line`).
    clock
        Seconds, monotonic (a test's fake clock).
    unit
        What is counted: "events" (replay, report) or "rows" (`baseline build`).

    Examples
    --------
    >>> import io
    >>> ticks = iter([0.0, 2.0, 2.1, 4.0])
    >>> out = io.StringIO()
    >>> line = StatusLine("replay", 1000, out, clock=lambda: next(ticks))
    >>> line.update(50_000, 250)
    >>> line.update(51_000, 260)  # 0.1 s later: not redrawn
    >>> line.update(100_000, 500)
    >>> line.clear()
    >>> for drawn in out.getvalue().split("\\r\\x1b[K"):
    ...     print(repr(drawn))
    ''
    'replay: 50,000 events read, 25,000 events/s, 25%, ETA 0:06'
    'replay: 100,000 events read, 25,000 events/s, 50%, ETA 0:04'
    ''
    """

    def __init__(self, label: str, total_bytes: int | None, out: IO[str],
                 clock: Callable[[], float] = time.monotonic, unit: str = "events"):
        self._label = label
        self._unit = unit
        self._total = total_bytes if total_bytes else None
        self._out = out
        self._clock = clock
        self._start = clock()
        self._next_draw = self._start + DELAY
        self._drawn = False

    def due(self) -> bool:
        """Whether `update` would redraw now (for a caller whose counts take work to gather)."""
        return self._clock() >= self._next_draw

    def update(self, events: int, bytes_read: int | None) -> None:
        """Redraw the line with the run's progress, unless it was drawn less than `INTERVAL` s ago
        (or the run is younger than `DELAY` s).

        Parameters
        ----------
        events
            Events read so far.
        bytes_read
            Bytes of the input read so far, or None when unknown (stdin).
        """
        now = self._clock()
        if now < self._next_draw:
            return
        self._next_draw = now + INTERVAL
        elapsed = max(now - self._start, 1e-9)
        text = f"{self._label}: {events:,} {self._unit} read, {events / elapsed:,.0f} {self._unit}/s"
        if self._total is not None and bytes_read is not None:
            share = min(bytes_read / self._total, 1.0)
            text += f", {100 * share:.0f}%"
            if share > 0:
                text += f", ETA {_clock_time(elapsed * (1 - share) / share)}"
        self._out.write(_ERASE + text)
        self._out.flush()
        self._drawn = True

    def clear(self) -> None:
        """Erase the line (if it was drawn): what is printed next starts on a clean line."""
        if self._drawn:
            self._out.write(_ERASE)
            self._out.flush()
            self._drawn = False


def status_line(label: str, total_bytes: int | None, out: IO[str] | None = None,
                unit: str = "events") -> StatusLine | None:
    """A `StatusLine` on `out` if it is a terminal, else None (no status line).

    Parameters
    ----------
    label
        The command, at the start of the line.
    total_bytes
        The input's size, or None when unknown (see `stream.commands.replay.input_size`).
    out
        Where to draw it; default stderr.
    unit
        What is counted (see `StatusLine`).

    Returns
    -------
    StatusLine or None
        None when `out` is not a terminal: logs and pipes get no status line.
    """
    out = sys.stderr if out is None else out
    isatty = getattr(out, "isatty", None)
    return StatusLine(label, total_bytes, out, unit=unit) if isatty is not None and isatty() else None


def _clock_time(seconds: float) -> str:
    """0:06, 12:34, 1:02:03.

    >>> _clock_time(6.4), _clock_time(754), _clock_time(3723)
    ('0:06', '12:34', '1:02:03')
    """
    s = round(seconds)
    h, m = divmod(s // 60, 60)
    return f"{h}:{m:02d}:{s % 60:02d}" if h else f"{m}:{s % 60:02d}"
