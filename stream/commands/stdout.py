"""What a command does when the reader of its stdout goes away (`skewwatch replay ... | head -1`).

Python ignores SIGPIPE and raises BrokenPipeError instead; the commands that print for a pipe
(`replay`, `baseline show`) stop there, quietly, with the status a Unix tool the signal stopped
has, so that a script can tell a complete run from a cut one.
"""
from __future__ import annotations

import os
import sys

__all__ = ["EXIT_BROKEN_PIPE", "reader_went_away"]

#: exit status when stdout's reader went away: 128 + SIGPIPE, what the shell shows for a Unix tool the
#: signal stopped
EXIT_BROKEN_PIPE = 141


def reader_went_away() -> int:
    """Point stdout at /dev/null (what is still buffered for the reader that went away must not
    raise again when Python flushes it at exit); EXIT_BROKEN_PIPE, the status to exit with."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):  # not a real file (a test's capture): nothing is flushed to a pipe
        return EXIT_BROKEN_PIPE
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
    return EXIT_BROKEN_PIPE
